"""The embedded SQLite backend: WAL, one writer thread with group commit, reads on the loop.

Why this shape:

* **One writer.** Every write unit runs on a single thread that owns the only write connection
  (SQLite allows one writer anyway; serialising in-process avoids "database is locked" and makes
  conditional creates race-free, as Blaze does).
* **Group commit.** The writer drains whatever units are queued (up to ``group_commit_max``),
  runs them in one transaction and commits once: concurrent clients share an fsync, yet a
  failing unit rolls back alone (its unsent rows are dropped, and a unit that had to send rows
  did so inside its own SAVEPOINT, see :class:`_Pending`). Callers are answered only after
  COMMIT returned, so an acknowledged write is durable at the configured ``synchronous`` level.
* **Reads on the event loop.** A primary-key read is a few microseconds of SQLite work; a thread
  hop would cost more than the query. WAL gives the reader a consistent committed snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from typing import Any, NamedTuple, TypeVar

import orjson

from fhir_hub.search.dates import instant
from fhir_hub.search.query import Clause, Criterion, TokenValue
from fhir_hub.storage.port import (
    HistoryQuery,
    Indexer,
    IndexForm,
    PreparedBody,
    StoredVersion,
    StoreUnavailable,
    stamp,
)
from fhir_hub.storage.sqlite import schema, search
from fhir_hub.storage.sqlite.rows import EMPTY, TableForm, TableRows, keyed, table_rows, unpacked, with_row

T = TypeVar("T")
log = logging.getLogger("fhir_hub")

_READ = (
    "SELECT v.vid, v.ts, v.method, v.body, v.seq FROM current c JOIN version v ON v.seq = c.seq "
    "WHERE c.rtype = ? AND c.rid = ?"
)
_READ_MANY = (
    "SELECT c.rid, v.vid, v.ts, v.method, v.body, v.seq FROM current c JOIN version v ON v.seq = c.seq "
    "WHERE c.rtype = ? AND c.rid IN ({marks}) AND c.deleted = 0"
)
_REFERENCES = (
    "SELECT c.rid, x.pid, x.target FROM current c JOIN idx_reference x ON x.rk = c.rk "
    "WHERE c.rtype = ? AND c.rid IN ({marks})"
)
_VREAD = "SELECT vid, ts, method, body, seq FROM version WHERE rtype = ? AND rid = ? AND vid = ?"


def _row(rtype: str, rid: str, row: tuple[Any, ...]) -> StoredVersion:
    return StoredVersion(rtype, rid, row[0], row[1], row[2], row[3], row[4])


def _history_sql(q: HistoryQuery, select: str) -> tuple[str, list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if q.rtype is not None:
        where.append("rtype = ?")
        args.append(q.rtype)
    if q.rid is not None:
        where.append("rid = ?")
        args.append(q.rid)
    if q.since is not None:
        where.append("ts >= ?")
        args.append(q.since)
    if q.at is not None:
        where.append(
            "ts <= ? AND NOT EXISTS (SELECT 1 FROM version n WHERE n.rtype = version.rtype"
            " AND n.rid = version.rid AND n.vid = version.vid + 1 AND n.ts <= ?)"
        )
        args.extend((q.at[1], q.at[0]))
    if q.before_seq is not None:
        where.append("seq < ?")
        args.append(q.before_seq)
    sql = f"SELECT {select} FROM version"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql, args


_INSERT_VERSION = "INSERT INTO version (seq, rtype, rid, vid, ts, method, body) VALUES {rows}"
_UPSERT_CURRENT = (
    "INSERT INTO current (rtype, rid, rk, seq, vid, deleted) VALUES {rows} "
    "ON CONFLICT (rtype, rid) DO UPDATE SET seq = excluded.seq, vid = excluded.vid, deleted = excluded.deleted"
)
#: Rows per multi-row statement (and the smaller sizes a remainder is cut into): one statement
#: is one trip into SQLite. ``executemany`` makes a trip per row, and each trip gives up the GIL
#: and must win it back from the event loop: a bundle's 150 trips cost more than its SQL. A
#: group's few hundred versions go in a handful of statements (with 64 rows at most: 2,800 to
#: 3,100 resources/s; with 256: 3,500 to 3,800, bench/run.py's ingest of 1,000 patients).
_CHUNKS = (256, 64, 16, 4, 1)


@cache
def _many(template: str, width: int, count: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return template.format(rows=", ".join([one] * count))


def _insert_many(conn: sqlite3.Connection, template: str, rows: Sequence[tuple[Any, ...]]) -> None:
    """Run ``template`` over ``rows`` with a few multi-row statements (statements are cached)."""
    i = 0
    width = len(rows[0])
    for size in _CHUNKS:
        while len(rows) - i >= size:
            conn.execute(_many(template, width, size), [v for row in rows[i:i + size] for v in row])
            i += size


def _index_statements() -> dict[str, tuple[str, str]]:
    out = {}
    for kind, cols in schema.INDEX_COLUMNS.items():
        names = ("pid", *cols, "rk")
        picks = ", ".join(f"value ->> {i}" for i in range(len(names)))
        order = ", ".join(str(i + 1) for i in range(len(names)))
        # ``[[pid, ..., rk], ...]`` (rows.py makes the rows, :func:`_batch` puts the keys in)
        out[kind] = (f"INSERT OR IGNORE INTO idx_{kind} ({', '.join(names)}) SELECT {picks} "
                     f"FROM json_each(?) ORDER BY {order}",
                     f"DELETE FROM idx_{kind} WHERE rk IN ({{rows}})")
    return out


#: ``kind -> (insert, delete by owner)`` statements of each index table.
_INDEX_SQL = _index_statements()
#: A resource's held rows: (rtype, rid, rows, the serial of the unit that wrote them).
_Held = tuple[str, str, TableRows, int | None]
#: Held rows taken for insertion: ``kind -> rk -> b"[pid,...,rk],[pid,...,rk]"`` (see :func:`_batch`).
_Batch = dict[str, dict[int, bytes]]
_LATEST = "SELECT vid, deleted, rk FROM current WHERE rtype = ? AND rid = ?"
_FLUSH_ROWS = 500
#: A unit inserts held rows once they pass this many batches (a 50 MB bundle's rows are not all held).
_HELD_CAP = 1
#: Seconds without a write after which the writer inserts the index rows it holds.
_IDLE_SECONDS = 0.05
_SET_INDEXED = ("INSERT INTO store_meta (key, value) VALUES ('indexed_seq', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
#: Threads (each with its own read connection) that run search statements off the event loop.
_SEARCH_THREADS = 2
#: WAL pages before the writer checkpoints (SQLite's default is 1,000). Each index row of a
#: resource lands on a random page of its B-tree; a longer log lets a page rewritten by many
#: groups be copied to the database file once: in-process ingest with the full search index went
#: from about 2,400 to 2,600-2,800 resources/s (measured before integer keys). The price: up to
#: 32 MiB of WAL on disk, and readers look pages up in a bigger WAL index.
_CHECKPOINT_PAGES = 8192


class _QueueWas(NamedTuple):
    """An undo step of :class:`_IndexBuffer`: its queue as it was. The queue is replaced, never
    changed in place, so the old dict is the undo; only :meth:`_IndexBuffer.put` takes rows out
    of a table's dict, and its own step puts them back."""

    queued: _Batch
    batch_seq: int


