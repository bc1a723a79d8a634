"""The storage port: what the REST layer may ask of a backend, with no SQL in sight.

Reads are async calls served from committed state. Writes go through ``transact``: the caller
hands over a plain function that receives a synchronous :class:`Tx` and runs on the backend's
single writer, inside one database transaction. Everything the function does commits together,
or — if it raises — nothing does. Because all writes are serialised through that one writer,
conditional operations (``If-None-Exist``, ``If-Match``, conditional references) decide on a
state that no concurrent request can change under them.

The shape follows Blaze's ``Db`` protocol: a handful of primitives, and index maintenance as a
hook the search module fills (:class:`Indexer`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

import orjson

from fhir_hub.search.query import Criterion

T = TypeVar("T")


class StoreUnavailable(RuntimeError):
    """The backend cannot take the request now (locked, down); the client may retry (503)."""


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One version of one resource, as kept: the exact JSON bytes served on read."""

    rtype: str
    rid: str
    vid: int
    #: Microseconds since the epoch (UTC) of the commit that wrote this version.
    ts: int
    #: ``POST`` | ``PUT`` | ``PATCH`` | ``DELETE``: how the version came to be (history entries).
    method: str
    #: The resource JSON with ``meta.versionId``/``meta.lastUpdated`` set; ``None`` for a delete.
    body: bytes | None
    #: Position in the store's global change order (system history, paging cursors).
    seq: int = 0

    @property
    def deleted(self) -> bool:
        return self.body is None


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Which versions a history interaction lists, newest first."""

    rtype: str | None = None
    rid: str | None = None
    #: Only versions with ``ts >= since`` (µs).
    since: int | None = None
    #: Only versions current at some point of the period ``(start, end)`` in µs: written no later
    #: than ``end`` and not superseded before ``start`` (http.html#history, ``_at``).
    at: tuple[int, int] | None = None
    #: Keyset cursor: only versions with ``seq < before_seq``.
    before_seq: int | None = None
    count: int = 50


def stamp(rtype: str, rid: str, resource: dict[str, Any], vid: int, last_updated: str) -> dict[str, Any]:
    """The resource as stored: ``resourceType``, ``id`` and ``meta`` first, ``meta.versionId`` and
    ``meta.lastUpdated`` set (the server owns them), the rest in the order sent. ``resource`` is
    changed into the same form (callers go on with it: the MPI reads the stored Patient)."""
    meta = dict(resource.get("meta") or {})
    meta["versionId"] = str(vid)
    meta["lastUpdated"] = last_updated
    resource.pop("id", None)
    resource.pop("meta", None)
    resource.pop("resourceType", None)
    stored = {"resourceType": rtype, "id": rid, "meta": meta, **resource}
    resource.clear()
    resource.update(stored)
    return stored


class PreparedBody(NamedTuple):
    """A new resource's stored bytes, made before the writer runs (a transaction's plain create,
    in a parser process): all but ``meta.lastUpdated``, the commit's time, which the writer
    splices in (:meth:`at`). The server then neither unpickles the resource's dicts nor
    rewrites, builds and dumps them on the writer (ingest of 1,000 patients: the writer's time
    per resource 5-10 % lower, the thread that unpickles parsed bundles a fifth).

    It is written as version 1 of a fresh id. ``refs`` are its references as stored, in the
    order :func:`fhir_hub.rest.references.reference_holders` finds them, for the
    referential-integrity check."""

    head: bytes
    tail: bytes
    refs: tuple[str, ...]

    def at(self, last_updated: str) -> bytes:
        return self.head + last_updated.encode() + self.tail


#: Stands in for ``meta.lastUpdated`` while a :class:`PreparedBody` is dumped; a resource holding
#: the same text (a NUL, this, a NUL) is simply not prepared.
_LATER = "\x00fhir-hub:lastUpdated\x00"
_LATER_BYTES = orjson.dumps(_LATER)[1:-1]


def prepare_body(rtype: str, rid: str, resource: dict[str, Any], refs: tuple[str, ...]) -> PreparedBody | None:
    """``resource`` as version 1 of ``rtype/rid`` will be stored (:func:`stamp`, on a copy), or
    ``None`` if its bytes cannot be split around the time."""
    parts = orjson.dumps(stamp(rtype, rid, dict(resource), 1, _LATER)).split(_LATER_BYTES)
    if len(parts) != 2:
        return None
    return PreparedBody(parts[0], parts[1], refs)


#: ``(kind, param, a, b, c)``: one search-index row of a resource; ``kind`` names the index
#: (``string``, ``token``, ``date``, ``number``, ``quantity``, ``reference``, ``uri``) and the
#: meaning of ``a, b, c`` (``search/extract.py`` documents each shape).
IndexRow = tuple[str, str, Any, Any, Any]


class Indexer(Protocol):
    """Turns a resource into search-index rows; the search module provides it."""

    def rows(self, rtype: str, resource: dict[str, Any]) -> Sequence[IndexRow]: ...


class IndexForm(Protocol):
    """The form a backend takes a resource's index rows in, when they are made before its writer
    runs (by the event loop or a parser process: ``rest/parsers.py``).

    Preparing there moves the backend's per-row work off the writer, which is what limits ingest;
    what ``prepare`` returns is opaque to the caller, except that it pickles and that
    ``retarget`` can repoint its references.
    """

    def prepare(self, rtype: str, rows: Sequence[IndexRow]) -> Any:
        """``rows`` of a resource about to be written, without its ``_lastUpdated`` row: the writer
        adds that one with the write's time."""
        ...

    def retarget(self, prepared: Any, targets: dict[str, str]) -> Any | None:
        """The rows with reference values changed as ``targets`` says (``urn:uuid`` placeholders,
        conditional references, relative forms of absolute ones, resolved by the transaction), or
        ``None`` when that cannot be done in place and the writer must extract them again."""
        ...


