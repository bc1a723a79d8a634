"""Reads by id under a token, decided on the version the read fetches (``auth/enforce.py``'s
``GuardedRequest`` and ``auth/compartment.py``), and the verified-token cache."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhir_hub import definitions
from fhir_hub.auth import compartment
from fhir_hub.auth.enforce import Enforcer
from fhir_hub.auth.scopes import parse_scopes
from fhir_hub.rest.wire import Request
from fhir_hub.search import extract
from tests.auth.smart import PASSWORD, REDIRECT, Backend, bearer, cli, make_backend, patient_token
from tests.conftest import Server, make_server


def _obs(**elements: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "weight"}, **elements}


class World:
    def __init__(self, srv: Server):
        self.srv = srv
        self.ids: dict[str, str] = {}
        self.backend: Backend
        self.system = ""
        self.alice = ""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("guard")
    srv = make_server(tmp, auth="smart").start()
    w = World(srv)
    try:
        cli(srv.db, "clients", "add", "app", "--redirect-uri", REDIRECT)
        w.backend = make_backend(srv.db, tmp, "emr", "ES384")
        w.system = w.backend.token(srv).json()["access_token"]
        entries: list[tuple[str, dict[str, Any]]] = [
            ("a", {"resourceType": "Patient", "name": [{"family": "Alice"}]}),
            ("b", {"resourceType": "Patient", "name": [{"family": "Bob"}]}),
            ("gone-patient", {"resourceType": "Patient", "name": [{"family": "Carol"}]}),
            # Alice through a compartment parameter other than subject: in her compartment
            ("by-performer", _obs(subject={"reference": "urn:uuid:b"}, performer=[{"reference": "urn:uuid:a"}])),
            # Alice only through elements the compartment does not name: not hers
            ("by-focus", _obs(subject={"reference": "urn:uuid:b"}, focus=[{"reference": "urn:uuid:a"}])),
            ("by-has-member", _obs(subject={"reference": "urn:uuid:b"}, hasMember=[{"reference": "urn:uuid:a"}])),
            ("by-identifier", _obs(subject={"identifier": {"system": "urn:x", "value": "a"}})),
            ("own", _obs(subject={"reference": "urn:uuid:a"})),
            ("own-deleted", _obs(subject={"reference": "urn:uuid:a"})),
            ("moving", _obs(subject={"reference": "urn:uuid:a"})),
            ("bobs", _obs(subject={"reference": "urn:uuid:b"})),
        ]
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": f"urn:uuid:{name}", "resource": res, "request": {"method": "POST", "url": res["resourceType"]}}
            for name, res in entries]}
        r = httpx.post(srv.base, content=orjson.dumps(bundle), headers=bearer(w.system), timeout=30)
        assert r.status_code == 200, r.text
        for (name, _), resp in zip(entries, r.json()["entry"], strict=True):
            w.ids[name] = resp["response"]["location"].split("/")[1]
        a = w.ids["a"]
        # the patient's id in text that is no reference (passes the byte pre-check, refused on parsing),
        # and an absolute reference to the patient (in the compartment)
        for name, res in (("in-note", _obs(subject={"reference": f"Patient/{w.ids['b']}"},
                                          note=[{"text": f"compare with Patient/{a}"}])),
                          ("absolute", _obs(subject={"reference": f"{srv.base}/Patient/{a}"}))):
            r = httpx.post(f"{srv.base}/Observation", content=orjson.dumps(res), headers=bearer(w.system))
            assert r.status_code == 201, r.text
            w.ids[name] = r.headers["location"].split("/Observation/")[1].split("/")[0]
        for path in (f"Observation/{w.ids['own-deleted']}", f"Patient/{w.ids['gone-patient']}"):
            assert httpx.delete(f"{srv.base}/{path}", headers=bearer(w.system)).status_code in (200, 204)
        cli(srv.db, "users", "add", "--national-id", "001090000011", "--patient", a, "--password", PASSWORD)
        cli(srv.db, "users", "add", "--national-id", "001090000013", "--patient", w.ids["gone-patient"],
            "--password", PASSWORD)
        w.alice = patient_token(srv, "001090000011")["access_token"]
        yield w
    finally:
        srv.stop()


def _get(w: World, token: str, path: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{w.srv.base}/{path}", headers={**bearer(token), **headers}, timeout=30)


def test_compartment_parameters_decide_not_any_reference(world: World) -> None:
    missing = _get(world, world.alice, f"Observation/{uuid.uuid4()}")
    assert missing.status_code == 404
    for name in ("by-focus", "by-has-member", "by-identifier", "in-note", "bobs", "own-deleted"):
        r = _get(world, world.alice, f"Observation/{world.ids[name]}")
        assert r.status_code == 404, (name, r.text)
        assert r.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"] == "not-found"
        assert r.json()["issue"][0]["diagnostics"] == f"Observation/{world.ids[name]} is not known"
        assert "Bob" not in r.text and "weight" not in r.text
        # the same resources are there for a system token (410 for the deleted one)
        assert _get(world, world.system, f"Observation/{world.ids[name]}").status_code == \
            (410 if name == "own-deleted" else 200)
    for name in ("own", "by-performer", "absolute"):
        r = _get(world, world.alice, f"Observation/{world.ids[name]}")
        assert r.status_code == 200, (name, r.text)
        assert r.json()["id"] == world.ids[name]


def test_reads_agree_with_the_compartment_search(world: World) -> None:
    found = httpx.get(f"{world.srv.base}/Observation", params={"_count": "100"}, headers=bearer(world.alice)).json()
    searched = {e["resource"]["id"] for e in found.get("entry", [])}
    readable = {name for name in world.ids
                if _get(world, world.alice, f"Observation/{world.ids[name]}").status_code == 200}
    assert searched == {world.ids[n] for n in readable} == {world.ids[n] for n in ("own", "by-performer", "absolute", "moving")}


def test_head_and_conditional_reads_do_not_leak(world: World) -> None:
    bobs = f"Observation/{world.ids['bobs']}"
    tag = _get(world, world.system, bobs).headers["etag"]
    assert httpx.head(f"{world.srv.base}/{bobs}", headers=bearer(world.alice)).status_code == 404
    assert _get(world, world.alice, bobs, **{"If-None-Match": tag}).status_code == 404  # not 304
    own = f"Observation/{world.ids['own']}"
    own_tag = _get(world, world.alice, own).headers["etag"]
    assert _get(world, world.alice, own, **{"If-None-Match": own_tag}).status_code == 304
    assert httpx.head(f"{world.srv.base}/{own}", headers=bearer(world.alice)).status_code == 200


def test_own_patient_only_and_deleted_is_404(world: World) -> None:
    assert _get(world, world.alice, f"Patient/{world.ids['a']}").status_code == 200
    assert _get(world, world.alice, f"Patient/{world.ids['b']}").status_code == 404
    carol = patient_token(world.srv, "001090000013")["access_token"]
    r = _get(world, carol, f"Patient/{world.ids['gone-patient']}")
    assert r.status_code == 404, r.text  # not 410: a patient token never learns of deletions
    assert _get(world, world.system, f"Patient/{world.ids['gone-patient']}").status_code == 410


def test_history_and_batch_reads_use_the_same_guard(world: World) -> None:
    for name, status in (("by-focus", 404), ("in-note", 404), ("by-performer", 200)):
        assert _get(world, world.alice, f"Observation/{world.ids[name]}/_history/1").status_code == status, name
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Observation/{world.ids['own']}"}},
        {"request": {"method": "GET", "url": f"Observation/{world.ids['by-focus']}"}}]}
    r = httpx.post(world.srv.base, content=orjson.dumps(bundle), headers=bearer(world.alice))
    assert r.status_code == 403 and "Bob" not in r.text


def test_a_new_version_is_decided_anew(world: World) -> None:
    path = f"Observation/{world.ids['moving']}"
    mine = _get(world, world.system, path).json()
    assert _get(world, world.alice, path).status_code == 200  # decided, and the decision kept
    moved = {**mine, "subject": {"reference": f"Patient/{world.ids['b']}"}}
    r = httpx.put(f"{world.srv.base}/{path}", content=orjson.dumps(moved), headers=bearer(world.system))
    assert r.status_code == 200, r.text
    assert _get(world, world.alice, path).status_code == 404
    r = httpx.put(f"{world.srv.base}/{path}", content=orjson.dumps(mine), headers=bearer(world.system))
    assert _get(world, world.alice, path).status_code == 200
    assert httpx.delete(f"{world.srv.base}/{path}", headers=bearer(world.system)).status_code in (200, 204)
    assert _get(world, world.alice, path).status_code == 404


def test_restricted_system_scope_reads_by_the_restriction(world: World, tmp_path: Path) -> None:
    lab = make_backend(world.srv.db, tmp_path, "lab", "ES384", scope="system/Observation.rs?status=final")
    t = lab.token(world.srv, scope="system/Observation.rs?status=final").json()["access_token"]
    assert _get(world, t, f"Observation/{world.ids['bobs']}").status_code == 200
    assert _get(world, t, f"Observation/{world.ids['own-deleted']}").status_code == 404
    assert _get(world, t, f"Patient/{world.ids['a']}").status_code == 403


# --- the compiled membership ------------------------------------------------------------------------


def test_every_patient_compartment_type_compiles_its_own_extraction() -> None:
    for rtype in definitions.compartments()["Patient"]:
        m = compartment.membership(rtype, "Patient")
        assert m.by_key is not None, rtype  # none falls back to the whole extraction on R4 core


def test_membership_is_the_indexers_rows_of_the_compartment_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    target = "Patient/p1"
    cases = [
        (_obs(subject={"reference": "Patient/p1"}), True),
        (_obs(subject={"reference": "http://x.example/fhir/Patient/p1"}), True),
        (_obs(subject={"reference": "Patient/p10"}), False),
        (_obs(subject={"reference": "Patient/p2"}, performer=[{"reference": "Patient/p1"}]), True),
        (_obs(subject={"reference": "Patient/p2"}, focus=[{"reference": "Patient/p1"}]), False),
        (_obs(subject={"reference": "Patient/p2"}, note=[{"text": "Patient/p1"}]), False),
        (_obs(subject={"reference": "Group/p1"}), False),
    ]
    m = compartment.Membership("Observation", "Patient")
    for resource, member in cases:
        body = orjson.dumps(resource)
        assert m.admits(body, target, target.encode(), "/" + target) is member, resource
        rows = extract.index_rows("Observation", resource)
        assert any(r[0] == "reference" and r[1] in m.params and (r[2] == target or r[2].endswith("/" + target))
                   for r in rows) is member, resource
    monkeypatch.setattr(m, "by_key", None)  # the whole-extraction fallback answers the same
    for resource, member in cases:
        assert m.admits(orjson.dumps(resource), target, target.encode(), "/" + target) is member, resource


def test_decisions_are_kept_per_version_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from fhir_hub.search import parameters
    from fhir_hub.storage.port import StoredVersion

    monkeypatch.setattr(compartment, "DECIDED_MAX", 2)
    monkeypatch.setattr(compartment, "_decided", type(compartment._decided)())
    target = "Patient/p1"

    def version(vid: int, ref: str) -> StoredVersion:
        return StoredVersion("Observation", "o1", vid, 1000 + vid, "PUT",
                             orjson.dumps(_obs(subject={"reference": ref})), 10 + vid)

    args = ("Patient", target, target.encode(), "/" + target)
    assert compartment.admits_version(version(1, target), *args) is True
    assert compartment.admits_version(version(2, "Patient/p2"), *args) is False
    assert compartment.admits_version(version(1, target), *args) is True  # kept
    # the same version id and position with another body (rows removed and written again): decided anew
    again = StoredVersion("Observation", "o1", 2, 5000, "PUT", orjson.dumps(_obs(subject={"reference": target})), 12)
    assert compartment.admits_version(again, *args) is True
    assert len(compartment._decided) == 2
    parameters.refresh()
    assert not compartment._decided


# --- the verified-token cache -----------------------------------------------------------------------


class _Keys:
    def __init__(self) -> None:
        self.verified: list[str] = []

    def verify(self, token: str, typ: str, now: float | None = None) -> dict[str, Any]:
        self.verified.append(token)
        return {"jti": token, "client_id": "c", "scope": "system/*.rs", "exp": int(time.time()) + 60,
                "iss": "http://h/auth", "aud": "http://h/fhir"}


class _Store:
    def revoked_since(self, seq: int) -> tuple[int, list[str]]:
        return seq, []


def _req(token: str, base: str = "http://h/fhir") -> Request:
    return Request("GET", ["Observation", "1"], [], {"authorization": f"Bearer {token}"}, b"", base)


def test_a_token_is_verified_once_and_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from fhir_hub.auth import enforce

    monkeypatch.setattr(enforce, "_CACHE_MAX", 3)
    keys = _Keys()
    e = Enforcer(_Store(), keys, "/fhir", set())  # type: ignore[arg-type]
    for _ in range(3):
        assert e.principal(_req("t1")).scopes == parse_scopes("system/*.rs")
    assert keys.verified == ["t1"]
    for t in ("t2", "t3", "t1", "t4"):  # t1 used again: t2 is the least recently used, dropped first
        e.principal(_req(t))
    assert list(e._cache) == ["t3", "t1", "t4"]
    e.principal(_req("t2"))
    assert keys.verified == ["t1", "t2", "t3", "t4", "t2"]
    # a cached token is still held to aud/iss for another base, to expiry and to revocation
    with pytest.raises(Exception, match="aud"):
        e.principal(_req("t1", "http://other/fhir"))
    e.principal(_req("t1"))
    e.revoked.add("t1")
    with pytest.raises(Exception, match="revoked"):
        e.principal(_req("t1"))
    p = e.principal(_req("t4"))
    monkeypatch.setattr(enforce.time, "time", lambda: p.exp + 1.0)
    with pytest.raises(Exception, match="expired"):
        e.principal(_req("t4"))
    assert "t4" not in e._cache


# --- the quick path of repeated reads (Enforcer.quick) ----------------------------------------------


class _PatientKeys(_Keys):
    def verify(self, token: str, typ: str, now: float | None = None) -> dict[str, Any]:
        return {**super().verify(token, typ, now), "scope": "patient/*.rs", "patient": "p1"}


class _Hub:
    class settings:  # noqa: N801 - stands for the hub's Settings
        mpi = False

    class store:  # noqa: N801 - stands for the hub's store (the guard keeps its indexer)
        indexer = None


def _checked(e: Enforcer, req: Request) -> Request:
    import asyncio

    return asyncio.run(e.check(_Hub(), req))


def test_the_quick_path_reuses_the_decision_and_still_refuses_expired_or_revoked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from fhir_hub.auth import enforce

    e = Enforcer(_Store(), _PatientKeys(), "/fhir", set())  # type: ignore[arg-type]
    assert e.quick(_req("t1")) is None  # never verified: check() first
    first = _checked(e, _req("t1"))
    assert isinstance(first, enforce.GuardedRequest)
    again = e.quick(_req("t1"))
    assert isinstance(again, enforce.GuardedRequest) and again.admit is first.admit
    assert e.quick(_req("t1", "http://other/fhir")) is None  # another base: check() holds it to aud/iss
    # a patient's own Patient read depends on the id: never taken quickly
    patient = Request("GET", ["Patient", "p2"], [], {"authorization": "Bearer t1"}, b"", "http://h/fhir")
    with pytest.raises(enforce.FhirError) as refused:
        _checked(e, patient)
    assert refused.value.status == 404
    assert e.quick(patient) is None
    # expired while cached: the quick path declines, check() refuses it and drops it
    p = e.principal(_req("t1"))
    monkeypatch.setattr(enforce.time, "time", lambda: p.exp + 1.0)
    assert e.quick(_req("t1")) is None
    with pytest.raises(enforce.FhirError, match="expired"):
        _checked(e, _req("t1"))
    monkeypatch.undo()
    # revoked while cached (here or, through the revocations table, by another worker)
    _checked(e, _req("t2"))
    assert e.quick(_req("t2")) is not None
    e.revoked.add("t2")
    assert e.quick(_req("t2")) is None
    with pytest.raises(enforce.FhirError, match="revoked"):
        _checked(e, _req("t2"))


def test_a_cached_read_decision_ends_with_revocation(world: World) -> None:
    """Reads repeated under one token take the quick path; revoking the token ends them at once."""
    from tests.auth.smart import origin

    t = patient_token(world.srv, "001090000011")["access_token"]
    for _ in range(3):
        assert _get(world, t, f"Observation/{world.ids['own']}").status_code == 200
        assert _get(world, t, f"Observation/{world.ids['bobs']}").status_code == 404
    r = httpx.post(f"{origin(world.srv)}/auth/revoke", data={"token": t, "client_id": "app"})
    assert r.status_code == 200
    r = _get(world, t, f"Observation/{world.ids['own']}")
    assert r.status_code == 401 and world.ids["own"] not in r.text


# --- instance $validate under tokens ------------------------------------------------------------------


def _validate(w: World, token: str, path: str, body: dict[str, Any], query: str = "") -> httpx.Response:
    return httpx.post(f"{w.srv.base}/{path}/$validate{query}", content=orjson.dumps(body),
                      headers={**bearer(token), "content-type": "application/fhir+json"}, timeout=30)


def test_instance_validate_with_read_access(world: World) -> None:
    """A patient's token validates a resource of its compartment (it writes nothing); one outside it
    is 404 as for a read; a mode, or a Condition naming another patient, would look beyond the
    compartment: 403. A system token needs an unrestricted system/* read scope."""
    a, b = world.ids["a"], world.ids["b"]
    own = _get(world, world.system, f"Observation/{world.ids['own']}").json()
    r = _validate(world, world.alice, f"Observation/{world.ids['own']}", own)
    assert r.status_code == 200 and r.json()["resourceType"] == "OperationOutcome", r.text
    bobs = _get(world, world.system, f"Observation/{world.ids['bobs']}").json()
    r = _validate(world, world.alice, f"Observation/{world.ids['bobs']}", bobs)
    assert r.status_code == 404 and "Bob" not in r.text
    missing = _validate(world, world.alice, "Observation/no-such-one", {**own, "id": "no-such-one"})
    assert missing.status_code == 404
    for mode in ("update", "delete", "create"):
        r = _validate(world, world.alice, f"Observation/{world.ids['own']}", own, f"?mode={mode}")
        assert r.status_code == 403, (mode, r.text)
    in_body = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": own},
                                                           {"name": "mode", "valueCode": "update"}]}
    assert _validate(world, world.alice, f"Observation/{world.ids['own']}", in_body).status_code == 403
    made = httpx.post(f"{world.srv.base}/Condition", headers=bearer(world.system), content=orjson.dumps(
        {"resourceType": "Condition", "subject": {"reference": f"Patient/{a}"}, "code": {"text": "cough"}}))
    assert made.status_code == 201, made.text
    cid = made.json()["id"]
    condition = made.json()
    assert _validate(world, world.alice, f"Condition/{cid}", condition).status_code == 200
    other = {**condition, "subject": {"reference": f"Patient/{b}"}}
    assert _validate(world, world.alice, f"Condition/{cid}", other).status_code == 403
    # system tokens: system/*.cruds (the world's) may; a type-only read scope may not
    assert _validate(world, world.system, f"Observation/{world.ids['bobs']}", bobs, "?mode=update").status_code == 200
    narrow = world.backend.token(world.srv, scope="system/Observation.rs").json()["access_token"]
    assert _get(world, narrow, f"Observation/{world.ids['bobs']}").status_code == 200
    assert _validate(world, narrow, f"Observation/{world.ids['bobs']}", bobs).status_code == 403
    # a body that is not JSON is still a 400 with an OperationOutcome, not a 500
    r = httpx.post(f"{world.srv.base}/Observation/{world.ids['own']}/$validate", content=b"{not json",
                   headers={**bearer(world.alice), "content-type": "application/fhir+json"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


class _StrictKeys(_PatientKeys):
    """Verifies only the tokens it issued (as the real Keys verify the signature)."""

    def __init__(self, issued: set[str]) -> None:
        super().__init__()
        self.issued = issued

    def verify(self, token: str, typ: str, now: float | None = None) -> dict[str, Any]:
        from fhir_hub.auth.keys import InvalidToken

        if token not in self.issued:
            raise InvalidToken("bad signature")
        return super().verify(token, typ, now)


def test_the_quick_index_serves_the_exact_header_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick path finds a token by the end of its header: a header ending alike but otherwise
    different (a forged token with a valid token's tail) is not served from it and is refused by
    check(); an evicted or expired token leaves the index with the cache."""
    from fhir_hub.auth import enforce

    tail = "x" * (enforce._TAIL + 8)
    good, forged = f"a{tail}", f"b{tail}"
    e = Enforcer(_Store(), _StrictKeys({good, "t2", "t3"}), "/fhir", set())  # type: ignore[arg-type]
    _checked(e, _req(good))
    assert isinstance(e.quick(_req(good)), enforce.GuardedRequest)
    assert e.quick(_req(forged)) is None
    with pytest.raises(enforce.FhirError) as refused:
        _checked(e, _req(forged))
    assert refused.value.status == 401
    assert isinstance(e.quick(_req(good)), enforce.GuardedRequest)  # the refused one displaced nothing
    # the same token with the scheme in other case is verified as such by check(), then served too
    lower = Request("GET", ["Observation", "1"], [], {"authorization": f"bearer {good}"}, b"", "http://h/fhir")
    assert e.quick(lower) is None
    assert isinstance(_checked(e, lower), enforce.GuardedRequest)
    assert isinstance(e.quick(lower), enforce.GuardedRequest)
    # evicted from the bounded cache: out of the quick index too
    monkeypatch.setattr(enforce, "_CACHE_MAX", 2)
    _checked(e, _req("t2"))
    _checked(e, _req("t3"))
    assert good not in e._cache
    assert e.quick(_req(good)) is None and e.quick(lower) is None
    assert all(entry.token in e._cache for entry in e._quick.values())
    # expired: check() drops it from both
    p = e.principal(_req("t3"))
    monkeypatch.setattr(enforce.time, "time", lambda: p.exp + 1.0)
    with pytest.raises(enforce.FhirError, match="expired"):
        _checked(e, _req("t3"))
    assert "t3" not in e._cache and all(entry.token != "t3" for entry in e._quick.values())


def test_the_app_can_take_the_quick_path_without_a_coroutine(world: World) -> None:
    """``Auth.quick`` is the enforcer's quick path once the server runs: the app may try it before
    awaiting ``Auth.enforce``; it declines (``None``) what only ``enforce`` may decide."""
    from fhir_hub.auth import Auth
    from fhir_hub.config import Settings

    auth = Auth(Settings.from_env(db=str(world.srv.db)))
    req = _req("t1")
    assert auth.quick(req) is None  # not open: nothing is decided here
    auth.open()
    try:
        assert auth._enforcer is not None and auth.quick == auth._enforcer.quick
        assert auth.quick(req) is None  # never verified: enforce() decides
        assert auth.audits is False
    finally:
        import asyncio

        asyncio.run(auth.close())
    assert auth.quick(req) is None