class _IndexBuffer:
    """Index rows the writer holds back, by resource key, to insert them as one batch.

    Inserting a group's rows as they come puts each on a random page of a large B-tree, and the
    commit then writes every page it touched to the WAL; held back over many groups and inserted
    at once, rows that share a page share its write (the writer alone, on the same rows:
    4,200 -> 7,700 resources/s at 216,000 resources). The rows are derived data: the versions are
    committed when a write is acknowledged, and after a crash the resources newer than the stored
    watermark are indexed again from their bodies (:meth:`SQLiteStore._recover`).

    A resource's rows are either here or in the tables, never both (a write deletes its old rows
    from the tables when it holds new ones). Token rows are also kept by ``(param key, code)``, so
    the conditional creates and updates of a transaction (``identifier=system|value``) are
    answered from here too, without inserting the batch early. They are read back from their
    fragments when a match first asks (``unmatched``): a bundle of plain creates asks nothing, and
    its token rows cross from the parser process as bytes only.

    A full buffer is inserted one table per group (:meth:`spill`, :meth:`insert_next`): the
    token rows at once, so the conditional matches still find every row either here or in the
    tables, the other tables' rows queued (``queued``) for the groups after. Inserted at once, a
    batch held every write of its group for 150-230 ms, and with 4 clients the parser process
    had nothing to do for most of it (a quarter of ingest's wall time); a table's rows still go
    in as one statement, so they share pages as before. A write to a queued resource takes its
    queued rows out (:meth:`put`); a search, or any match that is not plain tokens, inserts the
    queue and the buffer first (:meth:`drain`).

    Changes are undone like the SQL around them: a unit that rolls back to its savepoint, or a
    group whose COMMIT fails, restores the buffer to what it held before (``mark``/``undo``).
    """

    __slots__ = ("by_rk", "count", "tokens", "unmatched", "queued", "batch_seq", "_undo", "_unit", "_units")

    def __init__(self) -> None:
        self.by_rk: dict[int, _Held] = {}
        self.count = 0
        #: ``(param key, code) -> rk -> system keys`` of the held token rows, but those of
        #: the resources in ``unmatched`` (an ordered set), not read yet.
        self.tokens: dict[tuple[int, str], dict[int, set[int]]] = {}
        self.unmatched: dict[int, None] = {}
        #: Rows taken by :meth:`spill` and not inserted yet, per table (never ``token``).
        self.queued: _Batch = {}
        #: The writer's ``seq`` when the last spilled batch was taken: once its queue is
        #: inserted, every version up to it has its rows in the tables. Every queued resource's
        #: key is at most this (a key is the ``seq`` of the first version).
        self.batch_seq = 0
        self._undo: list[tuple[int, _Held | None, dict[str, bytes] | None] | dict[int, _Held] | _QueueWas] = []
        #: The unit running (a serial), or ``None`` between units.
        self._unit: int | None = None
        self._units = 0

    def _add(self, rk: int, held: _Held) -> None:
        self.by_rk[rk] = held
        self.count += held[2].size
        if "token" in held[2].frags:
            self.unmatched[rk] = None

    def _remove(self, rk: int) -> _Held | None:
        held = self.by_rk.pop(rk, None)
        if held is not None:
            self.count -= held[2].size
            if rk in self.unmatched:
                del self.unmatched[rk]
            else:
                for row in unpacked(held[2], "token"):
                    owners = self.tokens.get((row[0], row[1]))
                    if owners is not None:
                        owners.pop(rk, None)
                        if not owners:
                            del self.tokens[(row[0], row[1])]
        return held

    def _match_unmatched(self) -> None:
        """Put the token rows of ``unmatched`` into ``tokens``."""
        for rk in self.unmatched:
            for row in unpacked(self.by_rk[rk][2], "token"):
                self.tokens.setdefault((row[0], row[1]), {}).setdefault(rk, set()).add(row[2])
        self.unmatched.clear()

    def put(self, rk: int, rtype: str, rid: str, rows: TableRows) -> None:
        """Hold ``rows`` as the resource's rows, replacing any it had, here or queued (none: it has none)."""
        dropped = None
        if self.queued and rk <= self.batch_seq:
            dropped = {kind: piece for kind, rows_of in self.queued.items() if (piece := rows_of.pop(rk, None))}
        self._undo.append((rk, self._remove(rk), dropped))
        if rows.size:
            self._add(rk, (rtype, rid, rows, self._unit))

    def _queue_was(self) -> None:
        self._undo.append(_QueueWas(self.queued, self.batch_seq))

    def spill(self, conn: sqlite3.Connection, seq: int) -> None:
        """Take every held row (the writer's ``seq`` is ``seq``), insert the token rows, queue the rest."""
        self._queue_was()
        batch = self.take()
        tokens = batch.pop("token", None)
        if tokens:
            _insert_rows(conn, {"token": tokens})
        self.queued, self.batch_seq = batch, seq

    def insert_next(self, conn: sqlite3.Connection) -> None:
        """Insert the next queued table's rows."""
        self._queue_was()
        kind = next(iter(self.queued))
        queued = dict(self.queued)
        rows_of = queued.pop(kind)
        if rows_of:
            _insert_rows(conn, {kind: rows_of})
        self.queued = queued

    def drain(self, conn: sqlite3.Connection) -> None:
        """Insert every queued and held row."""
        if self.queued:
            self._queue_was()
            _insert_rows(conn, self.queued)
            self.queued = {}
        if self.count:
            _insert_rows(conn, self.take())

    @property
    def empty(self) -> bool:
        """Nothing held or queued: every written row is in the tables."""
        return not self.count and not self.queued

    def take(self) -> _Batch:
        """Every held row, the buffer left empty.

        What an undo must give back is kept: the rows of earlier units (a unit that rolls back
        drops its own rows anyway). So a 50 MB bundle, one unit inserting its rows batch by
        batch, does not keep every batch alive until it commits.
        """
        taken = self.by_rk
        unit = self._unit
        self._undo.append(taken if unit is None else {rk: h for rk, h in taken.items() if h[3] != unit})
        self.by_rk, self.tokens, self.unmatched, self.count = {}, {}, {}, 0
        return _batch((rk, held[2]) for rk, held in taken.items())

    def begin_unit(self) -> int:
        """Start a unit; returns the mark to :meth:`undo` to if it fails."""
        self._units += 1
        self._unit = self._units
        return len(self._undo)

    def end_unit(self) -> None:
        self._unit = None

    def match_tokens(self, rtype: str, criteria: Sequence[Criterion],
                     ids: Sequence[str] | None) -> list[tuple[int, str]] | None:
        """``(rk, rid)`` of the held ``rtype`` resources matching every criterion, if all are
        plain token clauses (``identifier=system|value``); ``None`` when they are not."""
        if self.unmatched:
            self._match_unmatched()
        found: set[int] | None = None
        for c in criteria:
            if not (isinstance(c, Clause) and c.type == "token" and c.modifier is None and c.values
                    and all(isinstance(v, TokenValue) and v.code is not None for v in c.values)):
                return None
            pid = schema.param_key(rtype, c.param)
            hits: set[int] = set()
            for v in c.values:
                assert isinstance(v, TokenValue) and v.code is not None
                system = None if v.system is None else schema.system_key(v.system)
                for rk, systems in self.tokens.get((pid, v.code), {}).items():
                    if system is None or system in systems:
                        hits.add(rk)
            found = hits if found is None else found & hits
        wanted = None if ids is None else set(ids)
        out = []
        for rk in found or ():
            held = self.by_rk[rk]
            if held[0] == rtype and (wanted is None or held[1] in wanted):
                out.append((rk, held[1]))
        return out

    def undo(self, mark: int) -> None:
        while len(self._undo) > mark:
            step = self._undo.pop()
            if isinstance(step, dict):  # a take: the buffer as it was, less the failed unit's rows
                self.by_rk, self.tokens, self.unmatched, self.count = {}, {}, {}, 0
                for rk, held in step.items():
                    self._add(rk, held)
            elif isinstance(step, _QueueWas):
                self.queued, self.batch_seq = step.queued, step.batch_seq
            else:
                rk, old, dropped = step
                self._remove(rk)
                if old is not None:
                    self._add(rk, old)
                for kind, piece in (dropped or {}).items():
                    self.queued[kind][rk] = piece

    def forget_undo(self) -> None:
        self._undo.clear()


