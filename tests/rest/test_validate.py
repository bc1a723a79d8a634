"""``$validate`` and claimed VN profiles on write, end to end over a real server."""

from __future__ import annotations

from typing import Any

import httpx

from tests.validation import vn_samples

SD = vn_samples.SD


def _issues(r: httpx.Response) -> list[dict[str, Any]]:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    issues: list[dict[str, Any]] = body["issue"]
    return issues


def test_validate_a_conforming_patient(client: httpx.Client) -> None:
    r = client.post("/Patient/$validate", json=vn_samples.patient())
    assert r.status_code == 200
    assert [(i["severity"], i["code"]) for i in _issues(r)] == [("information", "informational")]


def test_validate_reports_the_cccd_warning_in_vietnamese_when_asked(client: httpx.Client) -> None:
    p = vn_samples.patient()
    p["birthDate"] = "1991-04-12"  # the personal ID says 1990
    r = client.post("/Patient/$validate", json=p, headers={"Accept-Language": "vi-VN,vi;q=0.9,en;q=0.5"})
    assert r.status_code == 200
    [issue] = _issues(r)
    assert issue["severity"] == "warning" and issue["expression"] == ["Patient"]
    assert issue["diagnostics"].startswith("Ràng buộc vn-pat-1 không thỏa")
    translation = issue["_diagnostics"]["extension"][0]
    assert translation["url"] == "http://hl7.org/fhir/StructureDefinition/translation"
    parts = {e["url"]: e for e in translation["extension"]}
    assert parts["lang"]["valueCode"] == "en" and "vn-pat-1 failed" in parts["content"]["valueString"]


def test_validate_with_a_profile_parameter_in_parameters(client: httpx.Client) -> None:
    e = vn_samples.encounter()
    del e["meta"]
    e["class"]["code"] = "IMP"
    e["subject"]["reference"] = "Patient/val-never-p1"  # ids no other test writes to the shared store
    e["serviceProvider"]["reference"] = "Organization/val-never-o1"
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": e}, {"name": "profile", "valueUri": f"{SD}/vn-core-encounter-outpatient"},
        {"name": "mode", "valueCode": "create"}]}
    r = client.post("/Encounter/$validate", json=body)
    assert r.status_code == 200
    # mode create also reports the references a create would refuse (neither target exists)
    assert [(i["severity"], i["code"], i["expression"]) for i in _issues(r)] == [
        ("error", "value", ["Encounter.class"]), ("error", "not-found", ["Encounter.subject.reference"]),
        ("error", "not-found", ["Encounter.serviceProvider.reference"])]
    # without the profile (and no claim) only R4 itself applies
    assert _issues(client.post("/Encounter/$validate", json=e))[0]["severity"] == "information"
    # the same through the query string
    r = client.post(f"/Encounter/$validate?profile={SD}/vn-core-encounter-outpatient", json=e)
    assert _issues(r)[0]["expression"] == ["Encounter.class"]


def test_validate_refuses_what_it_cannot_run(client: httpx.Client) -> None:
    r = client.post("/Patient/$validate?profile=http://example.org/StructureDefinition/nope", json=vn_samples.patient())
    assert r.status_code == 400 and "not known" in r.text
    assert client.post("/Patient/$validate", json=vn_samples.encounter()).status_code == 400
    assert client.post("/Patient/$validate", json={"resourceType": "Parameters"}).status_code == 400
    assert client.post("/Patient/$validate", content=b"{oops").status_code == 400


def test_structural_errors_come_first(client: httpx.Client) -> None:
    p = vn_samples.patient()
    p["gender"] = "x"
    p["bogus"] = 1
    codes = {(i["code"], tuple(i["expression"])) for i in _issues(client.post("/Patient/$validate", json=p))}
    assert ("structure", ("Patient.bogus",)) in codes and ("code-invalid", ("Patient.gender",)) in codes


def test_a_write_claiming_a_vn_profile_must_conform(client: httpx.Client) -> None:
    p = vn_samples.patient()
    p["identifier"][0]["value"] = "00119001234"  # 11 digits
    del p["name"][0]["text"]
    r = client.post("/Patient", json=p)
    assert r.status_code == 422, r.text
    found = {(i["severity"], i["expression"][0]) for i in _issues(r)}
    assert ("error", "Patient.identifier[0].value") in found and ("error", "Patient.name[0].text") in found
    del p["meta"]  # no claim: R4 alone decides
    assert client.post("/Patient", json=p).status_code == 201
    assert client.post("/Patient", json=vn_samples.patient()).status_code == 201
    warned = vn_samples.patient()
    warned["gender"] = "male"  # a warning only: accepted
    assert client.put("/Patient/vn-warned", json={**warned, "id": "vn-warned"}).status_code in (200, 201)


def test_a_transaction_entry_claiming_a_vn_profile_must_conform(client: httpx.Client) -> None:
    o = vn_samples.vital_sign()
    o["subject"] = {"reference": "urn:uuid:5f0c2d7e-8d1e-4c49-9a51-1b7c3f1d0a01"}
    o["valueQuantity"]["code"] = "[lb_av]x"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:5f0c2d7e-8d1e-4c49-9a51-1b7c3f1d0a01", "resource": vn_samples.patient(),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": o, "request": {"method": "POST", "url": "Observation"}}]}
    r = client.post("", json=bundle)
    assert r.status_code == 422, r.text
    assert [i["expression"] for i in _issues(r)] == [["Bundle.entry[1].resource"]]


def test_the_capability_statement_lists_validate(client: httpx.Client) -> None:
    rest = client.get("/metadata").json()["rest"][0]
    assert {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"} in rest[
        "operation"]