class NeutralForm:
    """Index rows kept as :data:`IndexRow` tuples, for a backend that converts them itself."""

    def prepare(self, rtype: str, rows: Sequence[IndexRow]) -> Any:
        return [r for r in rows if r[1] != "_lastUpdated"]

    def retarget(self, prepared: Any, targets: dict[str, str]) -> Any | None:
        return retargeted(prepared, targets, [r[2] for r in prepared if r[0] == "reference"],
                          lambda: [(r[0], r[1], targets.get(r[2], r[2]), r[3], r[4]) if r[0] == "reference" else r
                                   for r in prepared])


def retargeted(prepared: Any, targets: dict[str, str], indexed: Sequence[str], rewrite: Callable[[], Any]) -> Any:
    """``rewrite()`` when every reference in ``targets`` is among the ``indexed`` values as written,
    else ``None``: an absolute URL was also indexed by its tail, and a conditional reference not at
    all, so those need the rows extracted again."""
    values = set(indexed)
    if any("://" in ref or ref not in values for ref in targets):
        return None
    return rewrite()


class Tx(Protocol):
    """The synchronous view of the store inside one write transaction (runs on the writer)."""

    #: Commit time of this unit in µs; every version written by the unit carries it.
    ts: int

    def current(self, rtype: str, rid: str) -> StoredVersion | None:
        """The latest version (possibly a delete tombstone), seeing this transaction's writes."""
        ...

    def vread(self, rtype: str, rid: str, vid: int) -> StoredVersion | None: ...

    def put(self, rtype: str, rid: str, resource: dict[str, Any] | PreparedBody, method: str, *,
            fresh: bool = False, index: Any = None) -> StoredVersion:
        """Write the next version of ``rtype/rid``; sets ``id`` and ``meta`` in ``resource``
        (:func:`stamp`). A :class:`PreparedBody` is written as it is, as version 1 (``fresh``).

        ``fresh`` promises that the id was never used (a server-assigned UUID), so the backend may
        skip looking for an earlier version: the hot path of ingest. ``index`` carries rows that the
        caller already extracted with the store's own indexer and prepared in its
        :attr:`Store.index_form` (on the event loop or in a parser process, while the writer does
        SQL), so the writer does not extract them again.
        """
        ...

    def delete(self, rtype: str, rid: str) -> StoredVersion | None:
        """Write a tombstone; ``None`` if there was nothing live to delete."""
        ...

    def restore(self, version: StoredVersion) -> StoredVersion:
        """Write ``version`` as given (moving a store: ``fhir-hub import``): its ``vid``, ``ts``,
        ``method`` and ``body`` bytes are kept, ``None`` a tombstone; only ``seq`` is the store's
        next. ``vid`` must be above the resource's latest (``ValueError`` otherwise; gaps are
        allowed, as an export of current versions has them). Index rows are made from the body
        by the store's indexer. Nothing checks that the body's ``id``/``meta`` agree with it."""
        ...

    def reindex(self, rtype: str, rid: str) -> bool:
        """Replace the search-index rows of the current version of ``rtype/rid`` with the rows the
        store's indexer makes of its body now (after the set of search parameters changed); no new
        version, no history entry. ``False`` if it has no live version."""
        ...

    def find(self, rtype: str, criteria: Sequence[Criterion], limit: int, after: str | None = None,
             ids: Sequence[str] | None = None) -> list[str]:
        """Ids of live resources of ``rtype`` matching all criteria (and one of ``ids`` if given),
        at most ``limit``, seeing this transaction's writes.

        Ids come in creation order (of each resource's first version), all created after the
        resource ``after``: a keyset cursor for paging.
        """
        ...


