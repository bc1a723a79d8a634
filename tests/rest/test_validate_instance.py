"""Instance-level ``$validate`` and its modes (create, update, delete), end to end over a real server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.validation import vn_samples

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "validate-op"


def _issues(r: httpx.Response) -> list[dict[str, Any]]:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    issues: list[dict[str, Any]] = body["issue"]
    return issues


def _check_golden(name: str, doc: Any) -> None:
    path = GOLDEN / f"{name}.json"
    if os.environ.get("FHIR_HUB_UPDATE_GOLDEN") or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    assert doc == orjson.loads(path.read_bytes()), f"{name} differs from {path}"


def _put(client: httpx.Client, resource: dict[str, Any]) -> httpx.Response:
    r = client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text
    return r


def _patient(pid: str) -> dict[str, Any]:
    return {**vn_samples.patient(), "id": pid}


def _vital(oid: str, pid: str) -> dict[str, Any]:
    o = vn_samples.vital_sign()
    o["id"] = oid
    o["subject"] = {"reference": f"Patient/{pid}"}
    return o


def _validate(client: httpx.Client, url: str, resource: dict[str, Any] | None = None, mode: str | None = None,
              **kwargs: Any) -> httpx.Response:
    params = [{"name": "mode", "valueCode": mode}] if mode else []
    if resource is not None:
        params.append({"name": "resource", "resource": resource})
    return client.post(url, json={"resourceType": "Parameters", "parameter": params}, **kwargs)


def test_the_instance_form_validates_the_body_against_its_claims(client: httpx.Client) -> None:
    p = _patient("val-inst-1")
    r = client.post("/Patient/val-inst-1/$validate", json=p)
    assert r.status_code == 200 and [i["severity"] for i in _issues(r)] == ["information"]
    del p["name"][0]["text"]
    r = client.post("/Patient/val-inst-1/$validate", json=p)
    assert [(i["severity"], i["expression"]) for i in _issues(r)] == [("error", ["Patient.name[0].text"])]


def test_update_mode_compares_with_the_stored_version(client: httpx.Client) -> None:
    p = _patient("val-upd-1")
    _put(client, p)
    _put(client, {**p, "birthDate": "1990-04-13"})  # version 2 (a CCCD warning, still accepted)
    _put(client, p)  # version 3
    same = _validate(client, "/Patient/val-upd-1/$validate", p, "update")
    assert same.status_code == 200
    assert [(i["severity"], i["diagnostics"]) for i in _issues(same)] == [
        ("information", "no change from the current version 3 of Patient/val-upd-1 (meta aside)")]
    stale = {**p, "meta": {"versionId": "2"}, "gender": "female", "birthDate": "1990-04-12", "active": True}
    r = _validate(client, "/Patient/$validate", stale, "update")  # type level: the body's id names it
    found = [(i["severity"], i["code"], i.get("expression")) for i in _issues(r)]
    assert found == [("warning", "conflict", ["Patient.meta.versionId"]),
                     ("warning", "business-rule", ["Patient.meta.profile"])], found
    assert "current version of Patient/val-upd-1 is 3" in _issues(r)[0]["diagnostics"]
    assert "vn-core-patient" in _issues(r)[1]["diagnostics"]


def test_update_mode_of_a_new_id_says_it_would_create_it(client: httpx.Client) -> None:
    r = _validate(client, "/Patient/val-upd-none/$validate", _patient("val-upd-none"), "update")
    [issue] = _issues(r)
    assert issue["severity"] == "information"
    assert issue["diagnostics"] == "Patient/val-upd-none does not exist: the update would create it"


def test_create_and_update_modes_report_references_a_write_would_refuse(client: httpx.Client) -> None:
    o = _vital("val-ref-1", "val-nobody")
    r = _validate(client, "/Observation/$validate", o, "create")
    [issue] = _issues(r)
    assert (issue["severity"], issue["code"], issue["expression"]) == (
        "error", "not-found", ["Observation.subject.reference"])
    assert "does not exist" in issue["diagnostics"]
    assert client.post("/Observation", json=o).status_code == 409  # as the write itself answers
    # without a mode only the content is checked
    assert [i["severity"] for i in _issues(client.post("/Observation/$validate", json=o))] == ["information"]


def test_delete_mode_lists_the_resources_still_referring(client: httpx.Client) -> None:
    _put(client, _patient("val-del-1"))
    _put(client, _vital("val-del-obs-1", "val-del-1"))
    _put(client, _vital("val-del-obs-2", "val-del-1"))
    r = client.post("/Patient/val-del-1/$validate?mode=delete")  # no body: none is needed
    assert r.status_code == 200, r.text
    doc = {"en": r.json(),
           "vi": client.post("/Patient/val-del-1/$validate?mode=delete", headers={"Accept-Language": "vi"}).json()}
    _check_golden("delete-referred", doc)
    assert [i["severity"] for i in _issues(r)] == ["warning", "warning"]
    # the Observations themselves may go; then nothing refers to the Patient
    for oid in ("val-del-obs-1", "val-del-obs-2"):
        [ok] = _issues(_validate(client, f"/Observation/{oid}/$validate", None, "delete"))
        assert ok["severity"] == "information" and "may be deleted" in ok["diagnostics"]
        assert client.delete(f"/Observation/{oid}").status_code in (200, 204)
    [ok] = _issues(client.post("/Patient/val-del-1/$validate?mode=delete"))
    assert ok["diagnostics"] == "Patient/val-del-1 may be deleted: nothing refers to it"


def test_requests_that_cannot_be_run_are_4xx(client: httpx.Client) -> None:
    _put(client, _patient("val-bad-1"))
    assert client.delete("/Patient/val-bad-1").status_code in (200, 204)
    cases = [
        (client.post("/Patient/val-missing/$validate?mode=delete"), 404, "not-found"),
        (client.post("/Patient/val-bad-1/$validate?mode=delete"), 410, "deleted"),
        (client.post("/Patient/$validate?mode=delete"), 400, "invalid"),
        (client.post("/Patient/val-x/$validate?mode=patch", json=_patient("val-x")), 400, "invalid"),
        (client.post("/Patient/val-x/$validate", json=_patient("val-y")), 400, "invalid"),
        (_validate(client, "/Patient/$validate", vn_samples.patient(), "update"), 400, "required"),
        (client.post("/Patient/val-x/$validate"), 400, "invalid"),
        (client.post("/Patient/bad_id!/$validate", json=vn_samples.patient()), 400, "invalid"),
        (client.post("/Nope/1/$validate", json={"resourceType": "Nope"}), 404, "not-supported"),
        (client.post("/Patient/val-x/$validate", content=b"{oops"), 400, "structure"),
        (client.post("/Patient/val-x/$validate", json=vn_samples.encounter()), 400, "invalid"),
    ]
    for r, status, code in cases:
        assert r.status_code == status, (r.request.url, r.text)
        issue = r.json()["issue"][0]
        assert issue["severity"] == "error" and (issue["code"] == code or code in issue["diagnostics"]), r.text


def _condition(code: str, subject: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "subject": {"reference": subject}, "onsetDateTime": "2025-08-01",
            "code": {"coding": [{"system": "http://fhir.ehealth.gov.vn/core/CodeSystem/vn-icd10", "code": code}]}}


def test_icd10_rules_use_the_stored_patient_or_the_bundles(client: httpx.Client) -> None:
    _put(client, {**_patient("val-icd-man"), "gender": "male", "birthDate": "1990-01-01"})
    r = client.post("/Condition/$validate", json=_condition("O80", "Patient/val-icd-man"),
                    headers={"Accept-Language": "vi"})
    [issue] = _issues(r)
    assert (issue["severity"], issue["code"], issue["expression"]) == (
        "error", "business-rule", ["Condition.code.coding[0]"])
    assert issue["diagnostics"].startswith("Quy tắc ICD-10 icd10-sex-pregnancy")
    assert [i["severity"] for i in _issues(client.post("/Condition/$validate",
                                                      json=_condition("N40", "Patient/val-icd-man")))] == [
        "information"]
    urn = "urn:uuid:2b7f0f5e-4a59-4f0e-8d59-0c6f2f7d9a10"
    baby = {"resourceType": "Patient", "gender": "female", "birthDate": "2025-01-01"}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": urn, "resource": baby}, {"resource": _condition("P07.3", urn)},
        {"resource": _condition("N40", "Patient/val-icd-man")}]}
    found = [(i["severity"], i["expression"]) for i in _issues(client.post("/Bundle/$validate", json=bundle))]
    assert found == [("warning", ["Bundle.entry[1].resource.code.coding[0]"])]
