"""Smoke test of the bench floors: the apps serve stored rows; no timing is asserted here."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
from starlette.testclient import TestClient

from bench import data, floors


def _db(tmp_path: Path) -> tuple[str, list[tuple[str, bytes]]]:
    rng = random.Random(3)
    patients = [data.fallback_patient(rng, n) for n in range(5)]
    rows = floors.patient_rows(patients, [f"p{n}" for n in range(5)])
    path = str(tmp_path / "floor.db")
    assert floors.make_patient_db(path, rows) == 5
    return path, rows


def test_starlette_floor_serves_a_row(tmp_path: Path) -> None:
    path, rows = _db(tmp_path)
    with TestClient(floors.starlette_app(path)) as client:
        r = client.get("/Patient/p2")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/fhir+json")
        assert r.content == rows[2][1]
        assert orjson.loads(r.content)["id"] == "p2"
        assert client.get("/Patient/nope").status_code == 404


def test_fastapi_floor_and_raw_ingest(tmp_path: Path) -> None:
    path, rows = _db(tmp_path)
    with TestClient(floors.fastapi_app(path)) as client:
        r = client.get("/Patient/p4")
        assert r.status_code == 200 and r.content == rows[4][1]
    bundles = [orjson.dumps(b) for b in data.fallback_patient_bundles(6, seed=1)]
    result = floors.raw_ingest(bundles, str(tmp_path / "ingest.db"))
    assert result["bundles"] == len(bundles)
    assert result["resources"] == 6 * (1 + 5 * 4)
