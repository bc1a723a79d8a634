"""Type-level search — the first slice: token parameters and ``_id`` (search.html).

Until the search issue lands the full parameter set, a parameter this server cannot evaluate is
refused with a 400 naming it, never ignored: ignoring would answer with too many resources.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_hub.errors import FhirError, error
from fhir_hub.rest.wire import CONTENT_TYPE_HEADER, Request, Response, dumps
from fhir_hub.rest.write import check_type
from fhir_hub.search.tokens import parse_criteria

_RESULT_PARAMS = {"_count", "_format", "_pretty"}


async def handle_search(hub: Any, req: Request, rtype: str) -> Response:
    check_type(rtype)
    query = list(req.query)
    if req.method == "POST":
        ctype = req.headers.get("content-type", "").split(";")[0].strip()
        if ctype != "application/x-www-form-urlencoded":
            raise FhirError(415, error("not-supported", "POST _search needs an application/x-www-form-urlencoded body"))
        query.extend(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
    count = hub.settings.default_count
    criteria_pairs = []
    for name, value in query:
        if name == "_count":
            if not value.isdigit():
                raise FhirError(400, error("invalid", f"_count {value!r} is not a non-negative integer", "_count"))
            count = min(int(value), hub.settings.max_count)
        elif name not in _RESULT_PARAMS:
            criteria_pairs.append((name, value))
    entries: list[dict[str, Any]] = []
    if criteria_pairs:
        criteria = parse_criteria(rtype, criteria_pairs, "search")
        ids = await hub.store.find(rtype, criteria, count)
    else:
        raise FhirError(400, error("not-supported", "searching without criteria is not supported yet; give a token "
                                   "parameter or _id"))
    for rid in ids:
        v = await hub.store.read(rtype, rid)
        if v is not None and v.body is not None:
            entries.append({"fullUrl": f"{req.base_url}/{rtype}/{rid}", "resource": orjson.Fragment(v.body),
                            "search": {"mode": "match"}})
    self_url = f"{req.base_url}/{rtype}" + (f"?{req.raw_query}" if req.raw_query else "")
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                              "link": [{"relation": "self", "url": self_url}]}
    if entries:  # FHIR JSON has no empty arrays
        bundle["entry"] = entries
    return Response(200, dumps(bundle, req.param("_pretty") == "true"), [CONTENT_TYPE_HEADER])
