"""Schema migrations of the PostgreSQL store (issue 10, item 3): an empty database gets the current
schema, an older one is refused until upgraded, a newer one is refused, and an upgraded database
has exactly the catalog of a new one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from fhir_hub.storage.postgres import migrations
from fhir_hub.storage.postgres.store import PostgresStore

_CATALOG = """
SELECT 'column', table_name, column_name, data_type, coalesce(collation_name, ''), is_nullable
  FROM information_schema.columns WHERE table_schema = current_schema()
UNION ALL
SELECT 'index', tablename, indexname, indexdef, '', '' FROM pg_indexes WHERE schemaname = current_schema()
ORDER BY 1, 2, 3
"""


def _conn(url: str) -> psycopg.Connection[Any]:
    return psycopg.connect(url, autocommit=True)


def _at_version_1(url: str) -> None:
    """A database as the first release left it: migration 1 only."""
    with _conn(url) as conn:
        conn.execute(migrations.MIGRATIONS[0].sql)  # type: ignore[arg-type]
        conn.execute("INSERT INTO store_meta (key, value) VALUES ('schema_version', '1')")


def test_an_upgraded_database_is_the_same_as_a_new_one(pg_databases: Callable[[str], str]) -> None:
    new, old = pg_databases("new"), pg_databases("old")
    _at_version_1(old)
    with _conn(new) as a, _conn(old) as b:
        migrations.ensure(a, "new")
        assert migrations.upgrade(b, "old") == (1, migrations.LATEST)
        assert a.execute(_CATALOG).fetchall() == b.execute(_CATALOG).fetchall()
        assert migrations.version(a) == migrations.version(b) == migrations.LATEST
        fresh, upgraded = migrations.history(a), migrations.history(b)
    assert [v for v, _d, _at in fresh] == [v for v, _d, _at in upgraded] == [m.version for m in migrations.MIGRATIONS]
    assert all(at is not None for _v, _d, at in fresh)
    assert upgraded[0][2] is None and all(at is not None for _v, _d, at in upgraded[1:])  # v1 ran before records


def test_upgrading_a_current_database_changes_nothing(pg_url: str) -> None:
    with _conn(pg_url) as conn:
        assert migrations.upgrade(conn, "x") == (None, migrations.LATEST)  # empty: created
        before = conn.execute(_CATALOG).fetchall()
        assert migrations.upgrade(conn, "x") == (migrations.LATEST, migrations.LATEST)
        assert conn.execute(_CATALOG).fetchall() == before


async def test_the_store_refuses_an_older_schema_naming_both_versions_and_the_command(pg_url: str) -> None:
    _at_version_1(pg_url)
    with pytest.raises(migrations.SchemaMismatch) as refused:
        await PostgresStore(pg_url).open()
    message = str(refused.value)
    assert f"schema version 1, this fhir-hub needs version {migrations.LATEST}" in message
    assert "fhir-hub db upgrade --db" in message and "127.0.0.1" in message
    with _conn(pg_url) as conn:
        assert migrations.version(conn) == 1  # refused, not changed


def test_a_newer_schema_is_refused_by_the_store_and_by_upgrade(pg_url: str) -> None:
    with _conn(pg_url) as conn:
        migrations.ensure(conn, "x")
        conn.execute("UPDATE store_meta SET value = %s WHERE key = 'schema_version'", (str(migrations.LATEST + 1),))
        with pytest.raises(migrations.SchemaMismatch, match=f"newer than version {migrations.LATEST}"):
            migrations.ensure(conn, "x")
        with pytest.raises(migrations.SchemaMismatch, match="not downgraded"):
            migrations.upgrade(conn, "x")
        assert migrations.version(conn) == migrations.LATEST + 1
