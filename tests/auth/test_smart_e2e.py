"""SMART on FHIR end to end over a real server with ``FHIR_HUB_AUTH=smart``: the authorization-code
flow with PKCE through the login and consent pages, refresh rotation, Backend Services with RS384
and ES384 assertions, introspection and revocation, and the security suite of refusals."""

from __future__ import annotations

import base64
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.auth.smart import (
    ASSERTION_TYPE,
    PASSWORD,
    REDIRECT,
    Backend,
    authorize_params,
    bearer,
    cli,
    hidden,
    login_for_code,
    make_backend,
    origin,
    patient_token,
    pkce,
    token,
)
from tests.conftest import Server, make_server

VITAL = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"


def _obs(patient_url: str, category: str, code: str) -> dict[str, Any]:
    system, _, cat = category.partition("|")
    return {"resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"system": system, "code": cat}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": patient_url}, "valueQuantity": {"value": 70, "unit": "kg"}}


class World:
    def __init__(self, srv: Server, tmp: Path):
        self.srv = srv
        self.tmp = tmp
        self.rs: Backend
        self.es: Backend
        self.narrow: Backend
        self.ids: dict[str, str] = {}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("smart")
    srv = make_server(tmp, auth="smart").start()
    w = World(srv, tmp)
    try:
        cli(srv.db, "clients", "add", "app", "--name", "Sổ sức khỏe điện tử", "--redirect-uri", REDIRECT)
        w.rs = make_backend(srv.db, tmp, "emr-rs", "RS384")
        w.es = make_backend(srv.db, tmp, "emr-es", "ES384")
        w.narrow = make_backend(srv.db, tmp, "lab-only", "ES384", scope="system/Observation.rs")
        r = w.rs.token(srv)
        assert r.status_code == 200, r.text
        entries: list[dict[str, Any]] = [
            {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Patient", "name": [{"family": "Nguyễn"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:b", "resource": {"resourceType": "Patient", "name": [{"family": "Trần"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:org", "resource": {"resourceType": "Organization", "name": "Bệnh viện"},
             "request": {"method": "POST", "url": "Organization"}},
            {"fullUrl": "urn:uuid:a-vital", "resource": _obs("urn:uuid:a", VITAL, "29463-7"),
             "request": {"method": "POST", "url": "Observation"}},
            {"fullUrl": "urn:uuid:a-lab", "resource": _obs("urn:uuid:a", LAB, "2345-7"),
             "request": {"method": "POST", "url": "Observation"}},
            {"fullUrl": "urn:uuid:b-vital", "resource": _obs("urn:uuid:b", VITAL, "29463-7"),
             "request": {"method": "POST", "url": "Observation"}},
        ]
        r = httpx.post(srv.base, content=orjson.dumps({"resourceType": "Bundle", "type": "transaction",
                                                       "entry": entries}),
                       headers=bearer(r.json()["access_token"]), timeout=30)
        assert r.status_code == 200, r.text
        for entry, resp in zip(entries, r.json()["entry"], strict=True):
            w.ids[entry["fullUrl"][9:]] = resp["response"]["location"].split("/")[1]
        cli(srv.db, "users", "add", "--national-id", "001090000001", "--patient", w.ids["a"], "--name",
            "Nguyễn Văn A", "--password", PASSWORD)
        cli(srv.db, "users", "add", "--national-id", "001090000002", "--patient", w.ids["b"], "--password", PASSWORD)
        yield w
    finally:
        srv.stop()


def _get(w: World, access: str, path: str, **params: str) -> httpx.Response:
    return httpx.get(f"{w.srv.base}/{path}", params=params, headers=bearer(access), timeout=30)


@pytest.fixture(scope="module")
def alice(world: World) -> dict[str, Any]:
    return patient_token(world.srv, "001090000001")


# --- discovery ----------------------------------------------------------------------------------


def test_smart_configuration(world: World) -> None:
    r = httpx.get(f"{world.srv.base}/.well-known/smart-configuration", headers={"Accept": "application/fhir+json"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    conf = r.json()
    base = f"{origin(world.srv)}/auth"
    assert conf["authorization_endpoint"] == f"{base}/authorize"
    assert conf["token_endpoint"] == f"{base}/token"
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert set(conf["grant_types_supported"]) == {"authorization_code", "refresh_token", "client_credentials"}
    assert conf["capabilities"] == ["launch-standalone", "authorize-post", "client-public",
                                    "client-confidential-asymmetric", "context-standalone-patient",
                                    "context-banner", "permission-patient", "permission-offline", "permission-v1",
                                    "permission-v2"]
    for key, value in conf.items():
        if key.endswith(("_endpoint", "_uri")) or key == "issuer":
            assert value.startswith("http://127.0.0.1:"), key
    jwks = httpx.get(conf["jwks_uri"]).json()
    assert jwks["keys"] and all("d" not in k for k in jwks["keys"])


def test_metadata_is_open_and_tells_the_truth(world: World) -> None:
    r = httpx.get(f"{world.srv.base}/metadata")
    assert r.status_code == 200
    security = r.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    conf = httpx.get(f"{world.srv.base}/.well-known/smart-configuration").json()
    assert uris["authorize"] == conf["authorization_endpoint"] and uris["token"] == conf["token_endpoint"]


def test_no_token_is_401_with_outcome(world: World) -> None:
    r = httpx.get(f"{world.srv.base}/Patient/{world.ids['a']}")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "Nguyễn" not in r.text


# --- authorization code + PKCE ------------------------------------------------------------------------


def test_authorization_code_flow(world: World, alice: dict[str, Any]) -> None:
    assert alice["patient"] == world.ids["a"]
    assert alice["token_type"] == "Bearer" and 0 < alice["expires_in"] <= 3600
    assert alice["need_patient_banner"] is True
    assert "patient/*.rs" in alice["scope"].split() and "refresh_token" in alice
    r = _get(world, alice["access_token"], f"Patient/{world.ids['a']}")
    assert r.status_code == 200 and r.json()["name"][0]["family"] == "Nguyễn"
    found = _get(world, alice["access_token"], "Observation").json()
    assert sorted(e["resource"]["id"] for e in found["entry"]) == sorted([world.ids["a-vital"], world.ids["a-lab"]])


def test_token_response_is_not_cached(world: World) -> None:
    code, verifier = login_for_code(world.srv, "001090000001", "patient/Observation.rs")
    r = token(world.srv, grant_type="authorization_code", code=code, redirect_uri=REDIRECT, client_id="app",
              code_verifier=verifier)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    assert "refresh_token" not in r.json()  # no offline_access asked


def test_authorize_by_post_and_pages_in_both_languages(world: World) -> None:
    _, challenge = pkce()
    vi = httpx.post(f"{origin(world.srv)}/auth/authorize", data=authorize_params(world.srv, challenge))
    assert vi.status_code == 200 and "Số định danh cá nhân" in vi.text and 'lang="vi"' in vi.text
    assert vi.headers["x-frame-options"] == "DENY"
    en = httpx.get(f"{origin(world.srv)}/auth/authorize", params=authorize_params(world.srv, challenge, lang="en"))
    assert "Personal identification number" in en.text
    consent = httpx.post(f"{origin(world.srv)}/auth/login", data={"txn": hidden(en.text, "txn"), "lang": "en",
                                                                  "national_id": "001090000001",
                                                                  "password": PASSWORD})
    assert "Sổ sức khỏe điện tử" in consent.text and "Allow" in consent.text and "read, search" in consent.text
    bad = httpx.post(f"{origin(world.srv)}/auth/login", data={"txn": hidden(en.text, "txn"), "lang": "en",
                                                              "national_id": "001090000001", "password": "wrong"})
    assert bad.status_code == 401 and "Wrong" in bad.text
    code, _ = login_for_code(world.srv, "001090000001", post=True)
    assert code


def test_deny_redirects_with_access_denied(world: World) -> None:
    _, challenge = pkce()
    params = authorize_params(world.srv, challenge)
    page = httpx.get(f"{origin(world.srv)}/auth/authorize", params=params)
    consent = httpx.post(f"{origin(world.srv)}/auth/login", data={"txn": hidden(page.text, "txn"),
                                                                  "national_id": "001090000001",
                                                                  "password": PASSWORD})
    done = httpx.post(f"{origin(world.srv)}/auth/consent", data={"txn": hidden(consent.text, "txn"),
                                                                 "decision": "deny"})
    assert done.status_code == 302 and "error=access_denied" in done.headers["location"]


# --- refusals in the flow ---------------------------------------------------------------------------


def _authorize_error(world: World, **over: str) -> str:
    _, challenge = pkce()
    r = httpx.get(f"{origin(world.srv)}/auth/authorize", params=authorize_params(world.srv, challenge, **over))
    assert r.status_code == 302, r.text
    assert r.headers["location"].startswith(REDIRECT)
    return r.headers["location"]


def test_pkce_missing_or_plain_is_refused(world: World) -> None:
    assert "error=invalid_request" in _authorize_error(world, code_challenge="", code_challenge_method="")
    assert "error=invalid_request" in _authorize_error(world, code_challenge_method="")
    assert "error=invalid_request" in _authorize_error(world, code_challenge_method="plain",
                                                       code_challenge="x" * 43)


def test_wrong_verifier_is_refused(world: World) -> None:
    code, _ = login_for_code(world.srv, "001090000001")
    r = token(world.srv, grant_type="authorization_code", code=code, redirect_uri=REDIRECT, client_id="app",
              code_verifier="a" * 50)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = token(world.srv, grant_type="authorization_code", code=code, redirect_uri=REDIRECT, client_id="app")
    assert r.status_code == 400  # the code is spent, and a verifier is needed anyway


def test_wrong_aud_at_authorize_is_refused(world: World) -> None:
    assert "error=invalid_request" in _authorize_error(world, aud="https://evil.example/fhir")


def test_unregistered_redirect_uri_is_never_followed(world: World) -> None:
    _, challenge = pkce()
    r = httpx.get(f"{origin(world.srv)}/auth/authorize",
                  params=authorize_params(world.srv, challenge, redirect_uri="https://evil.example/cb"))
    assert r.status_code == 400 and "location" not in r.headers
    r = httpx.get(f"{origin(world.srv)}/auth/authorize",
                  params=authorize_params(world.srv, challenge, redirect_uri=REDIRECT + "/x"))
    assert r.status_code == 400 and "location" not in r.headers


def test_reused_code_is_refused_and_revokes_its_tokens(world: World) -> None:
    code, verifier = login_for_code(world.srv, "001090000001")
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": "app",
            "code_verifier": verifier}
    first = token(world.srv, **form)
    assert first.status_code == 200
    again = token(world.srv, **form)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert _get(world, first.json()["access_token"], f"Patient/{world.ids['a']}").status_code == 401
    refreshed = token(world.srv, grant_type="refresh_token", refresh_token=first.json()["refresh_token"],
                      client_id="app")
    assert refreshed.status_code == 400


def test_refresh_rotation_and_reuse_detection(world: World) -> None:
    t1 = patient_token(world.srv, "001090000001")
    r2 = token(world.srv, grant_type="refresh_token", refresh_token=t1["refresh_token"], client_id="app")
    assert r2.status_code == 200, r2.text
    t2 = r2.json()
    assert t2["refresh_token"] != t1["refresh_token"] and t2["patient"] == world.ids["a"]
    assert r2.headers["cache-control"] == "no-store"
    assert _get(world, t2["access_token"], f"Patient/{world.ids['a']}").status_code == 200
    reuse = token(world.srv, grant_type="refresh_token", refresh_token=t1["refresh_token"], client_id="app")
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
    # the whole grant is gone: the rotated refresh token and the access tokens it gave
    assert token(world.srv, grant_type="refresh_token", refresh_token=t2["refresh_token"],
                 client_id="app").status_code == 400
    assert _get(world, t2["access_token"], f"Patient/{world.ids['a']}").status_code == 401


def test_refresh_may_narrow_but_not_widen(world: World) -> None:
    t1 = patient_token(world.srv, "001090000001", "patient/Observation.rs offline_access")
    wide = token(world.srv, grant_type="refresh_token", refresh_token=t1["refresh_token"], client_id="app",
                 scope="patient/*.rs offline_access")
    assert wide.status_code == 400 and wide.json()["error"] == "invalid_scope"


# --- the patient's compartment ------------------------------------------------------------------------


def test_another_patients_resource_by_id_is_hidden(world: World, alice: dict[str, Any]) -> None:
    a = alice["access_token"]
    missing = _get(world, a, f"Observation/{uuid.uuid4()}")
    for path in (f"Observation/{world.ids['b-vital']}", f"Patient/{world.ids['b']}",
                 f"Observation/{world.ids['b-vital']}/_history/1", f"Observation/{world.ids['b-vital']}/_history"):
        r = _get(world, a, path)
        assert r.status_code == 404, path
        assert "Trần" not in r.text and world.ids["b-vital"] + '"' not in r.text  # echoes the asked id only
        assert r.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"] == "not-found"
    assert _get(world, a, f"Observation/{world.ids['a-lab']}/_history/1").status_code == 200
    assert _get(world, a, f"Organization/{world.ids['org']}").status_code == 403  # never in a compartment


def test_another_patients_resources_by_search_are_not_found(world: World, alice: dict[str, Any]) -> None:
    a = alice["access_token"]
    for path, params in (("Observation", {"subject": f"Patient/{world.ids['b']}"}),
                         ("Observation", {"_id": world.ids["b-vital"]}),
                         ("Patient", {"_id": world.ids["b"]}), ("Patient", {"name": "Trần"})):
        r = _get(world, a, path, **params)
        assert r.status_code == 200, (path, params, r.text)
        assert "entry" not in r.json() and "Trần" not in r.text, (path, params)
    r = httpx.post(f"{world.srv.base}/Observation/_search", data={"subject": f"Patient/{world.ids['b']}"},
                   headers={"Authorization": f"Bearer {a}"})
    assert r.status_code == 200 and "entry" not in r.json()
    assert _get(world, a, f"Patient/{world.ids['b']}/Observation").status_code == 403
    assert _get(world, a, f"Patient/{world.ids['a']}/Observation").json()["total"] == 2


@pytest.mark.parametrize("path,params", [
    ("Observation", {"_include": "Observation:subject"}),
    ("Patient", {"_revinclude": "Observation:subject"}),
    ("Observation", {"_include:iterate": "Observation:subject"}),
    ("Observation", {"subject:Patient.name": "Trần"}),
    ("Patient", {"_has:Observation:subject:code": "29463-7"}),
    ("Patient/$everything", {}),
    ("", {"_type": "Observation"}),
    ("_history", {}),
    ("Observation/_history", {}),
])
def test_what_this_slice_cannot_restrict_is_refused(world: World, alice: dict[str, Any], path: str,
                                                    params: dict[str, str]) -> None:
    r = _get(world, alice["access_token"], path.format(a=world.ids["a"]), **params)
    assert r.status_code == 403, r.text
    assert r.json()["issue"][0]["code"] == "forbidden" and "Trần" not in r.text


def test_v1_scope_covers_its_type_only(world: World) -> None:
    t = patient_token(world.srv, "001090000001", "patient/Observation.read")
    assert t["scope"] == "patient/Observation.read"
    assert _get(world, t["access_token"], f"Observation/{world.ids['a-lab']}").status_code == 200
    r = _get(world, t["access_token"], f"Patient/{world.ids['a']}")
    assert r.status_code == 403 and r.headers["www-authenticate"].startswith("Bearer")


def test_v2_query_restricted_scope(world: World) -> None:
    t = patient_token(world.srv, "001090000001", f"patient/Observation.rs?category={VITAL}")
    a = t["access_token"]
    found = _get(world, a, "Observation").json()
    assert [e["resource"]["id"] for e in found["entry"]] == [world.ids["a-vital"]]
    assert _get(world, a, f"Observation/{world.ids['a-vital']}").status_code == 200
    assert _get(world, a, f"Observation/{world.ids['a-lab']}").status_code == 404
    assert "entry" not in _get(world, a, "Observation", category=LAB).json()


def test_patient_token_cannot_write(world: World, alice: dict[str, Any]) -> None:
    body = orjson.dumps(_obs(f"Patient/{world.ids['a']}", VITAL, "8867-4"))
    r = httpx.post(f"{world.srv.base}/Observation", content=body, headers=bearer(alice["access_token"]))
    assert r.status_code == 403
    t = patient_token(world.srv, "001090000001", "patient/Observation.rs")
    r = httpx.put(f"{world.srv.base}/Observation/{world.ids['a-lab']}", content=body, headers=bearer(t["access_token"]))
    assert r.status_code == 403


def test_batch_entries_are_checked_each(world: World, alice: dict[str, Any]) -> None:
    def batch(*urls: str) -> httpx.Response:
        return httpx.post(world.srv.base, content=orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": u}} for u in urls]}),
            headers={**bearer(alice["access_token"]), "Prefer": "return=representation"})

    ok = batch(f"Observation/{world.ids['a-lab']}", f"Patient/{world.ids['a']}")
    assert ok.status_code == 200, ok.text
    assert [e["response"]["status"][:3] for e in ok.json()["entry"]] == ["200", "200"]
    for url in (f"Observation/{world.ids['b-vital']}", f"Patient/{world.ids['b']}", f"Observation/{uuid.uuid4()}",
                "Observation?code=29463-7", f"Patient/{world.ids['b']}/Observation",
                "Observation?_include=Observation:subject"):
        r = batch(f"Observation/{world.ids['a-lab']}", url)
        assert r.status_code == 403, url
        assert "Trần" not in r.text
    post = httpx.post(world.srv.base, content=orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:x", "resource": _obs(f"Patient/{world.ids['a']}", VITAL, "8867-4"),
         "request": {"method": "POST", "url": "Observation"}}]}), headers=bearer(alice["access_token"]))
    assert post.status_code == 403


