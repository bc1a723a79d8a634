"""Large transactions parsed in a worker process (``fhir_hub/rest/parsers.py``), end to end.

A real server with one parser process; each test first waits until that process is up, so the
bundles it posts are parsed there, not in the server (the first large bundle starts the pool).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, fhir_client, make_server

MARK = "urn:test:parsers"


def _children(pid: int) -> list[int]:
    """The parser processes of server ``pid`` (not multiprocessing's resource tracker)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        kids = [int(x) for x in f.read().split()]
    out = []
    for kid in kids:
        try:
            with open(f"/proc/{kid}/cmdline", "rb") as f:
                if b"spawn_main" in f.read():
                    out.append(kid)
        except OSError:
            pass
    return out


def _patient(urn: str, nid: str) -> dict[str, Any]:
    return {"fullUrl": urn, "resource": {"resourceType": "Patient", "identifier": [{"system": MARK, "value": nid}],
                                         "name": [{"family": "Nguyễn", "given": ["Văn", "An"]}],
                                         "gender": "male", "birthDate": "1980-02-03"},
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={MARK}|{nid}"}}


def _observation(patient_ref: str, i: int, value: Any = None) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Observation"},
            "resource": {"resourceType": "Observation", "status": "final",
                         "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                         "subject": {"reference": patient_ref},
                         "effectiveDateTime": f"2024-01-{1 + i % 28:02d}T08:00:00+07:00",
                         "valueQuantity": {"value": 60 + i if value is None else value, "unit": "/min",
                                           "system": "http://unitsofmeasure.org", "code": "/min"}}}


def big_bundle(nid: str, n: int = 120) -> dict[str, Any]:
    """A transaction well over the pool's size floor: a Patient (conditional create) and ``n``
    Observations pointing at it through its ``urn:uuid``."""
    urn = f"urn:uuid:{uuid.uuid4()}"
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [_patient(urn, nid), *(_observation(urn, i) for i in range(n))]}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = make_server(tmp_path_factory.mktemp("parsers"), parse_workers="1").start()
    yield s
    s.stop()


def _wait_for_worker(srv: Server, client: httpx.Client) -> int:
    """Post large bundles until the server has a parser process that has answered; its pid."""
    assert srv.proc is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = client.post("", json=big_bundle(f"warm-{uuid.uuid4()}", 100))
        assert r.status_code == 200, r.text
        kids = _children(srv.proc.pid)
        if kids:
            time.sleep(2.0)  # its first job (the ping) answered: later bundles go to it
            return kids[0]
        time.sleep(0.2)
    raise AssertionError("no parser process started")


def _count(client: httpx.Client, rtype: str, **params: str) -> int:
    r = client.get(rtype, params={**params, "_summary": "count"})
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def test_a_large_transaction_is_written_whole_with_references_and_conditions(srv: Server) -> None:
    with fhir_client(srv) as client:
        _wait_for_worker(srv, client)
        nid = f"p-{uuid.uuid4()}"
        r = client.post("", json=big_bundle(nid))
        assert r.status_code == 200, r.text
        entries = r.json()["entry"]
        assert entries[0]["response"]["status"].startswith("201")
        pid = entries[0]["response"]["location"].split("/")[1]
        assert _count(client, "Observation", subject=f"Patient/{pid}") == 120
        assert _count(client, "Observation", subject=f"Patient/{pid}", date="2024-01-05") > 0
        # again: ifNoneExist finds the Patient; the new Observations point at the existing one
        again = client.post("", json=big_bundle(nid))
        assert again.status_code == 200, again.text
        assert again.json()["entry"][0]["response"]["status"].startswith("200")
        assert _count(client, "Patient", identifier=f"{MARK}|{nid}") == 1
        assert _count(client, "Observation", subject=f"Patient/{pid}") == 240


def test_an_invalid_entry_is_named_and_nothing_is_written(srv: Server) -> None:
    with fhir_client(srv) as client:
        _wait_for_worker(srv, client)
        nid = f"bad-{uuid.uuid4()}"
        bundle = big_bundle(nid)
        bundle["entry"][77]["resource"]["valueQuantity"]["value"] = "sixty"
        r = client.post("", json=bundle)
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["resourceType"] == "OperationOutcome"
        assert any("Bundle.entry[77].resource" in e for i in body["issue"] for e in i.get("expression", [])), body
        assert _count(client, "Patient", identifier=f"{MARK}|{nid}") == 0


def test_a_batch_over_the_floor_is_still_a_batch(srv: Server) -> None:
    with fhir_client(srv) as client:
        _wait_for_worker(srv, client)
        bundle = big_bundle(f"batch-{uuid.uuid4()}", 100)
        bundle["type"] = "batch"
        for e in bundle["entry"][1:]:
            e["resource"]["subject"] = {"display": "nobody"}
        bundle["entry"][5]["resource"]["status"] = "no-such-status"
        r = client.post("", json=bundle)
        assert r.status_code == 200, r.text
        statuses = [e["response"]["status"] for e in r.json()["entry"]]
        assert statuses[5].startswith("400") and sum(s.startswith("201") for s in statuses) == 100


def test_a_custom_search_parameter_reaches_the_worker(srv: Server) -> None:
    with fhir_client(srv) as client:
        _wait_for_worker(srv, client)
        code = f"heart{uuid.uuid4().hex[:8]}"
        sp = {"resourceType": "SearchParameter", "url": f"http://example.org/sp/{code}", "name": code,
              "status": "active", "description": "value of a heart-rate Observation", "code": code,
              "base": ["Observation"], "type": "quantity", "expression": "Observation.value.ofType(Quantity)"}
        assert client.post("SearchParameter", json=sp).status_code == 201
        nid = f"sp-{uuid.uuid4()}"
        bundle = big_bundle(nid)
        bundle["entry"][10]["resource"]["valueQuantity"]["value"] = 777
        r = client.post("", json=bundle)
        assert r.status_code == 200, r.text
        assert _count(client, "Observation", **{code: "777"}) == 1


def test_a_killed_worker_loses_nothing(srv: Server) -> None:
    with fhir_client(srv) as client:
        worker = _wait_for_worker(srv, client)
        os.kill(worker, signal.SIGKILL)
        time.sleep(0.5)
        written = []
        for _ in range(3):  # the first may meet the dead pool: parsed in the server instead
            nid = f"k-{uuid.uuid4()}"
            r = client.post("", json=big_bundle(nid, 100))
            assert r.status_code == 200, r.text
            written.append(nid)
        for nid in written:
            assert _count(client, "Patient", identifier=f"{MARK}|{nid}") == 1
        assert srv.proc is not None
        deadline = time.monotonic() + 30
        while not _children(srv.proc.pid) and time.monotonic() < deadline:
            client.post("", json=big_bundle(f"k-{uuid.uuid4()}", 100))
        assert _children(srv.proc.pid) and worker not in _children(srv.proc.pid)


def test_the_worker_goes_with_the_server(tmp_path: Path) -> None:
    s = make_server(tmp_path, parse_workers="1").start()
    try:
        with fhir_client(s) as client:
            worker = _wait_for_worker(s, client)
    finally:
        s.kill()
    deadline = time.monotonic() + 20
    while os.path.exists(f"/proc/{worker}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{worker}") or "Z" in open(f"/proc/{worker}/stat").read().split()[2]
