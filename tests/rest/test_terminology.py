"""The terminology operations over HTTP, against a real server, with VN codes checked by hand in
../shared/vn/code-lists; and their declared inputs against the R4 OperationDefinitions."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from fhir_hub.rest.terminology import OPERATIONS
from tests.conftest import SHARED

CS = "http://fhir.ehealth.gov.vn/core/CodeSystem/"
VS = "http://fhir.ehealth.gov.vn/core/ValueSet/"
CM = "http://fhir.ehealth.gov.vn/core/ConceptMap/"
ICD = CS + "vn-icd10"


def params(**values: Any) -> dict[str, Any]:
    """A Parameters body: ``code="x"`` -> valueCode etc., by the suffix after ``__`` (default String)."""
    out = []
    for key, value in values.items():
        name, _, kind = key.partition("__")
        out.append({"name": name, f"value{kind or 'String'}": value})
    return {"resourceType": "Parameters", "parameter": out}


def out(body: dict[str, Any], name: str) -> Any:
    """The value of the one output parameter ``name`` (None when absent)."""
    assert body["resourceType"] == "Parameters", body
    found = [p for p in body["parameter"] if p["name"] == name]
    assert len(found) <= 1, found
    if not found:
        return None
    return next(v for k, v in found[0].items() if k.startswith("value"))


def parts(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """Each repetition of ``name`` as {part name: value}."""
    return [{p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in rep["part"]}
            for rep in body["parameter"] if rep["name"] == name]


def problem(r: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    [issue] = body["issue"]
    for word in words:
        assert word in issue["diagnostics"], (word, issue)
    return issue


# ---- $lookup -----------------------------------------------------------------------------------


def test_lookup_icd10_code(client: httpx.Client) -> None:
    r = client.get("/CodeSystem/$lookup", params={"system": ICD, "code": "E11.9"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    body = r.json()
    assert out(body, "name") == "VnIcd10" and out(body, "version") == "QD4469-2020"
    assert out(body, "display") == "Bệnh đái tháo đường không phụ thuộc insuline (Chưa có biến chứng)"
    assert parts(body, "designation") == [
        {"language": "en", "value": "Non-insuline-dependent diabetes mellitus (Without complications)"}]
    assert parts(body, "property") == [{"code": "parent", "value": "E11"}]
    assert body["parameter"][2]["valueString"] == out(body, "display")  # name, version, display, ... in order
    english = client.get("/CodeSystem/$lookup", params={"system": ICD, "code": "J45", "displayLanguage": "en"}).json()
    assert out(english, "display") == "Asthma"


def test_lookup_province_with_chosen_properties(client: httpx.Client) -> None:
    r = client.get("/CodeSystem/$lookup", params=[("system", CS + "vn-province-2025"), ("code", "79"),
                                                  ("property", "merged_from_province_codes_pre2025")])
    body = r.json()
    assert out(body, "display") == "Thành phố Hồ Chí Minh" and out(body, "version") == "2025-07-01"
    assert parts(body, "property") == [{"code": "merged_from_province_codes_pre2025", "value": "74;77;79"}]
    everything = client.get("/CodeSystem/$lookup", params={"system": CS + "vn-province-2025", "code": "79"}).json()
    assert {p["code"] for p in parts(everything, "property")} == {
        "division_type", "phone_area_code", "merged_from_province_codes_pre2025"}


def test_lookup_ethnic_group_by_coding_in_a_post(client: httpx.Client) -> None:
    r = client.post("/CodeSystem/$lookup", json=params(coding__Coding={"system": CS + "vn-core-race", "code": "01"}))
    assert r.status_code == 200, r.text
    body = r.json()
    assert out(body, "display") == "Kinh"
    assert {"code": "other_names_vi", "value": "Việt"} in parts(body, "property")
    # the Coding also travels in a query string as system|code
    got = client.get("/CodeSystem/$lookup", params={"coding": CS + "vn-core-race|04"}).json()
    assert out(got, "display") == "Hoa"


def test_lookup_failures(client: httpx.Client) -> None:
    problem(client.get("/CodeSystem/$lookup", params={"system": "http://example.org/cs", "code": "1"}), 404,
            "http://example.org/cs")
    problem(client.get("/CodeSystem/$lookup", params={"system": ICD, "code": "E11.99"}), 404, "'E11.99'", ICD)
    problem(client.get("/CodeSystem/$lookup", params={"system": ICD, "version": "2010", "code": "E11"}), 404,
            ICD + "|2010")
    issue = problem(client.get("/CodeSystem/$lookup", params={"system": ICD}), 400, "'code'")
    assert issue["expression"] == ["code"]
    assert problem(client.get("/CodeSystem/$lookup", params={"code": "E11"}), 400, "'system'")["expression"] == ["system"]
    problem(client.get("/CodeSystem/$lookup", params={"system": ICD, "code": "E11", "date": "2024"}), 400, "'date'")


# ---- $validate-code ----------------------------------------------------------------------------


def test_codesystem_validate_code_true_and_false(client: httpx.Client) -> None:
    url = CS + "vn-qd130-ket-qua-dtri"
    yes = client.get("/CodeSystem/$validate-code", params={"url": url, "code": "1", "display": "khỏi"}).json()
    assert (out(yes, "result"), out(yes, "display")) == (True, "Khỏi")
    no = client.get("/CodeSystem/$validate-code", params={"url": url, "code": "1", "display": "Tử vong"}).json()
    assert out(no, "result") is False and "Khỏi" in out(no, "message") and out(no, "display") == "Khỏi"
    missing = client.get("/CodeSystem/$validate-code", params={"url": url, "code": "99"}).json()
    assert out(missing, "result") is False and "'99'" in out(missing, "message")
    # a CodeableConcept is valid when one of its codings is
    cc = {"coding": [{"system": "http://example.org/other", "code": "x"}, {"system": url, "code": "2"}]}
    body = client.post("/CodeSystem/$validate-code", json=params(url__Uri=url, codeableConcept__CodeableConcept=cc))
    assert out(body.json(), "result") is True and out(body.json(), "display") == "Đỡ"
    by_coding = client.post("/CodeSystem/$validate-code", json=params(coding__Coding={"system": ICD, "code": "J45"}))
    assert out(by_coding.json(), "result") is True
    problem(client.get("/CodeSystem/$validate-code", params={"url": "http://example.org/cs", "code": "1"}), 404,
            "http://example.org/cs")
    problem(client.get("/CodeSystem/$validate-code", params={"code": "1"}), 400, "'url'")


def test_valueset_validate_code(client: httpx.Client) -> None:
    races = VS + "vn-core-race"
    yes = client.get("/ValueSet/$validate-code", params={"url": races, "system": CS + "vn-core-race", "code": "01"})
    assert out(yes.json(), "result") is True and out(yes.json(), "display") == "Kinh"
    no = client.get("/ValueSet/$validate-code", params={"url": races, "system": CS + "vn-core-race", "code": "77"})
    assert out(no.json(), "result") is False
    other = client.get("/ValueSet/$validate-code", params={"url": races, "system": ICD, "code": "E11"})
    assert out(other.json(), "result") is False and "has no codes of" in out(other.json(), "message")
    cc = {"coding": [{"system": ICD, "code": "E11"}, {"system": CS + "vn-core-race", "code": "03"}]}
    body = client.post("/ValueSet/$validate-code", json=params(url__Uri=races, codeableConcept__CodeableConcept=cc))
    assert out(body.json(), "result") is True and out(body.json(), "display") == "Thái"
    problem(client.get("/ValueSet/$validate-code", params={"url": VS + "nope", "code": "1"}), 404, VS + "nope")
    problem(client.get("/ValueSet/$validate-code", params={"code": "1"}), 400, "'url'")
    problem(client.get("/ValueSet/$validate-code", params={"url": races}), 400, "'code'")


# ---- $expand -----------------------------------------------------------------------------------


def test_expand_with_a_vietnamese_filter_without_diacritics(client: httpx.Client) -> None:
    r = client.get("/ValueSet/$expand", params={"url": VS + "vn-province-2025", "filter": "ho chi minh"})
    assert r.status_code == 200, r.text
    vs = r.json()
    assert vs["resourceType"] == "ValueSet" and vs["url"] == VS + "vn-province-2025" and "compose" not in vs
    expansion = vs["expansion"]
    assert expansion["total"] == 1 and expansion["timestamp"] and expansion["identifier"].startswith("urn:uuid:")
    assert expansion["contains"] == [{"system": CS + "vn-province-2025", "version": "2025-07-01", "code": "79",
                                      "display": "Thành phố Hồ Chí Minh"}]
    assert {"name": "filter", "valueString": "ho chi minh"} in expansion["parameter"]
    wards = client.get("/ValueSet/$expand", params={"url": VS + "vn-ward-2025", "filter": "phuong ba dinh"}).json()
    assert [c["code"] for c in wards["expansion"]["contains"]] == ["00004"]


def test_expand_pages_with_count_and_offset(client: httpx.Client) -> None:
    url = VS + "vn-icd10"
    first = client.get("/ValueSet/$expand", params={"url": url, "filter": "dai thao duong", "count": "5"}).json()
    total = first["expansion"]["total"]
    assert total > 50 and len(first["expansion"]["contains"]) == 5
    body = params(url__Uri=url, filter="dai thao duong", count__Integer=5, offset__Integer=5, displayLanguage__Code="en")
    second = client.post("/ValueSet/$expand", json=body).json()["expansion"]
    assert second["total"] == total and second["offset"] == 5
    codes = [c["code"] for c in first["expansion"]["contains"] + second["contains"]]
    assert len(set(codes)) == 10
    assert all("diabetes" in c["display"].lower() for c in second["contains"])
    whole = client.get("/ValueSet/$expand", params={"url": VS + "vn-province-pre2025"}).json()["expansion"]
    assert whole["total"] == len(whole["contains"]) == 63
    empty = client.get("/ValueSet/$expand", params={"url": VS + "vn-province-2025", "filter": "zzz"}).json()
    assert empty["expansion"]["total"] == 0 and "contains" not in empty["expansion"]


def test_expand_failures(client: httpx.Client) -> None:
    problem(client.get("/ValueSet/$expand", params={"url": VS + "nope"}), 404, VS + "nope")
    assert problem(client.get("/ValueSet/$expand"), 400, "'url'")["expression"] == ["url"]
    url = VS + "vn-province-2025"
    assert problem(client.get("/ValueSet/$expand", params={"url": url, "count": "ten"}), 400,
                   "'count'")["expression"] == ["count"]
    problem(client.get("/ValueSet/$expand", params={"url": url, "offset": "-1"}), 400, "'offset'")
    problem(client.get("/ValueSet/$expand", params=[("url", url), ("url", url)]), 400, "at most once")
    inline = {"resourceType": "Parameters", "parameter": [{"name": "valueSet", "resource": {"resourceType": "ValueSet"}}]}
    assert problem(client.post("/ValueSet/$expand", json=inline), 400, "'valueSet'")["code"] == "not-supported"


# ---- $translate --------------------------------------------------------------------------------


def test_translate_a_pre2025_province_to_2025(client: httpx.Client) -> None:
    # Bình Dương (74) was merged into Thành phố Hồ Chí Minh (79) on 01/07/2025
    r = client.get("/ConceptMap/$translate", params={"system": CS + "vn-province-pre2025", "code": "74",
                                                     "targetsystem": CS + "vn-province-2025"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert out(body, "result") is True
    assert parts(body, "match") == [{"equivalence": "wider", "concept": {
        "system": CS + "vn-province-2025", "code": "79", "display": "Thành phố Hồ Chí Minh"},
        "source": CM + "vn-province-pre2025-to-2025"}]
    by_url = client.post("/ConceptMap/$translate", json=params(
        url__Uri=CM + "vn-province-pre2025-to-2025", coding__Coding={"system": CS + "vn-province-pre2025", "code": "01"}))
    assert [(m["equivalence"], m["concept"]["code"]) for m in parts(by_url.json(), "match")] == [("equal", "01")]
    back = client.get("/ConceptMap/$translate", params={"system": CS + "vn-province-2025", "code": "79",
                                                        "reverse": "true"}).json()
    assert sorted((m["concept"]["code"], m["equivalence"]) for m in parts(back, "match")) == [
        ("74", "narrower"), ("77", "narrower"), ("79", "narrower")]
    scoped = client.get("/ConceptMap/$translate", params={"system": CS + "vn-province-pre2025", "code": "74",
                                                          "target": VS + "vn-province-2025"}).json()
    assert out(scoped, "result") is True


def test_translate_without_match_and_failures(client: httpx.Client) -> None:
    none = client.get("/ConceptMap/$translate", params={"system": CS + "vn-province-pre2025", "code": "00"}).json()
    assert out(none, "result") is False and "no mapping" in out(none, "message") and parts(none, "match") == []
    problem(client.get("/ConceptMap/$translate", params={"url": CM + "nope", "code": "1"}), 404, CM + "nope")
    problem(client.get("/ConceptMap/$translate", params={"system": ICD, "code": "E11"}), 404, ICD)
    problem(client.get("/ConceptMap/$translate", params={"code": "74"}), 400, "'system'")
    problem(client.get("/ConceptMap/$translate", params={"system": CS + "vn-province-pre2025"}), 400, "'code'")
    problem(client.get("/ConceptMap/$translate", params={"system": CS + "vn-province-pre2025", "code": "74",
                                                         "reverse": "yes"}), 400, "'reverse'")


# ---- bodies and routes -------------------------------------------------------------------------


@pytest.mark.parametrize(("content", "words"), [
    (b"{oops", ("not valid JSON",)),
    (orjson.dumps({"resourceType": "Patient"}), ("Parameters resource",)),
    (orjson.dumps({"resourceType": "Parameters", "parameter": {"name": "url"}}), ("parameter must be a list",)),
    (orjson.dumps({"resourceType": "Parameters", "parameter": [{"valueUri": "x"}]}), ("parameter[0] has no name",)),
    (orjson.dumps(params(url__Integer=3)), ("'url'",)),
    (orjson.dumps(params(url=VS + "vn-icd10", count="5")), ("'count'",)),
    (orjson.dumps({"resourceType": "Parameters", "parameter": [{"name": "url", "valueUri": VS + "vn-icd10",
                                                                "valueString": "x"}]}), ("exactly one value",)),
    (orjson.dumps({"resourceType": "Parameters", "parameter": [{"name": "url"}]}), ("exactly one value",)),
])
def test_bad_parameters_bodies_are_400(client: httpx.Client, content: bytes, words: tuple[str, ...]) -> None:
    problem(client.post("/ValueSet/$expand", content=content), 400, *words)


def test_bad_codings_are_400(client: httpx.Client) -> None:
    problem(client.post("/CodeSystem/$lookup", json=params(coding__Coding={"system": ICD})), 400, "no code")
    problem(client.post("/CodeSystem/$lookup", json=params(coding__Coding="E11")), 400, "must be a Coding")
    problem(client.post("/ValueSet/$validate-code", json=params(url=VS + "vn-icd10", codeableConcept__CodeableConcept={
        "coding": []})), 400, "'codeableConcept'")
    problem(client.get("/CodeSystem/$lookup", params={"coding": "E11"}), 400, "system|code")
    problem(client.get("/ValueSet/$validate-code", params={"url": VS + "vn-icd10", "codeableConcept": "x"}), 400,
            "POST")


def test_routes_and_content_types(client: httpx.Client) -> None:
    problem(client.get("/CodeSystem/$subsumes"), 404, "$subsumes", "$lookup")
    problem(client.post("/ValueSet/$expand", content=b"<Parameters/>", headers={"Content-Type": "application/xml"}),
            415, "XML")
    # parameters may come in the query string of a POST too, and _pretty shapes the answer
    r = client.post(f"/ValueSet/$expand?url={VS}vn-qd130-ma-loai-rv&_pretty=true", content=b"")
    assert r.status_code == 200 and b"\n  " in r.content and r.json()["expansion"]["total"] == 5
    head = client.head("/CodeSystem/$lookup", params={"system": ICD, "code": "E11"})
    assert head.status_code == 200 and head.content == b""


def test_capability_statement_lists_the_operations(client: httpx.Client) -> None:
    resources = {r["type"]: r for r in client.get("/metadata").json()["rest"][0]["resource"]}
    assert [o["name"] for o in resources["CodeSystem"]["operation"]] == ["lookup", "validate-code"]
    assert [o["name"] for o in resources["ValueSet"]["operation"]] == ["validate-code", "expand"]
    assert resources["ConceptMap"]["operation"] == [
        {"name": "translate", "definition": "http://hl7.org/fhir/OperationDefinition/ConceptMap-translate"}]


# ---- declarations against the R4 OperationDefinitions -------------------------------------------

DEFINITIONS = SHARED / "fhir-r4" / "definitions" / "profiles-resources.json"
_KIND_OF = {"code": "string", "uri": "string", "string": "string", "canonical": "string", "integer": "integer",
            "boolean": "boolean", "Coding": "Coding", "CodeableConcept": "CodeableConcept"}


@pytest.mark.skipif(not DEFINITIONS.is_file(), reason="../shared/fhir-r4 not present")
def test_declared_inputs_match_the_operation_definitions() -> None:
    bundle = orjson.loads(DEFINITIONS.read_bytes())
    defs = {e["resource"]["url"]: e["resource"] for e in bundle["entry"]
            if e["resource"]["resourceType"] == "OperationDefinition"}
    for op in OPERATIONS.values():
        definition = defs[op.definition]
        assert definition["code"] == op.name and op.rtype in definition["resource"]
        inputs = {p["name"]: p for p in definition["parameter"] if p["use"] == "in"}
        for name, (kind, repeats) in op.inputs.items():
            assert name in inputs, (op.definition, name)
            assert _KIND_OF[inputs[name]["type"]] == kind, (op.definition, name)
            assert (inputs[name]["max"] == "*") == repeats, (op.definition, name)
        assert set(op.refused) <= set(inputs), op.definition
        assert not set(op.refused) & set(op.inputs)


_ODD = ["", "|", "x|", "|x", "a|b|c", "-1", "99999999999999999999", "true", "Đ", "%", "\u0000", ICD, VS + "vn-icd10"]
_ODD_BODY: list[Any] = [None, 0, -1, True, "x", [], {}, {"code": ""}, {"code": 1}, {"coding": [{}]}, {"coding": "x"},
                        {"system": ICD, "code": "E11"}, {"coding": [{"system": ICD, "code": "E11"}]}]


@pytest.mark.parametrize("op", sorted(OPERATIONS), ids=lambda k: f"{k[0]}-{k[1]}")
def test_odd_inputs_are_never_5xx(client: httpx.Client, op: tuple[str, str]) -> None:
    path = f"/{op[0]}/${op[1]}"
    names = list(OPERATIONS[op].inputs)
    for i, name in enumerate(names):
        for j, value in enumerate(_ODD):
            other = names[(i + j) % len(names)]
            r = client.get(path, params=[(name, value), (other, _ODD[(j + 3) % len(_ODD)])])
            assert r.status_code < 500, (name, value, r.text)
        for value in _ODD_BODY:
            for key in ("valueString", "valueInteger", "valueCoding", "valueCodeableConcept", "valueBoolean"):
                body = {"resourceType": "Parameters", "parameter": [{"name": name, key: value}]}
                r = client.post(path, json=body)
                assert r.status_code < 500, (name, key, value, r.text)
