"""Search interactions (search.html): type, system (``_type``) and compartment level, GET and POST.

The query string becomes a neutral :class:`~fhir_hub.search.query.Query` (``search/parse.py``);
the store answers it in its key order (creation order), or in ``_sort`` order, after a keyset
cursor, so a ``next`` link survives restarts and is not shifted by concurrent writes. Includes
are read from the matches' reference index rows (forward) or searched as references to the
matches (reverse); a cap on them is reported in an OperationOutcome entry, never applied
silently.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from fhir_hub import definitions
from fhir_hub.errors import FhirError, error
from fhir_hub.rest import elements
from fhir_hub.rest.wire import CONTENT_TYPE_HEADER, Request, Response, dumps
from fhir_hub.rest.write import check_id, check_type
from fhir_hub.search import extract, matcher, parameters
from fhir_hub.search.parse import parse
from fhir_hub.search.query import AnyOf, Clause, CompositeValue, Criterion, Include, Query, ReferenceValue
from fhir_hub.storage.port import StoredVersion

#: Included resources per page at most; above it the page says so in an OperationOutcome entry.
MAX_INCLUDES = 1000
#: ``:iterate`` rounds at most (search.html lets the server bound them).
MAX_ITERATE = 3
_CURSOR = "_cursor"


def _pairs(req: Request) -> list[tuple[str, str]]:
    pairs = list(req.query)
    if req.method == "POST":
        ctype = req.headers.get("content-type", "").split(";")[0].strip()
        if ctype != "application/x-www-form-urlencoded":
            raise FhirError(415, error("not-supported", "POST _search needs an application/x-www-form-urlencoded body"))
        pairs.extend(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
    return pairs


def _strict(req: Request) -> bool:
    return "handling=strict" in req.headers.get("prefer", "")


class _Page:
    """One page of matches (in store order, possibly over several types) and what it includes."""

    def __init__(self) -> None:
        self.matches: list[StoredVersion] = []
        self.included: dict[tuple[str, str], StoredVersion] = {}
        self.outcomes: list[dict[str, Any]] = []
        self.more = False
        #: The ``next`` link's cursor; by default the last match (a keyset position).
        self.next_cursor: str | None = None


#: Candidates read per round when composite criteria are checked in memory.
_RECHECK_BATCH = 500
#: Most candidates a composite search reads; past it without a full page the search is a 400.
MAX_RECHECK = 20_000


async def _find(hub: Any, rtype: str, q: Query, criteria: list[Criterion], limit: int,
                after: str | None) -> list[str]:
    """Ids of the matches, in the store's order after ``after``.

    Composite parameters are not in the index (their values belong together per element, which
    index rows do not record): the store finds candidates by the other criteria and by each
    component alone, and the in-memory matcher checks the composites on the bodies.
    """
    composites = [c for c in criteria if isinstance(c, Clause) and c.type == "composite"]
    if not composites:
        return list(await hub.store.find(rtype, criteria, limit, after, q.ids))
    others = [c for c in criteria if c not in composites] + _component_prefilter(rtype, composites)
    found: list[str] = []
    read = 0
    while len(found) < limit and read < MAX_RECHECK:
        batch = await hub.store.find(rtype, others, _RECHECK_BATCH, after, q.ids)
        if not batch:
            break
        read += len(batch)
        bodies = {v.rid: orjson.loads(v.body) for v in await hub.store.read_many(rtype, batch) if v.body}
        now = matcher.now_us()
        found.extend(rid for rid in batch if rid in bodies and all(
            matcher.matches_composite(c, bodies[rid], extract.component_rows, now) for c in composites))
        after = batch[-1]
    else:
        if len(found) < limit:  # stopped by the cap, not by the end of the candidates: say so
            raise FhirError(400, error("too-costly", f"composite criteria on {rtype} were checked on "
                                       f"{MAX_RECHECK} candidates without filling the page: add criteria that the "
                                       "index can narrow (a subject, a code)", composites[0].param))
    return found[:limit]


def _component_prefilter(rtype: str, composites: list[Clause]) -> list[Criterion]:
    """Each composite value's parts as plain criteria on the component parameters (OR over the
    values): a necessary condition the index can answer."""
    out: list[Criterion] = []
    for c in composites:
        sp = parameters.lookup(rtype, c.param)
        if sp is None:
            continue
        for i, (url, _expr) in enumerate(sp.components):
            comp = parameters.by_url(url)
            if comp is None or comp.code.startswith("_") or parameters.lookup(rtype, comp.code) is None:
                continue
            values = tuple(v.parts[i] for v in c.values if isinstance(v, CompositeValue))
            if comp.type not in ("token", "quantity", "date", "number", "string", "reference", "uri") or not values:
                continue
            members = extract.aliases(rtype).get(comp.code)
            if members:  # a union parameter is not indexed itself (combo-code): any of its members
                out.append(AnyOf(tuple(Clause(m, comp.type, values) for m in members)))
            else:
                out.append(Clause(comp.code, comp.type, values))
    return out


def _criteria(q: Query, rtype: str) -> list[Criterion]:
    return list(q.criteria_for(rtype))


def _compartment_criteria(q: Query, rtype: str) -> tuple[list[Criterion], tuple[str, ...] | None] | None:
    """Criteria and ids restricting ``rtype`` to the compartment, or ``None`` if none can be in it.

    A resource is in it through any of its membership parameters; the compartment's own resource
    is in it too (the Patient CompartmentDefinition's ``link`` for other patients is not followed).
    """
    assert q.compartment is not None
    ctype, cid = q.compartment
    owners = (cid, *q.compartment_also)
    if rtype == ctype:
        own = tuple(i for i in owners if q.ids is None or i in q.ids)
        return (_criteria(q, rtype), own) if own else None
    target = tuple(ReferenceValue(f"{ctype}/{i}") for i in owners)
    links = tuple(Clause(param, "reference", target)
                  for param in definitions.compartments().get(ctype, {}).get(rtype, [])
                  if parameters.lookup(rtype, param) is not None)
    return ([*_criteria(q, rtype), AnyOf(links)], q.ids) if links else None


async def _compartment_ids(hub: Any, rtype: str, q: Query, limit: int, after: str | None) -> list[str]:
    scope = _compartment_criteria(q, rtype)
    if scope is None:
        return []
    criteria, ids = scope
    return list(await _find(hub, rtype, replace(q, ids=ids), criteria, limit, after))


def _sort_keys(q: Query) -> list[tuple[str, str, bool]]:
    """``(param, type, descending)`` of each ``_sort`` key; refused where it cannot apply."""
    keys = []
    for key in q.sort:
        if key.param in ("_id", "_lastUpdated"):
            keys.append((key.param, "special", key.descending))
            continue
        sp = parameters.lookup(q.types[0], key.param)
        if sp is None or sp.type not in ("string", "token", "date", "number", "quantity", "reference", "uri") \
                or key.param in extract.aliases(q.types[0]) or key.param in extract.unsupported(q.types[0]):
            raise FhirError(400, error("not-supported", f"cannot sort {q.types[0]} by {key.param!r}", "_sort"))
        keys.append((key.param, sp.type, key.descending))
    return keys


async def _sorted(hub: Any, q: Query, page: _Page, count: int) -> None:
    """A sorted page, cut by a keyset cursor: the last match's sort values, opaque to clients."""
    if len(q.types) != 1 or q.compartment is not None:
        raise FhirError(400, error("not-supported", "_sort applies to a search of one type", "_sort"))
    if any(isinstance(c, Clause) and c.type == "composite" for c in q.criteria):
        raise FhirError(400, error("not-supported", "_sort cannot be combined with composite parameters", "_sort"))
    rtype = q.types[0]
    keys = _sort_keys(q)
    after = None
    if q.cursor:
        try:
            after = orjson.loads(base64.urlsafe_b64decode(q.cursor[1:] + "=" * (-len(q.cursor[1:]) % 4)))
        except (ValueError, orjson.JSONDecodeError):
            after = None
        if not q.cursor.startswith("s") or not isinstance(after, list) or len(after) != len(keys) + 1:
            raise FhirError(400, error("invalid", "_cursor does not come from this sorted search", "_cursor"))
    rows = await hub.store.find_sorted(rtype, list(q.criteria), keys, count + 1, after, q.ids)
    page.more = len(rows) > count
    rows = rows[:count]
    versions = {v.rid: v for v in await hub.store.read_many(rtype, [r for r, _ in rows])}
    page.matches.extend(versions[r] for r, _ in rows if r in versions)
    if rows:
        page.next_cursor = "s" + base64.urlsafe_b64encode(orjson.dumps(list(rows[-1][1]))).decode().rstrip("=")


async def _matches(hub: Any, q: Query, page: _Page, count: int) -> None:
    """Fill ``page.matches`` with up to ``count`` resources after the cursor, across the types."""
    if q.sort:
        await _sorted(hub, q, page, count)
        return
    after_type, _, after_id = (q.cursor or "").partition("/")
    for rtype in q.types:
        if after_type and rtype < after_type:
            continue
        after = after_id if rtype == after_type else None
        want = count - len(page.matches) + 1
        if q.compartment is not None:
            ids = await _compartment_ids(hub, rtype, q, want, after)
        else:
            ids = await _find(hub, rtype, q, _criteria(q, rtype), want, after)
        if len(ids) >= want:
            page.more = True
            ids = ids[:want - 1]
        versions = {v.rid: v for v in await hub.store.read_many(rtype, ids)}
        page.matches.extend(versions[i] for i in ids if i in versions)
        if page.more or len(page.matches) >= count:
            page.more = page.more or rtype != q.types[-1]
            return


async def _total(hub: Any, q: Query) -> int:
    total = 0
    for rtype in q.types:
        if q.compartment is not None:
            scope = _compartment_criteria(q, rtype)
            if scope is not None:
                total += await hub.store.count(rtype, scope[0], scope[1])
        elif any(isinstance(c, Clause) and c.type == "composite" for c in _criteria(q, rtype)):
            total += len(await _find(hub, rtype, q, _criteria(q, rtype), MAX_RECHECK, None))
        else:
            total += await hub.store.count(rtype, _criteria(q, rtype), q.ids)
    return total


async def _refs(hub: Any, sources: list[StoredVersion], inc: Include) -> list[str]:
    """``Type/id`` targets of the sources through the include's parameter (every reference
    parameter for ``*``), read from the reference index rather than the bodies."""
    by_type: dict[str, list[str]] = {}
    for v in sources:
        if inc.source_type in (v.rtype, "*"):
            by_type.setdefault(v.rtype, []).append(v.rid)
    out = []
    for rtype, rids in by_type.items():
        for _rid, param, target in await hub.store.references(rtype, rids):
            if inc.param != "*" and param != inc.param:
                continue
            ttype, _, tid = target.partition("/")
            if "/" in tid or not definitions.is_resource_type(ttype):
                continue  # an absolute URL to another server
            if inc.target_type is None or inc.target_type == ttype:
                out.append(target)
    return out


def _cap(page: _Page, what: str) -> None:
    page.outcomes.append({"resourceType": "OperationOutcome", "issue": [{
        "severity": "warning", "code": "too-costly",
        "diagnostics": f"{what}: more than {MAX_INCLUDES} included resources; the rest were left out"}]})


async def _includes(hub: Any, q: Query, page: _Page) -> None:
    sources = list(page.matches)
    for round_ in range(MAX_ITERATE + 1):
        wanted: dict[str, set[str]] = {}
        new: list[StoredVersion] = []
        for inc in q.includes:
            if round_ > 0 and not inc.iterate:
                continue
            if inc.reverse:
                await _revinclude(hub, inc, sources, page, new)
                continue
            for target in await _refs(hub, sources, inc):
                rtype, _, rid = target.partition("/")
                if (rtype, rid) not in page.included:
                    wanted.setdefault(rtype, set()).add(rid)
        for rtype, rids in wanted.items():
            room = MAX_INCLUDES - len(page.included)
            if len(rids) > room:
                _cap(page, "_include")
                rids = set(sorted(rids)[:room])
            for v in await hub.store.read_many(rtype, sorted(rids)):
                if (v.rtype, v.rid) not in page.included:
                    page.included[(v.rtype, v.rid)] = v
                    new.append(v)
        if not new or not any(i.iterate for i in q.includes):
            return
        sources = new


async def _revinclude(hub: Any, inc: Include, sources: list[StoredVersion], page: _Page,
                      new: list[StoredVersion]) -> None:
    targets = tuple(ReferenceValue(f"{v.rtype}/{v.rid}") for v in sources
                    if inc.target_type is None or inc.target_type == v.rtype)
    if not targets:
        return
    params = ([sp.code for sp in parameters.params_for(inc.source_type).values() if sp.type == "reference"]
              if inc.param == "*" else [inc.param])
    for param in params:
        room = MAX_INCLUDES - len(page.included)
        ids: list[str] = []
        for start in range(0, len(targets), 200):
            clause = Clause(param, "reference", targets[start:start + 200])
            ids.extend(await hub.store.find(inc.source_type, [clause], room + 1))
        ids = sorted(set(ids))
        if len(ids) > room:
            _cap(page, "_revinclude")
            ids = ids[:room]
        fresh = [i for i in ids if (inc.source_type, i) not in page.included]
        for v in await hub.store.read_many(inc.source_type, fresh):
            page.included[(v.rtype, v.rid)] = v
            new.append(v)


def _entry(req: Request, q: Query, v: StoredVersion, mode: str) -> dict[str, Any]:
    assert v.body is not None
    resource: Any = orjson.Fragment(v.body)
    if q.summary in ("true", "text", "data") or q.elements:
        parsed = orjson.loads(v.body)
        resource = elements.summary(parsed, q.summary) if q.summary else elements.only(parsed, list(q.elements))
    return {"fullUrl": f"{req.base_url}/{v.rtype}/{v.rid}", "resource": resource, "search": {"mode": mode}}


def _links(req: Request, path: str, q: Query, pairs: list[tuple[str, str]], count: int,
           page: _Page) -> list[dict[str, str]]:
    ignored = set(q.ignored)
    kept = [(k, v) for k, v in pairs if k not in (_CURSOR, "_count") and k not in ignored]
    kept.append(("_count", str(count)))
    base = f"{req.base_url}/{path}" if path else req.base_url
    self_pairs = kept + ([(_CURSOR, q.cursor)] if q.cursor else [])
    links = [{"relation": "self", "url": f"{base}?{urlencode(self_pairs)}"}]
    if page.more and page.matches:
        last = page.matches[-1]
        cursor = page.next_cursor or f"{last.rtype}/{last.rid}"
        links.append({"relation": "next", "url": f"{base}?{urlencode(kept + [(_CURSOR, cursor)])}"})
    return links


async def run(hub: Any, req: Request, q: Query, path: str, pairs: list[tuple[str, str]]) -> Response:
    """Answer a parsed query with a searchset Bundle."""
    count = hub.settings.default_count if q.count is None else q.count
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if q.summary == "count":
        bundle["total"] = await _total(hub, q)
        bundle["link"] = _links(req, path, q, pairs, count, _Page())
        return Response(200, dumps(bundle, req.param("_pretty") == "true"), [CONTENT_TYPE_HEADER])
    page = _Page()
    if count > 0:
        await _matches(hub, q, page, count)
        if q.includes:
            await _includes(hub, q, page)
    if q.total in ("accurate", "estimate") or (count == 0 and q.total != "none"):
        bundle["total"] = await _total(hub, q)
    elif not page.more and q.cursor is None and q.total != "none":
        bundle["total"] = len(page.matches)  # the whole result is on this page: the total is free
    bundle["link"] = _links(req, path, q, pairs, count, page)
    entries = [_entry(req, q, v, "match") for v in page.matches]
    matched = {(v.rtype, v.rid) for v in page.matches}
    entries.extend(_entry(req, q, v, "include") for key, v in page.included.items() if key not in matched)
    entries.extend({"resource": o, "search": {"mode": "outcome"}} for o in page.outcomes)
    if entries:  # FHIR JSON has no empty arrays
        bundle["entry"] = entries
    return Response(200, dumps(bundle, req.param("_pretty") == "true"), [CONTENT_TYPE_HEADER])


async def _mpi_pairs(hub: Any, types: list[str], pairs: list[tuple[str, str]], base_url: str) -> list[tuple[str, str]]:
    """``:mpi`` reference parameters expanded to every record of the person (reconciliation on)."""
    from fhir_hub.mpi import expand  # only with FHIR_HUB_MPI=on

    return await expand.expand_pairs(hub.store, types, pairs, base_url)


async def handle_search(hub: Any, req: Request, rtype: str) -> Response:
    check_type(rtype)
    pairs = _pairs(req)
    asked = await _mpi_pairs(hub, [rtype], pairs, req.base_url) if hub.settings.mpi else pairs
    q = parse([rtype], asked, base_url=req.base_url, strict=_strict(req), max_count=hub.settings.max_count)
    return await run(hub, req, q, rtype, pairs)


async def handle_system_search(hub: Any, req: Request) -> Response:
    """``GET [base]?_type=A,B&...``: only parameters common to the types apply."""
    pairs = _pairs(req)
    types: list[str] = []
    for name, raw in pairs:
        if name == "_type":
            for t in raw.split(","):
                check_type(t.strip())
                types.append(t.strip())
    if not types:
        raise FhirError(400, error("not-supported", "a system-level search needs _type (searching every type at "
                                   "once is not supported)", "_type"))
    types = sorted(set(types))
    asked = await _mpi_pairs(hub, types, pairs, req.base_url) if hub.settings.mpi else pairs
    q = parse(types, asked, base_url=req.base_url, strict=_strict(req), max_count=hub.settings.max_count)
    return await run(hub, req, q, "", pairs)


async def handle_compartment_search(hub: Any, req: Request, ctype: str, cid: str, rtype: str) -> Response:
    """``GET Patient/123/Observation?...`` (or ``*`` for every type in the compartment)."""
    check_type(ctype)
    check_id(cid)
    members = definitions.compartments().get(ctype)
    if members is None:
        raise FhirError(404, error("not-found", f"{ctype} has no compartment"))
    if rtype == "*":
        types = sorted(t for t, params in members.items() if params)
    else:
        check_type(rtype)
        if not members.get(rtype):
            raise FhirError(400, error("invalid", f"{rtype} resources are never in a {ctype} compartment"))
        types = [rtype]
    pairs = _pairs(req)
    asked = await _mpi_pairs(hub, types, pairs, req.base_url) if hub.settings.mpi else pairs
    q = parse(types, asked, base_url=req.base_url, strict=_strict(req), max_count=hub.settings.max_count)
    q = replace(q, compartment=(ctype, cid))
    if hub.settings.mpi and ctype == "Patient":  # a golden record's compartment is its sources' too
        from fhir_hub.mpi import expand

        q = replace(q, compartment_also=(await expand.linked(hub.store, cid))[1:])
    return await run(hub, req, q, f"{ctype}/{cid}/{rtype}", pairs)
