"""Read replicas: reads and searches go to streaming hot standbys, with read-your-writes.

Which reads may a standby serve? One that has replayed every commit the read must see. After each
commit the writer records the WAL position (LSN) that ends it in the host's commit mark
(``commit_mark.py``: the newest commit any fhir-hub process on this host made on this database),
and a read goes to a standby once the standby's ``pg_last_wal_replay_lsn()`` has reached the mark;
a standby behind it is waited for briefly (``wait`` seconds, polling), then the read goes to the
primary instead.

Why the newest commit of the host, not of the client: the storage port knows no clients (and the
REST layer no LSNs), and a host-wide mark is a superset of every client's own, so a client always
sees its own writes, whichever worker process (``serve --workers N``) its next request lands on,
and nobody sees time run backwards. The price of the superset is that right after *any* write a
read waits for the standby to replay it, which on a LAN is about a millisecond; the standby's
position is cached and polled at most by one read at a time, so a burst of reads after a write
costs one poll. Asking the primary for its position on every read would cover clients balanced
across hosts too, but would put a round trip to the primary on every read, which takes back much
of what the replicas give.

Why wait before falling back: a standby a few milliseconds behind catches up sooner than the read
would be worth moving to the primary, which is the one server that cannot be scaled out; the
bound keeps a stalled or lagging standby from slowing reads more than that. A standby that cannot
be reached is set aside for a while (reads go to the others or the primary), so a replica outage
is not an API outage. A server that is not in recovery (a promoted standby, a wrong URL) is never
read from: its data need not be the primary's.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from fhir_hub.storage.postgres.commit_mark import CommitMark

log = logging.getLogger("fhir_hub")

#: Replay position in bytes (``pg_lsn`` minus zero is a number), ``NULL`` on a primary.
_REPLAYED = "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn"
#: End of the WAL written so far, on the primary right after a COMMIT: at or past that commit.
COMMITTED = "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"
#: Seconds an unreachable or unfit standby is left out before it is tried again.
_SET_ASIDE = 5.0
#: Seconds between polls of a standby's position while a read waits for it.
_POLL = 0.005
AsyncPool = AsyncConnectionPool[psycopg.AsyncConnection[tuple[Any, ...]]]


class Replica:
    """One standby: its pool and the replay position it was last seen at."""

    def __init__(self, url: str, pool_size: int, timeout: float):
        self.url = url
        self.pool: AsyncPool = AsyncConnectionPool(
            url, min_size=1, max_size=pool_size, open=False, timeout=timeout, reconnect_timeout=timeout,
            kwargs={"autocommit": True, "application_name": "fhir-hub replica reader"},
            name="fhir-hub-replica")
        #: A lower bound of its replay position (it only moves forward).
        self.replayed = -1
        self.aside_until = 0.0
        self._poll = asyncio.Lock()

    def set_aside(self, why: object) -> None:
        if time.monotonic() >= self.aside_until:
            log.warning("read replica %s set aside for %.0f s: %s", _host(self.url), _SET_ASIDE, why)
        self.aside_until = time.monotonic() + _SET_ASIDE

    async def reached(self, lsn: int, deadline: float) -> bool:
        """Has it replayed ``lsn``, or does it before ``deadline``? (one poll at a time)"""
        while self.replayed < lsn:
            async with self._poll:
                if self.replayed >= lsn:
                    break
                async with self.pool.connection() as conn:
                    row = await (await conn.execute(_REPLAYED)).fetchone()
                if row is None or row[0] is None:
                    raise _NotStandby("it is not in recovery (not a standby)")
                self.replayed = max(self.replayed, int(row[0]))
            if self.replayed >= lsn:
                break
            if time.monotonic() + _POLL > deadline:
                return False
            await asyncio.sleep(_POLL)
        return True


class _NotStandby(Exception):
    pass


class Router:
    """Picks the pool a read runs on (see the module docstring)."""

    def __init__(self, urls: Sequence[str], *, primary: str, pool_size: int, timeout: float, wait: float):
        self.replicas = [Replica(u, pool_size, timeout) for u in urls]
        self._wait = wait
        self._turn = itertools.cycle(range(len(self.replicas)))
        self._primary = primary
        self._mark: CommitMark | None = None
        #: This process's last commit has no known position: only the primary will do.
        self._unknown = False

    def start(self, position: Callable[[], int]) -> None:
        """The primary's current ``position()`` when the store opens: every commit before it counts."""
        if self._mark is not None:
            self._mark.start(position)

    def committed(self, lsn: int | None) -> None:
        """A commit ended at ``lsn`` (``None``: it did, but its position could not be read)."""
        self._unknown = lsn is None
        if lsn is not None and self._mark is not None:
            self._mark.raise_to(lsn)

    async def open(self, timeout: float) -> None:
        """Open every pool; a standby that does not answer is set aside, not fatal."""
        self._mark = CommitMark(self._primary)
        for r in self.replicas:
            try:
                await r.pool.open(wait=True, timeout=timeout)
            except PoolTimeout as exc:
                r.set_aside(exc)

    async def close(self) -> None:
        for r in self.replicas:
            await r.pool.close()
        if self._mark is not None:
            self._mark.close()
            self._mark = None

    async def pick(self) -> Replica | None:
        """A standby that has replayed the host's newest commit, or ``None`` (the primary)."""
        if self._unknown or self._mark is None:
            return None
        need = self._mark.read()
        deadline = time.monotonic() + self._wait
        start = next(self._turn)
        for i in range(len(self.replicas)):
            r = self.replicas[(start + i) % len(self.replicas)]
            if time.monotonic() < r.aside_until:
                continue
            try:
                if await r.reached(need, deadline):
                    return r
            except (psycopg.OperationalError, PoolTimeout, _NotStandby) as exc:
                r.set_aside(exc)
        return None


def _host(url: str) -> str:
    """The URL without user or password, fit for a log line."""
    return url.rsplit("@", 1)[-1]
