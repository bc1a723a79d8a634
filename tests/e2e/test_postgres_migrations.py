"""``fhir-hub db upgrade`` end to end: a real server refuses a database of the previous schema
version with a message naming both versions and the command, ``fhir-hub db status`` says the same,
``fhir-hub db upgrade`` upgrades it once (and then has nothing to do), and the server then starts
and serves what the old database held, byte for byte."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from typer.testing import CliRunner

from fhir_hub.cli.main import app
from fhir_hub.search.extract import Indexer
from fhir_hub.storage.postgres import migrations
from fhir_hub.storage.postgres.store import PostgresStore
from tests.conftest import Server, fhir_client, free_port


async def _write(url: str) -> bytes:
    store = PostgresStore(url, indexer=Indexer())
    await store.open()
    try:
        v = await store.transact(lambda tx: tx.put("Patient", "old", {"resourceType": "Patient", "gender": "female"},
                                                   "PUT"))
    finally:
        await store.close()
    assert v.body is not None
    return v.body


def _back_to_version_1(url: str) -> None:
    """What the first release left: the same tables without the ones later migrations added."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE schema_migration")
        conn.execute("UPDATE store_meta SET value = '1' WHERE key = 'schema_version'")


def test_an_old_database_is_refused_then_upgraded_and_served(pg_url: str) -> None:
    assert migrations.LATEST == 2, "this test makes a version-1 database by undoing migration 2"
    body = asyncio.run(_write(pg_url))
    _back_to_version_1(pg_url)

    with pytest.raises(RuntimeError) as refused:
        Server(pg_url, free_port(), {}).start()  # type: ignore[arg-type]  # db is a URL here
    assert "schema version 1, this fhir-hub needs version 2" in str(refused.value)
    assert "fhir-hub db upgrade --db" in str(refused.value)

    runner = CliRunner()
    status = runner.invoke(app, ["db", "status", "--db", pg_url])
    assert status.exit_code == 1 and "schema version 1; this fhir-hub uses 2" in status.output, status.output
    upgraded = runner.invoke(app, ["db", "upgrade", "--db", pg_url])
    assert upgraded.exit_code == 0 and "upgraded from version 1 to 2" in upgraded.output, upgraded.output
    again = runner.invoke(app, ["db", "upgrade", "--db", pg_url])
    assert again.exit_code == 0 and "already at schema version 2" in again.output, again.output
    status = runner.invoke(app, ["db", "status", "--db", pg_url])
    assert status.exit_code == 0 and "schema version 2; this fhir-hub uses 2" in status.output, status.output

    srv = Server(pg_url, free_port(), {}).start()  # type: ignore[arg-type]
    try:
        with fhir_client(srv) as c:
            read = c.get("/Patient/old")
            assert read.status_code == 200 and read.content == body
    finally:
        srv.stop()


def test_db_commands_refuse_a_sqlite_file() -> None:
    result = CliRunner().invoke(app, ["db", "upgrade", "--db", "hub.db"])
    assert result.exit_code == 2 and "not a postgresql:// URL" in result.output