# --- tokens that must not work --------------------------------------------------------------------------


def _server_key(w: World) -> RSAKey:
    with sqlite3.connect(w.srv.db) as db:
        (jwk,) = db.execute("SELECT jwk FROM auth_keys ORDER BY created DESC LIMIT 1").fetchone()
    return RSAKey.import_key(orjson.loads(jwk))


def _forge(w: World, key: RSAKey, typ: str = "at+jwt", **claims: Any) -> str:
    now = int(time.time())
    base = {"iss": f"{origin(w.srv)}/auth", "aud": w.srv.base, "sub": "x", "client_id": "app",
            "scope": "patient/*.rs", "patient": w.ids["b"], "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex}
    base.update(claims)
    return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": typ}, base, key, algorithms=["RS256"])


def test_bad_tokens_are_401(world: World, alice: dict[str, Any]) -> None:
    key = _server_key(world)
    good = alice["access_token"]
    head, payload, sig = good.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["patient"] = world.ids["b"]
    tampered = f"{head}.{base64.urlsafe_b64encode(orjson.dumps(claims)).rstrip(b'=').decode()}.{sig}"
    none_head = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').rstrip(b"=").decode()
    attacker = RSAKey.generate_key(2048, parameters={"kid": str(key.kid)})
    assert _get(world, _forge(world, key), f"Patient/{world.ids['b']}").status_code == 200  # the control
    cases = {
        "tampered": tampered,
        "alg none": f"{none_head}.{payload}.",
        "expired": _forge(world, key, exp=int(time.time()) - 5),
        "wrong aud": _forge(world, key, aud="http://other.example/fhir"),
        "wrong iss": _forge(world, key, iss="http://other.example/auth"),
        "other kind of JWT": _forge(world, key, typ="JWT"),
        "foreign key": _forge(world, attacker),
        "garbage": "abc.def",
    }
    for name, bad in cases.items():
        r = _get(world, bad, f"Patient/{world.ids['b']}")
        assert r.status_code == 401, name
        assert 'error="invalid_token"' in r.headers["www-authenticate"], name
        assert "Trần" not in r.text, name


# --- backend services -------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["rs", "es"])
def test_backend_services_token_and_transaction(world: World, which: str) -> None:
    client: Backend = getattr(world, which)
    r = client.token(world.srv)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["scope"] == "system/*.cruds" and "refresh_token" not in body and body["expires_in"] <= 3600
    assert r.headers["cache-control"] == "no-store"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "name": [{"family": "Lê"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:o", "resource": _obs("urn:uuid:p", VITAL, "8867-4"),
         "request": {"method": "POST", "url": "Observation"}}]}
    r = httpx.post(world.srv.base, content=orjson.dumps(bundle), headers=bearer(body["access_token"]))
    assert r.status_code == 200, r.text
    assert _get(world, body["access_token"], f"Observation/{world.ids['b-vital']}").status_code == 200


