"""The authorization server: SMART App Launch 2.2 endpoints over the raw ASGI request.

* ``GET [fhir base]/.well-known/smart-configuration`` (app-launch.html#smart-configuration);
* ``/auth/authorize`` (GET and POST), then the login and consent forms (``/auth/login``,
  ``/auth/consent``): authorization code with PKCE S256 only (RFC 7636), registered redirect
  URIs compared exactly, ``aud`` compared with our FHIR base;
* ``/auth/token``: ``authorization_code`` (single-use codes, 60 s, verifier checked),
  ``refresh_token`` (rotation; a used refresh token presented again revokes its whole grant),
  ``client_credentials`` for Backend Services with ``private_key_jwt`` (RFC 7523; RS384/ES384,
  key by ``kid`` in the client's registered JWKS, ``exp`` at most 5 minutes ahead, ``jti`` once);
* ``/auth/introspect`` (RFC 7662), ``/auth/revoke`` (RFC 7009), ``/auth/jwks``.

The grant logic is written here rather than through authlib's ``AuthorizationServer``: that class
expects a framework request object and its JWT-bearer client check accepts assertions up to an
hour ahead and refuses RS384/ES384 by default — both against SMART. Nothing secret is logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import import_key
from joserfc.jws import extract_compact

from fhir_hub.auth import pages
from fhir_hub.auth.keys import ACCESS_TYP, InvalidToken, Keys
from fhir_hub.auth.limits import FailedLogins
from fhir_hub.auth.scopes import ScopeError, Scopes, narrow, parse_scope, parse_scopes
from fhir_hub.auth.storage import AuthStore, Client, digest
from fhir_hub.rest.wire import Response

CODE_TTL = 60
ACCESS_TTL = 3600
REFRESH_TTL = 30 * 86_400
FORM_TTL = 600
ASSERTION_MAX_AHEAD = 300
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = {"RS384": "RSA", "ES384": "EC"}
_AUTHORIZE_TYP = "fhir-hub-authorize+jwt"
_CONSENT_TYP = "fhir-hub-consent+jwt"
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")

#: The SMART capabilities this server implements (and no other).
CAPABILITIES = ["launch-standalone", "authorize-post", "client-public", "client-confidential-asymmetric",
                "context-standalone-patient", "context-banner", "permission-patient", "permission-offline",
                "permission-v1", "permission-v2"]

_JSON = (b"content-type", b"application/json")
_NO_STORE = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]
_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'{}; frame-ancestors 'none'"
_HTML = [(b"content-type", b"text/html; charset=utf-8"), *_NO_STORE, (b"x-frame-options", b"DENY"),
         (b"content-security-policy", _CSP.format("").encode()), (b"referrer-policy", b"no-referrer")]


def _consent_headers(redirect_uri: str) -> list[tuple[bytes, bytes]]:
    """The consent page's headers: its form ends in a redirect to the app, which browsers hold to
    ``form-action`` too (Chromium blocks the submission otherwise), so the registered redirect
    URI's origin is allowed there besides ``'self'``."""
    parts = urlsplit(redirect_uri)
    plain = parts.scheme in ("http", "https") and re.fullmatch(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?", parts.netloc)
    allowed = f" {parts.scheme}://{parts.netloc}" if plain else ""  # nothing that could end the directive
    return [*(h for h in _HTML if h[0] != b"content-security-policy"),
            (b"content-security-policy", _CSP.format(allowed).encode())]


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400):
        self.error, self.description, self.status = error, description, status
        super().__init__(description)


def auth_base(fhir_base: str, base_path: str) -> str:
    """``http://host/auth`` for the FHIR base ``http://host/fhir``."""
    root = fhir_base[:-len(base_path)] if base_path and fhir_base.endswith(base_path) else fhir_base.rsplit("/", 1)[0]
    return root.rstrip("/") + "/auth"


def _json(status: int, value: Any, no_store: bool = True) -> Response:
    return Response(status, orjson.dumps(value), [_JSON, *(_NO_STORE if no_store else [])])


def _redirect(uri: str, params: dict[str, str]) -> Response:
    parts = urlsplit(uri)
    query = "&".join(p for p in (parts.query, urlencode(params)) if p)
    return Response(302, b"", [(b"location", urlunsplit(parts._replace(query=query)).encode()), *_NO_STORE])


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


