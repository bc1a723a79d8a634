"""The embedded store's schema: one row per version, a pointer to the current one, index tables.

``version`` is the append-only log (its rowid ``seq`` is the global change order that system
history and paging cursors use); ``current`` points each (type, id) at its latest version so a
read is two primary-key seeks, and gives each resource a small integer key ``rk`` (the ``seq``
of its first version) that the index tables use instead of type and id.

One index table per kind of search value (HAPI's layout): its primary key ``(pid, values...,
rk)`` answers a criterion as one index range (``pid`` is :func:`param_key` of type and
parameter), and its ``(rk, pid)`` index answers "does this resource match" as one seek and lets
an update drop a resource's rows whatever parameters existed when they were written. Integer
keys keep a row at about a third of the bytes of ``(type, param, ..., id)`` text, and ingest
writes every row into two B-trees: their size is the cost of writes. For the same reason token and
quantity systems are stored as :func:`system_key` integers (a system is only ever compared for
equality; ``http://terminology.hl7.org/CodeSystem/observation-category`` in every category row
was most of its bytes), and token ``:text`` rows keep only the normalised text (``:text`` never
compares the exact one).
"""

from __future__ import annotations

import hashlib
import sqlite3
from functools import cache

SCHEMA_VERSION = 5

#: Index tables: value columns (the primary key's lookup order after rtype and param) per kind.
INDEX_COLUMNS: dict[str, tuple[str, ...]] = {
    "string": ("norm", "exact"),
    "token": ("code", "system"),
    "date": ("low", "high"),
    "number": ("value",),
    "quantity": ("code", "system", "value"),
    "reference": ("target",),
    "uri": ("uri",),
}


_COLUMN_TYPES = {"value": "REAL", "low": "INTEGER", "high": "INTEGER", "system": "INTEGER"}


def _table_ddl(kind: str) -> str:
    cols = INDEX_COLUMNS[kind]
    defs = ", ".join(f"{c} {_COLUMN_TYPES.get(c, 'TEXT')} NOT NULL" for c in cols)
    return (f"CREATE TABLE IF NOT EXISTS idx_{kind} (pid INTEGER NOT NULL, {defs}, rk INTEGER NOT NULL, "
            f"PRIMARY KEY (pid, {', '.join(cols)}, rk)) WITHOUT ROWID;\n"
            f"CREATE INDEX IF NOT EXISTS idx_{kind}_rk ON idx_{kind} (rk, pid)")


def _index_ddl() -> str:
    return "\n".join(_table_ddl(kind) + ";" for kind in INDEX_COLUMNS)


@cache
def param_key(rtype: str, param: str) -> int:
    """The integer that stands for ``(rtype, param)`` in the index tables: 48 bits of a hash.

    Deterministic, so every process (``serve --workers N``) and every run agrees without a table
    to coordinate; at a few thousand parameters a collision has odds of about 1 in 10^7.
    """
    digest = hashlib.blake2b(f"{rtype}\x1f{param}".encode(), digest_size=6).digest()
    return int.from_bytes(digest, "big")


@cache
def system_key(system: str) -> int:
    """The integer stored for a token or quantity system: 0 for none, else 62 bits of a hash.

    Deterministic for the same reasons as :func:`param_key`; systems are compared only within one
    parameter's rows, where a collision among the few dozen systems in use is out of reach.
    """
    if not system:
        return 0
    return int.from_bytes(hashlib.blake2b(system.encode(), digest_size=8).digest(), "big") >> 2


_DDL = """
CREATE TABLE IF NOT EXISTS version (
    seq    INTEGER PRIMARY KEY,
    rtype  TEXT    NOT NULL,
    rid    TEXT    NOT NULL,
    vid    INTEGER NOT NULL,
    ts     INTEGER NOT NULL,
    method TEXT    NOT NULL,
    body   BLOB,
    UNIQUE (rtype, rid, vid)
);
CREATE INDEX IF NOT EXISTS version_type_seq ON version (rtype, seq);
CREATE INDEX IF NOT EXISTS version_ts ON version (ts);

CREATE TABLE IF NOT EXISTS current (
    rtype   TEXT    NOT NULL,
    rid     TEXT    NOT NULL,
    rk      INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    vid     INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    PRIMARY KEY (rtype, rid)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS current_rk ON current (rk);

{index_tables}
CREATE TABLE IF NOT EXISTS store_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
""".replace("{index_tables}", _index_ddl())


