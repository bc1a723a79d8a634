"""Read, vread, create, update, delete, conditional forms and headers, against a real server."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest


def patient(ident: str | None = None, **extra: Any) -> dict[str, Any]:
    p: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": "Trần", "given": ["Thị", "Lan"]}]}
    if ident:
        p["identifier"] = [{"system": "http://fhir.ehealth.gov.vn/core/sid/national_id", "value": ident}]
    p.update(extra)
    return p


def uniq() -> str:
    return str(uuid.uuid4().int)[:12]


def outcome_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert body["issue"] and all(i["diagnostics"] for i in body["issue"])
    return body


def test_create_assigns_id_and_sets_headers(client: httpx.Client) -> None:
    r = client.post("/Patient", json=patient(uniq(), id="ignored"))
    assert r.status_code == 201
    body = r.json()
    assert body["id"] != "ignored" and body["meta"]["versionId"] == "1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"].endswith(f"/Patient/{body['id']}/_history/1")
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert "last-modified" in r.headers
    got = client.get(f"/Patient/{body['id']}")
    assert got.status_code == 200 and got.json() == body and got.headers["etag"] == 'W/"1"'


def test_update_versions_and_vread(client: httpx.Client) -> None:
    rid = f"u-{uniq()}"
    r1 = client.put(f"/Patient/{rid}", json=patient(id=rid))
    assert r1.status_code == 201 and r1.headers["location"].endswith(f"/Patient/{rid}/_history/1")
    r2 = client.put(f"/Patient/{rid}", json=patient(id=rid, gender="female"))
    assert r2.status_code == 200 and r2.json()["meta"]["versionId"] == "2"
    v1 = client.get(f"/Patient/{rid}/_history/1")
    assert v1.status_code == 200 and "gender" not in v1.json()
    assert client.get(f"/Patient/{rid}/_history/2").json()["gender"] == "female"
    assert client.get(f"/Patient/{rid}/_history/3").status_code == 404
    assert client.get(f"/Patient/{rid}/_history/x").status_code == 404


def test_update_rejects_id_mismatch_and_missing_id(client: httpx.Client) -> None:
    assert client.put("/Patient/a1", json=patient(id="b1")).status_code == 400
    r = client.put("/Patient/a1", json=patient())
    assert r.status_code == 400 and outcome_of(r)["issue"][0]["expression"] == ["id"]


def test_delete_then_read_is_gone_and_history_keeps_it(client: httpx.Client) -> None:
    rid = client.post("/Patient", json=patient()).json()["id"]
    r = client.delete(f"/Patient/{rid}")
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'
    gone = client.get(f"/Patient/{rid}")
    assert gone.status_code == 410 and outcome_of(gone)["issue"][0]["code"] == "deleted"
    assert client.delete(f"/Patient/{rid}").status_code == 204
    assert client.get(f"/Patient/{rid}/_history/1").status_code == 200
    hist = client.get(f"/Patient/{rid}/_history").json()
    assert hist["type"] == "history"
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "POST"]
    assert "resource" not in hist["entry"][0]


def test_if_match_conflict_is_412(client: httpx.Client) -> None:
    rid = client.post("/Patient", json=patient()).json()["id"]
    ok = client.put(f"/Patient/{rid}", json=patient(id=rid), headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200
    stale = client.put(f"/Patient/{rid}", json=patient(id=rid), headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412 and outcome_of(stale)
    assert client.delete(f"/Patient/{rid}", headers={"If-Match": 'W/"1"'}).status_code == 412
    assert client.put(f"/Patient/{rid}", json=patient(id=rid), headers={"If-Match": "nonsense"}).status_code == 400


def test_conditional_create(client: httpx.Client) -> None:
    ident = uniq()
    crit = f"identifier=http://fhir.ehealth.gov.vn/core/sid/national_id|{ident}"
    first = client.post("/Patient", json=patient(ident), headers={"If-None-Exist": crit})
    assert first.status_code == 201
    again = client.post("/Patient", json=patient(ident), headers={"If-None-Exist": crit})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    client.post("/Patient", json=patient(ident))  # a duplicate made without the condition
    assert client.post("/Patient", json=patient(ident), headers={"If-None-Exist": crit}).status_code == 412
    bad = client.post("/Patient", json=patient(), headers={"If-None-Exist": "nosuchparam=1"})
    assert bad.status_code == 400 and "nosuchparam" in outcome_of(bad)["issue"][0]["diagnostics"]


def test_conditional_update_and_delete(client: httpx.Client) -> None:
    ident = uniq()
    url = f"/Patient?identifier={ident}"
    created = client.put(url, json=patient(ident))
    assert created.status_code == 201
    rid = created.json()["id"]
    updated = client.put(url, json=patient(ident, gender="male"))
    assert updated.status_code == 200 and updated.json()["id"] == rid and updated.json()["meta"]["versionId"] == "2"
    assert client.put(url, json=patient(ident, id="other")).status_code == 400
    assert client.delete(url).status_code == 200
    assert client.get(f"/Patient/{rid}").status_code == 410
    assert client.delete(url).status_code == 204
    ident2 = uniq()
    client.post("/Patient", json=patient(ident2))
    client.post("/Patient", json=patient(ident2))
    assert client.put(f"/Patient?identifier={ident2}", json=patient(ident2)).status_code == 412
    assert client.delete(f"/Patient?identifier={ident2}").status_code == 200  # multiple delete
    assert "entry" not in client.get(f"/Patient?identifier={ident2}").json()  # no empty arrays in FHIR JSON


def test_prefer_return(client: httpx.Client) -> None:
    minimal = client.post("/Patient", json=patient(), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201 and minimal.content == b"" and "location" in minimal.headers
    oo = client.post("/Patient", json=patient(), headers={"Prefer": "return=OperationOutcome"})
    assert oo.status_code == 201 and oo.json()["resourceType"] == "OperationOutcome"


def test_conditional_read_304(client: httpx.Client) -> None:
    r = client.post("/Patient", json=patient())
    rid = r.json()["id"]
    nm = client.get(f"/Patient/{rid}", headers={"If-None-Match": 'W/"1"'})
    assert nm.status_code == 304 and nm.content == b"" and nm.headers["etag"] == 'W/"1"'
    assert client.get(f"/Patient/{rid}", headers={"If-None-Match": 'W/"9"'}).status_code == 200
    lm = r.headers["last-modified"]
    assert client.get(f"/Patient/{rid}", headers={"If-Modified-Since": lm}).status_code == 304
    assert client.get(f"/Patient/{rid}", headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status_code == 200


def test_summary_elements_pretty(client: httpx.Client) -> None:
    rid = client.post("/Patient", json=patient(text={"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
                                               gender="male", photo=[{"contentType": "image/png", "data": "AAAA"}])).json()["id"]
    s = client.get(f"/Patient/{rid}?_summary=true").json()
    assert "photo" not in s and s["gender"] == "male" and "text" not in s
    assert any(t["code"] == "SUBSETTED" for t in s["meta"]["tag"])
    e = client.get(f"/Patient/{rid}?_elements=gender").json()
    assert set(e) == {"resourceType", "id", "meta", "gender"}
    assert client.get(f"/Patient/{rid}?_summary=data").json().get("text") is None
    pretty = client.get(f"/Patient/{rid}?_pretty=true")
    assert b"\n  " in pretty.content
    assert client.get(f"/Patient/{rid}?_summary=bogus").status_code == 400


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status"),
    [
        ("GET", "/Patient/x", {"headers": {"Accept": "application/fhir+xml"}}, 406),
        ("GET", "/Patient/x?_format=xml", {}, 406),
        ("POST", "/Patient", {"content": b"<Patient/>", "headers": {"Content-Type": "application/fhir+xml"}}, 415),
        ("POST", "/Patient", {"content": b"{not json"}, 400),
        ("POST", "/Patient", {"content": b"[1,2]"}, 400),
        ("POST", "/Patient", {"content": b""}, 400),
        ("POST", "/Patient", {"json": {"resourceType": "Observation"}}, 400),
        ("POST", "/Nope", {"json": {"resourceType": "Nope"}}, 404),
        ("GET", "/Nope/1", {}, 404),
        ("GET", "/Patient/not_valid_id!", {}, 400),
        ("GET", "/Patient/does-not-exist", {}, 404),
        ("POST", "/Patient/1", {"json": {}}, 405),
        ("GET", "/Patient/1/a/b/c/d", {}, 404),
        ("PATCH", "/Patient/1", {"content": b"[]", "headers": {"Content-Type": "text/plain"}}, 415),
    ],
)
def test_bad_requests_get_outcomes(client: httpx.Client, method: str, url: str, kwargs: dict[str, Any],
                                   status: int) -> None:
    r = client.request(method, url, **kwargs)
    assert r.status_code == status, r.text
    outcome_of(r)


def test_invalid_resource_names_the_path(client: httpx.Client) -> None:
    r = client.post("/Patient", json={"resourceType": "Patient", "gender": "sometimes", "birthDate": "1990-13-01",
                                      "name": [{"family": "A", "bogus": 1}]})
    assert r.status_code == 400
    exprs = {e for i in outcome_of(r)["issue"] for e in i.get("expression", [])}
    assert {"Patient.gender", "Patient.birthDate", "Patient.name[0].bogus"} <= exprs


def test_reference_integrity(client: httpx.Client) -> None:
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "Patient/never-existed"}}
    r = client.post("/Observation", json=obs)
    assert r.status_code == 409 and outcome_of(r)["issue"][0]["expression"] == ["Observation.subject.reference"]
    rid = client.post("/Patient", json=patient()).json()["id"]
    obs["subject"] = {"reference": f"Patient/{rid}"}
    assert client.post("/Observation", json=obs).status_code == 201


def test_json_patch_and_fhirpath_patch(client: httpx.Client) -> None:
    rid = client.post("/Patient", json=patient()).json()["id"]
    jp = client.patch(f"/Patient/{rid}", content=orjson.dumps([{"op": "add", "path": "/gender", "value": "female"}]),
                      headers={"Content-Type": "application/json-patch+json"})
    assert jp.status_code == 200 and jp.json()["gender"] == "female" and jp.json()["meta"]["versionId"] == "2"
    fp = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient.gender"},
        {"name": "value", "valueCode": "male"}]}]}
    r = client.patch(f"/Patient/{rid}", json=fp)
    assert r.status_code == 200 and r.json()["gender"] == "male"
    bad = client.patch(f"/Patient/{rid}", content=orjson.dumps([{"op": "replace", "path": "/gender", "value": "x"}]),
                       headers={"Content-Type": "application/json-patch+json"})
    assert bad.status_code == 400  # the patched resource is validated
    hist = client.get(f"/Patient/{rid}/_history").json()
    assert [e["request"]["method"] for e in hist["entry"]] == ["PATCH", "PATCH", "POST"]


def test_history_paging_links(client: httpx.Client) -> None:
    rid = f"h-{uniq()}"
    for i in range(5):
        client.put(f"/Patient/{rid}", json=patient(id=rid, birthDate=f"199{i}"))
    page = client.get(f"/Patient/{rid}/_history?_count=2").json()
    seen = []
    while True:
        seen += [e["resource"]["meta"]["versionId"] for e in page["entry"]]
        nxt = [lnk["url"] for lnk in page["link"] if lnk["relation"] == "next"]
        if not nxt:
            break
        page = httpx.get(nxt[0]).json()
    assert seen == ["5", "4", "3", "2", "1"]
    since = client.get(f"/Patient/{rid}/_history?_since=2000-01-01T00:00:00Z").json()
    assert len(since["entry"]) == 5
    assert client.get(f"/Patient/{rid}/_history?_since=notadate").status_code == 400
    typed = client.get("/Patient/_history?_count=1&_total=accurate").json()
    assert typed["total"] >= 5 and len(typed["entry"]) == 1
    assert client.get("/_history?_count=1").json()["type"] == "history"


def test_metadata_and_health(client: httpx.Client, server: Any) -> None:
    cs = client.get("/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    patient_rest = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"read", "vread", "create", "update", "patch", "delete"} <= {i["code"] for i in patient_rest["interaction"]}
    assert any(p["name"] == "identifier" for p in patient_rest["searchParam"])
    assert httpx.get(f"http://127.0.0.1:{server.port}/health").json() == {"status": "ok"}
    assert client.head(f"/Patient/{client.post('/Patient', json=patient()).json()['id']}").status_code == 200


def test_search_pages_through_every_match_once(client: httpx.Client) -> None:
    ident = uniq()
    made = {client.post("/Patient", json=patient(ident)).json()["id"] for _ in range(7)}
    page = client.get(f"/Patient?identifier={ident}&_count=3").json()
    seen: list[str] = []
    while True:
        seen += [e["resource"]["id"] for e in page.get("entry", [])]
        nxt = [lnk["url"] for lnk in page["link"] if lnk["relation"] == "next"]
        if not nxt:
            break
        client.post("/Patient", json=patient())  # writes between pages do not shift the cursor
        page = httpx.get(nxt[0]).json()
    assert len(seen) == 7 and set(seen) == made
    listed = client.get("/Patient?_count=5").json()  # no criteria: every live Patient, paged
    assert len(listed["entry"]) == 5 and any(lnk["relation"] == "next" for lnk in listed["link"])