class AuthServer:
    def __init__(self, store: AuthStore, keys: Keys, base_path: str, revoked: set[str]):
        self.store = store
        self.keys = keys
        self.base_path = base_path
        #: jtis revoked by this process (the enforcement point reads it; other processes poll the store).
        self.revoked = revoked
        #: Wrong passwords by national id: guessing one citizen's password is slowed to a crawl.
        self.failed_logins = FailedLogins()

    # --- routing --------------------------------------------------------------------------------

    async def handle(self, method: str, path: str, headers: dict[str, str], raw_query: str, body: bytes,
                     fhir_base: str) -> Response:
        base = auth_base(fhir_base, self.base_path)
        if path.endswith("/.well-known/smart-configuration"):
            if method not in ("GET", "HEAD"):
                return _json(405, {"error": "invalid_request", "error_description": "use GET"}, False)
            return _json(200, self.smart_configuration(fhir_base, base), False)
        name = path[len("/auth/"):]
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        form: dict[str, str] = {}
        if method == "POST":
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype != "application/x-www-form-urlencoded":
                return _json(400, {"error": "invalid_request",
                                   "error_description": "send an application/x-www-form-urlencoded body"})
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        lang = pages.language(form.get("lang") or query.get("lang"), headers.get("accept-language"))
        try:
            if name == "jwks" and method in ("GET", "HEAD"):
                return _json(200, self.keys.jwks(), False)
            if name == "authorize" and method in ("GET", "POST"):
                return self.authorize({**query, **form}, fhir_base, lang)
            if name == "login" and method == "POST":
                return self.login(form, lang)
            if name == "consent" and method == "POST":
                return self.consent(form, lang)
            if name == "token" and method == "POST":
                return self.token(form, base, fhir_base)
            if name == "introspect" and method == "POST":
                return self.introspect(form, headers, base, fhir_base)
            if name == "revoke" and method == "POST":
                return self.revoke(form, base)
        except OAuthError as exc:
            return _json(exc.status, {"error": exc.error, "error_description": exc.description})
        return _json(404, {"error": "invalid_request", "error_description": f"no endpoint {method} {path}"}, False)

    def smart_configuration(self, fhir_base: str, base: str) -> dict[str, Any]:
        return {
            "issuer": base,
            "jwks_uri": f"{base}/jwks",
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "introspection_endpoint": f"{base}/introspect",
            "revocation_endpoint": f"{base}/revoke",
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
            "token_endpoint_auth_signing_alg_values_supported": sorted(ASSERTION_ALGS),
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["launch/patient", "offline_access", "patient/*.rs", "patient/*.read",
                                 "system/*.cruds", "system/*.rs", "system/*.read", "system/*.write"],
            "capabilities": CAPABILITIES,
        }

    # --- authorize, login, consent ----------------------------------------------------------------

    def _page_error(self, lang: str, message: str) -> Response:
        return Response(400, pages.failure(lang, message), list(_HTML))

    def authorize(self, params: dict[str, str], fhir_base: str, lang: str) -> Response:
        client = self.store.client(params.get("client_id", ""))
        if client is None:
            return self._page_error(lang, "unknown client_id")
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:  # never redirect to an address not registered
            return self._page_error(lang, "redirect_uri is not registered for this client")
        state = params.get("state")

        def fail(err: str, description: str) -> Response:
            out = {"error": err, "error_description": description}
            if state is not None:
                out["state"] = state
            return _redirect(redirect_uri, out)

        if params.get("response_type") != "code":
            return fail("unsupported_response_type", "response_type must be code")
        if params.get("aud", "").rstrip("/") != fhir_base.rstrip("/"):
            return fail("invalid_request", f"aud must be this server's FHIR base {fhir_base}")
        method = params.get("code_challenge_method")
        challenge = params.get("code_challenge", "")
        if method is None or not challenge:
            return fail("invalid_request", "PKCE is required: code_challenge with code_challenge_method=S256")
        if method != "S256":
            return fail("invalid_request", "only code_challenge_method=S256 is supported")
        if not re.fullmatch(r"[A-Za-z0-9_-]{43}", challenge):
            return fail("invalid_request", "code_challenge must be the base64url SHA-256 of the verifier")
        try:
            requested = parse_scopes(params.get("scope", ""))
        except ScopeError as exc:
            return fail("invalid_scope", str(exc))
        granted = narrow(requested, _allowed(client), ("patient",))
        if not granted.resources:
            return fail("invalid_scope", "none of the requested resource scopes is allowed for this client")
        now = int(time.time())
        txn = self.keys.sign({"client_id": client.client_id, "redirect_uri": redirect_uri, "scope": str(granted),
                              "state": state, "challenge": challenge, "aud": fhir_base, "iat": now,
                              "exp": now + FORM_TTL}, _AUTHORIZE_TYP)
        return Response(200, pages.login(lang, txn), list(_HTML))

    def login(self, form: dict[str, str], lang: str) -> Response:
        try:
            txn = self.keys.verify(form.get("txn", ""), _AUTHORIZE_TYP)
        except InvalidToken:
            return self._page_error(lang, "this sign-in has expired; start again from the app")
        if form.get("switch"):
            return Response(200, pages.login(lang, form["txn"]), list(_HTML))
        national_id = form.get("national_id", "").strip()
        wait = self.failed_logins.locked(national_id)
        if wait:
            minutes = -(-wait // 60)
            message = (f"Đăng nhập sai quá nhiều lần: thử lại sau {minutes} phút" if lang == "vi" else
                       f"Too many wrong passwords: try again in {minutes} min")
            return Response(429, pages.failure(lang, message), [*_HTML, (b"retry-after", str(wait).encode())])
        user = self.store.login(national_id, form.get("password", ""))
        if user is None:
            self.failed_logins.failed(national_id)
            return Response(401, pages.login(lang, form["txn"], failed=True), list(_HTML))
        self.failed_logins.succeeded(national_id)
        now = int(time.time())
        signed = self.keys.sign({**txn, "user": user.national_id, "patient": user.patient, "iat": now,
                                 "exp": now + FORM_TTL}, _CONSENT_TYP)
        client = self.store.client(txn["client_id"])
        return Response(200, pages.consent(lang, signed, client.name if client else txn["client_id"],
                                           txn["scope"].split(), user.patient, user.name),
                        _consent_headers(txn["redirect_uri"]))

    def consent(self, form: dict[str, str], lang: str) -> Response:
        try:
            txn = self.keys.verify(form.get("txn", ""), _CONSENT_TYP)
        except InvalidToken:
            return self._page_error(lang, "this consent has expired; start again from the app")
        state = txn.get("state")
        extra = {"state": state} if state is not None else {}
        if form.get("decision") != "allow":
            return _redirect(txn["redirect_uri"], {"error": "access_denied",
                                                   "error_description": "the user denied access", **extra})
        code = secrets.token_urlsafe(32)
        grant = {k: txn[k] for k in ("client_id", "redirect_uri", "scope", "challenge", "aud", "patient", "user")}
        grant["family"] = uuid.uuid4().hex
        self.store.add_code(code, grant, int(time.time()) + CODE_TTL)
        return _redirect(txn["redirect_uri"], {"code": code, **extra})

    # --- token ------------------------------------------------------------------------------------

    def _client(self, form: dict[str, str], token_url: str) -> tuple[Client, bool]:
        """The calling client and whether it proved its identity with a signed assertion."""
        if "client_assertion" in form or "client_assertion_type" in form:
            return self._assertion_client(form, token_url), True
        client = self.store.client(form.get("client_id", ""))
        if client is None:
            raise OAuthError("invalid_client", "unknown client_id", 401)
        if client.jwks is not None:
            raise OAuthError("invalid_client", "this client must authenticate with private_key_jwt", 401)
        return client, False

    def _assertion_client(self, form: dict[str, str], token_url: str) -> Client:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise OAuthError("invalid_client", f"client_assertion_type must be {ASSERTION_TYPE}", 401)
        assertion = form.get("client_assertion", "")
        try:
            header = extract_compact(assertion.encode()).headers()
            unverified = orjson.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))
        except (JoseError, ValueError, IndexError, orjson.JSONDecodeError):
            raise OAuthError("invalid_client", "client_assertion is not a JWT", 401) from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ASSERTION_ALGS:
            raise OAuthError("invalid_client", f"client_assertion must be signed with {' or '.join(ASSERTION_ALGS)}",
                             401)
        if not isinstance(kid, str) or not kid:
            raise OAuthError("invalid_client", "client_assertion needs a kid header", 401)
        client_id = unverified.get("iss") if isinstance(unverified, dict) else None
        client = self.store.client(client_id) if isinstance(client_id, str) else None
        if client is None or client.jwks is None:
            raise OAuthError("invalid_client", "unknown client, or one without registered keys", 401)
        candidates = [k for k in client.jwks.get("keys", []) if isinstance(k, dict)
                      and k.get("kid") == kid and k.get("kty") == ASSERTION_ALGS[alg]]
        if len(candidates) != 1:
            raise OAuthError("invalid_client", "no single registered key matches the assertion's kid and type", 401)
        try:
            claims = jwt.decode(assertion, import_key(candidates[0]), algorithms=[alg]).claims
        except (JoseError, ValueError):
            raise OAuthError("invalid_client", "the client_assertion signature does not verify", 401) from None
        now = int(time.time())
        aud = claims.get("aud")
        exp = claims.get("exp")
        jti = claims.get("jti")
        if claims.get("sub") != client_id or claims.get("iss") != client_id:
            raise OAuthError("invalid_client", "client_assertion iss and sub must be the client_id", 401)
        if aud != token_url and not (isinstance(aud, list) and token_url in aud):
            raise OAuthError("invalid_client", f"client_assertion aud must be {token_url}", 401)
        if not isinstance(exp, int) or exp <= now:
            raise OAuthError("invalid_client", "client_assertion has expired", 401)
        if exp > now + ASSERTION_MAX_AHEAD:
            raise OAuthError("invalid_client", "client_assertion exp is more than 5 minutes ahead", 401)
        if not isinstance(jti, str) or not jti:
            raise OAuthError("invalid_client", "client_assertion needs a jti", 401)
        if not self.store.first_use_of_assertion(client.client_id, jti, exp):
            raise OAuthError("invalid_client", "client_assertion jti was already used", 401)
        return client

    def token(self, form: dict[str, str], base: str, fhir_base: str) -> Response:
        client, _authenticated = self._client(form, f"{base}/token")
        kind = form.get("grant_type")
        now = int(time.time())
        self.store.purge(now)
        if kind == "authorization_code":
            return self._code_grant(client, form, base, now)
        if kind == "refresh_token":
            return self._refresh_grant(client, form, base, now)
        if kind == "client_credentials":
            if client.jwks is None:
                raise OAuthError("unauthorized_client", "client_credentials needs a client with registered keys")
            if not _authenticated:
                raise OAuthError("invalid_client", "client_credentials needs a client_assertion", 401)
            try:
                requested = parse_scopes(form.get("scope", ""))
            except ScopeError as exc:
                raise OAuthError("invalid_scope", str(exc)) from None
            granted = narrow(requested, _allowed(client), ("system",))
            if not granted.resources:
                raise OAuthError("invalid_scope", "none of the requested system scopes is allowed for this client")
            access, expires = self._access(client.client_id, client.client_id, str(granted), None, None, fhir_base,
                                           base, now)
            return _json(200, {"access_token": access, "token_type": "Bearer", "expires_in": expires,
                               "scope": str(granted)})
        raise OAuthError("unsupported_grant_type", "grant_type must be authorization_code, refresh_token or "
                         "client_credentials")

    def _code_grant(self, client: Client, form: dict[str, str], base: str, now: int) -> Response:
        taken = self.store.take_code(form.get("code", ""))
        if taken is None:
            raise OAuthError("invalid_grant", "unknown authorization code")
        grant, expires, used = taken
        if used:  # RFC 6749 §4.1.2: a code used twice revokes what it gave
            self._revoke_family(grant["family"])
            raise OAuthError("invalid_grant", "the authorization code was already used; its tokens are revoked")
        if expires <= now:
            raise OAuthError("invalid_grant", "the authorization code has expired")
        if grant["client_id"] != client.client_id:
            raise OAuthError("invalid_grant", "the authorization code was issued to another client")
        if form.get("redirect_uri") != grant["redirect_uri"]:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request's")
        verifier = form.get("code_verifier", "")
        if not _VERIFIER.match(verifier) or not hmac.compare_digest(s256(verifier), grant["challenge"]):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        return self._user_tokens(grant, grant["family"], base, now)

    def _refresh_grant(self, client: Client, form: dict[str, str], base: str, now: int) -> Response:
        taken = self.store.take_refresh(form.get("refresh_token", ""))
        if taken is None:
            raise OAuthError("invalid_grant", "unknown refresh token")
        family, grant, expires, used = taken
        if used:
            self._revoke_family(family)
            raise OAuthError("invalid_grant", "the refresh token was already used: every token of this grant is "
                             "revoked")
        if expires <= now:
            raise OAuthError("invalid_grant", "the refresh token has expired")
        if grant["client_id"] != client.client_id:
            raise OAuthError("invalid_grant", "the refresh token was issued to another client")
        if form.get("scope"):
            try:
                asked = parse_scopes(form["scope"])
            except ScopeError as exc:
                raise OAuthError("invalid_scope", str(exc)) from None
            had = parse_scopes(grant["scope"])
            narrowed = narrow(asked, [*had.resources, *had.other], ("patient",))
            if narrowed != asked:
                raise OAuthError("invalid_scope", "a refresh may only narrow the granted scopes")
            grant = {**grant, "scope": str(narrowed)}
        return self._user_tokens(grant, family, base, now)

    def _user_tokens(self, grant: dict[str, Any], family: str, base: str, now: int) -> Response:
        scopes = parse_scopes(grant["scope"])
        access, expires = self._access(grant["client_id"], digest(grant["user"])[:32], grant["scope"],
                                       grant["patient"], family, grant["aud"], base, now)
        out: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": expires,
                               "scope": grant["scope"], "patient": grant["patient"], "need_patient_banner": True}
        if "offline_access" in scopes.other:
            refresh = secrets.token_urlsafe(32)
            self.store.add_refresh(refresh, family, grant, now + REFRESH_TTL)
            out["refresh_token"] = refresh
        return _json(200, out)

    def _access(self, client_id: str, sub: str, scope: str, patient: str | None, family: str | None, aud: str,
                base: str, now: int) -> tuple[str, int]:
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {"iss": base, "aud": aud, "sub": sub, "client_id": client_id, "scope": scope,
                                  "iat": now, "exp": now + ACCESS_TTL, "jti": jti}
        if patient is not None:
            claims["patient"] = patient
        self.store.add_access(jti, family, client_id, now + ACCESS_TTL)
        return self.keys.sign(claims, ACCESS_TYP), ACCESS_TTL

    def _revoke_family(self, family: str) -> None:
        self.revoked.update(self.store.revoke_family(family))

    # --- introspection and revocation ---------------------------------------------------------------

    def _access_claims(self, token: str, base: str) -> dict[str, Any] | None:
        try:
            claims = self.keys.verify(token, ACCESS_TYP)
        except InvalidToken:
            return None
        if claims.get("iss") != base or claims["jti"] in self.revoked or self.store.is_revoked(claims["jti"]):
            return None
        return claims

    def introspect(self, form: dict[str, str], headers: dict[str, str], base: str, fhir_base: str) -> Response:
        bearer = headers.get("authorization", "")
        if "client_assertion" in form:
            self._assertion_client(form, f"{base}/introspect")
        elif not (bearer[:7].lower() == "bearer " and self._access_claims(bearer[7:].strip(), base)):
            raise OAuthError("invalid_client", "introspection needs a client_assertion or an active bearer token",
                             401)
        token = form.get("token", "")
        claims = self._access_claims(token, base)
        if claims is not None:
            return _json(200, {"active": True, "token_type": "Bearer", **{
                k: claims[k] for k in ("scope", "client_id", "sub", "exp", "iat", "iss", "aud", "jti", "patient")
                if k in claims}})
        refresh = self.store.peek_refresh(token)
        if refresh is not None:
            _family, grant, expires, used = refresh
            if not used and expires > time.time():
                return _json(200, {"active": True, "token_type": "refresh_token", "scope": grant["scope"],
                                   "client_id": grant["client_id"], "exp": expires, "patient": grant["patient"]})
        return _json(200, {"active": False})

    def revoke(self, form: dict[str, str], base: str) -> Response:
        client, _ = self._client(form, f"{base}/revoke")
        token = form.get("token", "")
        claims = self._access_claims(token, base)
        if claims is not None and claims.get("client_id") == client.client_id:
            self.revoked.add(claims["jti"])
            self.store.revoke_access(claims["jti"], claims["exp"])
        refresh = self.store.peek_refresh(token)
        if refresh is not None and refresh[1]["client_id"] == client.client_id:
            self._revoke_family(refresh[0])
        return _json(200, {})  # RFC 7009: the same answer whether or not the token was known


def _allowed(client: Client) -> list[Any]:
    out: list[Any] = []
    for part in client.scope.split():
        try:
            out.append(parse_scope(part))
        except ScopeError:
            continue
    return out


__all__ = ["CAPABILITIES", "AuthServer", "OAuthError", "Scopes", "auth_base", "s256"]
