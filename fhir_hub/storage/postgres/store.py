"""The PostgreSQL backend: reads on an async pool, writes on one writer thread with group commit.

Why this shape:

* **The port stays as it is.** A write unit is a plain function ``fn(tx)`` that calls a
  synchronous :class:`~fhir_hub.storage.port.Tx` (the REST layer's bundle logic is written that
  way, for the SQLite writer). Driving an async connection from inside such a function would need
  a second event loop or a rewrite of every unit; instead the units run on a dedicated writer
  thread that owns a synchronous psycopg connection (from a one-connection ``psycopg_pool``
  pool, which replaces it if it breaks). Reads are async, on an ``AsyncConnectionPool``.
* **One writer, across processes too.** Every write transaction first takes one transaction-level
  advisory lock (``pg_advisory_xact_lock(schema.WRITE_LOCK)``), so writes are serialised like
  the SQLite store's, also between ``serve`` processes sharing a database. That is what the port
  promises (conditional create, conditional update, ``If-Match``, conditional references decide
  on a state nobody changes under them) and it keeps conditional create unique under concurrent
  requests without knowing which ``find`` a unit's decision rests on. Locks on a hash of
  ``(type, criteria)`` would let unrelated writes run in parallel, but the store cannot tell a
  conditional create's ``find`` from any other, and two creates whose criteria differ yet match
  the same resource (``identifier=a`` and ``identifier=a,b``) would not exclude each other;
  SERIALIZABLE with retry would re-run units that are not idempotent (they assign ids and
  timestamps). The price of one lock is that writes do not overlap; group commit makes them
  share a round trip to the WAL instead.
* **Group commit.** The writer takes every unit queued (up to ``group_commit_max``), runs each
  inside its own SAVEPOINT of one transaction (no SAVEPOINT when the group is a single unit),
  and commits once: concurrent clients share a WAL flush, yet a failing unit rolls back alone.
  Callers are answered only after COMMIT returned, so an acknowledged write is durable.
* **Sequence numbers and clock under the lock.** ``seq`` and ``ts`` continue from the committed
  maxima, read after the lock is taken (two index seeks), so they stay unique and increasing
  across processes without a round trip per version.
* **Statistics kept up with growth.** A planner without statistics picks nested scans for
  ``_has`` and chains that take seconds on a few thousand rows (the differential test: 89 s
  against 2 s once analyzed). Autovacuum analyzes a table only after a minute and 10% growth,
  so a store that was just loaded is queried blind; the writer therefore runs ``ANALYZE`` on a
  table itself, after answering its group, once the rows written to it since its last analysis
  reach both ``_ANALYZE_MIN`` and the rows it held then (so O(log n) times while it grows; at
  10% growth autovacuum comes first for any large table).
* **Index rows in the same transaction.** There is no held-row buffer (the SQLite store's
  answer to random B-tree pages in its WAL): a unit's rows are inserted with one ``unnest``
  statement per index table, pipelined with its versions, and are visible when it commits.
* **Faults answer 503 within a bound, then heal.** A request waits at most
  ``unavailable_timeout`` for a connection, then gets :class:`StoreUnavailable` (503 with
  ``Retry-After``); the units queued behind a group that found the database gone are failed at
  once rather than each waiting its turn. The pools give up reconnecting in the background after
  the same bound and reconnect on the next request instead, so the store heals within about a
  second of PostgreSQL's return, not after the pool's exponential back-off (minutes). A
  connection that died while idle in a pool (a restart) is only noticed when used: a read is
  retried on another connection (reads are idempotent), a write group is retried once if the
  connection failed before any unit ran. A connection lost inside a group rolls the whole group
  back (PostgreSQL does so when the session ends); its units are answered 503. A connection lost
  while COMMIT was in flight leaves the outcome unknown to the store: it answers 503 (never
  acknowledging), so the write may or may not be present, but never in part.
* **Read replicas** (``replicas``): reads and searches go to streaming standbys that have
  replayed the newest commit made on this host, writes and the reads inside a unit to the primary
  (``replicas.py`` says why and what read-your-writes means here).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from fhir_hub.search.dates import instant
from fhir_hub.search.query import Criterion
from fhir_hub.storage.port import (
    HistoryQuery,
    Indexer,
    IndexForm,
    IndexRow,
    NeutralForm,
    PreparedBody,
    StoredVersion,
    StoreUnavailable,
    stamp,
)
from fhir_hub.storage.postgres import migrations, schema, search
from fhir_hub.storage.postgres.replicas import COMMITTED, AsyncPool, Router
from fhir_hub.storage.select import describe

T = TypeVar("T")
log = logging.getLogger("fhir_hub")

_READ = ("SELECT v.vid, v.ts, v.method, v.body, v.seq FROM current c JOIN version v ON v.seq = c.seq "
         "WHERE c.rtype = %s AND c.rid = %s")
_READ_MANY = ("SELECT c.rid, v.vid, v.ts, v.method, v.body, v.seq FROM current c JOIN version v ON v.seq = c.seq "
              "WHERE c.rtype = %s AND c.rid = ANY(%s::text[]) AND NOT c.deleted")
_REFERENCES = ("SELECT c.rid, x.pid, x.target FROM current c JOIN idx_reference x ON x.rk = c.rk "
               "WHERE c.rtype = %s AND c.rid = ANY(%s::text[])")
_VREAD = "SELECT vid, ts, method, body, seq FROM version WHERE rtype = %s AND rid = %s AND vid = %s"
_LATEST = "SELECT vid, deleted, rk FROM current WHERE rtype = %s AND rid = %s"
_INSERT_VERSION = "INSERT INTO version (seq, rtype, rid, vid, ts, method, body) VALUES (%s, %s, %s, %s, %s, %s, %s)"
_UPSERT_CURRENT = (
    "INSERT INTO current (rtype, rid, rk, seq, vid, deleted) VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (rtype, rid) DO UPDATE SET seq = excluded.seq, vid = excluded.vid, deleted = excluded.deleted"
)
_MAXIMA = "SELECT (SELECT max(seq) FROM version), (SELECT max(ts) FROM version)"
#: Versions a unit buffers before it sends them (a 50 MB bundle must not hold every body twice).
_FLUSH_ROWS = 500
#: Rows written to a table before the writer analyzes it (see the module docstring).
_ANALYZE_MIN = 1000
_TABLES = ("version", "current", *(f"idx_{kind}" for kind in schema.INDEX_COLUMNS))


def _index_statements() -> dict[str, tuple[str, str]]:
    """``kind -> (insert, delete by owners)``: one statement per table for any number of rows,
    the rows passed as one array per column (``unnest``); duplicates of a row are ignored."""
    out = {}
    for kind, cols in schema.INDEX_COLUMNS.items():
        names = ["pid", *(c for c, _t in cols), "rk"]
        types = ["bigint", *(t for _c, t in cols), "bigint"]
        arrays = ", ".join(f"%s::{t}[]" for t in types)
        out[kind] = (f"INSERT INTO idx_{kind} ({', '.join(names)}) SELECT * FROM unnest({arrays}) "
                     "ON CONFLICT DO NOTHING",
                     f"DELETE FROM idx_{kind} WHERE rk = ANY(%s::bigint[])")
    return out


_INDEX_SQL = _index_statements()
#: Index row ``(kind, param, a, b, c)`` → the table's column tuple (see ``search/extract.py``).
_INDEX_ROW: dict[str, Callable[[int, int, IndexRow], tuple[Any, ...]]] = {
    "string": lambda pid, rk, r: (pid, r[2], r[3], rk),
    "token": lambda pid, rk, r: (pid, r[3], r[2], rk),
    "date": lambda pid, rk, r: (pid, r[2], r[3], rk),
    "number": lambda pid, rk, r: (pid, float(r[2]), rk),
    "quantity": lambda pid, rk, r: (pid, r[3], r[2], float(r[4]), rk),
    "reference": lambda pid, rk, r: (pid, r[2], rk),
    "uri": lambda pid, rk, r: (pid, r[2], rk),
}
_Conn = psycopg.Connection[tuple[Any, ...]]


def _row(rtype: str, rid: str, row: Sequence[Any]) -> StoredVersion:
    return StoredVersion(rtype, rid, row[0], row[1], row[2], row[3], row[4])


def _history_sql(q: HistoryQuery, select: str) -> tuple[str, list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if q.rtype is not None:
        where.append("rtype = %s")
        args.append(q.rtype)
    if q.rid is not None:
        where.append("rid = %s")
        args.append(q.rid)
    if q.since is not None:
        where.append("ts >= %s")
        args.append(q.since)
    if q.at is not None:
        where.append(
            "ts <= %s AND NOT EXISTS (SELECT 1 FROM version n WHERE n.rtype = version.rtype"
            " AND n.rid = version.rid AND n.vid = version.vid + 1 AND n.ts <= %s)"
        )
        args.extend((q.at[1], q.at[0]))
    if q.before_seq is not None:
        where.append("seq < %s")
        args.append(q.before_seq)
    sql = f"SELECT {select} FROM version"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return sql, args


class _Tx:
    """The writer's view inside one unit of work (see :class:`fhir_hub.storage.port.Tx`).

    Writes are buffered and sent in one pipeline (versions, current pointers, stale index rows
    dropped, new rows inserted) before any read of the unit, so reads see them, and when the
    unit ends. Sequence numbers are assigned here, so no write waits for a ``RETURNING``.
    """

    def __init__(self, conn: _Conn, ts: int, indexer: Indexer | None, seq: int, written: dict[str, int]):
        self._conn = conn
        #: Rows sent per table (the store's count since each table's last ANALYZE).
        self._written = written
        self.ts = ts
        self._instant = instant(ts)
        self._indexer = indexer
        self.seq = seq
        self._versions: list[tuple[Any, ...]] = []
        self._current: list[tuple[Any, ...]] = []
        #: Resources whose index rows go before this unit's new rows are inserted.
        self._stale: list[int] = []
        self._rows: dict[str, list[tuple[Any, ...]]] = {}
        #: Resources written since the last flush (flush before reading one).
        self._touched: set[tuple[str, str]] = set()

    def flush(self) -> None:
        if not (self._versions or self._stale or self._rows):
            return
        conn = self._conn
        written = self._written
        written["version"] += len(self._versions)
        written["current"] += len(self._current)
        for kind, rows in self._rows.items():
            written[f"idx_{kind}"] += len(rows)
        with conn.pipeline():
            if self._versions:
                with conn.cursor() as cur:
                    cur.executemany(_INSERT_VERSION, self._versions)
                    cur.executemany(_UPSERT_CURRENT, self._current)
            if self._stale:
                for _insert, delete in _INDEX_SQL.values():
                    conn.execute(delete, (self._stale,))  # type: ignore[arg-type]
            for kind, rows in self._rows.items():
                conn.execute(_INDEX_SQL[kind][0], [list(col) for col in zip(*rows, strict=True)])  # type: ignore[arg-type]
        self._versions.clear()
        self._current.clear()
        self._stale.clear()
        self._rows.clear()
        self._touched.clear()

    def _fetchone(self, sql: str, args: Sequence[Any]) -> Any:
        self.flush()
        return self._conn.execute(sql, args).fetchone()  # type: ignore[arg-type]

    def current(self, rtype: str, rid: str) -> StoredVersion | None:
        row = self._fetchone(_READ, (rtype, rid))
        return None if row is None else _row(rtype, rid, row)

    def vread(self, rtype: str, rid: str, vid: int) -> StoredVersion | None:
        row = self._fetchone(_VREAD, (rtype, rid, vid))
        return None if row is None else _row(rtype, rid, row)

    def _index_rows(self, rtype: str, rk: int, resource: dict[str, Any], rows: Sequence[IndexRow] | None) -> None:
        if rows is None:
            if self._indexer is None:
                return
            rows = self._indexer.rows(rtype, resource)
        key = schema.param_key
        out = self._rows
        for r in rows:
            bucket = out.get(r[0])
            if bucket is None:
                bucket = out[r[0]] = []
            bucket.append(_INDEX_ROW[r[0]](key(rtype, r[1]), rk, r))

    def _latest(self, rtype: str, rid: str) -> tuple[int, bool, int] | None:
        """(vid, deleted, rk) of the latest version, or None if the id was never used."""
        if (rtype, rid) in self._touched:
            self.flush()
        row = self._conn.execute(_LATEST, (rtype, rid)).fetchone()
        return None if row is None else (row[0], bool(row[1]), row[2])

    def _append(self, rtype: str, rid: str, vid: int, rk: int | None, method: str, body: bytes | None,
                ts: int | None = None) -> int:
        self.seq += 1
        if rk is None:
            rk = self.seq  # a new resource: its key is the seq of its first version
        else:
            self._stale.append(rk)
        self._versions.append((self.seq, rtype, rid, vid, self.ts if ts is None else ts, method, body))
        self._current.append((rtype, rid, rk, self.seq, vid, body is None))
        self._touched.add((rtype, rid))
        return rk

    def put(self, rtype: str, rid: str, resource: dict[str, Any] | PreparedBody, method: str, *,
            fresh: bool = False, index: Sequence[IndexRow] | None = None) -> StoredVersion:
        """``index``: rows in :class:`NeutralForm`, which leaves out ``_lastUpdated``."""
        if isinstance(resource, PreparedBody):
            assert fresh, "a prepared body is version 1 of a fresh id"
            latest, vid = None, 1
            body = resource.at(self._instant)
            stored = orjson.loads(body) if index is None else {}
        else:
            latest = None if fresh else self._latest(rtype, rid)
            vid = 1 if latest is None else latest[0] + 1
            stored = stamp(rtype, rid, resource, vid, self._instant)
            body = orjson.dumps(stored)
        if index is not None:
            index = [*index, ("date", "_lastUpdated", self.ts, self.ts, None)]
        rk = self._append(rtype, rid, vid, None if latest is None else latest[2], method, body)
        self._index_rows(rtype, rk, stored, index)
        if len(self._versions) >= _FLUSH_ROWS:
            self.flush()
        return StoredVersion(rtype, rid, vid, self.ts, method, body, self.seq)

    def delete(self, rtype: str, rid: str) -> StoredVersion | None:
        latest = self._latest(rtype, rid)
        if latest is None or latest[1]:
            return None
        vid = latest[0] + 1
        self._append(rtype, rid, vid, latest[2], "DELETE", None)
        return StoredVersion(rtype, rid, vid, self.ts, "DELETE", None, self.seq)

    def restore(self, version: StoredVersion) -> StoredVersion:
        v = version
        latest = self._latest(v.rtype, v.rid)
        if latest is not None and v.vid <= latest[0]:
            raise ValueError(f"{v.rtype}/{v.rid}: version {v.vid} is not after the stored {latest[0]}")
        rk = self._append(v.rtype, v.rid, v.vid, None if latest is None else latest[2], v.method, v.body, v.ts)
        if v.body is not None:
            self._index_rows(v.rtype, rk, orjson.loads(v.body), None)
        if len(self._versions) >= _FLUSH_ROWS:
            self.flush()
        return StoredVersion(v.rtype, v.rid, v.vid, v.ts, v.method, v.body, self.seq)

    def reindex(self, rtype: str, rid: str) -> bool:
        latest = self._latest(rtype, rid)
        if latest is None or latest[1]:
            return False
        row = self._fetchone(_READ, (rtype, rid))
        self._stale.append(latest[2])
        self._index_rows(rtype, latest[2], orjson.loads(row[3]), None)
        self.flush()
        return True

    def find(self, rtype: str, criteria: Sequence[Criterion], limit: int, after: str | None = None,
             ids: Sequence[str] | None = None) -> list[str]:
        self.flush()
        sql, args = search.find_sql(rtype, criteria, limit, after, ids)
        return [r[0] for r in self._conn.execute(sql, args)]  # type: ignore[arg-type]


class _Unit:
    __slots__ = ("fn", "future")

    def __init__(self, fn: Callable[[_Tx], Any], future: Future[Any]):
        self.fn = fn
        self.future = future


class _Stale(Exception):
    """The writer's pooled connection was dead before the group started (a database restart)."""


