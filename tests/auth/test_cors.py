"""CORS for registered origins only: the rules on their own, then over the real server of
``test_smart_e2e.py`` (the app ``app`` is registered with ``https://app.example.vn/callback``)."""

from __future__ import annotations

import time

import httpx
import pytest

from fhir_hub.auth.cors import Cors, origin_of, origins
from fhir_hub.errors import FhirError
from fhir_hub.rest.wire import Response
from tests.auth.smart import REDIRECT, bearer, cli, origin
from tests.auth.test_smart_e2e import World, alice, world  # noqa: F401  (fixtures)

APP = "https://app.example.vn"
EVIL = "https://evil.example"


@pytest.mark.parametrize(("uri", "expected"), [
    ("https://App.Example.vn/callback?x=1", "https://app.example.vn"),
    ("http://127.0.0.1:8080/auth/demo/", "http://127.0.0.1:8080"),
    ("com.example.app:/callback", None),  # a native app's scheme: no browser origin
    ("https://a.example; script-src *", None),
    ("https://user@a.example/", None),
])
def test_origin_of(uri: str, expected: str | None) -> None:
    assert origin_of(uri) == expected


def test_only_registered_origins_get_headers() -> None:
    registered = [f"{APP}/callback"]
    cors = Cors(lambda: registered, ttl=0)
    assert origins(registered) == {APP}
    plain = Response(200, b"{}", [(b"content-type", b"application/fhir+json")])
    allowed = dict(cors.apply({"origin": APP}, plain).headers)
    assert allowed[b"access-control-allow-origin"] == APP.encode() and allowed[b"vary"] == b"Origin"
    assert b"access-control-allow-credentials" not in allowed
    assert cors.apply({"origin": EVIL}, plain) is plain
    assert cors.apply({}, plain) is plain
    with pytest.raises(FhirError) as refused:
        cors.preflight({"origin": EVIL, "access-control-request-method": "GET"})
    assert refused.value.status == 403
    registered.append(f"{EVIL}/cb")  # registered later: seen at the next read
    assert cors.preflight({"origin": EVIL, "access-control-request-method": "GET"}).status == 204


def _preflight(w: World, url: str, who: str) -> httpx.Response:
    return httpx.options(url, headers={"Origin": who, "Access-Control-Request-Method": "GET",
                                       "Access-Control-Request-Headers": "authorization"})


def test_preflight_over_the_server(world: World) -> None:  # noqa: F811
    ok = _preflight(world, f"{world.srv.base}/Patient/{world.ids['a']}", APP)
    assert ok.status_code == 204, ok.text
    assert ok.headers["access-control-allow-origin"] == APP
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    assert _preflight(world, f"{origin(world.srv)}/auth/token", APP).status_code == 204
    bad = _preflight(world, f"{world.srv.base}/Patient/{world.ids['a']}", EVIL)
    assert bad.status_code == 403 and bad.json()["resourceType"] == "OperationOutcome"
    assert "access-control-allow-origin" not in bad.headers


def test_answers_carry_cors_headers_for_registered_origins_only(world: World, alice: dict[str, str]) -> None:  # noqa: F811
    url = f"{world.srv.base}/Patient/{world.ids['a']}"
    ok = httpx.get(url, headers={**bearer(alice["access_token"]), "Origin": APP})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == APP
    assert "etag" in ok.headers["access-control-expose-headers"].lower()
    denied = httpx.get(url, headers={"Origin": APP})  # a 401 is readable by the app too (it must log in)
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == APP
    other = httpx.get(url, headers={**bearer(alice["access_token"]), "Origin": EVIL})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    conf = httpx.get(f"{world.srv.base}/.well-known/smart-configuration", headers={"Origin": APP})
    assert conf.headers["access-control-allow-origin"] == APP
    security = httpx.get(f"{world.srv.base}/metadata").json()["rest"][0]["security"]
    assert security["cors"] is True


def test_a_client_registered_while_running_is_allowed(world: World) -> None:  # noqa: F811
    late = "https://late.example.vn"
    url = f"{world.srv.base}/metadata"
    assert _preflight(world, url, late).status_code == 403
    cli(world.srv.db, "clients", "add", "late-app", "--redirect-uri", f"{late}/cb")
    deadline = time.monotonic() + 15
    status = 403
    while status != 204 and time.monotonic() < deadline:  # origins are read again about every second
        time.sleep(0.2)
        status = _preflight(world, url, late).status_code
    assert status == 204
    assert REDIRECT.startswith(APP)