def _batch(resources: Iterable[tuple[int, TableRows]]) -> _Batch:
    """Per table, each resource's rows with its key put in: their bytes spliced, not parsed."""
    out: _Batch = {}
    for rk, rows in resources:
        for kind, frag in rows.frags.items():
            piece = keyed(frag, rk)
            bucket = out.get(kind)
            if bucket is None:
                out[kind] = {rk: piece}
            else:
                bucket[rk] = piece
    return out


def _insert_rows(conn: sqlite3.Connection, batch: _Batch) -> None:
    """Insert index rows, one statement per table with its rows as one JSON array: the per-row
    work stays in SQLite, which holds no GIL meanwhile (``executemany`` takes it back for every
    row, and waits for the event loop to give it up each time), and sorts them into key order,
    so rows that share a B-tree page are written together."""
    for kind, pieces in batch.items():
        if pieces:
            conn.execute(_INDEX_SQL[kind][0], ((b"[" + b",".join(pieces.values()) + b"]").decode(),))


class _Pending:
    """The versions a group has written and not yet sent to SQLite, across its units.

    A bundle's rows go out with the group's (a few multi-row statements at COMMIT, not a dozen
    per unit): every statement gives the GIL up, and getting it back from a busy event loop cost
    the writer more than the SQL. A unit that only appends (the usual bundle of creates) sends
    nothing, so it needs no SAVEPOINT either: if it fails, its rows are dropped here. A unit
    that must send rows (a read of something the group touched, a search that needs the index
    tables, a full buffer) first sends the finished units' rows, then opens its SAVEPOINT.
    """

    __slots__ = ("versions", "current", "stale", "touched", "mark", "savepoint")

    def __init__(self) -> None:
        self.versions: list[tuple[Any, ...]] = []
        self.current: list[tuple[Any, ...]] = []
        #: Resources whose index rows in the tables go before their new rows are inserted.
        self.stale: list[tuple[int]] = []
        #: ``(rtype, rid)`` written by this group: their current rows may be pending.
        self.touched: set[tuple[str, str]] = set()
        #: Lengths of the three lists when the running unit started (its rows come after).
        self.mark = (0, 0, 0)
        #: The running unit has opened ``SAVEPOINT unit``.
        self.savepoint = False

    def __bool__(self) -> bool:
        return bool(self.versions or self.stale)

    def unit_rows(self) -> bool:
        """The running unit has appended rows that are not sent."""
        return (len(self.versions), len(self.current), len(self.stale)) != self.mark

    def send(self, conn: sqlite3.Connection, upto: tuple[int, int, int] | None = None) -> None:
        """Insert the pending rows (only those before ``upto``, when given) and forget them."""
        nv, nc, ns = upto or (len(self.versions), len(self.current), len(self.stale))
        if nv:
            _insert_many(conn, _INSERT_VERSION, self.versions[:nv])
            del self.versions[:nv]
        if nc:
            _insert_many(conn, _UPSERT_CURRENT, self.current[:nc])
            del self.current[:nc]
        if ns:
            stale = self.stale[:ns]
            for _insert, delete in _INDEX_SQL.values():
                _insert_many(conn, delete, stale)
            del self.stale[:ns]
        m = self.mark
        self.mark = (max(m[0] - nv, 0), max(m[1] - nc, 0), max(m[2] - ns, 0))

    def begin_unit(self) -> None:
        self.mark = (len(self.versions), len(self.current), len(self.stale))
        self.savepoint = False

    def end_unit(self, conn: sqlite3.Connection, ok: bool) -> None:
        """Keep (``ok``) or drop the running unit's rows, sent or not."""
        if self.savepoint:
            if not ok:
                conn.execute("ROLLBACK TO unit")
            conn.execute("RELEASE unit")
            self.savepoint = False
        if not ok:
            nv, nc, ns = self.mark
            del self.versions[nv:], self.current[nc:], self.stale[ns:]
        self.mark = (len(self.versions), len(self.current), len(self.stale))


