"""Moving a store between backends (issue 10, item 6): the demo data set loaded into SQLite through
a real server, ``fhir-hub export --history``, ``fhir-hub import`` into PostgreSQL (the session's
throwaway cluster) and into a second SQLite file; then a fixed query set against a real uvicorn
on each store gives the same bundles, and every version keeps its id, versionId, lastUpdated,
method and bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from fhir_hub.cli.main import app
from fhir_hub.sample.generator import patient_bundles
from fhir_hub.storage.port import HistoryQuery
from fhir_hub.storage.select import make_store
from tests.conftest import Server, free_port

NID = "http://fhir.ehealth.gov.vn/core/sid/national_id"
LOINC = "http://loinc.org"
BASE = "http://hub.test/fhir"  # the same absolute base on every server, so fullUrls compare


def _server(db: Path | str) -> Server:
    return Server(db, free_port(), {}, args=("--base-url", BASE))  # type: ignore[arg-type]


def _queries(pid: str, family: str, folded: str) -> list[str]:
    return [
        f"Patient?identifier={NID}|014035344893",
        f"Patient?name={family}",
        f"Patient?name={folded}",
        f"Observation?subject:Patient.name={folded}&code={LOINC}|8867-4",
        f"Patient?_has:Observation:patient:code={LOINC}|8310-5&_count=100",
        "Observation?date=ge2023-01-01&date=lt2024-07-01&_count=200",
        "Encounter?date=ge2022-01-01&_sort=-date&_count=50",
        f"Observation?code={LOINC}|8867-4&value-quantity=gt80&_count=200",
        f"Observation?code={LOINC}|29463-7&value-quantity=ge50|http://unitsofmeasure.org|kg&_count=200",
        f"Observation?subject=Patient/{pid}&_include=Observation:subject&_include=Observation:encounter&_count=200",
        f"Patient?_id={pid}&_revinclude=Encounter:subject&_revinclude=Condition:subject",
        "Patient?_sort=birthdate,-_id",
        "Condition?_sort=-recorded-date,_id&_count=20",
        "Observation?_summary=count",
        "Condition?code=http://hl7.org/fhir/sid/icd-10|E78.5&_summary=count",
        f"Patient/{pid}/$everything?_count=1000",
        "Patient?birthdate=lt1950-01-01&gender=male",
    ]


def _comparable(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle without what describes the response rather than the data: its own id, meta
    and links (paging cursors name the store's keys and time). Matches keep their order; the
    included resources come from ``Store.read_many``, whose order the port leaves to the backend
    (SQLite gives the id order asked for, PostgreSQL its own), so they are compared as a set."""
    out = {k: v for k, v in bundle.items() if k not in ("id", "meta", "link")}
    entries = out.get("entry", [])
    if entries:
        matches = [e for e in entries if e.get("search", {}).get("mode") != "include"]
        included = sorted((e for e in entries if e.get("search", {}).get("mode") == "include"),
                          key=lambda e: (e["resource"]["resourceType"], e["resource"]["id"]))
        out["entry"] = matches + included
    return out


def _answers(srv: Server, queries: list[str]) -> list[dict[str, Any]]:
    out = []
    with httpx.Client(base_url=srv.base, timeout=60) as c:
        for q in queries:
            r = c.get(f"/{q}")
            assert r.status_code == 200, (q, r.text)
            out.append(_comparable(r.json()))
    return out


async def _versions(db: str) -> list[tuple[Any, ...]]:
    from fhir_hub.config import Settings

    store = make_store(Settings.from_env(db=db))
    await store.open()
    try:
        every = await store.history(HistoryQuery(count=1_000_000))
    finally:
        await store.close()
    return [(v.rtype, v.rid, v.vid, v.ts, v.method, None if v.body is None else bytes(v.body)) for v in every]


@pytest.fixture
def source(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A SQLite store with the demo data set loaded through a server, plus an update and a
    delete (so there is history to move); the id of the first patient."""
    db = tmp_path / "source.db"
    srv = _server(db).start()
    try:
        with httpx.Client(base_url=srv.base, timeout=60, headers={"Content-Type": "application/fhir+json"}) as c:
            for bundle in patient_bundles(12, seed=7, encounters=3):
                r = c.post("", content=orjson.dumps(bundle))
                assert r.status_code == 200, r.text
            found = c.get("/Patient", params={"identifier": f"{NID}|014035344893"}).json()
            patient = found["entry"][0]["resource"]
            patient["telecom"] = [{"system": "phone", "value": "0912345678"}]
            assert c.put(f"/Patient/{patient['id']}", content=orjson.dumps(patient)).status_code == 200
            obs = c.get("/Observation", params={"subject": f"Patient/{patient['id']}", "_count": 1}).json()
            assert c.delete(f"/Observation/{obs['entry'][0]['resource']['id']}").status_code in (200, 204)
    finally:
        srv.stop()
    yield db, patient["id"]


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_demo_data_moves_from_sqlite_to_postgres_with_identical_answers(
        source: tuple[Path, str], tmp_path: Path, pg_url: str) -> None:
    db, pid = source
    out = tmp_path / "export"
    shown = _cli("export", str(out), "--db", str(db), "--history")
    assert "Patient" in shown and "Observation" in shown
    moved = _cli("import", str(out), "--db", pg_url)
    assert "Counts verified." in moved
    copy = tmp_path / "copy.db"
    assert "Counts verified." in _cli("import", str(out), "--db", str(copy))

    before = asyncio.run(_versions(str(db)))
    assert any(v[5] is None for v in before) and any(v[2] == 2 for v in before)  # a delete and an update moved
    assert asyncio.run(_versions(str(copy))) == before  # SQLite -> SQLite: every version, byte for byte
    assert asyncio.run(_versions(pg_url)) == before  # and into PostgreSQL too

    queries = _queries(pid, "Phạm", "pham")
    answers = {}
    for name, target in (("sqlite", db), ("postgres", pg_url)):
        srv = _server(target).start()
        try:
            answers[name] = _answers(srv, queries)
        finally:
            srv.stop()
    for q, a, b in zip(queries, answers["sqlite"], answers["postgres"], strict=True):
        assert a.get("total", len(a.get("entry", []))) > 0, f"{q} finds nothing: the query set tests nothing"
        assert a == b, q


def test_import_refuses_a_store_that_is_not_empty(source: tuple[Path, str], tmp_path: Path) -> None:
    db, _pid = source
    out = tmp_path / "export"
    _cli("export", str(out), "--db", str(db))
    result = CliRunner().invoke(app, ["import", str(out), "--db", str(db)])
    assert result.exit_code == 2 and "not empty" in result.output
