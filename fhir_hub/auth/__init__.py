"""SMART on FHIR: the authorization server and the enforcement point, on when ``FHIR_HUB_AUTH=smart``.

* ``scopes.py``: SMART v1/v2 scope parsing (pure);
* ``storage.py``: the ``auth_*`` tables in the store's SQLite file (clients, users, codes,
  refresh tokens, revocations, signing keys);
* ``keys.py``: signing keys and the JWTs the server signs;
* ``server.py``: ``.well-known/smart-configuration`` and the ``/auth/*`` endpoints;
* ``pages.py``: the login and consent pages (Vietnamese, English);
* ``enforce.py``: the check every FHIR request passes before dispatch;
* ``audit.py``: an AuditEvent (IHE BALP-shaped) per access, with ``FHIR_HUB_AUDIT=access``;
* ``limits.py``: per-client rate limits weighted by cost (``FHIR_HUB_RATE_LIMIT``);
* ``cors.py``: CORS for the origins of registered redirect URIs only;
* ``demo/``: the demo citizen app (static pages on ``fhirclient``), served under ``/auth/demo/``.

With auth off (the default) none of this is imported and the server runs open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_hub.auth import demo
from fhir_hub.auth.audit import Auditor, access_event, now
from fhir_hub.auth.cors import Cors
from fhir_hub.auth.enforce import Enforcer
from fhir_hub.auth.keys import Keys
from fhir_hub.auth.limits import RateLimits
from fhir_hub.auth.server import AuthServer, auth_base
from fhir_hub.auth.storage import AuthStore
from fhir_hub.config import Settings
from fhir_hub.rest.wire import Request, Response


def _not_open(req: Request) -> Request | None:
    return None  # before open() and after close(): enforce() answers (and asserts)


OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


class Auth:
    """The authorization server and the enforcement point over one store file."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.base_path = settings.base_path.rstrip("/")
        self._store: AuthStore | None = None
        self._server: AuthServer | None = None
        self._enforcer: Enforcer | None = None
        self._cors: Cors | None = None
        if settings.audit not in ("off", "access"):  # a typo must not leave accesses unrecorded
            raise ValueError(f"FHIR_HUB_AUDIT: expected off or access, got {settings.audit!r}")
        self._auditor: Auditor | None = None
        #: Decided once: ``after`` runs on every answer. The app may skip :meth:`after` for an answer
        #: when this is false and the request has no ``Origin`` (it would return the answer as it is).
        self.audits = self._audit_on = settings.audit == "access"
        #: The enforcement point's quick path (:meth:`Enforcer.quick`), for the app to try before
        #: awaiting :meth:`enforce` (a read by id decided before then needs no coroutine): the
        #: request to dispatch, or ``None`` (then :meth:`enforce`). Bound by :meth:`open`.
        self.quick: Callable[[Request], Request | None] = _not_open
        self._fhir_prefix = self.base_path + "/"
        self._discovery = f"{self.base_path}/.well-known/smart-configuration"

    def open(self) -> None:
        """Open the tables (after the FHIR store created the file) and load or make the signing key."""
        if self._store is None:
            self._store = AuthStore(self.settings.db)
            keys = Keys(self._store)
            revoked: set[str] = set()
            self._server = AuthServer(self._store, keys, self.base_path, revoked)
            limits = RateLimits(self.settings.rate_limit) if self.settings.rate_limit > 0 else None
            self._enforcer = Enforcer(self._store, keys, self.base_path, revoked, limits)
            self.quick = self._enforcer.quick
            store = self._store
            self._cors = Cors(lambda: [u for c in store.clients() for u in c.redirect_uris])

    async def close(self) -> None:
        """Write the buffered AuditEvents (the FHIR store is still open), then close the tables."""
        if self._auditor is not None:
            await self._auditor.close()
            self._auditor = None
        if self._store is not None:
            self._store.close()
            self._store = self._server = self._enforcer = self._cors = None
            self.quick = _not_open

    def handles(self, path: str) -> bool:
        return path.startswith("/auth/") or path == self._discovery

    async def endpoint(self, method: str, path: str, headers: dict[str, str], raw_query: str, body: bytes,
                       fhir_base: str) -> Response:
        assert self._server is not None, "Auth.open() first"
        if path.startswith("/auth/demo/") and method in ("GET", "HEAD"):
            page = demo.serve(self.settings, path[len("/auth/demo/"):], fhir_base)
            if page is not None:
                return page
        return await self._server.handle(method, path, headers, raw_query, body, fhir_base)

    def preflight(self, headers: dict[str, str]) -> Response:
        """A CORS preflight (``OPTIONS`` with ``Access-Control-Request-Method``): 204 or 403."""
        assert self._cors is not None, "Auth.open() first"
        return self._cors.preflight(headers)

    def after(self, hub: Any, method: str, path: str, scope: dict[str, Any], headers: dict[str, str],
              response: Response) -> Response:
        """What every answer passes on its way out: its AuditEvent (FHIR interactions, with
        ``FHIR_HUB_AUDIT=access``) and CORS headers when the request's ``Origin`` is registered."""
        if self._enforcer is None or self._cors is None:
            return response
        if self._audit_on and (path == self.base_path or path.startswith(self._fhir_prefix)):
            seg = [s for s in path[len(self.base_path):].split("/") if s]
            if seg != ["metadata"]:
                self._audit(hub, method, seg, scope, headers, response.status)
        return self._cors.apply(headers, response) if "origin" in headers else response

    def _audit(self, hub: Any, method: str, seg: list[str], scope: dict[str, Any], headers: dict[str, str],
               status: int) -> None:
        assert self._enforcer is not None
        if self._auditor is None:
            self._auditor = Auditor(hub.store)
        p = self._enforcer.peek(headers)
        client = scope.get("client")
        self._auditor.record(access_event(
            method=method, seg=seg, raw_query=scope.get("query_string", b"").decode("latin-1"), status=status,
            recorded=now(), client_id=p.client_id if p else None, jti=p.jti if p else None,
            patient=p.patient if p else None, address=str(client[0]) if client else None))

    async def enforce(self, hub: Any, req: Request) -> Request:
        enforcer = self._enforcer
        assert enforcer is not None, "Auth.open() first"
        quick = enforcer.quick(req)  # a read by id decided before: no coroutine of its own
        return quick if quick is not None else await enforcer.check(hub, req)

    def security(self, fhir_base: str) -> dict[str, Any]:
        """The CapabilityStatement's ``rest.security`` (SMART App Launch, conformance)."""
        base = auth_base(fhir_base, self.base_path)
        return {
            "cors": True,
            "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                     "code": "SMART-on-FHIR"}],
                         "text": "OAuth2 with the SMART App Launch 2.2 profile"}],
            "extension": [{"url": OAUTH_URIS, "extension": [
                {"url": "authorize", "valueUri": f"{base}/authorize"},
                {"url": "token", "valueUri": f"{base}/token"},
                {"url": "introspect", "valueUri": f"{base}/introspect"},
                {"url": "revoke", "valueUri": f"{base}/revoke"},
            ]}],
            "description": "Every interaction but /metadata needs a Bearer access token from this server's "
                           f"authorization server; see {fhir_base}/.well-known/smart-configuration.",
        }


__all__ = ["Auth"]
