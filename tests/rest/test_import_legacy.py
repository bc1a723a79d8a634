"""``POST /$import-legacy``: a legacy file imported as an asynchronous job, over a real server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_hub.mapping.generate import FAULT_KINDS, generate
from tests.conftest import Server, fhir_client, make_server
from tests.mapping.conftest import sample_files

DATA = Path(__file__).resolve().parents[1] / "mapping" / "data"


def _submit(srv: Server, body: bytes, **params: str) -> httpx.Response:
    return httpx.post(f"{srv.base}/$import-legacy", params=params, content=body, timeout=30,
                      headers={"Content-Type": "application/xml", "Prefer": "respond-async"})


def _wait(url: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(url, timeout=30)
        if r.status_code == 200:
            assert r.headers["content-type"] == "application/json"
            return r.json()  # type: ignore[no-any-return]
        assert r.status_code == 202, r.text
        assert r.headers.get("x-progress")
        time.sleep(0.1)
    raise AssertionError(f"{url} still running after {timeout} s")


def _count(srv: Server, rtype: str) -> int:
    with fhir_client(srv) as c:
        return int(c.get(rtype, params={"_summary": "count"}).json()["total"])


def _import(srv: Server, body: bytes, **params: str) -> dict[str, Any]:
    r = _submit(srv, body, **params)
    assert r.status_code == 202, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    return _wait(r.headers["content-location"])


def test_a_claims_file_imports_and_again_updates(fresh_server: Server) -> None:
    data = sample_files()[0].read_bytes()
    first = _import(fresh_server, data, format="claims", name="sample.xml")
    assert (first["records"], first["imported"], first["failed"], first["errors"]) == (3, 3, 0, [])
    assert first["file"] == "sample.xml" and first["format"] == "claims"
    assert any(loc.startswith("Encounter/") for loc in first["created"])
    assert first["request"].endswith("/$import-legacy?format=claims&name=sample.xml")
    assert first["outcome"]["resourceType"] == "OperationOutcome"
    assert _count(fresh_server, "Encounter") == 3
    with fhir_client(fresh_server) as c:  # what the result names is there
        assert c.get(next(loc for loc in first["created"] if loc.startswith("Patient/"))).status_code == 200
    again = _import(fresh_server, data, format="qd130", name="sample.xml")
    assert again["imported"] == 3
    assert any(loc.startswith("Encounter/") for loc in again["updated"])
    assert not any(loc.startswith(("Encounter/", "Patient/")) for loc in again["created"])
    assert _count(fresh_server, "Encounter") == 3  # idempotent


def test_each_bad_hoso_is_reported_and_the_good_ones_import(fresh_server: Server) -> None:
    generated = generate(12, seed=7, faults={kind: 1 for kind in FAULT_KINDS})
    result = _import(fresh_server, generated.data, format="claims", name="faulty.xml")
    failed = [f for f in generated.faults if not f.imported]
    assert result["imported"] == 12 - len(failed) == _count(fresh_server, "Encounter")
    records = " ".join(e["record"] for e in result["errors"])
    for f in failed:
        assert f"HOSO {f.hoso} (MA_LK {f.ma_lk})" in records
    for e in result["errors"]:
        assert e["outcome"]["resourceType"] == "OperationOutcome"
        assert all(i["severity"] in ("error", "fatal") for i in e["outcome"]["issue"] if i["severity"] != "warning")
    assert result["failed"] == len(failed)


def test_hl7v2_and_csv(fresh_server: Server) -> None:
    message = (DATA / "hl7v2" / "adt_a01.hl7").read_bytes()
    result = _import(fresh_server, message, format="hl7v2", name="adt_a01.hl7")
    assert (result["records"], result["imported"], result["errors"]) == (1, 1, [])
    assert any(loc.startswith("Patient/") for loc in result["created"])
    rows = (DATA / "csv" / "patients.csv").read_bytes()
    result = _import(fresh_server, rows, format="csv", spec="patients", name="patients.csv")
    assert result["imported"] == result["records"] >= 1
    assert _count(fresh_server, "Patient") >= 2


@pytest.mark.parametrize(("params", "body", "where"), [
    ({}, b"<GIAMDINHHS/>", "format"),
    ({"format": "xml9"}, b"<GIAMDINHHS/>", "format"),
    ({"format": "csv"}, b"a,b\n", "spec"),
    ({"format": "claims"}, b"  ", None),
    ({"format": "claims", "name": "../etc/passwd"}, b"<GIAMDINHHS/>", "name"),
])
def test_bad_requests_are_refused_with_an_outcome(server: Server, params: dict[str, str], body: bytes,
                                                  where: str | None) -> None:
    r = _submit(server, body, **params)
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert issue["severity"] == "error"
    if where is not None:
        assert issue["expression"] == [where]


def test_an_unknown_job_is_404(server: Server) -> None:
    for job in ("0123456789abcdef", "nope", "..%2F..%2Fhub.db"):
        r = httpx.get(f"{server.base}/$import-legacy/{job}", timeout=10)
        assert r.status_code == 404, r.text
        assert r.json()["resourceType"] == "OperationOutcome"


def test_an_unreadable_file_is_a_finished_job_with_its_fatal_problem(server: Server) -> None:
    result = _import(server, b"<GIAMDINHHS><THONGTINHOSO>", format="claims")
    assert (result["records"], result["imported"]) == (0, 0)
    assert result["outcome"]["issue"][0]["severity"] == "fatal"


def test_a_job_accepted_before_a_crash_runs_after_the_restart(tmp_path: Path) -> None:
    srv = make_server(tmp_path).start()
    try:
        data = generate(150, seed=21).data  # long enough to be running when the server dies
        r = _submit(srv, data, format="claims", name="big.xml")
        assert r.status_code == 202, r.text
        srv.kill()  # SIGKILL: the job had been accepted, and was not finished
        jobs = tmp_path / "hub.db.jobs"
        job = r.headers["content-location"].rsplit("/", 1)[1]
        assert (jobs / f"{job}.in").exists() and not (jobs / f"{job}.result").exists()
        srv.start()
        result = _wait(f"{srv.base}/$import-legacy/{job}")
        assert result["imported"] == 150
        assert _count(srv, "Encounter") == 150
        assert not (jobs / f"{job}.in").exists()  # the input goes once the result is written
    finally:
        srv.stop()
