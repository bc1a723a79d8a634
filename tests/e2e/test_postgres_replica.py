"""``fhir-hub serve --db <primary> --read-replica <standby>`` against a real hot standby (issue 10,
item 5): a primary and a ``pg_basebackup -R`` standby streaming from it, both on loopback.

* Read-your-writes: with the standby's replay paused, a resource just written is still read and
  found (the standby cannot have it: the server waited, then read from the primary).
* Reads really go to the standby: once it has caught up, a read leaves its query in the standby's
  ``pg_stat_activity``, and with the primary stopped reads and searches are still answered (writes
  get a 503).
* The same holds with two worker processes and a new connection per request: whichever worker
  serves the read knows the other's commit (the host's commit mark).
* A standby that is down costs nothing but itself: reads go to the primary.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from fhir_hub.storage.postgres.commit_mark import mark_path
from tests.conftest import Server, fhir_client, free_port
from tests.pgcluster import Cluster, find_bindir

NID = "http://fhir.ehealth.gov.vn/core/sid/national_id"


@pytest.fixture
def primary_and_standby() -> Iterator[tuple[Cluster, Cluster, str, str]]:
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found (see tests/backends.py)")
    primary = Cluster(bindir, crash_safe=True).start()
    standby: Cluster | None = None
    try:
        url = primary.create_database("hub")
        standby = primary.start_standby()
        yield primary, standby, url, standby.url("hub")
    finally:
        mark_path(url).unlink(missing_ok=True)  # the host's commit mark of this throwaway database
        if standby is not None:
            standby.stop()
        primary.stop()


def _on(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql, args).fetchall()  # type: ignore[arg-type]


def _standby_has(standby_url: str, rid: str) -> bool:
    return bool(_on(standby_url, "SELECT 1 FROM current WHERE rtype = 'Patient' AND rid = %s", rid))


def _until(pred: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not pred():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.02)


def _patient(value: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": NID, "value": value}],
            "name": [{"family": "Trần", "given": ["Văn", "Minh"]}]}


def test_reads_see_own_writes_and_are_served_by_the_standby(
        primary_and_standby: tuple[Cluster, Cluster, str, str]) -> None:
    primary, _standby, url, standby_url = primary_and_standby
    srv = Server(url, free_port(), {}, args=("--read-replica", standby_url)).start()  # type: ignore[arg-type]
    try:
        with fhir_client(srv) as c:
            _on(standby_url, "SELECT pg_wal_replay_pause()")
            made = c.post("/Patient", json=_patient("001090000001"))
            assert made.status_code == 201, made.text
            rid = made.json()["id"]
            assert not _standby_has(standby_url, rid)  # paused: only the primary has it
            read = c.get(f"/Patient/{rid}")
            assert read.status_code == 200 and read.json()["id"] == rid
            found = c.get("/Patient", params={"identifier": f"{NID}|001090000001"}).json()
            assert [e["resource"]["id"] for e in found.get("entry", [])] == [rid]
            updated = c.put(f"/Patient/{rid}", json={**_patient("001090000001"), "id": rid, "gender": "male"})
            assert updated.status_code == 200, updated.text
            assert c.get(f"/Patient/{rid}").json()["gender"] == "male"

            _on(standby_url, "SELECT pg_wal_replay_resume()")
            _until(lambda: _standby_has(standby_url, rid), "the standby to replay the writes")
            assert c.get(f"/Patient/{rid}").json()["meta"]["versionId"] == "2"
            queries = [q for (q,) in _on(standby_url, "SELECT query FROM pg_stat_activity "
                                                      "WHERE application_name = 'fhir-hub replica reader'")]
            assert any(q.startswith("SELECT v.vid") and "c.rid = $2" in q for q in queries), queries

            primary.stop()  # from here on only the standby can answer
            assert c.get(f"/Patient/{rid}").json()["gender"] == "male"
            found = c.get("/Patient", params={"name": "tran"}).json()
            assert [e["resource"]["id"] for e in found.get("entry", [])] == [rid]
            refused = c.post("/Patient", json=_patient("001090000002"))
            assert refused.status_code == 503 and refused.json()["resourceType"] == "OperationOutcome"
    finally:
        srv.stop()


def test_read_your_writes_holds_across_workers(primary_and_standby: tuple[Cluster, Cluster, str, str]) -> None:
    """A new connection per request may land on either worker: the commit mark is shared."""
    _primary, _standby, url, standby_url = primary_and_standby
    srv = Server(url, free_port(), {}, args=("--read-replica", standby_url, "--workers", "2"))  # type: ignore[arg-type]
    srv.start()
    try:
        _on(standby_url, "SELECT pg_wal_replay_pause()")
        with httpx.Client(base_url=srv.base, timeout=30, limits=httpx.Limits(max_keepalive_connections=0),
                          headers={"Content-Type": "application/fhir+json"}) as c:
            for i in range(12):
                value = f"00109001{i:04d}"
                made = c.post("/Patient", json=_patient(value))
                assert made.status_code == 201, made.text
                rid = made.json()["id"]
                assert c.get(f"/Patient/{rid}").status_code == 200, f"write {i} not seen by the next read"
                found = c.get("/Patient", params={"identifier": f"{NID}|{value}"}).json()
                assert [e["resource"]["id"] for e in found.get("entry", [])] == [rid]
        assert not _standby_has(standby_url, rid)  # replay stayed paused: the primary answered
    finally:
        _on(standby_url, "SELECT pg_wal_replay_resume()")
        srv.stop()


def test_a_standby_that_is_down_sends_reads_to_the_primary(
        primary_and_standby: tuple[Cluster, Cluster, str, str]) -> None:
    _primary, standby, url, standby_url = primary_and_standby
    srv = Server(url, free_port(), {}, args=("--read-replica", standby_url)).start()  # type: ignore[arg-type]
    try:
        with fhir_client(srv) as c:
            rid = c.post("/Patient", json=_patient("001090000003")).json()["id"]
            standby.kill()
            for _ in range(3):
                assert c.get(f"/Patient/{rid}").status_code == 200
            assert c.get("/Patient", params={"identifier": f"{NID}|001090000003"}).json()["total"] == 1
    finally:
        srv.stop()


def test_replicas_need_a_postgres_store(tmp_path: Any) -> None:
    srv = Server(tmp_path / "hub.db", free_port(), {}, args=("--read-replica", "postgresql://x@127.0.0.1:1/x"))
    with pytest.raises(RuntimeError, match="--read-replica needs a postgresql:// --db"):
        srv.start()