def _kwargs(application_name: str) -> dict[str, Any]:
    """Connection options; the name tells the connections apart in ``pg_stat_activity``."""
    return {"autocommit": True, "application_name": application_name}


def _unavailable(exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"the database is not reachable ({type(exc).__name__}); retry shortly")


class PostgresStore:
    """The PostgreSQL backend (see module docstring). ``url``: a libpq connection URL."""

    def __init__(self, url: str, *, group_commit_max: int = 64, indexer: Indexer | None = None,
                 read_pool_size: int = 4, connect_timeout: float = 10.0, unavailable_timeout: float = 3.0,
                 replicas: Sequence[str] = (), replica_wait: float = 0.25):
        self.url = url
        self.indexer = indexer
        self.index_form: IndexForm = NeutralForm()
        self._group_max = group_commit_max
        self._pool_size = read_pool_size
        #: How long ``open`` waits for the database.
        self._timeout = connect_timeout
        #: How long a request waits for a connection before it is answered 503.
        self._wait = unavailable_timeout
        #: Where reads go when standbys are configured (``None``: all to the primary).
        self._router = Router(replicas, primary=url, pool_size=read_pool_size, timeout=min(1.0, unavailable_timeout),
                              wait=replica_wait) if replicas else None
        self._queue: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._wpool: ConnectionPool[_Conn] | None = None
        self._rpool: AsyncPool | None = None
        self._seq = 0
        self._last_ts = 0
        #: Rows written per table since its last ANALYZE, and the rows it held then.
        self._written = dict.fromkeys(_TABLES, 0)
        self._analyzed = dict.fromkeys(_TABLES, 0.0)

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        self._wpool = ConnectionPool(self.url, min_size=1, max_size=1, kwargs=_kwargs("fhir-hub writer"),
                                     open=False, timeout=self._wait, reconnect_timeout=self._wait,
                                     name="fhir-hub-writer")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._open_writer)
        self._rpool = AsyncConnectionPool(self.url, min_size=1, max_size=self._pool_size,
                                          kwargs=_kwargs("fhir-hub reader"), open=False, timeout=self._wait,
                                          reconnect_timeout=self._wait, name="fhir-hub-readers")
        await self._rpool.open(wait=True, timeout=self._timeout)
        if self._router is not None:
            await self._router.open(self._timeout)
            # what was committed before this store opened (the schema just created, too) counts
            await loop.run_in_executor(None, self._router.start, self._primary_position)
        self._writer = threading.Thread(target=self._write_loop, name="fhir-hub-pg-writer", daemon=True)
        self._writer.start()

    def _open_writer(self) -> None:
        assert self._wpool is not None
        self._wpool.open(wait=True, timeout=self._timeout)
        with self._wpool.connection() as conn:
            migrations.ensure(conn, describe(self.url))
            for name, tuples in conn.execute(
                    "SELECT relname, reltuples FROM pg_class WHERE relkind = 'r' AND relname = ANY(%s) "
                    "AND relnamespace = current_schema()::regnamespace", (list(_TABLES),)):
                self._analyzed[name] = max(float(tuples), 0.0)  # -1: never analyzed

    def _primary_position(self) -> int:
        assert self._wpool is not None
        with self._wpool.connection() as conn:
            row = conn.execute(COMMITTED).fetchone()
        return int(row[0]) if row else 0

    async def close(self) -> None:
        if self._writer is not None:
            self._queue.put(None)
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
            self._writer = None
        if self._rpool is not None:
            await self._rpool.close()
            self._rpool = None
        if self._router is not None:
            await self._router.close()
        if self._wpool is not None:
            self._wpool.close()
            self._wpool = None

    # -- reads (async pool) ----------------------------------------------------------------

    async def _all(self, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        if self._rpool is None:
            raise RuntimeError("store is not open")
        if self._router is not None and (replica := await self._router.pick()) is not None:
            try:
                return await self._on(replica.pool, sql, args)
            except StoreUnavailable as exc:
                replica.set_aside(exc.__cause__ or exc)
        return await self._on(self._rpool, sql, args)

    async def _on(self, pool: AsyncPool, sql: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        # after a restart every pooled connection is dead but only fails when used: try the next
        lost = psycopg.OperationalError("every pooled connection was lost")
        for _attempt in range(self._pool_size + 1):
            try:
                async with pool.connection() as conn:
                    try:
                        cur = await conn.execute(sql, args, binary=True)  # type: ignore[arg-type]
                        return await cur.fetchall()
                    except psycopg.OperationalError as exc:
                        if not conn.broken:
                            raise _unavailable(exc) from exc
                        lost = exc
            except PoolTimeout as exc:
                raise _unavailable(exc) from exc
        raise _unavailable(lost) from lost

    async def read(self, rtype: str, rid: str) -> StoredVersion | None:
        rows = await self._all(_READ, (rtype, rid))
        return _row(rtype, rid, rows[0]) if rows else None

    async def vread(self, rtype: str, rid: str, vid: int) -> StoredVersion | None:
        rows = await self._all(_VREAD, (rtype, rid, vid))
        return _row(rtype, rid, rows[0]) if rows else None

    async def history(self, query: HistoryQuery) -> list[StoredVersion]:
        sql, args = _history_sql(query, "rtype, rid, vid, ts, method, body, seq")
        sql += " ORDER BY seq DESC LIMIT %s"
        args.append(query.count)
        return [StoredVersion(*r) for r in await self._all(sql, args)]

    async def history_total(self, query: HistoryQuery) -> int:
        sql, args = _history_sql(HistoryQuery(query.rtype, query.rid, query.since, query.at), "count(*)")
        return int((await self._all(sql, args))[0][0])

    async def find(self, rtype: str, criteria: Sequence[Criterion], limit: int,
                   after: str | None = None, ids: Sequence[str] | None = None) -> list[str]:
        sql, args = search.find_sql(rtype, criteria, limit, after, ids)
        return [r[0] for r in await self._all(sql, args)]

    async def find_sorted(self, rtype: str, criteria: Sequence[Criterion], sort: Sequence[tuple[str, str, bool]],
                          limit: int, after: Sequence[Any] | None = None,
                          ids: Sequence[str] | None = None) -> list[tuple[str, tuple[Any, ...]]]:
        sql, args = search.sorted_sql(rtype, criteria, sort, limit, after, ids)
        return [(r[0], tuple(r[1:])) for r in await self._all(sql, args)]

    async def count(self, rtype: str, criteria: Sequence[Criterion], ids: Sequence[str] | None = None) -> int:
        sql, args = search.count_sql(rtype, criteria, ids)
        return int((await self._all(sql, args))[0][0])

    async def read_many(self, rtype: str, rids: Sequence[str]) -> list[StoredVersion]:
        if not rids:
            return []
        return [_row(rtype, r[0], r[1:]) for r in await self._all(_READ_MANY, (rtype, list(rids)))]

    async def references(self, rtype: str, rids: Sequence[str]) -> list[tuple[str, str, str]]:
        if not rids:
            return []
        names = search.param_names(rtype)
        return [(rid, names.get(pid, ""), target)
                for rid, pid, target in await self._all(_REFERENCES, (rtype, list(rids)))]

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

    def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            units = [first]
            while len(units) < self._group_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                units.append(nxt)
            self._commit_group(units)
            self._analyze_grown()

    def _analyze_grown(self) -> None:
        """ANALYZE the tables that grew past their statistics (after the group was answered)."""
        due = [t for t, n in self._written.items() if n >= _ANALYZE_MIN and n >= self._analyzed[t]]
        if not due or self._wpool is None:
            return
        try:
            with self._wpool.connection() as conn:
                for table in due:
                    conn.execute(f"ANALYZE {table}")  # type: ignore[arg-type]  # a name from _TABLES
                    row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass",
                                       (table,)).fetchone()
                    self._analyzed[table] = max(float(row[0]), 0.0) if row else 0.0
                    self._written[table] = 0
        except psycopg.Error as exc:  # statistics are an optimisation: the next group tries again
            log.warning("ANALYZE after growth failed: %s", exc)

    def _commit_group(self, units: list[_Unit]) -> None:
        """Run ``units`` in one transaction under the write lock and commit once."""
        units = [u for u in units if u.future.set_running_or_notify_cancel()]
        if not units:
            return
        results: list[tuple[_Unit, bool, Any]] = []
        assert self._wpool is not None
        for attempt in (1, 2):
            try:
                with self._wpool.connection() as conn:
                    try:
                        self._run_group(conn, units, results)
                    except BaseException:
                        if not conn.broken and conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                            conn.execute("ROLLBACK")
                        raise
                break
            except _Stale:
                if attempt == 2:
                    self._fail(units, _unavailable(psycopg.OperationalError("the connection was lost")))
                    return
            except BaseException as exc:
                if isinstance(exc, PoolTimeout):  # the database is down: so is it for those queued
                    self._fail(units + self._drain(), _unavailable(exc))
                elif isinstance(exc, psycopg.OperationalError):
                    self._fail(units, _unavailable(exc))
                else:
                    self._fail(units, exc)
                return
        for unit, ok, value in results:
            if ok:
                unit.future.set_result(value)
            else:
                unit.future.set_exception(value)

    def _fail(self, units: list[_Unit], failure: BaseException) -> None:
        for unit in units:
            if not unit.future.done():
                unit.future.set_exception(failure)

    def _drain(self) -> list[_Unit]:
        """The units queued now (the database just went away: they would each wait in vain)."""
        out: list[_Unit] = []
        stop = False
        while True:
            try:
                unit = self._queue.get_nowait()
            except queue.Empty:
                break
            if unit is None:
                stop = True
            elif unit.future.set_running_or_notify_cancel():
                out.append(unit)
        if stop:
            self._queue.put(None)
        return out

    def _run_group(self, conn: _Conn, units: list[_Unit], results: list[tuple[_Unit, bool, Any]]) -> None:
        try:
            conn.execute("BEGIN")
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (schema.WRITE_LOCK,))
            seq, ts = conn.execute(_MAXIMA).fetchone() or (None, None)
        except psycopg.OperationalError as exc:
            if conn.broken:
                raise _Stale from exc  # died while idle in the pool: no unit ran, so try once more
            raise
        if seq is not None and seq > self._seq:
            self._seq = seq
        if ts is not None and ts > self._last_ts:
            self._last_ts = ts
        alone = len(units) == 1
        for unit in units:
            if not alone:
                conn.execute("SAVEPOINT unit")
            tx = _Tx(conn, self._next_ts(), self.indexer, self._seq, self._written)
            try:
                value = unit.fn(tx)
                tx.flush()
            except psycopg.OperationalError:
                raise  # the connection is gone: the whole group fails
            except BaseException as exc:
                if alone:
                    conn.execute("ROLLBACK")
                    results.append((unit, False, exc))
                    return
                conn.execute("ROLLBACK TO SAVEPOINT unit")
                conn.execute("RELEASE SAVEPOINT unit")
                results.append((unit, False, exc))
            else:
                if not alone:
                    conn.execute("RELEASE SAVEPOINT unit")
                self._seq = tx.seq
                results.append((unit, True, value))
        conn.execute("COMMIT")
        if self._router is not None:
            row = None
            try:
                row = conn.execute(COMMITTED).fetchone()
            finally:  # unknown (the connection died): reads go to the primary until a commit says
                self._router.committed(None if row is None else int(row[0]))
