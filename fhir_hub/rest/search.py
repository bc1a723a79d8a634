"""Type-level search — the first slice: token parameters and ``_id`` (search.html).

Until the search issue lands the full parameter set, a parameter this server cannot evaluate is
refused with a 400 naming it, never ignored: ignoring would answer with too many resources.
Results come in id order and are paged with a keyset cursor, so a ``next`` link survives
restarts and is not shifted by concurrent writes; without criteria, every live resource of the
type is listed.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from fhir_hub.errors import FhirError, error
from fhir_hub.rest.wire import CONTENT_TYPE_HEADER, Request, Response, dumps
from fhir_hub.rest.write import check_type
from fhir_hub.search.tokens import parse_criteria

_RESULT_PARAMS = {"_count", "_format", "_pretty"}
#: Keyset cursor of ``next`` links: results come in id order, a page starts after this id.
_CURSOR = "_cursor"


async def handle_search(hub: Any, req: Request, rtype: str) -> Response:
    check_type(rtype)
    query = list(req.query)
    if req.method == "POST":
        ctype = req.headers.get("content-type", "").split(";")[0].strip()
        if ctype != "application/x-www-form-urlencoded":
            raise FhirError(415, error("not-supported", "POST _search needs an application/x-www-form-urlencoded body"))
        query.extend(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
    count = hub.settings.default_count
    after: str | None = None
    criteria_pairs = []
    for name, value in query:
        if name == "_count":
            if not value.isdigit():
                raise FhirError(400, error("invalid", f"_count {value!r} is not a non-negative integer", "_count"))
            count = min(int(value), hub.settings.max_count)
        elif name == _CURSOR:
            after = value
        elif name not in _RESULT_PARAMS:
            criteria_pairs.append((name, value))
    criteria = parse_criteria(rtype, criteria_pairs, "search") if criteria_pairs else []
    ids = await hub.store.find(rtype, criteria, count + 1, after)
    more = len(ids) > count
    ids = ids[:count]
    entries: list[dict[str, Any]] = []
    for rid in ids:
        v = await hub.store.read(rtype, rid)
        if v is not None and v.body is not None:
            entries.append({"fullUrl": f"{req.base_url}/{rtype}/{rid}", "resource": orjson.Fragment(v.body),
                            "search": {"mode": "match"}})
    base = f"{req.base_url}/{rtype}"
    kept = [(k, v) for k, v in query if k not in (_CURSOR, "_count")] + [("_count", str(count))]
    links = [{"relation": "self", "url": f"{base}?{urlencode(kept + ([(_CURSOR, after)] if after else []))}"}]
    if more and ids:
        links.append({"relation": "next", "url": f"{base}?{urlencode(kept + [(_CURSOR, ids[-1])])}"})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": links}
    if entries:  # FHIR JSON has no empty arrays
        bundle["entry"] = entries
    return Response(200, dumps(bundle, req.param("_pretty") == "true"), [CONTENT_TYPE_HEADER])
