"""The newest commit position (WAL LSN) any fhir-hub process on this host made on one database.

Read-your-writes through a replica needs the position of the client's own commit; the client's
next request may be served by another worker process (``serve --workers N``, a new connection).
So the processes of one host share one number: an 8-byte file in the temp dir, named after the
database (host, port, name; no user or password), raised under an exclusive ``flock`` after each
commit and read under a shared one before a read picks a replica (a pair of system calls, no
round trip). The number only grows; the lock keeps two writers from lowering it. Processes on
other hosts do not share it: a client balanced across hosts sees its writes only through a host
that made them (``docs/scaling.md``).

If the file cannot be made (a read-only temp dir), the mark is the process's own, as with one
worker, and a warning says so.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

log = logging.getLogger("fhir_hub")
_FORMAT = struct.Struct("<q")


def mark_path(url: str) -> Path:
    """The file for the database ``url`` names: the same for every spelling of its host, port and name."""
    info = conninfo_to_dict(url)
    key = "\x1f".join(str(info.get(k, "")) for k in ("host", "port", "dbname"))
    digest = hashlib.blake2b(key.encode(), digest_size=8).hexdigest()
    return Path(tempfile.gettempdir()) / f"fhir-hub-commit-{digest}"


class CommitMark:
    """The shared number (see the module docstring); ``local`` keeps it when no file can be had."""

    def __init__(self, url: str):
        self._local = 0
        self._fd: int | None = None
        path = mark_path(url)
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.warning("commit mark %s unavailable (%s): read-your-writes holds per process only", path, exc)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _stored(self) -> int:
        assert self._fd is not None
        raw = os.pread(self._fd, _FORMAT.size, 0)
        return _FORMAT.unpack(raw)[0] if len(raw) == _FORMAT.size else 0

    def raise_to(self, lsn: int) -> None:
        """Record a commit that ended at ``lsn`` (keeps the larger)."""
        self._local = max(self._local, lsn)
        if self._fd is None:
            return
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if self._stored() < lsn:
                os.pwrite(self._fd, _FORMAT.pack(lsn), 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def start(self, position: Callable[[], int]) -> None:
        """Begin at the primary's current ``position()``: every commit before it counts. A mark
        beyond it was left by another cluster that had this host, port and name (a test's, or the
        one a restore replaced), so it drops to it rather than send every read to the primary.
        The position is read while the lock is held, so no process's published commit is above it."""
        if self._fd is None:
            self._local = position()
            return
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            self._local = position()
            if self._stored() != self._local:
                os.pwrite(self._fd, _FORMAT.pack(self._local), 0)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def read(self) -> int:
        """The newest commit position any process on this host published (this one's included)."""
        if self._fd is None:
            return self._local
        fcntl.flock(self._fd, fcntl.LOCK_SH)
        try:
            return self._stored()
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