def test_narrow_backend_scope(world: World) -> None:
    r = world.narrow.token(world.srv, scope="system/Observation.rs system/Patient.rs")
    assert r.status_code == 200 and r.json()["scope"] == "system/Observation.rs"
    a = r.json()["access_token"]
    assert _get(world, a, f"Observation/{world.ids['b-vital']}").status_code == 200
    assert _get(world, a, f"Patient/{world.ids['b']}").status_code == 403
    assert _get(world, a, "Observation", _include="Observation:subject").status_code == 403
    body = orjson.dumps(_obs(f"Patient/{world.ids['a']}", VITAL, "8867-4"))
    assert httpx.post(f"{world.srv.base}/Observation", content=body, headers=bearer(a)).status_code == 403
    assert world.narrow.token(world.srv, scope="system/Patient.rs").status_code == 400


def test_assertion_refusals(world: World) -> None:
    jti = uuid.uuid4().hex
    assert world.es.token(world.srv, jti=jti).status_code == 200
    cases: dict[str, dict[str, Any]] = {
        "replayed jti": {"jti": jti},
        "exp an hour ahead": {"exp_in": 3600},
        "exp passed": {"exp_in": -10},
        "wrong aud": {"audience": "https://other.example/token"},
        "sub differs": {"sub": "someone-else"},
    }
    for name, kw in cases.items():
        r = world.es.token(world.srv, **kw)
        assert r.status_code == 401, name
        assert r.json()["error"] == "invalid_client", name
    # RS256 is not a SMART Backend Services algorithm; a kid that is not registered finds no key
    rs256 = jwt.encode({"alg": "RS256", "kid": world.rs.key.kid}, {"iss": "emr-rs", "sub": "emr-rs",
                       "aud": f"{origin(world.srv)}/auth/token", "exp": int(time.time()) + 60, "jti": "x1"},
                       world.rs.key, algorithms=["RS256"])
    other = Backend("emr-es", world.es.key, "ES384")
    other.key = type(world.es.key).generate_key("P-384", parameters={"kid": "not-registered"})
    for bad in (rs256, other.assertion(world.srv)):
        r = token(world.srv, grant_type="client_credentials", scope="system/*.rs",
                  client_assertion_type=ASSERTION_TYPE, client_assertion=bad)
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    # a backend client may not skip its assertion, nor a public client use client_credentials
    r = token(world.srv, grant_type="client_credentials", scope="system/*.rs", client_id="emr-es")
    assert r.status_code == 401
    r = token(world.srv, grant_type="client_credentials", scope="system/*.rs", client_id="app")
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"


