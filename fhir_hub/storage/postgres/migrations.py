"""Versioned migrations of the PostgreSQL schema: applied by ``fhir-hub db upgrade``, checked at start.

A server never runs on a layout it was not written for: newer code on an older database would
miss what it relies on, older code on a newer database could write rows the newer layout reads
differently. So at start the store checks that the database's version
(``store_meta.schema_version``) is exactly its own and otherwise refuses, naming both versions
and the way out. It does not migrate on its own: on a national store a migration may run for
hours and must be started on purpose and from one place, not by whichever of many workers starts
first. The exception is an empty database, which gets the current layout by running every
migration in order, so that a new database and an upgraded one are the same by construction (a
test compares their catalogs).

An upgrade runs all the missing migrations in one transaction, under the schema advisory lock
(PostgreSQL's DDL is transactional), so it is all or nothing, and two at once do not both run.
Released migrations are never edited: a change of layout is a new entry at the end of
:data:`MIGRATIONS`. There are no downgrades.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from fhir_hub.storage.postgres import schema

_Conn = psycopg.Connection[Any]


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "version log, current pointers, search index tables, store_meta", schema.DDL),
    Migration(2, "schema_migration: which migration ran when", """
CREATE TABLE schema_migration (
    version     integer PRIMARY KEY,
    description text NOT NULL,
    applied_at  timestamptz  -- NULL: before this table existed
);
"""),
)
#: The version this code reads and writes.
LATEST = MIGRATIONS[-1].version


class SchemaMismatch(RuntimeError):
    """The database has another schema version than this fhir-hub's."""


def version(conn: _Conn) -> int | None:
    """The database's schema version; ``None`` if it has no fhir-hub schema yet."""
    row = conn.execute("SELECT to_regclass('store_meta') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return None
    found = conn.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
    return None if found is None else int(str(found[0]))


def mismatch(found: int, where: str) -> SchemaMismatch:
    if found < LATEST:
        return SchemaMismatch(
            f"the database {where} has schema version {found}, this fhir-hub needs version {LATEST}: run "
            f"`fhir-hub db upgrade --db <its URL>` to upgrade it, then start again")
    return SchemaMismatch(
        f"the database {where} has schema version {found}, newer than version {LATEST} of this fhir-hub: "
        f"run the fhir-hub release that upgraded it (schemas are not downgraded)")


def ensure(conn: _Conn, where: str) -> None:
    """Create the current schema in an empty database, or refuse one of another version.
    ``where`` names the database in the message (no password)."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (schema.SCHEMA_LOCK,))
        found = version(conn)
        if found is None:
            _apply(conn, 0)
        elif found != LATEST:
            raise mismatch(found, where)


def upgrade(conn: _Conn, where: str) -> tuple[int | None, int]:
    """Bring the database to :data:`LATEST`; ``(version before, version after)``."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (schema.SCHEMA_LOCK,))
        found = version(conn)
        if found is not None and found > LATEST:
            raise mismatch(found, where)
        if found != LATEST:
            _apply(conn, found or 0)
    return found, LATEST


def history(conn: _Conn) -> list[tuple[int, str, Any]]:
    """``(version, description, applied_at)`` of the migrations the database records."""
    row = conn.execute("SELECT to_regclass('schema_migration') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return []
    return [(int(v), str(d), at) for v, d, at in
            conn.execute("SELECT version, description, applied_at FROM schema_migration ORDER BY version")]


def _apply(conn: _Conn, since: int) -> None:
    """Run the migrations after version ``since`` (inside the caller's transaction)."""
    for m in MIGRATIONS[since:]:
        conn.execute(m.sql)  # type: ignore[arg-type]  # constant scripts, not user input
    conn.execute("INSERT INTO store_meta (key, value) VALUES ('schema_version', %s) "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(LATEST),))
    for m in MIGRATIONS:  # the ones run before the record was kept get no time
        conn.execute("INSERT INTO schema_migration (version, description, applied_at) "
                     "VALUES (%s, %s, CASE WHEN %s THEN now() END) ON CONFLICT (version) DO NOTHING",
                     (m.version, m.description, m.version > since))
