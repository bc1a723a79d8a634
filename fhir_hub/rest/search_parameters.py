"""Custom SearchParameter resources: checked on write, followed by the registry once committed.

A SearchParameter resource with ``status`` ``active`` or ``draft`` becomes a search parameter
of this server (``search/parameters.py``); ``retired``, ``unknown``, a delete, or an update to
one of those takes it away. One that only restates the R4 core parameter with its URL (every
core definition among the official examples does) changes nothing.

Semantics (README, "Custom search parameters"):

* the write is checked first (:func:`check`): ``url``, ``code``, ``base``, ``type`` and
  ``expression`` present, a code not starting with ``_``, and an expression the indexer
  (``search/extract.py``) can evaluate on every base type; otherwise a 400 naming the element
  (``validate`` in ``rest/write.py`` calls it, so every write path does);
* the registry follows the store only after the write committed (:meth:`Follower.catch_up`,
  called by ``app.dispatch`` once a write returned), so a refused or rolled-back write never
  changes what search means;
* from then on, resources written are indexed by it and searches accept it; resources stored
  before are not in its index until ``$reindex`` (``rest/reindex.py``) or ``fhir-hub reindex``
  rewrites their rows. Deleting it makes the code unknown again at once; its rows stay in the
  index until a reindex drops them.

Several processes on one file (``serve --workers N``): each follows the store's history of
SearchParameter versions, at start-up (:meth:`Follower.load`), after its own writes, and at most
once every :data:`POLL_SECONDS` on its next request (:meth:`Follower.poll`, one indexed query).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from typing import Any

import orjson

from fhir_hub import definitions
from fhir_hub.errors import FhirError, error
from fhir_hub.search import expressions, extract, parameters
from fhir_hub.search.convert import converter
from fhir_hub.search.parameters import NOT_DOMAIN_RESOURCES, SearchParam
from fhir_hub.storage.port import HistoryQuery, Store, StoredVersion, StoreUnavailable, Tx

log = logging.getLogger(__name__)

#: ``status`` values that make a SearchParameter resource a parameter of this server.
LIVE_STATUS = ("active", "draft")
#: Seconds between two looks at the store for SearchParameter changes made by other processes.
POLL_SECONDS = 1.0
_PAGE = 500
#: What every live SearchParameter needs; ``expression`` too, unless it restates a core parameter
#: (``_text``, ``_content`` and ``_query`` have none).
_REQUIRED = ("url", "code", "base", "type")
_EXTENSION_END = re.compile(r"extension\('[^']*'\)\s*$")


# -- the check on write ----------------------------------------------------------------------


def _base_types(base: tuple[str, ...]) -> list[str]:
    """Concrete resource types a parameter applies to (``Resource``/``DomainResource`` expanded)."""
    out: set[str] = set()
    for b in base:
        if b == "Resource":
            out |= definitions.resource_types()
        elif b == "DomainResource":
            out |= definitions.resource_types() - NOT_DOMAIN_RESOURCES
        else:
            out.add(b)
    return sorted(out)


def unindexable(param: SearchParam, rtype: str) -> str | None:
    """Why the indexer would give no rows for ``param`` on ``rtype`` (``None``: it gives some).

    The same decision ``extract.plan`` makes for a registered parameter — the compiled subset,
    else fhirpathpy tried on an empty resource — taken before registering it.
    """
    if param.type == "composite":
        for url, _expression in param.components:
            of = parameters.by_url(url)
            if of is None or of.type in ("composite", "special"):
                return f"its component {url!r} is not a known search parameter"
        return None
    try:
        found = [r for r in expressions.routes(param.expression, rtype)
                 if converter((param.code,), param.type, r.type) is not None]
    except expressions.NotIndexable as exc:
        return str(exc) or f"it selects nothing a {param.type} parameter can index"
    except expressions.NotSupported:
        found = None
    if found is not None:
        if not found:
            return f"it selects no value a {param.type} parameter can index"
        if all(r.steps and isinstance(r.steps[0], expressions.Key) for r in found):
            return None
    try:
        extract.fhirpath(param.expression, rtype)({"resourceType": rtype})
    except Exception as exc:  # fhirpathpy's errors have no common base
        return f"FHIRPath cannot evaluate it ({type(exc).__name__}: {exc})"
    return None


def check(resource: dict[str, Any], where: str | None = None) -> None:
    """Refuse (400) a live SearchParameter this server could not search by.

    ``where`` roots the issue locations, e.g. ``Bundle.entry[2].resource``.
    """
    if resource.get("status") not in LIVE_STATUS:
        return
    root = where or "SearchParameter"

    def refuse(code: str, diagnostics: str, element: str) -> FhirError:
        return FhirError(400, error(code, diagnostics, f"{root}.{element}"))

    issues = [error("required", f"a SearchParameter with status {resource['status']!r} needs {name} to be "
                    "searchable", f"{root}.{name}")
              for name in _REQUIRED if not resource.get(name)]
    if issues:
        raise FhirError(400, issues)
    try:
        param = parameters.from_resource(resource)
    except ValueError as exc:
        raise FhirError(400, error("invalid", str(exc), root)) from None
    if parameters.builtin(param.url) == param:
        return
    if not param.expression:
        raise refuse("required", f"a SearchParameter with status {resource['status']!r} needs expression to be "
                     "searchable", "expression")
    if param.code.startswith("_"):
        raise refuse("not-supported", f"code {param.code!r}: names starting with '_' are the spec's own "
                     "parameters", "code")
    if param.type == "special":
        raise refuse("not-supported", "a special parameter has no index values; this server cannot search by it",
                     "type")
    bad = [b for b in param.base if b not in ("Resource", "DomainResource") and not definitions.is_resource_type(b)]
    if bad:
        raise refuse("invalid", f"base {bad[0]!r} is not a resource type", "base")
    for rtype in _base_types(param.base):
        why = unindexable(param, rtype)
        if why is not None:  # one type is enough to say what is wrong
            hint = " (add .value to index the extension's value)" if _EXTENSION_END.search(param.expression) else ""
            raise refuse("not-supported", f"expression {param.expression!r} cannot be indexed on {rtype}: "
                         f"{why}{hint}", "expression")


def _live(body: bytes | None) -> tuple[SearchParam, dict[str, Any]] | None:
    """The parameter a stored version makes live (and the resource), or ``None``."""
    if body is None:
        return None
    resource = orjson.loads(body)
    if resource.get("status") not in LIVE_STATUS:
        return None
    param = parameters.from_resource(resource)
    return None if parameters.builtin(param.url) == param else (param, resource)


# -- the registry following the store ----------------------------------------------------------


class Follower:
    """Keeps ``search/parameters.py`` in step with the SearchParameter resources of one store."""

    def __init__(self, store: Store):
        self._store = store
        #: ``seq`` of the newest SearchParameter version taken in.
        self._seen = 0
        self._due = 0.0
        #: What each stored SearchParameter defines (by resource id), in the order taken in.
        self._by_id: dict[str, tuple[SearchParam, dict[str, Any]]] = {}
        #: What this follower registered, by URL.
        self._registered: dict[str, SearchParam] = {}
        self._lock = asyncio.Lock()

    async def load(self) -> int:
        """Register every live SearchParameter of the store; returns how many are registered."""
        async with self._lock:
            newest = await self._newest()
            self._by_id.clear()
            after = None
            while ids := await self._store.find("SearchParameter", [], _PAGE, after):
                for v in await self._store.read_many("SearchParameter", ids):
                    self._take(v)
                after = ids[-1]
            self._seen = newest
            await self._settle()
        return len(self._registered)

    async def poll(self) -> None:
        """:meth:`catch_up`, at most once every :data:`POLL_SECONDS`."""
        now = time.monotonic()
        if now >= self._due:
            self._due = now + POLL_SECONDS
            await self.catch_up()

    async def catch_up(self) -> None:
        """Take in the SearchParameter versions committed since the last look (one indexed
        query when there are none)."""
        async with self._lock:
            newest = await self._newest()
            if newest <= self._seen:
                return
            changed: dict[str, None] = {}
            before = None
            while True:
                page = await self._store.history(HistoryQuery(rtype="SearchParameter", before_seq=before, count=_PAGE))
                changed.update((v.rid, None) for v in page if v.seq > self._seen)
                if len(page) < _PAGE or page[-1].seq <= self._seen:
                    break
                before = page[-1].seq
            for rid in changed:
                v = await self._store.read("SearchParameter", rid)
                if v is not None:
                    self._take(v)
            self._seen = newest
            await self._settle()

    async def _newest(self) -> int:
        found = await self._store.history(HistoryQuery(rtype="SearchParameter", count=1))
        return found[0].seq if found else 0

    def _take(self, v: StoredVersion) -> None:
        self._by_id.pop(v.rid, None)
        try:
            found = _live(v.body)
        except ValueError as exc:  # stored before the check existed
            log.warning("SearchParameter/%s is not registered: %s", v.rid, exc)
            return
        if found is None:
            return
        param = found[0]
        if any(unindexable(param, t) for t in param.base if definitions.is_resource_type(t)):
            log.warning("SearchParameter/%s (%s) cannot be indexed; searches on it will be refused", v.rid, param.code)
        self._by_id[v.rid] = found

    async def _settle(self) -> None:
        """Register what the stored resources define and unregister what they no longer do; the
        latest taken in wins when two define one URL."""
        wanted: dict[str, tuple[SearchParam, dict[str, Any]]] = {}
        for param, resource in self._by_id.values():
            wanted.pop(param.url, None)
            wanted[param.url] = (param, resource)
        changed = False
        for url in [u for u in self._registered if u not in wanted]:
            parameters.unregister(url)
            del self._registered[url]
            changed = True
        for url, (param, resource) in wanted.items():
            if self._registered.get(url) != param:
                parameters.register(resource)
                self._registered[url] = param
                changed = True
        if changed:
            # the writer thread may have been deriving plans from the old parameters meanwhile:
            # drop them there too, after anything it was doing
            try:
                await self._store.transact(_refresh)
            except StoreUnavailable:
                parameters.refresh()


def _refresh(tx: Tx) -> None:
    parameters.refresh()
