"""``Encounter/[id]/$template-check`` end to end over uvicorn: a complete and an incomplete visit posted as
transactions (their template profiles checked on write), the answer in both languages, the refusals."""

from __future__ import annotations

from typing import Any

import httpx

from fhir_hub.profiles import examples, registry

REG = registry.registry()


def _post(client: httpx.Client, code: str, omit: tuple[str, ...] = ()) -> str:
    t = REG.template(code)
    assert t is not None
    r = client.post("/", json=examples.bundle(t, omit=omit))
    assert r.status_code == 200, r.text
    [loc] = [e["response"]["location"] for e in r.json()["entry"] if e["response"]["location"].startswith("Encounter/")]
    return str(loc.split("/")[1])


def _params(doc: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [p for p in doc["parameter"] if p["name"] == name]


def _part(p: dict[str, Any], name: str) -> Any:
    found = next(x for x in p["part"] if x["name"] == name)
    return next(v for k, v in found.items() if k.startswith("value"))


def test_a_complete_visit(client: httpx.Client) -> None:
    eid = _post(client, "eye")
    r = client.get(f"/Encounter/{eid}/$template-check")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["resourceType"] == "Parameters"
    assert _params(doc, "template")[0]["valueCoding"]["code"] == "eye"
    assert _params(doc, "complete")[0]["valueBoolean"] is True
    assert _params(doc, "missing") == []
    present = {_part(p, "item")["code"]: p for p in _params(doc, "present")}
    t = REG.template("eye")
    assert t is not None and set(present) == {i.code for i in t.items()}
    refs = [x["valueReference"]["reference"] for x in present["iop-left"]["part"] if x["name"] == "resource"]
    assert len(refs) == 1 and refs[0].startswith("Observation/")
    assert present["diagnosis"]["part"][-1]["valueReference"]["reference"].startswith("Condition/")
    assert _params(doc, "outcome")[0]["resource"]["issue"][0]["severity"] == "information"


def test_an_incomplete_visit_names_the_missing_item(client: httpx.Client) -> None:
    eid = _post(client, "obstetrics", omit=("55283-6",))
    r = client.post(f"/Encounter/{eid}/$template-check", headers={"Accept-Language": "vi"})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert _params(doc, "complete")[0]["valueBoolean"] is False
    [missing] = _params(doc, "missing")
    assert _part(missing, "item")["code"] == "55283-6" and _part(missing, "name") == "Tim thai"
    [issue] = _params(doc, "outcome")[0]["resource"]["issue"]
    assert issue["severity"] == "error" and "Tim thai" in issue["diagnostics"]
    assert "Fetal Heart rate" in str(issue["_diagnostics"])
    # checked against another template, named in a Parameters body
    r = client.post(f"/Encounter/{eid}/$template-check",
                    json={"resourceType": "Parameters", "parameter": [{"name": "template", "valueCode": "general"}]})
    assert _params(r.json(), "complete")[0]["valueBoolean"] is True
    r = client.get(f"/Encounter/{eid}/$template-check", params={"template": "eye"})
    assert {_part(p, "item")["code"] for p in _params(r.json(), "missing")} >= {"visual-acuity-right", "iop-left"}


def test_refusals(client: httpx.Client) -> None:
    assert client.get("/Encounter/nope-404/$template-check").status_code == 404
    eid = _post(client, "general")
    assert client.get(f"/Encounter/{eid}/$template-check", params={"template": "nope"}).status_code == 400
    plain = client.post("/Encounter", json={"resourceType": "Encounter", "status": "finished", "class": {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}})
    assert plain.status_code == 201, plain.text
    r = client.get(f"/Encounter/{plain.json()['id']}/$template-check")
    assert r.status_code == 400 and "names no outpatient template" in r.text


def test_a_write_claiming_a_template_profile_is_checked(client: httpx.Client) -> None:
    t = REG.template("eye")
    assert t is not None
    bundle = examples.bundle(t)
    obs = next(e["resource"] for e in bundle["entry"]
               if e["resource"].get("code", {}).get("coding", [{}])[0].get("code") == "iop-left")
    obs["valueQuantity"]["code"] = "kPa"
    r = client.post("/", json=bundle)
    assert r.status_code == 422 and "vn-tpl-unit" in r.text


def test_the_capability_statement_lists_the_operation(client: httpx.Client) -> None:
    enc = next(r for r in client.get("/metadata").json()["rest"][0]["resource"] if r["type"] == "Encounter")
    assert {"name": "template-check",
            "definition": "http://fhir.ehealth.gov.vn/core/OperationDefinition/Encounter-template-check"} in enc["operation"]
