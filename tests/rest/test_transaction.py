"""Batch and transaction bundles against a real server: atomicity, ordering, reference rewriting."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import orjson

from tests.conftest import Server

NID = "http://fhir.ehealth.gov.vn/core/sid/national_id"


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def ident() -> str:
    return str(uuid.uuid4().int)[:12]


def bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def post_entry(resource: dict[str, Any], full_url: str | None = None, **request: Any) -> dict[str, Any]:
    e: dict[str, Any] = {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"], **request}}
    if full_url:
        e["fullUrl"] = full_url
    return e


def obs(subject: str, value: float = 80) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": subject}, "valueQuantity": {"value": value, "unit": "/min"}}


def store_state(c: httpx.Client) -> list[tuple[str, str, str]]:
    hist = c.get("/_history?_count=1000").json()
    return [(e["fullUrl"], e["request"]["method"], e["response"]["etag"]) for e in hist.get("entry", [])]


def test_transaction_resolves_urn_uuids_and_answers_in_order(client: httpx.Client) -> None:
    p_urn = urn()
    nid = ident()
    b = bundle("transaction", [
        post_entry(obs(p_urn)),
        post_entry({"resourceType": "Patient", "identifier": [{"system": NID, "value": nid}]}, p_urn),
        post_entry(obs(p_urn, 90)),
    ])
    r = client.post("", json=b)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses == ["201 Created"] * 3
    patient_loc = out["entry"][1]["response"]["location"]
    pid = patient_loc.split("/")[1]
    o1 = client.get("/" + out["entry"][0]["response"]["location"].rsplit("/_history", 1)[0]).json()
    assert o1["subject"]["reference"] == f"Patient/{pid}"


def test_transaction_with_invalid_nth_entry_changes_nothing(fresh_server: Server) -> None:
    with httpx.Client(base_url=fresh_server.base, headers={"Content-Type": "application/fhir+json"}) as c:
        seed = c.put("/Patient/keep", json={"resourceType": "Patient", "id": "keep", "gender": "male"})
        assert seed.status_code == 201
        before = store_state(c)
        p_urn = urn()
        for bad_index, bad in [
            (3, {"resourceType": "Observation", "status": "not-a-status", "code": {"text": "x"}}),
            (2, {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                 "subject": {"reference": "Patient/missing"}}),
        ]:
            entries = [
                post_entry({"resourceType": "Patient"}, p_urn),
                {"resource": {"resourceType": "Patient", "id": "keep", "gender": "female"},
                 "request": {"method": "PUT", "url": "Patient/keep"}},
                post_entry(obs(p_urn)),
                {"request": {"method": "DELETE", "url": f"Patient/{uuid.uuid4()}"}},
            ]
            entries.insert(bad_index, post_entry(bad))
            r = c.post("", json=bundle("transaction", entries))
            assert 400 <= r.status_code < 500, r.text
            issue = r.json()["issue"][0]
            assert issue["expression"][0].startswith(f"Bundle.entry[{bad_index}]")
            assert store_state(c) == before
            assert c.get("/Patient/keep").json()["gender"] == "male"


def test_transaction_conditional_references_and_if_none_exist(client: httpx.Client) -> None:
    nid = ident()
    made = client.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": NID, "value": nid}]})
    pid = made.json()["id"]
    org_code = ident()[:5]
    org = {"resourceType": "Organization", "identifier": [{"system": "urn:facility", "value": org_code}]}
    b = bundle("transaction", [
        post_entry(obs(f"Patient?identifier={NID}|{nid}")),
        post_entry(org, urn(), ifNoneExist=f"identifier=urn:facility|{org_code}"),
    ])
    r1 = client.post("", json=b).json()
    assert r1["entry"][1]["response"]["status"] == "201 Created"
    oid = r1["entry"][0]["response"]["location"].split("/")[1]
    assert client.get(f"/Observation/{oid}").json()["subject"]["reference"] == f"Patient/{pid}"
    r2 = client.post("", json=b).json()
    assert r2["entry"][1]["response"]["status"] == "200 OK"  # found, not duplicated
    assert len(client.get(f"/Organization?identifier=urn:facility|{org_code}").json()["entry"]) == 1
    missing = bundle("transaction", [post_entry(obs(f"Patient?identifier={NID}|no-such-{nid}"))])
    assert client.post("", json=missing).status_code == 400
    client.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": NID, "value": nid}]})
    ambiguous = bundle("transaction", [post_entry(obs(f"Patient?identifier={NID}|{nid}"))])
    r = client.post("", json=ambiguous)
    assert r.status_code == 412 and "more than one" in r.json()["issue"][0]["diagnostics"]


def test_transaction_order_delete_post_put_get(client: httpx.Client) -> None:
    rid = f"t-{ident()}"
    client.put(f"/Patient/{rid}", json={"resourceType": "Patient", "id": rid})
    b = bundle("transaction", [
        {"request": {"method": "GET", "url": f"Patient/{rid}"}},
        {"resource": {"resourceType": "Patient", "id": f"{rid}-new"}, "request": {"method": "PUT", "url": f"Patient/{rid}-new"}},
        {"request": {"method": "DELETE", "url": f"Patient/{rid}"}},
    ])
    out = client.post("", json=b)
    assert out.status_code == 410  # the GET runs last and sees the DELETE: the whole transaction fails
    assert client.get(f"/Patient/{rid}").status_code == 200
    assert client.get(f"/Patient/{rid}-new").status_code == 404
    b["entry"][0]["request"]["url"] = f"Patient/{rid}-new"
    out = client.post("", json=b).json()
    assert [e["response"]["status"] for e in out["entry"]] == ["200 OK", "201 Created", "200 OK"]
    assert out["entry"][0]["resource"]["id"] == f"{rid}-new"


def test_transaction_rejects_overlapping_targets(client: httpx.Client) -> None:
    rid = f"o-{ident()}"
    b = bundle("transaction", [
        {"resource": {"resourceType": "Patient", "id": rid}, "request": {"method": "PUT", "url": f"Patient/{rid}"}},
        {"request": {"method": "DELETE", "url": f"Patient/{rid}"}},
    ])
    r = client.post("", json=b)
    assert r.status_code == 400 and "only once" in r.json()["issue"][0]["diagnostics"]


def test_transaction_patch_entries(client: httpx.Client) -> None:
    rid = client.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
    ops = base64.b64encode(orjson.dumps([{"op": "add", "path": "/gender", "value": "other"}])).decode()
    b = bundle("transaction", [{"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                                             "data": ops}, "request": {"method": "PATCH", "url": f"Patient/{rid}"}}])
    assert client.post("", json=b).status_code == 200
    assert client.get(f"/Patient/{rid}").json()["gender"] == "other"


def test_batch_entries_succeed_or_fail_alone(client: httpx.Client) -> None:
    b = bundle("batch", [
        post_entry({"resourceType": "Patient"}),
        post_entry({"resourceType": "Patient", "gender": "bad"}),
        {"request": {"method": "GET", "url": "Patient/surely-not-there"}},
        post_entry(obs(urn())),
        {"request": {"method": "FLY", "url": "Patient"}},
    ])
    r = client.post("", json=b)
    assert r.status_code == 200
    out = r.json()
    assert out["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in out["entry"]]
    assert statuses[0] == "201 Created"
    assert statuses[1:] == ["400", "404", "400", "400"]
    assert all(e["response"]["outcome"]["resourceType"] == "OperationOutcome" for e in out["entry"][1:])


def test_bundle_errors(client: httpx.Client) -> None:
    assert client.post("", json={"resourceType": "Bundle", "type": "collection"}).status_code == 400
    assert client.post("", json={"resourceType": "Patient"}).status_code == 400
    r = client.post("", json=bundle("transaction", [{"resource": {"resourceType": "Patient"}}]))
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["Bundle.entry[0].request"]
    empty = client.post("", json=bundle("transaction", []))
    assert empty.status_code == 200 and "entry" not in empty.json()


def test_conditional_reads_inside_a_transaction(client: httpx.Client) -> None:
    rid = f"cr-{uuid.uuid4().hex[:8]}"
    assert client.put(f"/Patient/{rid}", json={"resourceType": "Patient", "id": rid}).status_code == 201
    reads = [
        {"request": {"method": "GET", "url": f"Patient/{rid}", "ifNoneMatch": 'W/"1"'}},
        {"request": {"method": "GET", "url": f"Patient/{rid}", "ifNoneMatch": 'W/"7"'}},
        {"request": {"method": "GET", "url": f"Patient/{rid}", "ifModifiedSince": "2999-01-01T00:00:00Z"}},
        {"request": {"method": "GET", "url": f"Patient/{rid}", "ifModifiedSince": "2015-08-31T08:14:33+10:00"}},
    ]
    r = client.post("", json=bundle("transaction", reads))
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["304 Not Modified", "200 OK", "304 Not Modified", "200 OK"]
    assert "resource" not in r.json()["entry"][0] and r.json()["entry"][1]["resource"]["id"] == rid
    bad = client.post("", json=bundle("transaction", [
        {"request": {"method": "GET", "url": f"Patient/{rid}", "ifModifiedSince": "last tuesday"}}]))
    assert bad.status_code == 400 and "ifModifiedSince" in bad.text


def test_terminology_operations_run_inside_batch_and_transaction(client: httpx.Client) -> None:
    lookup = {"resourceType": "Parameters", "parameter": [
        {"name": "coding", "valueCoding": {"system": "http://loinc.org", "code": "8867-4"}}]}
    entries = [
        {"resource": lookup, "request": {"method": "POST", "url": "CodeSystem/$lookup"}},
        {"request": {"method": "GET", "url": "CodeSystem/$lookup?system=http://loinc.org&code=29463-7"}},
        {"resource": lookup, "request": {"method": "POST", "url": "ValueSet/$lookup"}},  # R4's example path
    ]
    for kind in ("transaction", "batch"):
        r = client.post("", json=bundle(kind, entries))
        assert r.status_code == 200, r.text
        answers = r.json()["entry"]
        assert [e["response"]["status"] for e in answers] == ["200 OK"] * 3
        displays = [next(p["valueString"] for p in e["resource"]["parameter"] if p["name"] == "display")
                    for e in answers]
        assert displays[0] == displays[2] and "heart rate" in displays[0].lower()
        assert "weight" in displays[1].lower()
    refused = [{"request": {"method": "POST", "url": "Patient/$reindex"}},
               {"request": {"method": "DELETE", "url": "CodeSystem/$lookup"}},
               {"request": {"method": "GET", "url": "CodeSystem/$lookup?system=urn:none&code=x"}}]
    r = client.post("", json=bundle("batch", refused))
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["400", "400", "404"]
    assert "cannot run inside a bundle" in r.text
    r = client.post("", json=bundle("transaction", refused[2:]))
    assert r.status_code == 404 and "urn:none" in r.text


def test_batch_reads_answer_as_the_same_get_over_http(client: httpx.Client) -> None:
    tag = ident()
    pid = client.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": NID, "value": tag}],
                                        "name": [{"family": "Trần"}]}).json()["id"]
    reads = [
        {"request": {"method": "GET", "url": f"Patient?identifier={NID}|{tag}&notaparam=1&_count=5"}},
        {"request": {"method": "GET", "url": f"/Patient/{pid}", "ifNoneMatch": 'W/"1"'}},
        {"request": {"method": "GET", "url": f"Patient/{pid}"}},
        {"request": {"method": "GET", "url": "Patient/no-such-one"}},
        {"request": {"method": "GET", "url": "Patient?birthdate=not-a-date"}},
    ]
    r = client.post("", json=bundle("batch", reads))
    assert r.status_code == 200, r.text
    found, cond, plain, missing, bad = r.json()["entry"]
    page = found["resource"]
    assert found["response"]["status"] == "200 OK" and page["type"] == "searchset" and page["total"] == 1
    assert page["entry"][0]["resource"]["id"] == pid
    assert "notaparam" not in page["link"][0]["url"] and "_count=5" in page["link"][0]["url"]  # lenient, as GET
    assert cond["response"]["status"] == "304 Not Modified" and "resource" not in cond
    assert plain["response"]["etag"] == 'W/"1"' and plain["resource"]["name"][0]["family"] == "Trần"
    assert missing["response"]["status"] == "404" and missing["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert bad["response"]["status"] == "400" and "birthdate" in str(bad["response"]["outcome"])
