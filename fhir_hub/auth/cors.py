"""CORS for registered origins only: a browser app may call the FHIR API and the token endpoint
from the origin of one of its registered redirect URIs, and from nowhere else.

An allowed origin gets ``Access-Control-Allow-Origin`` naming it (never ``*``, never with
credentials: tokens travel in the ``Authorization`` header, not cookies) and the headers a FHIR
client reads exposed; a preflight from it is answered 204 without a token, as browsers send
none. Any other origin gets no CORS header (the browser withholds the answer from the page)
and its preflight is a 403 OperationOutcome. The registered origins are read again at most
once a second, so a ``fhir-hub clients`` change reaches a running server at once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from fhir_hub.errors import FhirError, error
from fhir_hub.rest.wire import Response

_METHODS = b"GET, HEAD, POST, PUT, PATCH, DELETE"
_HEADERS = b"Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Match, If-None-Exist, If-Modified-Since"
_EXPOSE = b"Location, Content-Location, ETag, Last-Modified, WWW-Authenticate"
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?$")


def origin_of(uri: str) -> str | None:
    """``scheme://host[:port]`` of an http(s) URI, lower-cased, or ``None``."""
    parts = urlsplit(uri)
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    return origin if _ORIGIN.match(origin) else None


def origins(redirect_uris: Iterable[str]) -> frozenset[str]:
    return frozenset(o for u in redirect_uris if (o := origin_of(u)) is not None)


class Cors:
    """The allowed origins (from the registered clients) and the headers they get."""

    def __init__(self, registered: Callable[[], Iterable[str]], ttl: float = 1.0):
        #: Every registered redirect URI.
        self._registered = registered
        self._ttl = ttl
        self._allowed: frozenset[str] = frozenset()
        self._read = float("-inf")

    def allowed(self, origin: str) -> bool:
        now = time.monotonic()
        if now - self._read >= self._ttl:
            self._allowed = origins(self._registered())
            self._read = now
        return origin.lower() in self._allowed

    def preflight(self, headers: dict[str, str]) -> Response:
        origin = headers.get("origin", "")
        if not self.allowed(origin):
            raise FhirError(403, error("forbidden", f"the origin {origin!r} is not the origin of a registered "
                                       "client's redirect URI", "Origin"))
        return Response(204, b"", [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin"),
                                   (b"access-control-allow-methods", _METHODS),
                                   (b"access-control-allow-headers", _HEADERS),
                                   (b"access-control-max-age", b"600")])

    def apply(self, headers: dict[str, str], response: Response) -> Response:
        """``response`` with the CORS headers when the request's origin is allowed."""
        origin = headers.get("origin")
        if origin is None or not self.allowed(origin) or \
                any(k == b"access-control-allow-origin" for k, _ in response.headers):  # a preflight's own
            return response
        return Response(response.status, response.body, [*response.headers, (b"access-control-allow-origin",
                        origin.encode()), (b"vary", b"Origin"), (b"access-control-expose-headers", _EXPOSE)])


__all__ = ["Cors", "origin_of", "origins"]