class _Tx:
    """The writer's view inside one unit of work (see :class:`fhir_hub.storage.port.Tx`).

    Writes are buffered in the group's :class:`_Pending` and sent as a few multi-row statements
    when the group commits, or earlier when a read of the unit needs them in the tables.
    Sequence numbers are assigned here, so no write waits for ``lastrowid``.
    """

    def __init__(self, conn: sqlite3.Connection, ts: int, indexer: Indexer | None, seq: int,
                 held: _IndexBuffer, batch_rows: int, pending: _Pending, in_unit: bool = True):
        self._conn = conn
        self._held = held
        self._batch_rows = batch_rows
        self.ts = ts
        self._instant = instant(ts)
        self._indexer = indexer
        self.seq = seq
        self._pending = pending
        self._in_unit = in_unit

    def _savepoint(self) -> None:
        """Open the running unit's SAVEPOINT before its first statement that writes, having sent
        the finished units' rows outside it (a rollback of this unit must not take them)."""
        p = self._pending
        if self._in_unit and not p.savepoint:
            p.send(self._conn, p.mark)
            self._conn.execute("SAVEPOINT unit")
            p.savepoint = True

    def flush(self) -> None:
        """Send every pending row, so the tables answer reads; bound the held index rows."""
        p = self._pending
        if p:
            if p.unit_rows():
                self._savepoint()
            p.send(self._conn)
        if self._held.count > _HELD_CAP * self._batch_rows:  # a big bundle: bound the memory held
            self.write_held()

    def write_held(self) -> None:
        """Insert every held index row now (before a search inside the unit, or when the
        buffer is full), after the versions and the deletes of stale rows they go with."""
        if not self._held.empty:
            self._savepoint()
            self._pending.send(self._conn)
            self._held.drain(self._conn)

    def _sent(self, rtype: str, rid: str) -> None:
        """Make sure the tables have what this group wrote of ``(rtype, rid)``."""
        if (rtype, rid) in self._pending.touched:
            self.flush()

    def current(self, rtype: str, rid: str) -> StoredVersion | None:
        self._sent(rtype, rid)
        row = self._conn.execute(_READ, (rtype, rid)).fetchone()
        return None if row is None else _row(rtype, rid, row)

    def vread(self, rtype: str, rid: str, vid: int) -> StoredVersion | None:
        self._sent(rtype, rid)
        row = self._conn.execute(_VREAD, (rtype, rid, vid)).fetchone()
        return None if row is None else _row(rtype, rid, row)

    def _index_rows(self, rtype: str, resource: dict[str, Any]) -> TableRows:
        """The rows of a stored body (its ``meta.lastUpdated`` is the version's time)."""
        return EMPTY if self._indexer is None else table_rows(rtype, self._indexer.rows(rtype, resource))

    def _latest(self, rtype: str, rid: str) -> tuple[int, bool, int] | None:
        """(vid, deleted, rk) of the latest version, or None if the id was never used."""
        self._sent(rtype, rid)  # its rows must be in the tables before they can be replaced
        row = self._conn.execute(_LATEST, (rtype, rid)).fetchone()
        return None if row is None else (row[0], bool(row[1]), row[2])

    def _append(self, rtype: str, rid: str, vid: int, rk: int | None, method: str, body: bytes | None,
                rows: TableRows, ts: int | None = None) -> int:
        self.seq += 1
        p = self._pending
        if rk is None:
            rk = self.seq  # a new resource: its key is the seq of its first version
        else:
            p.stale.append((rk,))
        p.versions.append((self.seq, rtype, rid, vid, self.ts if ts is None else ts, method, body))
        p.current.append((rtype, rid, rk, self.seq, vid, 1 if body is None else 0))
        self._held.put(rk, rtype, rid, rows)
        p.touched.add((rtype, rid))
        if len(p.versions) >= _FLUSH_ROWS:
            self.flush()  # bound the buffer: a 50 MB bundle must not hold every body twice
        return self.seq

    def put(self, rtype: str, rid: str, resource: dict[str, Any] | PreparedBody, method: str, *,
            fresh: bool = False, index: TableRows | None = None) -> StoredVersion:
        """``index``: rows prepared by :class:`TableForm`, which leaves out ``_lastUpdated``."""
        if isinstance(resource, PreparedBody):
            assert fresh, "a prepared body is version 1 of a fresh id"
            latest, vid = None, 1
            body = resource.at(self._instant)
            stored = orjson.loads(body) if index is None else None
        else:
            latest = None if fresh else self._latest(rtype, rid)
            vid = 1 if latest is None else latest[0] + 1
            stored = stamp(rtype, rid, resource, vid, self._instant)
            body = orjson.dumps(stored)
        if index is None:
            assert stored is not None
            rows = self._index_rows(rtype, stored)
        else:  # prepared before this write's time was known
            rows = with_row(index, "date", (schema.param_key(rtype, "_lastUpdated"), self.ts, self.ts))
        seq = self._append(rtype, rid, vid, None if latest is None else latest[2], method, body, rows)
        return StoredVersion(rtype, rid, vid, self.ts, method, body, seq)

    def delete(self, rtype: str, rid: str) -> StoredVersion | None:
        latest = self._latest(rtype, rid)
        if latest is None or latest[1]:
            return None
        vid = latest[0] + 1
        seq = self._append(rtype, rid, vid, latest[2], "DELETE", None, EMPTY)
        return StoredVersion(rtype, rid, vid, self.ts, "DELETE", None, seq)

    def restore(self, version: StoredVersion) -> StoredVersion:
        v = version
        latest = self._latest(v.rtype, v.rid)
        if latest is not None and v.vid <= latest[0]:
            raise ValueError(f"{v.rtype}/{v.rid}: version {v.vid} is not after the stored {latest[0]}")
        body = v.body
        rows = EMPTY if body is None else self._index_rows(v.rtype, orjson.loads(body))
        seq = self._append(v.rtype, v.rid, v.vid, None if latest is None else latest[2], v.method, body, rows, v.ts)
        return StoredVersion(v.rtype, v.rid, v.vid, v.ts, v.method, body, seq)

    def reindex(self, rtype: str, rid: str) -> bool:
        """Rewrite the index rows of the current version from its body, with today's parameters
        (after a custom SearchParameter was added or removed). ``False`` if there is none."""
        latest = self._latest(rtype, rid)
        if latest is None or latest[1]:
            return False
        self.flush()
        row = self._conn.execute(_READ, (rtype, rid)).fetchone()
        rk = latest[2]
        self._pending.stale.append((rk,))
        # inserted now, not held: no new version is written, so the recovery after a crash (which
        # redoes what came after the watermark) would not redo these rows
        self._held.put(rk, rtype, rid, EMPTY)
        self.flush()
        self._savepoint()
        _insert_rows(self._conn, _batch([(rk, self._index_rows(rtype, orjson.loads(row[3])))]))
        return True

    def find(self, rtype: str, criteria: Sequence[Criterion], limit: int, after: str | None = None,
             ids: Sequence[str] | None = None) -> list[str]:
        held = None
        stale: set[int] = set()
        if criteria and not self._held.empty and after is None:
            held = self._held.match_tokens(rtype, criteria, ids)
        if held is None:
            self.flush()
            if criteria:
                self.write_held()
        elif self._pending.stale:
            # the tables still have old rows of what the group changed (their deletes are pending)
            # and no rows of its new versions, which are all held: the held rows answer for those
            # resources, and what the tables say of them is dropped, without sending anything
            # early (the MPI's candidate searches met this in every group that updated a golden record)
            stale = {s[0] for s in self._pending.stale}
        sql, args = search.find_sql(rtype, criteria, limit + len(stale), after, ids)
        found = [r[0] for r in self._conn.execute(sql, args)]
        if not held and not stale:
            return found
        keyed = [(rk, rid) for rid in found
                 if (rk := self._conn.execute(_LATEST, (rtype, rid)).fetchone()[2]) not in stale]
        return [rid for _rk, rid in sorted(keyed + (held or []))[:limit]]


