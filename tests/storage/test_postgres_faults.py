"""The PostgreSQL store when its connections die (issue 10, item 7): a connection lost in the
middle of a write transaction rolls it back and the unit is answered ``StoreUnavailable``; the
next write and read work again on new connections, with no restart of the store."""

from __future__ import annotations

import psycopg
import pytest

from fhir_hub.search.extract import Indexer
from fhir_hub.storage.port import StoreUnavailable, Tx
from fhir_hub.storage.postgres.store import PostgresStore


def _terminate(url: str, application_name: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                            (application_name,)).fetchall()
    return len(rows)


async def test_a_connection_lost_mid_transaction_rolls_it_back(pg_url: str) -> None:
    store = PostgresStore(pg_url, indexer=Indexer())
    await store.open()
    try:
        def dies_halfway(tx: Tx) -> None:
            tx.put("Patient", "first", {"resourceType": "Patient"}, "PUT")
            assert tx.find("Patient", [], 10) == ["first"]  # sent to PostgreSQL, inside the transaction
            assert _terminate(pg_url, "fhir-hub writer") == 1
            tx.put("Patient", "second", {"resourceType": "Patient"}, "PUT")
            tx.find("Patient", [], 10)

        with pytest.raises(StoreUnavailable):
            await store.transact(dies_halfway)
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT count(*) FROM version").fetchone() == (0,)

        await store.transact(lambda tx: tx.put("Patient", "after", {"resourceType": "Patient"}, "PUT"))
        assert await store.find("Patient", [], 10) == ["after"]
    finally:
        await store.close()


async def test_pooled_connections_killed_while_idle_are_replaced_unseen(pg_url: str) -> None:
    """What a database restart does to a pool: every idle connection is dead, found only when used.
    The read is retried on a new connection and the write group once, so neither fails."""
    store = PostgresStore(pg_url, indexer=Indexer())
    await store.open()
    try:
        await store.transact(lambda tx: tx.put("Patient", "p", {"resourceType": "Patient"}, "PUT"))
        assert await store.read("Patient", "p") is not None
        assert _terminate(pg_url, "fhir-hub writer") == 1
        assert _terminate(pg_url, "fhir-hub reader") >= 1
        version = await store.read("Patient", "p")
        assert version is not None and version.vid == 1
        written = await store.transact(lambda tx: tx.put("Patient", "p", {"resourceType": "Patient"}, "PUT"))
        assert written.vid == 2
    finally:
        await store.close()
