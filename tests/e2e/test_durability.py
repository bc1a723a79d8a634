"""Crash safety and concurrency against a real server process on a real SQLite file.

* SIGKILL in the middle of a stream of transactions: after restart every transaction is wholly
  present or wholly absent, and every acknowledged one is present.
* Many clients updating one resource with ``If-Match`` (retrying on 412): no update is lost.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import make_server

SYSTEM = "urn:test:crash"


def _bundle(tag: str, size: int) -> dict[str, Any]:
    p = f"urn:uuid:{uuid.uuid4()}"
    entries: list[dict[str, Any]] = [{
        "fullUrl": p,
        "resource": {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": tag}]},
        "request": {"method": "POST", "url": "Patient"},
    }]
    for i in range(size - 1):
        entries.append({
            "resource": {"resourceType": "Observation", "status": "final",
                         "identifier": [{"system": SYSTEM, "value": f"{tag}-{i}"}],
                         "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                         "subject": {"reference": p}, "valueQuantity": {"value": 60 + i, "unit": "/min"}},
            "request": {"method": "POST", "url": "Observation"},
        })
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def test_sigkill_mid_stream_loses_no_acknowledged_transaction(tmp_path: Path) -> None:
    srv = make_server(tmp_path).start()
    size = 20
    sent: list[str] = []
    acked: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        with httpx.Client(base_url=srv.base, timeout=10, headers={"Content-Type": "application/fhir+json"}) as c:
            while not stop.is_set():
                tag = uuid.uuid4().hex
                sent.append(tag)
                try:
                    r = c.post("", json=_bundle(tag, size))
                except httpx.HTTPError:
                    return  # the server died under us: this one may or may not have committed
                if r.status_code == 200:
                    acked.append(tag)

    threads = [threading.Thread(target=stream) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(random.uniform(0.0, 0.2))
    srv.kill()
    stop.set()
    for t in threads:
        t.join(15)
    assert len(acked) >= 40, "the stream did not get going"

    srv.start()
    try:
        with httpx.Client(base_url=srv.base, timeout=30) as c:
            present = 0
            for tag in sent:
                pats = c.get(f"/Patient?identifier={SYSTEM}|{tag}").json().get("entry", [])
                obs = [c.get(f"/Observation?identifier={SYSTEM}|{tag}-{i}").json().get("entry", []) for i in range(size - 1)]
                counts = {len(pats)} | {len(o) for o in obs}
                assert counts in ({0}, {1}), f"transaction {tag} is partly present: {counts}"
                if counts == {1}:
                    present += 1
                    pid = pats[0]["resource"]["id"]
                    assert all(o[0]["resource"]["subject"]["reference"] == f"Patient/{pid}" for o in obs)
                else:
                    assert tag not in acked, f"acknowledged transaction {tag} is missing after the crash"
            assert present >= len(acked)
    finally:
        srv.stop()


def test_concurrent_if_match_updates_lose_nothing(tmp_path: Path) -> None:
    srv = make_server(tmp_path).start()
    clients, increments = 16, 15

    async def worker(c: httpx.AsyncClient) -> int:
        conflicts = 0
        for _ in range(increments):
            while True:
                cur = await c.get("/Patient/counter")
                body = cur.json()
                body["multipleBirthInteger"] += 1
                body.pop("meta")
                r = await c.put("/Patient/counter", json=body, headers={"If-Match": cur.headers["etag"]})
                if r.status_code == 200:
                    break
                assert r.status_code == 412, r.text
                conflicts += 1
        return conflicts

    async def run() -> tuple[int, dict[str, Any]]:
        async with httpx.AsyncClient(base_url=srv.base, timeout=30,
                                     headers={"Content-Type": "application/fhir+json"}) as c:
            await c.put("/Patient/counter", json={"resourceType": "Patient", "id": "counter",
                                                  "multipleBirthInteger": 0})
            conflicts = sum(await asyncio.gather(*(worker(c) for _ in range(clients))))
            return conflicts, (await c.get("/Patient/counter")).json()

    try:
        conflicts, final = asyncio.run(run())
    finally:
        srv.stop()
    assert final["multipleBirthInteger"] == clients * increments
    assert final["meta"]["versionId"] == str(clients * increments + 1)
    assert conflicts > 0, "the test did not actually race"
