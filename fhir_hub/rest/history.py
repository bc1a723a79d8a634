"""History at instance, type and system level (http.html#history).

Newest first. Pages are cut by a keyset cursor on the store's global change order, so a ``next``
link stays valid across restarts and is not shifted by writes that happen while a client pages.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_hub.errors import FhirError, error
from fhir_hub.rest.wire import CONTENT_TYPE_HEADER, Request, Response, dumps, http_date
from fhir_hub.rest.write import check_id, check_type
from fhir_hub.search.dates import instant, period
from fhir_hub.storage.port import HistoryQuery, StoredVersion

_CURSOR = "_cursor"
_KNOWN = {"_since", "_at", "_count", _CURSOR, "_format", "_pretty", "_total", "_summary", "_elements"}


def _query(hub: Any, req: Request, rtype: str | None, rid: str | None) -> HistoryQuery:
    since = at = before = None
    count = hub.settings.default_count
    for name, value in req.query:
        if name == "_since":
            p = period(value)
            if p is None:
                raise FhirError(400, error("invalid", f"_since {value!r} is not an instant", "_since"))
            since = p[0]
        elif name == "_at":
            at = period(value)
            if at is None:
                raise FhirError(400, error("invalid", f"_at {value!r} is not a date or dateTime", "_at"))
        elif name == "_count":
            if not value.isdigit():
                raise FhirError(400, error("invalid", f"_count {value!r} is not a non-negative integer", "_count"))
            count = min(int(value), hub.settings.max_count)
        elif name == _CURSOR:
            if not value.isdigit():
                raise FhirError(400, error("invalid", "the paging cursor is not valid", _CURSOR))
            before = int(value)
        elif name not in _KNOWN and req.headers.get("prefer", "").find("handling=strict") >= 0:
            raise FhirError(400, error("not-supported", f"history does not know the parameter {name!r}", name))
    return HistoryQuery(rtype, rid, since, at, before, count)


def _entry(base_url: str, v: StoredVersion) -> dict[str, Any]:
    full_url = f"{base_url}/{v.rtype}/{v.rid}"
    entry: dict[str, Any] = {"fullUrl": full_url}
    if v.body is not None:
        entry["resource"] = orjson.Fragment(v.body)
    if v.method == "DELETE":
        request = {"method": "DELETE", "url": f"{v.rtype}/{v.rid}"}
        status = "204 No Content"
    elif v.method == "POST":
        request = {"method": "POST", "url": v.rtype}
        status = "201 Created"
    else:
        request = {"method": v.method, "url": f"{v.rtype}/{v.rid}"}
        status = "201 Created" if v.vid == 1 else "200 OK"
    entry["request"] = request
    entry["response"] = {
        "status": status,
        "etag": f'W/"{v.vid}"',
        "lastModified": instant(v.ts),
    }
    return entry


def _link(base: str, q: HistoryQuery, req: Request, cursor: int | None) -> str:
    params = [(k, v) for k, v in req.query if k not in (_CURSOR, "_count")]
    params.append(("_count", str(q.count)))
    if cursor is not None:
        params.append((_CURSOR, str(cursor)))
    return f"{base}?{urlencode(params)}"


async def handle_history(hub: Any, req: Request, rtype: str | None = None, rid: str | None = None) -> Response:
    if rtype is not None:
        check_type(rtype)
    if rid is not None:
        check_id(rid)
    q = _query(hub, req, rtype, rid)
    versions = await hub.store.history(HistoryQuery(q.rtype, q.rid, q.since, q.at, q.before_seq, q.count + 1))
    more = len(versions) > q.count
    versions = versions[: q.count]
    if rid is not None and not versions and q.before_seq is None and q.since is None and q.at is None:
        raise FhirError(404, error("not-found", f"{rtype}/{rid} is not known"))
    path = "/".join(p for p in (rtype, rid) if p) + ("/_history" if rtype else "_history")
    base = f"{req.base_url}/{path}"
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history"}
    if req.param("_total") == "accurate":
        bundle["total"] = await hub.store.history_total(q)
    links = [{"relation": "self", "url": _link(base, q, req, q.before_seq)}]
    if more and versions:
        links.append({"relation": "next", "url": _link(base, q, req, versions[-1].seq)})
    bundle["link"] = links
    if versions:  # FHIR JSON has no empty arrays: no versions, no entry element
        bundle["entry"] = [_entry(req.base_url, v) for v in versions]
    headers = [CONTENT_TYPE_HEADER]
    if versions:
        headers.append((b"last-modified", http_date(versions[0].ts)))
    return Response(200, dumps(bundle, req.param("_pretty") == "true"), headers)