def _write_held(tx: _Tx) -> None:
    tx.write_held()


def _history(conn: sqlite3.Connection, q: HistoryQuery) -> list[StoredVersion]:
    sql, args = _history_sql(q, "rtype, rid, vid, ts, method, body, seq")
    sql += " ORDER BY seq DESC LIMIT ?"
    args.append(q.count)
    return [StoredVersion(*r) for r in conn.execute(sql, args)]


class _Unit:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[_Tx], Any], future: Future[Any]):
        self.fn = fn
        self.future = future


class SQLiteStore:
    """The embedded backend (see module docstring)."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "FULL",
        group_commit_max: int = 64,
        indexer: Indexer | None = None,
        index_batch_rows: int = 20_000,
    ):
        if path == ":memory:":
            raise ValueError("the SQLite store needs a file: readers and the writer share it")
        self.path = path
        self._synchronous = synchronous
        self._group_max = group_commit_max
        self.indexer = indexer
        self.index_form: IndexForm = TableForm()
        self._queue: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        #: Set by the writer when it meets the stop sentinel inside a group.
        self._stopping = False
        self._reader: sqlite3.Connection | None = None
        self._searchers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._searcher_lock = threading.Lock()
        self._searcher_conns: list[sqlite3.Connection] = []
        self._last_ts = 0
        #: Highest ``seq`` committed or written by the writer (assigned by the store, not SQLite).
        self._seq = 0
        self._batch_rows = index_batch_rows
        self._held = _IndexBuffer()
        #: ``False`` while some acknowledged write's index rows are not committed (held, or to
        #: be recovered): a search first asks the writer to insert them. Set by the writer after
        #: COMMIT and before it answers, so a search that sees ``True`` misses no answered write.
        self._index_clean = True
        #: The stored ``indexed_seq``: every version up to it has its index rows in the tables.
        self._indexed_seq = 0
        #: Set at open when versions after ``indexed_seq`` need indexing again (after a crash).
        self._recover_after: int | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        # the writer's cache only has to hold what one group dirties; reads keep the big cache
        wconn = schema.connect(self.path, self._synchronous, cache_mib=64)
        schema.ensure(wconn)
        wconn.execute(f"PRAGMA wal_autocheckpoint = {_CHECKPOINT_PAGES}")
        row = wconn.execute("SELECT (SELECT max(ts) FROM version), (SELECT max(seq) FROM version)").fetchone()
        self._last_ts = row[0] or 0
        self._seq = row[1] or 0
        mark = wconn.execute("SELECT value FROM store_meta WHERE key = 'indexed_seq'").fetchone()
        if mark is None:  # a new store, or one written before rows were held back: all indexed
            wconn.execute(_SET_INDEXED, (str(self._seq),))
        self._indexed_seq = self._seq if mark is None else int(mark[0])
        if self._seq > self._indexed_seq:
            self._recover_after = self._indexed_seq
            self._index_clean = False
        self._reader = schema.connect(self.path, self._synchronous, readonly=True)
        self._searchers = ThreadPoolExecutor(max_workers=_SEARCH_THREADS, thread_name_prefix="fhir-hub-search",
                                             initializer=self._open_searcher)
        self._writer = threading.Thread(target=self._write_loop, args=(wconn,), name="fhir-hub-writer", daemon=True)
        self._writer.start()

    def _open_searcher(self) -> None:
        conn = schema.connect(self.path, self._synchronous, readonly=True)
        self._local.conn = conn
        with self._searcher_lock:
            self._searcher_conns.append(conn)

    async def _search(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run a search statement on a search thread: a search may take tens of milliseconds
        (a count over half a million rows), which on the loop would hold every other request.
        SQLite releases the GIL while it works, so reads by id go on meanwhile."""
        if self._searchers is None:
            raise RuntimeError("store is not open")

        def run() -> list[tuple[Any, ...]]:
            return self._local.conn.execute(sql, args).fetchall()  # type: ignore[no-any-return]

        return await asyncio.get_running_loop().run_in_executor(self._searchers, run)

    async def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
            self._writer = None
        if self._searchers is not None:
            self._searchers.shutdown(wait=True)
            self._searchers = None
            for conn in self._searcher_conns:
                conn.close()
            self._searcher_conns.clear()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # -- reads (event loop) ----------------------------------------------------------------

    @property
    def _r(self) -> sqlite3.Connection:
        conn = self._reader
        if conn is None:
            raise RuntimeError("store is not open")
        return conn

    async def read(self, rtype: str, rid: str) -> StoredVersion | None:
        row = self._r.execute(_READ, (rtype, rid)).fetchone()
        return None if row is None else _row(rtype, rid, row)

    async def vread(self, rtype: str, rid: str, vid: int) -> StoredVersion | None:
        row = self._r.execute(_VREAD, (rtype, rid, vid)).fetchone()
        return None if row is None else _row(rtype, rid, row)

    async def history(self, query: HistoryQuery) -> list[StoredVersion]:
        return _history(self._r, query)

    async def history_total(self, query: HistoryQuery) -> int:
        sql, args = _history_sql(HistoryQuery(query.rtype, query.rid, query.since, query.at), "count(*)")
        return int(self._r.execute(sql, args).fetchone()[0])

    async def find(self, rtype: str, criteria: Sequence[Criterion], limit: int,
                   after: str | None = None, ids: Sequence[str] | None = None) -> list[str]:
        if criteria:
            await self._index_ready()
        sql, args = search.find_sql(rtype, criteria, limit, after, ids)
        return [r[0] for r in await self._search(sql, args)]

    async def find_sorted(self, rtype: str, criteria: Sequence[Criterion], sort: Sequence[tuple[str, str, bool]],
                          limit: int, after: Sequence[Any] | None = None,
                          ids: Sequence[str] | None = None) -> list[tuple[str, tuple[Any, ...]]]:
        await self._index_ready()
        sql, args = search.sorted_sql(rtype, criteria, sort, limit, after, ids)
        return [(r[0], tuple(r[1:])) for r in await self._search(sql, args)]

    async def count(self, rtype: str, criteria: Sequence[Criterion], ids: Sequence[str] | None = None) -> int:
        if criteria:
            await self._index_ready()
        sql, args = search.count_sql(rtype, criteria, ids)
        return int((await self._search(sql, args))[0][0])

    async def read_many(self, rtype: str, rids: Sequence[str]) -> list[StoredVersion]:
        found: list[StoredVersion] = []
        for start in range(0, len(rids), 500):
            chunk = rids[start:start + 500]
            sql = _READ_MANY.format(marks=",".join("?" * len(chunk)))
            found.extend(_row(rtype, r[0], r[1:]) for r in self._r.execute(sql, (rtype, *chunk)))
        return found

    async def references(self, rtype: str, rids: Sequence[str]) -> list[tuple[str, str, str]]:
        await self._index_ready()
        found: list[tuple[str, str, str]] = []
        for start in range(0, len(rids), 500):
            chunk = rids[start:start + 500]
            sql = _REFERENCES.format(marks=",".join("?" * len(chunk)))
            names = search.param_names(rtype)
            found.extend((rid, names.get(pid, ""), target) for rid, pid, target in self._r.execute(sql, (rtype, *chunk)))
        return found

    async def _index_ready(self) -> None:
        """Have the writer insert held index rows before a read of the index tables."""
        if not self._index_clean:
            await self.transact(_write_held)

    # -- writes (single writer thread) -----------------------------------------------------

    async def transact(self, fn: Callable[[Any], T]) -> T:
        if self._writer is None:
            raise RuntimeError("store is not open")
        future: Future[T] = Future()
        self._queue.put(_Unit(fn, future))
        return await asyncio.wrap_future(future)

    def _next_ts(self) -> int:
        now = time.time_ns() // 1000
        self._last_ts = now if now > self._last_ts else self._last_ts + 1
        return self._last_ts

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        try:
            while True:
                try:  # held rows are inserted once no write has come for a moment
                    first = self._queue.get(timeout=None if self._held.empty else _IDLE_SECONDS)
                except queue.Empty:
                    first = _Unit(_write_held, Future())
                if first is None or self._commit_group(conn, [first]):
                    break
            if not self._held.empty or self._recover_after is not None:
                self._commit_group(conn, [_Unit(_write_held, Future())])
        finally:
            conn.close()

    def _recover(self, conn: sqlite3.Connection, held: _IndexBuffer) -> None:
        """Index again the resources changed after the stored watermark: their rows were held
        when the process stopped without inserting them. Runs in the writer's first group, after
        start-up registered the custom search parameters."""
        assert self._recover_after is not None
        changed = conn.execute(
            "SELECT DISTINCT c.rtype, c.rid, c.rk, c.deleted, v.body FROM version n "
            "JOIN current c ON c.rtype = n.rtype AND c.rid = n.rid JOIN version v ON v.seq = c.seq "
            "WHERE n.seq > ?", (self._recover_after,)).fetchall()
        tx = _Tx(conn, 0, self.indexer, self._seq, held, self._batch_rows, _Pending(), in_unit=False)
        for rtype, rid, rk, deleted, body in changed:
            tx._pending.stale.append((rk,))
            held.put(rk, rtype, rid, EMPTY if deleted else tx._index_rows(rtype, orjson.loads(body)))
        tx.flush()
        if changed:
            log.warning("indexed %d resource(s) written after the last index batch", len(changed))

    @staticmethod
    def _begin(conn: sqlite3.Connection) -> None:
        """Take SQLite's write lock. ``busy_timeout`` covers waiting for another process; a busy
        answer that skips it (a stale snapshot) is retried briefly before the group fails as 503."""
        for attempt in range(20):
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                time.sleep(0.005 * (attempt + 1))
        raise StoreUnavailable("the database is locked by another process; retry shortly")

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        """Continue the change order and the clock from what is committed.

        Other server processes (``serve --workers N``) write to the same file; SQLite's write lock,
        taken by BEGIN IMMEDIATE, serialises their groups with ours, so reading the maxima under
        it keeps ``seq`` unique and ``ts`` increasing across processes. Both are index seeks.
        """
        seq, ts = conn.execute("SELECT (SELECT max(seq) FROM version), (SELECT max(ts) FROM version)").fetchone()
        if seq is not None and seq > self._seq:
            self._seq = seq
        if ts is not None and ts > self._last_ts:
            self._last_ts = ts

    def _more(self, units: list[_Unit]) -> bool:
        """Take the next queued unit into the group; ``False`` when there is none (or on stop)."""
        if len(units) >= self._group_max or self._stopping:
            return False
        try:
            nxt = self._queue.get_nowait()
        except queue.Empty:
            return False
        if nxt is None:
            self._stopping = True
            return False
        units.append(nxt)
        return True

    def _commit_group(self, conn: sqlite3.Connection, units: list[_Unit]) -> bool:
        """Run ``units`` and every unit queued while they run in one transaction, then commit once.

        Units that arrive while the group works join it (up to ``group_commit_max``), so under
        load a group grows to what arrives in one commit's time instead of what happened to be
        queued when it started. ``True`` when the store is stopping.
        """
        results: list[tuple[_Unit, bool, Any]] = []
        held = self._held
        pending = _Pending()
        try:
            self._begin(conn)
            self._catch_up(conn)
            if self._recover_after is not None:
                self._recover(conn, held)
            i = 0
            while i < len(units) or self._more(units):
                unit = units[i]
                i += 1
                if not unit.future.set_running_or_notify_cancel():
                    continue
                tx = _Tx(conn, self._next_ts(), self.indexer, self._seq, held, self._batch_rows, pending)
                mark = held.begin_unit()
                pending.begin_unit()
                try:
                    value = unit.fn(tx)
                except BaseException as exc:  # the unit fails alone; the group goes on
                    pending.end_unit(conn, ok=False)
                    held.undo(mark)
                    results.append((unit, False, exc))
                else:
                    pending.end_unit(conn, ok=True)
                    self._seq = tx.seq
                    results.append((unit, True, value))
                finally:
                    held.end_unit()
            pending.send(conn)
            if held.queued:
                held.insert_next(conn)
            elif held.count > self._batch_rows:
                held.spill(conn, self._seq)
            indexed = self._indexed_seq
            if not held.queued:
                indexed = max(indexed, self._seq if held.count == 0 else held.batch_seq)
                if indexed != self._indexed_seq:
                    conn.execute(_SET_INDEXED, (str(indexed),))
            conn.execute("COMMIT")
            held.forget_undo()
            self._indexed_seq = indexed
            self._recover_after = None
            self._index_clean = held.empty
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            held.undo(0)
            held.forget_undo()
            for unit in units:
                if not unit.future.done():
                    unit.future.set_exception(exc)
            return self._stopping
        for unit, ok, value in results:
            if ok:
                unit.future.set_result(value)
            else:
                unit.future.set_exception(value)
        return self._stopping
