"""AuditEvents per access (``FHIR_HUB_AUDIT=access``): the BALP shape on its own, then over a real
server with auth on: who read what under which token (its ``jti``, never the token), refusals
and requests without a token recorded, stewards alone read them, nobody writes them, and what is
buffered at shutdown is written."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhir_hub.auth.audit import access_event, interaction
from tests.auth.smart import PASSWORD, REDIRECT, bearer, cli, make_backend, patient_token
from tests.conftest import Server, make_server


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("GET", "Observation/1", ("read", "R")),
    ("GET", "Observation/1/_history/2", ("vread", "R")),
    ("GET", "Observation/1/_history", ("history-instance", "R")),
    ("GET", "Observation", ("search-type", "E")),
    ("GET", "Patient/1/Observation", ("search-type", "E")),
    ("POST", "Observation/_search", ("search-type", "E")),
    ("GET", "Patient/1/$summary", ("operation", "E")),
    ("GET", "", ("search-system", "E")),
    ("POST", "", ("transaction", "E")),
    ("POST", "Observation", ("create", "C")),
    ("PUT", "Observation/1", ("update", "U")),
    ("PATCH", "Observation/1", ("patch", "U")),
    ("DELETE", "Observation/1", ("delete", "D")),
])
def test_interaction_codes(method: str, path: str, expected: tuple[str, str]) -> None:
    assert interaction(method, [s for s in path.split("/") if s]) == expected


def test_event_shape() -> None:
    event = access_event(method="GET", seg=["Observation", "o1"], raw_query="_elements=code", status=200,
                         recorded="2026-01-02T03:04:05.000Z", client_id="app", jti="j-1", patient="p1",
                         address="127.0.0.1")
    assert event["type"]["code"] == "rest" and event["subtype"][0]["code"] == "read" and event["action"] == "R"
    assert event["outcome"] == "0"
    client, user = event["agent"]
    assert client["who"]["identifier"]["value"] == "app" and client["policy"] == ["j-1"]
    assert client["requestor"] is False and client["network"]["address"] == "127.0.0.1"
    assert user["who"]["reference"] == "Patient/p1" and user["requestor"] is True
    patient, resource, query = event["entity"]
    assert patient["what"]["reference"] == "Patient/p1" and patient["role"]["code"] == "1"
    assert resource["what"]["reference"] == "Observation/o1"
    assert base64.b64decode(query["query"]) == b"_elements=code"
    anonymous = access_event(method="GET", seg=["Patient", "p2"], raw_query="", status=401, recorded="x",
                             client_id=None, jti=None, patient=None, address=None)
    assert anonymous["outcome"] == "4" and anonymous["agent"] == [{"who": {"display": "no valid token"},
                                                                   "requestor": True}]
    assert [e["what"]["reference"] for e in anonymous["entity"]] == ["Patient/p2"]  # the patient asked for


def test_events_are_valid_r4(server: Server) -> None:
    events = [access_event(method="GET", seg=["Observation", "o1"], raw_query="a=b", status=200,
                           recorded="2026-01-02T03:04:05.000Z", client_id="app", jti="j", patient="p1",
                           address="127.0.0.1"),
              access_event(method="POST", seg=[], raw_query="", status=401, recorded="2026-01-02T03:04:05.000Z",
                           client_id=None, jti=None, patient=None, address=None)]
    for event in events:
        r = httpx.post(f"{server.base}/AuditEvent/$validate", content=orjson.dumps(event),
                       headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 200, r.text
        assert [i for i in r.json()["issue"] if i["severity"] in ("fatal", "error", "warning")] == []


class Audited:
    def __init__(self, srv: Server, ids: dict[str, str], steward: Any, emr: Any):
        self.srv, self.ids, self.steward, self.emr = srv, ids, steward, emr


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audited]:
    tmp = tmp_path_factory.mktemp("audit")
    srv = make_server(tmp, auth="smart", audit="access").start()
    try:
        cli(srv.db, "clients", "add", "app", "--redirect-uri", REDIRECT)
        emr = make_backend(srv.db, tmp, "emr", "RS384")
        steward = make_backend(srv.db, tmp, "steward", "ES384", scope="system/AuditEvent.rs")
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Patient", "name": [{"family": "Đỗ"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:o", "request": {"method": "POST", "url": "Observation"},
             "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "Cân nặng"},
                          "subject": {"reference": "urn:uuid:a"}}},
            {"fullUrl": "urn:uuid:b", "resource": {"resourceType": "Patient", "name": [{"family": "Lý"}]},
             "request": {"method": "POST", "url": "Patient"}}]}
        r = httpx.post(srv.base, content=orjson.dumps(bundle), headers=bearer(_token(emr, srv)), timeout=30)
        assert r.status_code == 200, r.text
        ids = dict(zip(("a", "o", "b"), (e["response"]["location"].split("/")[1] for e in r.json()["entry"]),
                       strict=True))
        cli(srv.db, "users", "add", "--national-id", "001090000055", "--patient", ids["a"], "--password", PASSWORD)
        yield Audited(srv, ids, steward, emr)
    finally:
        srv.stop()


def _token(client: Any, srv: Server, **kw: Any) -> str:
    r = client.token(srv, **kw)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def _events(w: Audited, want: int, match: Callable[[dict[str, Any]], bool] = lambda e: True,
            **params: str) -> list[dict[str, Any]]:
    """The steward's search, asked again until ``want`` events match it and ``match`` (they are
    written in batches); those events."""
    access = _token(w.steward, w.srv, scope="system/AuditEvent.rs")
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = httpx.get(f"{w.srv.base}/AuditEvent", params={**params, "_count": "1000"}, headers=bearer(access))
        assert r.status_code == 200, r.text
        found = [e["resource"] for e in r.json().get("entry", []) if match(e["resource"])]
        if len(found) >= want:
            break
        time.sleep(0.2)
    return found


def _jti(access: str) -> str:
    payload = access.split(".")[1]
    return str(orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"])


def test_a_citizens_reads_are_recorded_with_the_tokens_jti(audited: Audited) -> None:
    w = audited
    t = patient_token(w.srv, "001090000055", "launch/patient patient/*.rs")
    access = t["access_token"]
    assert httpx.get(f"{w.srv.base}/Observation/{w.ids['o']}", headers=bearer(access)).status_code == 200
    assert httpx.get(f"{w.srv.base}/Patient/{w.ids['b']}", headers=bearer(access)).status_code == 404
    assert httpx.get(f"{w.srv.base}/Observation", params={"code": "x"}, headers=bearer(access)).status_code == 200
    mine = _events(w, 3, lambda e: any(_jti(access) in a.get("policy", []) for a in e["agent"]),
                   patient=f"Patient/{w.ids['a']}")
    assert len(mine) == 3, mine
    read, refused = sorted((e for e in mine if e["subtype"][0]["code"] == "read"), key=lambda e: e["outcome"])
    assert read["outcome"] == "0" and read["agent"][0]["who"]["identifier"]["value"] == "app"
    assert {x.get("what", {}).get("reference") for x in read["entity"]} >= {f"Observation/{w.ids['o']}"}
    assert refused["outcome"] == "4" and refused["outcomeDesc"].startswith("HTTP 404")
    search = next(e for e in mine if e["subtype"][0]["code"] == "search-type")
    assert any(base64.b64decode(x["query"]) == b"code=x" for x in search["entity"] if "query" in x)
    assert access not in orjson.dumps(mine).decode()  # the jti only, never the token


def test_requests_without_a_valid_token_are_recorded(audited: Audited) -> None:
    w = audited
    assert httpx.get(f"{w.srv.base}/Patient/{w.ids['b']}", headers=bearer("not-a-token")).status_code == 401
    found = _events(w, 1, lambda e: e["agent"][0]["who"].get("display") == "no valid token",
                    patient=f"Patient/{w.ids['b']}", outcome="4")
    assert found and found[0]["outcomeDesc"] == f"HTTP 401 GET /Patient/{w.ids['b']}"
    assert "not-a-token" not in orjson.dumps(found).decode()


def test_only_stewards_read_audit_events(audited: Audited) -> None:
    w = audited
    emr = _token(w.emr, w.srv)  # system/*.cruds: everything but the audit trail
    citizen = patient_token(w.srv, "001090000055", "launch/patient patient/*.rs")["access_token"]
    a = w.ids["a"]
    _events(w, 1)  # there is something to hide
    for access, path, params in [
        (emr, "AuditEvent", {}), (emr, f"Patient/{a}/AuditEvent", {}), (emr, "AuditEvent/_history", {}),
        (emr, "Patient", {"_revinclude": "AuditEvent:patient"}), (emr, "Patient", {"_revinclude": "*"}),
        (emr, "Patient", {"_has:AuditEvent:patient:outcome": "0"}), (emr, "", {"_type": "Patient,AuditEvent"}),
        (emr, f"Patient/{a}/*", {}), (emr, "_history", {}), (emr, f"Patient/{a}/$everything", {"_type": "AuditEvent"}),
        (citizen, f"Patient/{a}/AuditEvent", {}), (citizen, f"Patient/{a}/*", {}),
    ]:
        r = httpx.get(f"{w.srv.base}/{path}", params=params, headers=bearer(access))
        assert r.status_code == 403, (path, params, r.text)
        assert '"AuditEvent","id"' not in r.text and "agent" not in r.text, path
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": "AuditEvent"}}]}
    r = httpx.post(w.srv.base, content=orjson.dumps(batch), headers=bearer(emr))
    assert r.status_code == 403 and "agent" not in r.text
    everything = httpx.get(f"{w.srv.base}/Patient/{a}/$everything", headers=bearer(emr))
    assert everything.status_code == 200
    kinds = {e["resource"]["resourceType"] for e in everything.json()["entry"]}
    assert kinds == {"Patient", "Observation"}  # the patient's AuditEvents left out
    mpi_like = httpx.get(f"{w.srv.base}/Patient", params={"_id": a}, headers=bearer(emr))
    assert mpi_like.status_code == 200  # the control: ordinary searches still work


def test_nobody_writes_audit_events(audited: Audited) -> None:
    w = audited
    event = {"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": "2026-01-01T00:00:00Z",
             "agent": [{"requestor": True}], "source": {"observer": {"display": "x"}}}
    for client, scope in ((w.emr, "system/*.cruds"), (w.steward, "system/AuditEvent.rs")):
        access = _token(client, w.srv, scope=scope)
        r = httpx.post(f"{w.srv.base}/AuditEvent", content=orjson.dumps(event), headers=bearer(access))
        assert r.status_code in (403, 405), r.text
    access = _token(w.emr, w.srv)
    r = httpx.post(f"{w.srv.base}/AuditEvent", content=orjson.dumps(event), headers=bearer(access))
    assert r.status_code == 405 and r.json()["issue"][0]["code"] == "not-supported"
    old = _events(w, 1)[0]
    r = httpx.put(f"{w.srv.base}/AuditEvent/{old['id']}", content=orjson.dumps({**old, "outcome": "0"}),
                  headers=bearer(access))
    assert r.status_code == 405
    assert httpx.delete(f"{w.srv.base}/AuditEvent/{old['id']}", headers=bearer(access)).status_code == 405
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": event, "request": {"method": "POST", "url": "AuditEvent"}}]}
    r = httpx.post(w.srv.base, content=orjson.dumps(bundle), headers=bearer(access))
    assert r.status_code in (403, 405) and r.json()["resourceType"] == "OperationOutcome"


def test_buffered_events_are_written_at_shutdown(tmp_path: Path) -> None:
    srv = make_server(tmp_path, auth="smart", audit="access").start()
    steward = make_backend(srv.db, tmp_path, "steward", "ES384", scope="system/AuditEvent.rs")
    try:
        for _ in range(5):
            assert httpx.get(f"{srv.base}/Patient/x").status_code == 401
    finally:
        srv.stop()  # before the half-second batch: the shutdown writes them
    srv.start()
    try:
        r = httpx.get(f"{srv.base}/AuditEvent", params={"outcome": "4"},
                      headers=bearer(_token(steward, srv, scope="system/AuditEvent.rs")))
        assert r.status_code == 200 and r.json().get("total", len(r.json().get("entry", []))) >= 5, r.text
    finally:
        srv.stop()


def test_the_indexed_codings_add_no_text_rows() -> None:
    """The codings the search index reads (type, entity type and role) carry system and code only,
    so an event is indexed without a ``:text`` row for each (fewer rows to write per access); the
    codes themselves are all there, and searchable."""
    from fhir_hub.search import extract

    event = access_event(method="GET", seg=["Observation", "o1"], raw_query="a=b", status=200,
                         recorded="2026-01-02T03:04:05.000Z", client_id="app", jti="j", patient="p1",
                         address="127.0.0.1")
    rows = list(extract.index_rows("AuditEvent", {**event, "id": "e1"}))
    assert not [r for r in rows if r[1].endswith(":text")], rows
    tokens = {(r[1], r[2], r[3]) for r in rows if r[0] == "token"}
    assert ("type", "http://terminology.hl7.org/CodeSystem/audit-event-type", "rest") in tokens
    role = "http://terminology.hl7.org/CodeSystem/object-role"
    assert {("entity-role", role, "1"), ("entity-role", role, "4"), ("entity-role", role, "24")} <= tokens
    assert len(rows) <= 19, rows