# --- introspection and revocation ---------------------------------------------------------------------------


def test_introspect_and_revoke(world: World) -> None:
    t = patient_token(world.srv, "001090000002")
    introspect = f"{origin(world.srv)}/auth/introspect"

    def look(tok: str) -> dict[str, Any]:
        r = httpx.post(introspect, data={"token": tok, "client_assertion_type": ASSERTION_TYPE,
                                         "client_assertion": world.rs.assertion(world.srv, audience=introspect)})
        assert r.status_code == 200, r.text
        return dict(r.json())

    info = look(t["access_token"])
    assert info["active"] is True and info["patient"] == world.ids["b"] and info["client_id"] == "app"
    assert look(t["refresh_token"])["active"] is True
    assert httpx.post(introspect, data={"token": t["access_token"]}).status_code == 401
    r = httpx.post(f"{origin(world.srv)}/auth/revoke", data={"token": t["access_token"], "client_id": "app"})
    assert r.status_code == 200
    assert look(t["access_token"]) == {"active": False}
    assert _get(world, t["access_token"], f"Patient/{world.ids['b']}").status_code == 401
    httpx.post(f"{origin(world.srv)}/auth/revoke", data={"token": t["refresh_token"], "client_id": "app"})
    assert look(t["refresh_token"]) == {"active": False}
    assert look("not-a-token") == {"active": False}


