"""What the PostgreSQL store adds to the port's contract (``test_conformance.py`` covers the rest):
one write lock across processes, the schema check, statistics after growth, backend selection."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from fhir_hub.config import Settings
from fhir_hub.search.extract import Indexer
from fhir_hub.search.query import Clause, TokenValue
from fhir_hub.storage.port import HistoryQuery, Tx
from fhir_hub.storage.postgres import migrations
from fhir_hub.storage.postgres.store import _ANALYZE_MIN, PostgresStore
from fhir_hub.storage.select import describe, make_store
from fhir_hub.storage.sqlite.store import SQLiteStore

_BY_ID = [Clause("identifier", "token", (TokenValue("urn:test", "one"),))]


def _create_once(tx: Tx) -> bool:
    """A conditional create: look, then write only if nothing matched."""
    if tx.find("Patient", _BY_ID, 2):
        return False
    rid = f"p{tx.ts}"
    tx.put("Patient", rid, {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": "one"}]}, "POST")
    return True


async def test_two_stores_on_one_database_serialise_conditional_creates(pg_url: str) -> None:
    """Two stores stand for two server processes: each has its own writer and connection, and the
    advisory write lock is all that orders them."""
    a, b = PostgresStore(pg_url, indexer=Indexer()), PostgresStore(pg_url, indexer=Indexer())
    await a.open()
    await b.open()
    try:
        made = await asyncio.gather(*(s.transact(_create_once) for _ in range(15) for s in (a, b)))
        assert made.count(True) == 1
        assert await a.count("Patient", _BY_ID) == 1 and await b.count("Patient", _BY_ID) == 1
        seqs = [v.seq for v in await a.history(HistoryQuery(count=100))]
        assert len(seqs) == len(set(seqs)) == 1
    finally:
        await a.close()
        await b.close()


async def test_a_database_of_another_schema_version_is_refused(pg_url: str) -> None:
    store = PostgresStore(pg_url)
    await store.open()
    await store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE store_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(migrations.SchemaMismatch, match="999"):
        await PostgresStore(pg_url).open()


async def test_the_writer_analyzes_tables_that_grew(pg_url: str) -> None:
    store = PostgresStore(pg_url, indexer=Indexer())
    await store.open()
    try:
        def many(tx: Tx) -> None:
            for i in range(_ANALYZE_MIN + 10):
                tx.put("Patient", f"p{i}", {"resourceType": "Patient", "name": [{"family": f"F{i}"}]}, "PUT",
                       fresh=True)

        await store.transact(many)
        await store.transact(lambda tx: None)  # the analysis runs after the group that grew the table
    finally:
        await store.close()
    with psycopg.connect(pg_url) as conn:
        tuples: dict[str, float] = dict(conn.execute(
            "SELECT relname, reltuples FROM pg_class WHERE relname IN ('version', 'current')"))
    assert tuples == {"version": _ANALYZE_MIN + 10, "current": _ANALYZE_MIN + 10}


def test_the_db_setting_picks_the_backend() -> None:
    assert isinstance(make_store(Settings(db="postgresql://u@127.0.0.1:1/x")), PostgresStore)
    assert isinstance(make_store(Settings(db="postgres://u@127.0.0.1:1/x")), PostgresStore)
    assert isinstance(make_store(Settings(db="hub.db")), SQLiteStore)
    assert describe("postgresql://hub:s3cret@db.example:5432/fhir") == "postgresql://hub:***@db.example:5432/fhir"
    assert describe("postgresql://hub@db/fhir") == "postgresql://hub@db/fhir"