class Store(Protocol):
    """A backend. SQLite is the embedded default; PostgreSQL comes later behind the same port."""

    #: The indexer the store maintains its search index with (``None``: no index).
    indexer: Indexer | None
    #: The form :meth:`Tx.put` takes prepared index rows in.
    index_form: IndexForm

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def read(self, rtype: str, rid: str) -> StoredVersion | None:
        """The latest version, or ``None`` if the resource never existed."""
        ...

    async def vread(self, rtype: str, rid: str, vid: int) -> StoredVersion | None: ...

    async def history(self, query: HistoryQuery) -> list[StoredVersion]: ...

    async def history_total(self, query: HistoryQuery) -> int: ...

    async def find(self, rtype: str, criteria: Sequence[Criterion], limit: int,
                   after: str | None = None, ids: Sequence[str] | None = None) -> list[str]:
        """As :meth:`Tx.find`, over committed state."""
        ...

    async def find_sorted(self, rtype: str, criteria: Sequence[Criterion], sort: Sequence[tuple[str, str, bool]],
                          limit: int, after: Sequence[Any] | None = None,
                          ids: Sequence[str] | None = None) -> list[tuple[str, tuple[Any, ...]]]:
        """As :meth:`find`, ordered by ``(param, type, descending)`` keys (``_id`` and
        ``_lastUpdated`` included), resources without a value last; each id comes with its
        position in the order, and ``after`` (such a position) starts the page after it."""
        ...

    async def count(self, rtype: str, criteria: Sequence[Criterion], ids: Sequence[str] | None = None) -> int:
        """How many live resources :meth:`find` would list without a limit."""
        ...

    async def read_many(self, rtype: str, rids: Sequence[str]) -> list[StoredVersion]:
        """The live current versions of those ids that exist, in any order."""
        ...

    async def references(self, rtype: str, rids: Sequence[str]) -> list[tuple[str, str, str]]:
        """``(rid, param, target)`` of every indexed reference of those resources (``_include``,
        ``$everything``): targets as indexed, ``Type/id`` or an absolute URL."""
        ...

    async def transact(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` on the writer in one atomic transaction; its result once durably committed."""
        ...