# --- the CLI ------------------------------------------------------------------------------------------------


def test_clients_cli(world: World) -> None:
    cli(world.srv.db, "clients", "add", "tmp-app", "--redirect-uri", "https://x.example/cb")
    assert "tmp-app" in cli(world.srv.db, "clients", "list")
    cli(world.srv.db, "clients", "remove", "tmp-app")
    assert "tmp-app" not in cli(world.srv.db, "clients", "list")
    users = cli(world.srv.db, "users", "list")
    assert "001090000001" in users and PASSWORD not in users
    with sqlite3.connect(world.srv.db) as db:
        stored = [r[0] for r in db.execute("SELECT password FROM auth_users")]
    assert stored and all(s.startswith("scrypt$") and PASSWORD not in s for s in stored)


def test_no_secret_in_the_server_log(tmp_path: Path) -> None:
    srv = make_server(tmp_path, auth="smart").start()
    try:
        cli(srv.db, "clients", "add", "app", "--redirect-uri", REDIRECT)
        backend = make_backend(srv.db, tmp_path, "emr", "ES384")
        access = backend.token(srv).json()["access_token"]
        patient = httpx.post(f"{srv.base}/Patient", content=b'{"resourceType":"Patient"}', headers=bearer(access))
        cli(srv.db, "users", "add", "--national-id", "079200000009", "--patient", patient.json()["id"],
            "--password", PASSWORD)
        t = patient_token(srv, "079200000009")
        httpx.get(f"{srv.base}/Patient/x", headers=bearer(t["access_token"] + "x"))
    finally:
        srv.stop()
    assert srv.proc is not None and srv.proc.stderr is not None
    log = srv.proc.stderr.read().decode()
    for secret in (access, t["access_token"], t["refresh_token"], PASSWORD):
        assert secret not in log


def test_auth_is_off_by_default(server: Server) -> None:
    assert httpx.post(f"http://127.0.0.1:{server.port}/auth/token", data={}).status_code == 404
    assert httpx.get(f"{server.base}/.well-known/smart-configuration").status_code == 404
    assert "security" not in httpx.get(f"{server.base}/metadata").json()["rest"][0]
