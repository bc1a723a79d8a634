"""The HTTP wire: request and response values, content negotiation, JSON bytes, outcomes.

Kept free of any framework so that the hot paths (read, vread, 304) do no more than parse the
path, run one query and send the stored bytes with precomputed headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache
from typing import Any

import orjson

from fhir_hub.errors import FhirError, Issue, error, outcome

FHIR_JSON = b"application/fhir+json; charset=utf-8"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir", "text/json")
_FORMAT_ALIASES = {"json": "application/fhir+json", "application/fhir+json": "application/fhir+json",
                   "application/json": "application/fhir+json", "application/json+fhir": "application/fhir+json",
                   "text/json": "application/fhir+json"}
_XML_TYPES = ("xml", "application/fhir+xml", "application/xml", "text/xml", "application/xml+fhir")

CONTENT_TYPE_HEADER = (b"content-type", FHIR_JSON)


@dataclass(slots=True)
class Request:
    """One FHIR interaction request, already split into the parts the handlers use."""

    method: str
    #: Path segments after the FHIR base, e.g. ``["Patient", "123", "_history", "2"]``.
    segments: list[str]
    #: Query parameters in order, percent-decoded.
    query: list[tuple[str, str]]
    #: Lower-cased header names; a repeated header keeps its last value.
    headers: dict[str, str]
    body: bytes
    #: Absolute base of the FHIR API as seen by the client, without trailing slash.
    base_url: str
    #: The query string as sent, for self links.
    raw_query: str = ""

    def param(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def dumps(value: Any, pretty: bool = False) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 if pretty else 0)


def outcome_response(exc: FhirError, pretty: bool = False) -> Response:
    headers = [CONTENT_TYPE_HEADER]
    headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items())
    return Response(exc.status, dumps(exc.outcome(), pretty), headers)


def information(text: str) -> bytes:
    return dumps(outcome([Issue("information", "informational", text)]))


def etag(vid: int) -> bytes:
    return b'W/"%d"' % vid


def http_date(ts_us: int) -> bytes:
    return _http_date_of_second(ts_us // 1_000_000)


@lru_cache(maxsize=4096)
def _http_date_of_second(seconds: int) -> bytes:
    """HTTP dates have whole seconds, and a bundle's versions share one: format each second once."""
    return formatdate(seconds, usegmt=True).encode("ascii")


def parse_http_date(text: str) -> int | None:
    """µs since the epoch, or ``None`` when the date cannot be read (the header is then ignored)."""
    try:
        return int(parsedate_to_datetime(text).timestamp() * 1_000_000)
    except (TypeError, ValueError, IndexError):
        return None


def check_accept(req: Request) -> None:
    """406 unless the client accepts FHIR JSON (``_format`` wins over ``Accept``)."""
    fmt = req.param("_format")
    if fmt is not None:
        if fmt.split(";")[0].strip() in _FORMAT_ALIASES:
            return
        raise FhirError(406, error("not-supported", f"_format {fmt!r} is not supported; this server speaks "
                                   "application/fhir+json", "_format"))
    accept = req.headers.get("accept")
    if not accept:
        return
    for part in accept.split(","):
        mime = part.split(";")[0].strip().lower()
        if mime in JSON_TYPES or mime in ("*/*", "application/*", "") or mime.endswith("+json"):
            return
    raise FhirError(406, error("not-supported", f"cannot answer in any of Accept: {accept}; this server "
                               "speaks application/fhir+json"))


def require_json_body(req: Request, allowed: tuple[str, ...] = JSON_TYPES) -> None:
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in allowed:
        if any(x in ctype for x in _XML_TYPES):
            detail = "XML is not supported"
        else:
            detail = f"Content-Type {ctype or '(none)'!r} is not supported"
        raise FhirError(415, error("not-supported", f"{detail}; send one of {', '.join(allowed)}"))


def parse_json(body: bytes, what: str = "request body") -> Any:
    if not body:
        raise FhirError(400, error("invalid", f"the {what} is empty"))
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FhirError(400, error("structure", f"the {what} is not valid JSON: {exc}")) from None


def pretty(req: Request) -> bool:
    return req.param("_pretty") == "true"
