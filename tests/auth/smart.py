"""Helpers for the SMART tests: a server with auth on, registered clients and users, the flows.

Everything goes over HTTP to a real ``fhir-hub serve`` on loopback; clients and users are added
with the real CLI. Keys for the backend clients are made here with joserfc.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from tests.conftest import Server

REDIRECT = "https://app.example.vn/callback"
PASSWORD = "mat-khau-demo-1"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def cli(db: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "fhir_hub", *args, "--db", str(db)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout


def origin(srv: Server) -> str:
    return f"http://127.0.0.1:{srv.port}"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def hidden(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert m, f"no hidden {name} in the page"
    return unescape(m.group(1))


def authorize_params(srv: Server, challenge: str, scope: str = "launch/patient patient/*.rs offline_access",
                     **over: str) -> dict[str, str]:
    params = {"response_type": "code", "client_id": "app", "redirect_uri": REDIRECT, "scope": scope,
              "state": "st-" + secrets.token_hex(4), "aud": srv.base, "code_challenge": challenge,
              "code_challenge_method": "S256"}
    params.update(over)
    return {k: v for k, v in params.items() if v != ""}


def login_for_code(srv: Server, national_id: str, scope: str = "launch/patient patient/*.rs offline_access",
                   post: bool = False, lang: str = "vi") -> tuple[str, str]:
    """Authorize → login form → consent form → redirect; returns ``(code, verifier)``."""
    verifier, challenge = pkce()
    params = authorize_params(srv, challenge, scope, lang=lang)
    with httpx.Client(base_url=origin(srv), timeout=30) as c:
        page = c.post("/auth/authorize", data=params) if post else c.get("/auth/authorize", params=params)
        assert page.status_code == 200, page.text
        consent = c.post("/auth/login", data={"txn": hidden(page.text, "txn"), "national_id": national_id,
                                              "password": PASSWORD, "lang": lang})
        assert consent.status_code == 200, consent.text
        done = c.post("/auth/consent", data={"txn": hidden(consent.text, "txn"), "decision": "allow", "lang": lang})
    assert done.status_code == 302, done.text
    location = urlsplit(done.headers["location"])
    q = parse_qs(location.query)
    assert q["state"] == [params["state"]]
    return q["code"][0], verifier


def token(srv: Server, **form: str) -> httpx.Response:
    return httpx.post(f"{origin(srv)}/auth/token", data=form, timeout=30)


def patient_token(srv: Server, national_id: str, scope: str = "launch/patient patient/*.rs offline_access"
                  ) -> dict[str, Any]:
    code, verifier = login_for_code(srv, national_id, scope)
    r = token(srv, grant_type="authorization_code", code=code, redirect_uri=REDIRECT, client_id="app",
              code_verifier=verifier)
    assert r.status_code == 200, r.text
    return dict(r.json())


@dataclass
class Backend:
    client_id: str
    key: Any
    alg: str

    def assertion(self, srv: Server, audience: str | None = None, exp_in: int = 240, jti: str | None = None,
                  **extra: Any) -> str:
        now = int(time.time())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": audience or f"{origin(srv)}/auth/token",
                  "exp": now + exp_in, "jti": jti or uuid.uuid4().hex, **extra}
        return jwt.encode({"alg": self.alg, "kid": self.key.kid, "typ": "JWT"}, claims, self.key,
                          algorithms=[self.alg])

    def token(self, srv: Server, scope: str = "system/*.cruds", **kw: Any) -> httpx.Response:
        return token(srv, grant_type="client_credentials", scope=scope, client_assertion_type=ASSERTION_TYPE,
                     client_assertion=self.assertion(srv, **kw))


def make_backend(db: Path, tmp: Path, client_id: str, alg: str, scope: str = "system/*.cruds") -> Backend:
    key = RSAKey.generate_key(2048, parameters={"kid": f"{client_id}-1"}) if alg == "RS384" else \
        ECKey.generate_key("P-384", parameters={"kid": f"{client_id}-1"})
    jwks = tmp / f"{client_id}.jwks.json"
    jwks.write_bytes(orjson.dumps({"keys": [key.as_dict(private=False)]}))
    cli(db, "clients", "add", client_id, "--jwks", str(jwks), "--scope", scope)
    return Backend(client_id, key, alg)


def bearer(access: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access}", "Accept": "application/fhir+json",
            "Content-Type": "application/fhir+json"}
