"""Read and vread, with conditional read (http.html#read, #vread, #cread).

The hot path of the server: one prepared primary-key query, the stored bytes sent as they
are, ``ETag``/``Last-Modified`` from the version row, 304 without touching the body.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_hub.errors import FhirError, error, gone, not_found
from fhir_hub.rest.respond import body_for, version_headers
from fhir_hub.rest.wire import Request, Response, etag, parse_http_date
from fhir_hub.rest.write import check_id, check_type
from fhir_hub.storage.port import StoredVersion


def _not_modified(req: Request, v: StoredVersion) -> bool:
    inm = req.headers.get("if-none-match")
    if inm is not None:
        tag = etag(v.vid).decode()
        return any(t.strip() in (tag, tag[2:], "*") for t in inm.split(","))
    ims = req.headers.get("if-modified-since")
    if ims is not None:
        since = parse_http_date(ims)
        # HTTP dates have whole seconds: compare at that precision
        return since is not None and v.ts // 1_000_000 <= since // 1_000_000
    return False


def version_response(req: Request, v: StoredVersion) -> Response:
    headers = version_headers(v)
    if v.body is None:
        raise gone(f"{v.rtype}/{v.rid} was deleted (version {v.vid})",
                   {"ETag": etag(v.vid).decode(), "Last-Modified": headers[2][1].decode()})
    if _not_modified(req, v):
        return Response(304, b"", headers[1:])
    return Response(200, body_for(req, v.body), headers)


async def handle_read(hub: Any, req: Request, rtype: str, rid: str) -> Response:
    v = await hub.store.read(rtype, rid)
    if req.__class__ is not Request:  # the enforcement point's guard (fhir_hub/auth/enforce.py, GuardedRequest)
        admit: Callable[[StoredVersion | None], bool] | None = getattr(req, "admit", None)
        if admit is not None and not admit(v):
            raise not_found(f"{rtype}/{rid} is not known")  # as for a missing one: existence must not leak
    if v is None:
        check_type(rtype)
        check_id(rid)
        raise not_found(f"{rtype}/{rid} is not known")
    return version_response(req, v)


async def handle_vread(hub: Any, req: Request, rtype: str, rid: str, vid: str) -> Response:
    if not vid.isdigit():
        raise FhirError(404, error("not-found", f"{rtype}/{rid} has no version {vid!r} (versions are numbers)"))
    v = await hub.store.vread(rtype, rid, int(vid))
    if v is None:
        check_type(rtype)
        check_id(rid)
        raise not_found(f"{rtype}/{rid} has no version {vid}")
    return version_response(req, v)
