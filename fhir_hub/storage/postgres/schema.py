"""The PostgreSQL store's schema: the SQLite layout (``storage/sqlite/schema.py``) in PostgreSQL types.

``version`` is the append-only log (``seq`` is the global change order: system history and paging
cursors); ``current`` points each (type, id) at its latest version and gives the resource its small
integer key ``rk`` (the ``seq`` of its first version), which the index tables use instead of type
and id. Bodies are ``bytea``: the exact JSON bytes a read serves, never parsed on the way out.

One index table per kind of search value: the primary key ``(pid, values..., rk)`` answers a
criterion as one index range, and ``(rk, pid)`` answers "does this resource match" as one seek and
lets an update drop the resource's rows whatever parameters existed when they were written.

Every text column is ``COLLATE "C"``: comparisons are by code point, as in SQLite. The compiler's
prefix ranges (``norm >= 'nguy' AND norm < 'nguy' || U+10FFFF``), uri ``:below`` and ``_sort`` order
rely on it, and a B-tree in the C collation is also the cheapest to compare.

Which version of this layout a database has, and how it gets to the current one, is
``migrations.py``'s.
"""

from __future__ import annotations

import hashlib
from functools import cache

#: Index tables: value columns (the primary key's order after ``pid``) per kind, with their types.
INDEX_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "string": (("norm", "text"), ("exact", "text")),
    "token": (("code", "text"), ("system", "text")),
    "date": (("low", "bigint"), ("high", "bigint")),
    "number": (("value", "double precision"),),
    "quantity": (("code", "text"), ("system", "text"), ("value", "double precision")),
    "reference": (("target", "text"),),
    "uri": (("uri", "text"),),
}

#: Advisory lock key (``pg_advisory_xact_lock``) every write transaction takes: see ``store.py``.
WRITE_LOCK = 0x66_68_69_72_5F_68_75_62  # "fhir_hub"
#: Advisory lock key held while the schema is created or checked, so two processes starting at
#: once do not both run ``CREATE TABLE``.
SCHEMA_LOCK = WRITE_LOCK + 1


_C = ' COLLATE "C"'


def _column(name: str, kind: str) -> str:
    return f"{name} {kind}{_C if kind == 'text' else ''} NOT NULL"


def _index_ddl() -> str:
    out = []
    for kind, cols in INDEX_COLUMNS.items():
        defs = ", ".join(_column(c, t) for c, t in cols)
        key = ", ".join(c for c, _t in cols)
        out.append(f"CREATE TABLE IF NOT EXISTS idx_{kind} (pid bigint NOT NULL, {defs}, rk bigint NOT NULL, "
                   f"PRIMARY KEY (pid, {key}, rk));\n"
                   f"CREATE INDEX IF NOT EXISTS idx_{kind}_rk ON idx_{kind} (rk, pid);")
    return "\n".join(out)


#: The schema as first released: migration 1 (``migrations.py``). Released migrations are never
#: edited, so a change to the layout here must come with a migration that makes it.
DDL = """
CREATE TABLE IF NOT EXISTS version (
    seq    bigint  PRIMARY KEY,
    rtype  text    COLLATE "C" NOT NULL,
    rid    text    COLLATE "C" NOT NULL,
    vid    integer NOT NULL,
    ts     bigint  NOT NULL,
    method text    NOT NULL,
    body   bytea,
    UNIQUE (rtype, rid, vid)
);
CREATE INDEX IF NOT EXISTS version_type_seq ON version (rtype, seq);
CREATE INDEX IF NOT EXISTS version_ts ON version (ts);

CREATE TABLE IF NOT EXISTS current (
    rtype   text    COLLATE "C" NOT NULL,
    rid     text    COLLATE "C" NOT NULL,
    rk      bigint  NOT NULL UNIQUE,
    seq     bigint  NOT NULL,
    vid     integer NOT NULL,
    deleted boolean NOT NULL,
    PRIMARY KEY (rtype, rid)
);

{index_tables}
CREATE TABLE IF NOT EXISTS store_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
""".replace("{index_tables}", _index_ddl())


@cache
def param_key(rtype: str, param: str) -> int:
    """The integer that stands for ``(rtype, param)`` in the index tables: 48 bits of a hash.

    The same function as the SQLite store's, kept here so this store's data never depends on
    another backend's module; deterministic, so every process agrees without a table.
    """
    digest = hashlib.blake2b(f"{rtype}\x1f{param}".encode(), digest_size=6).digest()
    return int.from_bytes(digest, "big")
