"""Building responses around stored versions: headers from the version, body as stored.

The version row already holds the exact JSON bytes with ``meta``; a plain read sends them as
they are. Only ``_pretty``, ``_summary`` and ``_elements`` make the server parse and re-serialise.
"""

from __future__ import annotations

import orjson

from fhir_hub.errors import FhirError, error
from fhir_hub.rest import elements
from fhir_hub.rest.wire import CONTENT_TYPE_HEADER, Request, dumps, etag, http_date
from fhir_hub.storage.port import StoredVersion


def version_headers(v: StoredVersion) -> list[tuple[bytes, bytes]]:
    return [CONTENT_TYPE_HEADER, (b"etag", etag(v.vid)), (b"last-modified", http_date(v.ts))]


def location(base_url: str, v: StoredVersion) -> bytes:
    return f"{base_url}/{v.rtype}/{v.rid}/_history/{v.vid}".encode()


def body_for(req: Request, body: bytes) -> bytes:
    """The stored bytes, transformed only when the request asks for it."""
    if not req.query:
        return body
    summary = req.param("_summary")
    fields = req.param("_elements")
    is_pretty = req.param("_pretty") == "true"
    if summary is None and fields is None and not is_pretty:
        return body
    resource = orjson.loads(body)
    if summary is not None and fields is not None:
        raise FhirError(400, error("invalid", "_summary and _elements cannot be combined", "_summary"))
    if summary is not None:
        resource = elements.summary(resource, summary)
    elif fields is not None:
        resource = elements.only(resource, [f.strip() for f in fields.split(",") if f.strip()])
    return dumps(resource, is_pretty)


def prefer_return(req: Request, default: str = "representation") -> str:
    """``minimal`` | ``representation`` | ``OperationOutcome`` from the ``Prefer`` header."""
    prefer = req.headers.get("prefer", "")
    for part in prefer.split(","):
        part = part.strip()
        if part.startswith("return="):
            value = part[len("return="):].strip().strip('"')
            if value in ("minimal", "representation", "OperationOutcome"):
                return value
    return default
