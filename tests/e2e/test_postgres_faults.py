"""PostgreSQL killed under a real fhir-hub (issue 10, item 7): SIGKILL of the database server in
the middle of a stream of concurrent transaction bundles, then a restart on the same port.

* Every acknowledged transaction is present afterwards; none is present in part.
* While the database is down every answer is a 503 with ``Retry-After`` and an OperationOutcome,
  within the client's timeout (no hang, no 500).
* The server heals by itself: once PostgreSQL is back, writes and reads succeed again with no
  restart of fhir-hub.

The cluster is this test's own (the session's is shared), with synchronous commit: a commit is
acknowledged only after its WAL reached the kernel, which a SIGKILL of PostgreSQL does not lose.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Server, free_port
from tests.pgcluster import Cluster, find_bindir

SYSTEM = "urn:test:pg-crash"
SIZE = 8  # entries per bundle: one Patient and its Observations


@pytest.fixture
def crash_cluster() -> Iterator[Cluster]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found (see tests/backends.py)")
    cluster = Cluster(bindir, crash_safe=True).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _bundle(tag: str) -> dict[str, Any]:
    p = f"urn:uuid:{uuid.uuid4()}"
    entries: list[dict[str, Any]] = [{
        "fullUrl": p,
        "resource": {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": tag}]},
        "request": {"method": "POST", "url": "Patient"},
    }]
    entries += [{
        "resource": {"resourceType": "Observation", "status": "final",
                     "identifier": [{"system": SYSTEM, "value": f"{tag}-obs"}],
                     "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                     "subject": {"reference": p}, "valueQuantity": {"value": 60 + i, "unit": "/min"}},
        "request": {"method": "POST", "url": "Observation"},
    } for i in range(SIZE - 1)]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


class _Stream:
    """Clients posting bundles without pause; what was sent, acknowledged and refused."""

    def __init__(self, base: str, clients: int):
        self.base = base
        self.sent: list[str] = []
        self.acked: list[str] = []
        #: Answers other than 200: (status, Retry-After, resourceType of the body).
        self.refused: list[tuple[int, str | None, str | None]] = []
        self.hung: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def __enter__(self) -> _Stream:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=20, headers={"Content-Type": "application/fhir+json"}) as c:
            while not self._stop.is_set():
                tag = uuid.uuid4().hex
                self.sent.append(tag)
                try:
                    r = c.post("", json=_bundle(tag))
                except httpx.TimeoutException:
                    self.hung.append(tag)
                    continue
                if r.status_code == 200:
                    self.acked.append(tag)
                else:
                    kind = r.json().get("resourceType") if r.content else None
                    self.refused.append((r.status_code, r.headers.get("retry-after"), kind))
                    time.sleep(0.05)


def _wait_for(pred: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not pred():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.02)


def test_sigkill_of_postgres_loses_no_acknowledged_transaction(crash_cluster: Cluster) -> None:
    url = crash_cluster.create_database("crash")
    srv = Server(url, free_port(), {}).start()  # type: ignore[arg-type]  # db is a URL here
    try:
        with _Stream(srv.base, clients=4) as stream, httpx.Client(base_url=srv.base, timeout=20) as c:
            _wait_for(lambda: len(stream.acked) >= 30, "30 acknowledged transactions")
            time.sleep(random.uniform(0.0, 0.2))
            crash_cluster.kill()
            acked_before = len(stream.acked)

            refused_before = len(stream.refused)
            _wait_for(lambda: len(stream.refused) >= refused_before + 8, "writes refused during the outage")
            down = [c.get("/Patient", params={"identifier": f"{SYSTEM}|x"}), c.get("/Patient/nope"),
                    c.post("/Patient", json={"resourceType": "Patient"},
                           headers={"Content-Type": "application/fhir+json"})]
            for r in down:
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "1"
                assert r.json()["resourceType"] == "OperationOutcome"
                assert r.json()["issue"][0]["code"] == "transient"

            crash_cluster.restart()
            _wait_for(lambda: c.get("/Patient/nope").status_code == 404, "reads to work again")
            _wait_for(lambda: len(stream.acked) >= acked_before + 10, "writes to be acknowledged again")
        assert not stream.hung, f"{len(stream.hung)} requests got no answer within 20 s"
        assert stream.refused, "the outage was not seen"
        assert {status for status, _r, _k in stream.refused} == {503}, stream.refused
        assert all(retry == "1" and kind == "OperationOutcome" for _s, retry, kind in stream.refused)

        with httpx.Client(base_url=srv.base, timeout=30) as c:
            present = 0
            for tag in stream.sent:
                pats = c.get("/Patient", params={"identifier": f"{SYSTEM}|{tag}"}).json().get("entry", [])
                obs = c.get("/Observation", params={"identifier": f"{SYSTEM}|{tag}-obs", "_count": "50"}).json()
                counts = (len(pats), len(obs.get("entry", [])))
                assert counts in ((0, 0), (1, SIZE - 1)), f"transaction {tag} is partly present: {counts}"
                if counts == (0, 0):
                    assert tag not in stream.acked, f"acknowledged transaction {tag} is missing after the crash"
                else:
                    present += 1
                    pid = pats[0]["resource"]["id"]
                    assert {e["resource"]["subject"]["reference"] for e in obs["entry"]} == {f"Patient/{pid}"}
            assert present >= len(stream.acked)
    finally:
        srv.stop()
