"""Floors: the least a Python server on this stack can do for the same work as fhir-hub.

* :func:`starlette_app` — bare Starlette, one route ``/Patient/{id}`` returning the stored bytes of one
  row selected by primary key from SQLite (``application/fhir+json``);
* :func:`fastapi_app` — the same as a FastAPI ``async def`` route;
* :func:`raw_ingest` — orjson parse of each bundle + insert of each resource's bytes into SQLite
  (WAL, ``synchronous=FULL``, one transaction per bundle), over the bundles fhir-hub ingests.

The read floors query on the event loop with one connection and the same read pragmas as
fhir-hub's store (a primary-key read is microseconds; a thread hop would cost more).

For uvicorn: ``python -m uvicorn --factory bench.floors:starlette_factory`` (and
``fastapi_factory``) serve the database named by ``$BENCH_FLOOR_DB``.

``python bench/floors.py`` builds a temp db, runs the raw ingest floor and prints resources/s.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

FHIR_JSON = "application/fhir+json"
_SELECT = "SELECT body FROM patient WHERE id = ?"
_NOT_FOUND = b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}'


# --- the read table -----------------------------------------------------------------------------


def make_patient_db(path: str, rows: Iterable[tuple[str, bytes]]) -> int:
    """Create ``patient(id TEXT PRIMARY KEY, body BLOB)`` at ``path`` holding ``rows``; returns the count."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("DROP TABLE IF EXISTS patient")
        conn.execute("CREATE TABLE patient (id TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID")
        with conn:
            conn.executemany("INSERT INTO patient (id, body) VALUES (?, ?)", rows)
        return int(conn.execute("SELECT count(*) FROM patient").fetchone()[0])
    finally:
        conn.close()


def patient_rows(patients: Iterable[dict[str, Any]], ids: Iterable[str],
                 last_updated: str = "2025-01-01T00:00:00.000000Z") -> list[tuple[str, bytes]]:
    """Rows for :func:`make_patient_db`: each Patient with its id and a ``meta`` as a server stores it."""
    rows = []
    for resource, rid in zip(patients, ids, strict=True):
        stored = {"resourceType": resource["resourceType"], "id": rid,
                  "meta": {"versionId": "1", "lastUpdated": last_updated}}
        stored.update((k, v) for k, v in resource.items() if k not in ("resourceType", "id", "meta"))
        rows.append((rid, orjson.dumps(stored)))
    return rows


def _connect(db_path: str) -> sqlite3.Connection:
    # check_same_thread=False: starlette's TestClient runs the app on a portal thread
    conn = sqlite3.connect(db_path, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA query_only=1")
    # the read pragmas fhir-hub's store uses (64 MiB page cache, 256 MiB mmap): same I/O path
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA mmap_size=268435456")
    return conn


# --- the read floors ----------------------------------------------------------------------------


def starlette_app(db_path: str) -> Starlette:
    conn = _connect(db_path)

    async def read_patient(request: Request) -> Response:
        row = conn.execute(_SELECT, (request.path_params["id"],)).fetchone()
        if row is None:
            return Response(_NOT_FOUND, status_code=404, media_type=FHIR_JSON)
        return Response(row[0], media_type=FHIR_JSON)

    app = Starlette(routes=[Route("/Patient/{id}", read_patient)])
    app.state.conn = conn
    return app


def fastapi_app(db_path: str) -> Any:
    from fastapi import FastAPI

    conn = _connect(db_path)
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/Patient/{id}")
    async def read_patient(id: str) -> Response:
        row = conn.execute(_SELECT, (id,)).fetchone()
        if row is None:
            return Response(_NOT_FOUND, status_code=404, media_type=FHIR_JSON)
        return Response(row[0], media_type=FHIR_JSON)

    app.state.conn = conn
    return app


def starlette_factory() -> Starlette:
    return starlette_app(os.environ["BENCH_FLOOR_DB"])


def fastapi_factory() -> Any:
    return fastapi_app(os.environ["BENCH_FLOOR_DB"])


# --- the ingest floor ---------------------------------------------------------------------------


def raw_ingest(bundles: Iterable[bytes], db_path: str) -> dict[str, Any]:
    """Parse each serialized bundle with orjson and insert each entry's resource bytes, one
    transaction per bundle, WAL, ``synchronous=FULL``. Returns counts, seconds and resources/s."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE IF NOT EXISTS resource (seq INTEGER PRIMARY KEY, rtype TEXT NOT NULL,"
                     " full_url TEXT, body BLOB NOT NULL)")
        resources = 0
        n_bundles = 0
        dumps = orjson.dumps
        t0 = time.perf_counter()
        for raw in bundles:
            bundle = orjson.loads(raw)
            rows = [(e["resource"]["resourceType"], e.get("fullUrl"), dumps(e["resource"]))
                    for e in bundle.get("entry", ())]
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO resource (rtype, full_url, body) VALUES (?, ?, ?)", rows)
            conn.execute("COMMIT")
            resources += len(rows)
            n_bundles += 1
        seconds = time.perf_counter() - t0
    finally:
        conn.close()
    return {"bundles": n_bundles, "resources": resources, "seconds": seconds,
            "resources_per_s": resources / seconds if seconds > 0 else 0.0}


def main() -> None:  # pragma: no cover - manual use
    import argparse
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.data import patient_bundles

    ap = argparse.ArgumentParser(description="raw ingest floor over generated bundles")
    ap.add_argument("--patients", type=int, default=1000)
    args = ap.parse_args()
    bundles, source = patient_bundles(args.patients, seed=0)
    raw = [orjson.dumps(b) for b in bundles]
    with tempfile.TemporaryDirectory(prefix="fhirhub-floor-") as tmp:
        result = raw_ingest(raw, str(Path(tmp) / "floor.db"))
    print(f"bundles from {source}")
    print(f"raw ingest floor: {result['resources']} resources in {result['bundles']} bundles, "
          f"{result['seconds']:.2f} s, {result['resources_per_s']:.0f} resources/s")


if __name__ == "__main__":  # pragma: no cover
    main()