class SchemaMismatch(RuntimeError):
    """The database file was written by another schema version of fhir-hub."""


def connect(path: str, synchronous: str, *, readonly: bool = False, cache_mib: int = 64) -> sqlite3.Connection:
    """Open a connection configured the same way everywhere (WAL, busy timeout, sync level)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, cached_statements=256)
    conn.execute("PRAGMA busy_timeout = 10000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute(f"PRAGMA cache_size = -{cache_mib * 1024}")
    conn.execute("PRAGMA mmap_size = 268435456")
    return conn


def ensure(conn: sqlite3.Connection) -> None:
    """Create the schema in a new file, migrate a file of the previous version, or refuse one of
    another version."""
    found = _stored_version(conn)
    if found == 4:
        _migrate_4_to_5(conn)
    elif found is not None and found != SCHEMA_VERSION:
        raise SchemaMismatch(
            f"database schema version {found} is not the version {SCHEMA_VERSION} this fhir-hub uses"
        )
    conn.executescript(_DDL)
    if found is None:
        conn.execute(
            "INSERT OR IGNORE INTO store_meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
    _plan_statistics(conn)


def _stored_version(conn: sqlite3.Connection) -> int | None:
    if conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'store_meta'").fetchone() is None:
        return None
    row = conn.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
    return None if row is None else int(row[0])


def _migrate_4_to_5(conn: sqlite3.Connection) -> None:
    """Version 4 stored token and quantity systems as text: rewrite those two tables with
    :func:`system_key`, in one transaction (a crash leaves the file at version 4). Version 4's
    ``:text`` rows keep their exact text, which nothing compares; new rows have none."""
    conn.create_function("system_key", 1, system_key, deterministic=True)
    conn.execute("BEGIN IMMEDIATE")
    try:
        if _stored_version(conn) != 4:  # another server process migrated it meanwhile
            conn.execute("COMMIT")
            return
        for kind in ("token", "quantity"):
            cols = ("pid", *INDEX_COLUMNS[kind], "rk")
            picks = ", ".join("system_key(system)" if c == "system" else c for c in cols)
            conn.execute(f"DROP INDEX IF EXISTS idx_{kind}_rk")
            conn.execute(f"ALTER TABLE idx_{kind} RENAME TO idx_{kind}_v4")
            for statement in _table_ddl(kind).split(";\n"):
                conn.execute(statement)
            conn.execute(f"INSERT OR IGNORE INTO idx_{kind} SELECT {picks} FROM idx_{kind}_v4 "
                         f"ORDER BY {', '.join(str(i + 1) for i in range(len(cols)))}")
            conn.execute(f"DROP TABLE idx_{kind}_v4")
        conn.execute("UPDATE store_meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _plan_statistics(conn: sqlite3.Connection) -> None:
    """Give the query planner the shape of a large store, once, before it has real statistics.

    Without ``sqlite_stat1`` SQLite guesses that ``rtype = ?`` on an index by owner is as
    selective as a full value key, and to avoid sorting by ``rid`` it ranges over every index row
    of the type. These fixed figures (ten million rows; a value key selects a handful; an owner
    key a few) make it seek the value key and probe by owner, the plans ``storage/sqlite/search.py``
    is written for. A later ``ANALYZE`` replaces them with measured ones.
    """
    conn.execute("ANALYZE sqlite_schema")  # creates sqlite_stat1 if missing (and reads it)
    if conn.execute("SELECT 1 FROM sqlite_stat1 WHERE tbl = 'idx_token'").fetchone() is not None:
        return
    rows = [("current", "sqlite_autoindex_current_1", "10000000 1000000 1"),
            ("current", "current_rk", "10000000 1")]
    for kind, cols in INDEX_COLUMNS.items():
        value_keys = " ".join(["10"] + ["5"] * (len(cols) - 1))
        rows.append((f"idx_{kind}", f"sqlite_autoindex_idx_{kind}_1", f"10000000 100000 {value_keys} 1"))
        rows.append((f"idx_{kind}", f"idx_{kind}_rk", "10000000 10 2"))
    with conn:
        conn.execute("DELETE FROM sqlite_stat1 WHERE tbl = 'current' OR tbl LIKE 'idx_%'")
        conn.executemany("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", rows)
    conn.execute("ANALYZE sqlite_schema")
