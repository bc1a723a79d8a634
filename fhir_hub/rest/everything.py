"""``Patient/[id]/$everything`` and ``Patient/$everything`` (patient-operation-everything).

The answer is the patient, every resource in the patient's compartment (per the R4 Patient
CompartmentDefinition) and the resources those point at (practitioners, organizations,
medications, locations...). It is paged by a keyset over ``Type/id``, so a ``next`` link stays
valid across restarts; each page recomputes the member set, which for a patient is a few
indexed lookups per compartment type.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_hub import definitions
from fhir_hub.errors import FhirError, error
from fhir_hub.rest.wire import CONTENT_TYPE_HEADER, Request, Response, dumps
from fhir_hub.rest.write import check_id
from fhir_hub.search import dates, parameters
from fhir_hub.search.query import Clause, Criterion, DateValue, ReferenceValue

#: Most patients the type-level operation covers in one request.
MAX_PATIENTS = 50


def _params(req: Request) -> tuple[int | None, set[str] | None, int, str | None]:
    since = None
    types: set[str] | None = None
    count = 0
    cursor = None
    for name, raw in req.query:
        if name == "_since":
            span = dates.period(raw)
            if span is None:
                raise FhirError(400, error("invalid", f"_since {raw!r} is not an instant", "_since"))
            since = span[0]
        elif name == "_type":
            types = {t.strip() for t in raw.split(",") if t.strip()}
            bad = [t for t in types if not definitions.is_resource_type(t)]
            if bad:
                raise FhirError(400, error("invalid", f"_type names unknown resource type {bad[0]!r}", "_type"))
        elif name == "_count":
            if not raw.isdigit():
                raise FhirError(400, error("invalid", f"_count {raw!r} is not a non-negative integer", "_count"))
            count = int(raw)
        elif name == "_cursor":
            cursor = raw
    return since, types, count, cursor


async def _members(hub: Any, pid: str, since: int | None, types: set[str] | None) -> set[tuple[str, str]]:
    """``(type, id)`` of the patient, its compartment and what the compartment references."""
    extra: list[Criterion] = []
    if since is not None:
        extra.append(Clause("_lastUpdated", "date", (DateValue("ge", since, since),)))
    found: set[tuple[str, str]] = set()
    if await hub.store.find("Patient", extra, 1, None, (pid,)):
        found.add(("Patient", pid))
    target = (ReferenceValue(f"Patient/{pid}"),)
    for rtype, params in definitions.compartments()["Patient"].items():
        for param in params:
            if parameters.lookup(rtype, param) is None:
                continue
            ids = await hub.store.find(rtype, [Clause(param, "reference", target), *extra], 100_000)
            found.update((rtype, rid) for rid in ids)
    by_type: dict[str, list[str]] = {}
    for rtype, rid in found:
        by_type.setdefault(rtype, []).append(rid)
    for rtype, rids in by_type.items():
        for _rid, _param, ref in await hub.store.references(rtype, rids):
            ttype, _, tid = ref.partition("/")
            if definitions.is_resource_type(ttype) and "/" not in tid and ttype != "Patient":
                found.add((ttype, tid))
    if types is not None:
        found = {m for m in found if m[0] in types}
    return found


async def handle_everything(hub: Any, req: Request, pid: str | None) -> Response:
    since, types, count, cursor = _params(req)
    count = min(count or hub.settings.default_count, hub.settings.max_count)
    if pid is not None:
        check_id(pid)
        found = await hub.store.read("Patient", pid)
        if found is None:
            raise FhirError(404, error("not-found", f"Patient/{pid} is not known"))
        pids = [pid]
        if hub.settings.mpi and found.body is not None:  # a golden record: its sources' data too
            from fhir_hub.mpi import expand

            pids = list(expand.members(pid, orjson.loads(found.body)))
    else:
        pids = await hub.store.find("Patient", [], MAX_PATIENTS + 1)
        if len(pids) > MAX_PATIENTS:
            raise FhirError(400, error("too-costly", f"Patient/$everything covers at most {MAX_PATIENTS} patients "
                                       "per request; ask per patient (Patient/[id]/$everything)"))
    members: set[tuple[str, str]] = set()
    for p in pids:
        members |= await _members(hub, p, since, types)
    ordered = sorted(members)
    if cursor:
        after = tuple(cursor.split("/", 1))
        ordered = [m for m in ordered if m > after]
    page, more = ordered[:count], len(ordered) > count
    entries: list[dict[str, Any]] = []
    by_type: dict[str, list[str]] = {}
    for rtype, rid in page:
        by_type.setdefault(rtype, []).append(rid)
    versions = {}
    for rtype, rids in by_type.items():
        for v in await hub.store.read_many(rtype, rids):
            versions[(rtype, v.rid)] = v
    for key in page:
        v = versions.get(key)
        if v is not None and v.body is not None:
            entries.append({"fullUrl": f"{req.base_url}/{key[0]}/{key[1]}", "resource": orjson.Fragment(v.body),
                            "search": {"mode": "match"}})
    path = f"{req.base_url}/Patient/{pid}/$everything" if pid else f"{req.base_url}/Patient/$everything"
    kept = [(k, v) for k, v in req.query if k not in ("_cursor", "_count")] + [("_count", str(count))]
    links = [{"relation": "self", "url": f"{path}?{urlencode(kept + ([('_cursor', cursor)] if cursor else []))}"}]
    if more and page:
        links.append({"relation": "next", "url": f"{path}?{urlencode(kept + [('_cursor', '/'.join(page[-1]))])}"})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(members), "link": links}
    if entries:
        bundle["entry"] = entries
    return Response(200, dumps(bundle, req.param("_pretty") == "true"), [CONTENT_TYPE_HEADER])
