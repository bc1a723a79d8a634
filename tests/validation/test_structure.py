"""Structural validation: every official example passes, and each kind of breakage is reported
with the right issue code at the right FHIRPath."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_hub.errors import Issue
from fhir_hub.validation.structure import validate, validate_type, warm_up
from tests.validation import errata

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
EXAMPLES = SHARED / "fhir-r4" / "examples"


def _example(name: str) -> dict[str, Any]:
    path = EXAMPLES / f"{name}.json"
    if not path.is_file():
        pytest.skip("official FHIR R4 examples not available")
    data: dict[str, Any] = orjson.loads(path.read_bytes())
    return data


def _codes(issues: list[Issue]) -> set[tuple[str, str]]:
    return {(i.code, i.expression[0]) for i in issues}


def test_all_official_examples_are_valid() -> None:
    """Every official example is structurally valid but for the documented errata of the examples
    (``data/r4-example-errata.json``, pass ``structure``: an id over 64 characters, missing mandatory
    elements); U+00A0 and ``_profile``, which the R4 JSON schema rejects, are valid for us."""
    if not EXAMPLES.is_dir():
        pytest.skip("official FHIR R4 examples not available")
    warm_up()
    files = sorted(EXAMPLES.glob("*.json"))
    assert len(files) == 5082
    results = [(path.name, validate(orjson.loads(path.read_bytes()))) for path in files]
    assert all(i.severity == "error" and len(i.expression) == 1 for _name, issues in results for i in issues)
    assert len(errata.check("structure", results)) == 13


# --------------------------------------------------------------------------- broken variants


@pytest.fixture
def patient() -> dict[str, Any]:
    return _example("Patient-example")


@pytest.fixture
def observation() -> dict[str, Any]:
    return _example("Observation-heart-rate")


def _only(resource: dict[str, Any]) -> Issue:
    issues = validate(resource)
    assert len(issues) == 1, issues
    return issues[0]


def _expect(resource: dict[str, Any], code: str, expression: str) -> Issue:
    issue = _only(resource)
    assert (issue.code, issue.expression) == (code, (expression,)), issue
    assert issue.severity == "error"
    return issue


def test_fixtures_are_valid(patient: dict[str, Any], observation: dict[str, Any]) -> None:
    assert validate(patient) == []
    assert validate(observation) == []


def test_unknown_element(patient: dict[str, Any]) -> None:
    patient["foo"] = 1
    assert "foo" in _expect(patient, "structure", "Patient.foo").diagnostics


def test_unknown_nested_element(patient: dict[str, Any]) -> None:
    patient["name"][1]["nickname"] = "Jim"
    _expect(patient, "structure", "Patient.name[1].nickname")


def test_resource_type_only_at_resource_level(patient: dict[str, Any]) -> None:
    patient["name"][0]["resourceType"] = "HumanName"
    _expect(patient, "structure", "Patient.name[0].resourceType")


def test_scalar_given_for_array(patient: dict[str, Any]) -> None:
    patient["name"] = patient["name"][0]
    _expect(patient, "structure", "Patient.name")


def test_array_given_for_scalar(patient: dict[str, Any]) -> None:
    patient["gender"] = ["male"]
    _expect(patient, "structure", "Patient.gender")


def test_array_given_for_complex_scalar(patient: dict[str, Any]) -> None:
    patient["managingOrganization"] = [patient["managingOrganization"]]
    _expect(patient, "structure", "Patient.managingOrganization")


def test_missing_required_status(observation: dict[str, Any]) -> None:
    del observation["status"]
    assert "status" in _expect(observation, "required", "Observation.status").diagnostics


def test_missing_required_code(observation: dict[str, Any]) -> None:
    del observation["code"]
    _expect(observation, "required", "Observation.code")


def test_required_satisfied_by_extension_only(observation: dict[str, Any]) -> None:
    del observation["status"]
    observation["_status"] = {
        "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}
        ]
    }
    assert validate(observation) == []


def test_missing_required_nested() -> None:
    res = {"resourceType": "Patient", "link": [{"type": "seealso"}]}
    _expect(res, "required", "Patient.link[0].other")
    res = {"resourceType": "Patient", "extension": [{"valueString": "x"}]}
    _expect(res, "required", "Patient.extension[0].url")


def test_missing_required_choice() -> None:
    res = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
    }
    issue = _expect(res, "required", "MedicationRequest.medication")
    assert "medication[x]" in issue.diagnostics
    res["medicationCodeableConcept"] = {"text": "aspirin"}
    assert validate(res) == []


def test_string_for_boolean(patient: dict[str, Any]) -> None:
    patient["active"] = "true"
    _expect(patient, "value", "Patient.active")


def test_number_types() -> None:
    base = {"resourceType": "Patient"}
    assert _codes(validate({**base, "multipleBirthBoolean": 1})) == {
        ("value", "Patient.multipleBirth.ofType(boolean)")
    }
    assert _codes(validate({**base, "multipleBirthInteger": True})) == {
        ("value", "Patient.multipleBirth.ofType(integer)")
    }
    assert _codes(validate({**base, "multipleBirthInteger": 2**31})) == {
        ("value", "Patient.multipleBirth.ofType(integer)")
    }
    assert _codes(validate({**base, "multipleBirthInteger": 1.5})) == {
        ("value", "Patient.multipleBirth.ofType(integer)")
    }
    assert validate({**base, "multipleBirthInteger": -3}) == []
    photo = {**base, "photo": [{"size": -1}]}
    _expect(photo, "value", "Patient.photo[0].size")  # unsignedInt
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    _expect({**obs, "valueQuantity": {"value": "1.0"}}, "value", "Observation.value.ofType(Quantity).value")
    assert validate({**obs, "valueQuantity": {"value": 1}}) == []
    assert validate({**obs, "valueQuantity": {"value": 1.25}}) == []
    timing = {**obs, "effectiveTiming": {"repeat": {"count": 0}}}
    _expect(timing, "value", "Observation.effective.ofType(Timing).repeat.count")  # positiveInt


@pytest.mark.parametrize("bad", ["1974-13-25", "1974-02-30", "74-12-25", "1974-12-25T10:00:00Z", "yesterday"])
def test_bad_date(patient: dict[str, Any], bad: str) -> None:
    patient["birthDate"] = bad
    _expect(patient, "value", "Patient.birthDate")


@pytest.mark.parametrize("good", ["1974", "1974-12", "2024-02-29"])
def test_partial_dates_are_fine(patient: dict[str, Any], good: str) -> None:
    patient["birthDate"] = good
    assert validate(patient) == []


def test_date_time_and_instant(observation: dict[str, Any]) -> None:
    observation["effectiveDateTime"] = "1999-07-02T10:00"  # time without seconds and zone
    _expect(observation, "value", "Observation.effective.ofType(dateTime)")
    observation["effectiveDateTime"] = "1999-07-02T10:00:00+07:00"
    observation["issued"] = "2013-04-03"  # instant needs a full timestamp
    _expect(observation, "value", "Observation.issued")


def test_bad_code_in_required_binding(patient: dict[str, Any]) -> None:
    patient["gender"] = "x"
    issue = _expect(patient, "code-invalid", "Patient.gender")
    assert "'x'" in issue.diagnostics


def test_bad_code_in_array_and_nested(patient: dict[str, Any]) -> None:
    patient["telecom"][1]["use"] = "car"
    _expect(patient, "code-invalid", "Patient.telecom[1].use")


def test_code_wrong_type(patient: dict[str, Any]) -> None:
    patient["gender"] = 1
    _expect(patient, "value", "Patient.gender")


def test_two_choice_values(observation: dict[str, Any]) -> None:
    observation["valueString"] = "44"
    issue = _expect(observation, "structure", "Observation.value")
    assert "value[x]" in issue.diagnostics


def test_choice_value_and_extension_of_another_choice(observation: dict[str, Any]) -> None:
    observation["_valueString"] = {"extension": [{"url": "http://example.org/x", "valueBoolean": True}]}
    _expect(observation, "structure", "Observation.value")


def test_choice_path_uses_of_type(observation: dict[str, Any]) -> None:
    observation["valueQuantity"]["unit"] = ""
    _expect(observation, "value", "Observation.value.ofType(Quantity).unit")


def test_empty_string(patient: dict[str, Any]) -> None:
    patient["name"][0]["family"] = ""
    _expect(patient, "value", "Patient.name[0].family")


def test_whitespace_only_string(patient: dict[str, Any]) -> None:
    patient["name"][0]["given"][1] = "  \t"
    _expect(patient, "value", "Patient.name[0].given[1]")


def test_no_break_space_is_fine(patient: dict[str, Any]) -> None:
    patient["name"][0]["family"] = "Chalmers\u00a0Jr"
    patient["name"][0]["given"][0] = "\u00a0Peter"
    assert validate(patient) == []


def test_null_scalar(patient: dict[str, Any]) -> None:
    patient["active"] = None
    _expect(patient, "structure", "Patient.active")


def test_null_in_array(patient: dict[str, Any]) -> None:
    patient["name"][0]["given"] = ["Peter", None]
    _expect(patient, "structure", "Patient.name[0].given[1]")
    patient["name"][0]["given"] = ["Peter", "James"]
    patient["identifier"].append(None)
    _expect(patient, "structure", "Patient.identifier[1]")


def test_empty_object_and_array(patient: dict[str, Any]) -> None:
    patient["maritalStatus"] = {}
    _expect(patient, "structure", "Patient.maritalStatus")
    del patient["maritalStatus"]
    patient["name"] = []
    _expect(patient, "structure", "Patient.name")
    patient["name"] = [{}]
    _expect(patient, "structure", "Patient.name[0]")


def test_primitive_extensions_aligned(patient: dict[str, Any]) -> None:
    ext = {"extension": [{"url": "http://example.org/flag", "valueBoolean": True}]}
    name = patient["name"][0]
    name["given"] = ["Peter", None]
    name["_given"] = [None, ext]
    assert validate(patient) == []
    name["_given"] = [None, None]
    _expect(patient, "structure", "Patient.name[0].given[1]")
    name["_given"] = [None, ext, ext]
    _expect(patient, "structure", "Patient.name[0].given")
    name["given"] = ["Peter", "James"]
    name["_given"] = ext
    _expect(patient, "structure", "Patient.name[0].given")


def test_primitive_extension_content(patient: dict[str, Any]) -> None:
    patient["_birthDate"] = {
        "extension": [{"url": "http://example.org/x", "valueDateTime": "1974-12-25T14:35:45-05:00"}]
    }
    assert validate(patient) == []
    patient["_birthDate"]["extension"][0]["valueDateTime"] = "noon"
    _expect(patient, "value", "Patient.birthDate.extension[0].value.ofType(dateTime)")
    patient["_birthDate"] = {"foo": 1}
    _expect(patient, "structure", "Patient.birthDate.foo")
    patient["_birthDate"] = {}
    _expect(patient, "structure", "Patient.birthDate")


def test_underscore_sibling_of_complex_is_unknown(patient: dict[str, Any]) -> None:
    patient["_name"] = [{"id": "a"}]
    _expect(patient, "structure", "Patient._name")
    del patient["_name"]
    patient["_text"] = {"id": "a"}  # text is a Narrative, not a primitive
    _expect(patient, "structure", "Patient._text")


def test_nested_wrong_thing_in_backbone(patient: dict[str, Any]) -> None:
    patient["contact"][0]["name"]["family"] = 5
    _expect(patient, "value", "Patient.contact[0].name.family")
    patient["contact"][0]["name"]["family"] = "du Marché"
    patient["contact"][0]["relationship"][0]["coding"][0]["system"] = "has space"
    _expect(patient, "value", "Patient.contact[0].relationship[0].coding[0].system")


def test_deep_content_reference_recursion() -> None:
    q = _example("Questionnaire-3141")
    item = q["item"][1]["item"][0]["item"][0]
    assert "linkId" in item
    item["type"] = "bogus"
    _expect(q, "code-invalid", "Questionnaire.item[1].item[0].item[0].type")


def test_modifier_extension_in_backbone(patient: dict[str, Any]) -> None:
    patient["contact"][0]["modifierExtension"] = [{"url": "http://example.org/m", "valueCode": "a  b"}]
    _expect(patient, "value", "Patient.contact[0].modifierExtension[0].value.ofType(code)")


def test_bad_id_in_contained(patient: dict[str, Any]) -> None:
    patient["contained"] = [{"resourceType": "Organization", "id": "org 1", "name": "ACME"}]
    _expect(patient, "value", "Patient.contained[0].id")


def test_contained_resource_type_problems(patient: dict[str, Any]) -> None:
    patient["contained"] = [{"id": "o1", "name": "ACME"}]
    _expect(patient, "structure", "Patient.contained[0]")
    patient["contained"] = [{"resourceType": "Organisation", "id": "o1"}]
    _expect(patient, "structure", "Patient.contained[0]")
    patient["contained"] = [{"resourceType": "Organization", "id": "o1", "name": "A", "gender": "male"}]
    _expect(patient, "structure", "Patient.contained[0].gender")


def test_bad_resource_id(patient: dict[str, Any]) -> None:
    patient["id"] = "x" * 65
    _expect(patient, "value", "Patient.id")
    patient["id"] = "a_b"
    _expect(patient, "value", "Patient.id")


def test_bundle_entry_resource_is_validated() -> None:
    bundle = _example("Bundle-bundle-transaction")
    assert validate(bundle) == []
    bundle["entry"][0]["resource"]["gender"] = "x"
    _expect(bundle, "code-invalid", "Bundle.entry[0].resource.gender")
    bundle["entry"][0]["resource"]["gender"] = "male"
    bundle["entry"][1]["request"]["method"] = "FETCH"
    _expect(bundle, "code-invalid", "Bundle.entry[1].request.method")


def test_parameters_resource_is_validated() -> None:
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "a", "valueString": "x"},
            {
                "name": "b",
                "part": [{"name": "c", "resource": {"resourceType": "Patient", "birthDate": "soon"}}],
            },
        ],
    }
    _expect(params, "value", "Parameters.parameter[1].part[0].resource.birthDate")


def test_simple_quantity_has_no_comparator() -> None:
    obs = _example("Observation-f001")
    assert validate(obs) == []
    obs["referenceRange"][0]["low"]["comparator"] = "<"
    _expect(obs, "structure", "Observation.referenceRange[0].low.comparator")
    obs["valueQuantity"]["comparator"] = "<"  # fine on a plain Quantity
    del obs["referenceRange"][0]["low"]["comparator"]
    assert validate(obs) == []


def test_other_primitive_formats(patient: dict[str, Any]) -> None:
    meta = {"lastUpdated": "2020-01-01T00:00:00"}  # instant without zone
    _expect({**patient, "meta": meta}, "value", "Patient.meta.lastUpdated")
    _expect({**patient, "implicitRules": "http://x y"}, "value", "Patient.implicitRules")
    _expect({**patient, "text": {"status": "generated", "div": "hello"}}, "value", "Patient.text.div")
    binary = {"resourceType": "Binary", "contentType": "text/plain", "data": "abc"}
    _expect(binary, "value", "Binary.data")
    binary["data"] = "aGVs\nbG8h"
    assert validate(binary) == []
    ident = {"system": "urn:ietf:rfc:3986", "value": "urn:uuid:NOT-A-UUID"}
    assert validate({**patient, "identifier": [ident]}) == []  # value is a string, anything goes
    assert validate_type("urn:uuid:NOT-A-UUID", "uuid")[0].code == "value"
    assert validate_type("urn:oid:1.2.3", "oid") == []


def test_root_problems() -> None:
    assert _codes(validate({"id": "x"})) == {("structure", "Resource")}
    assert _codes(validate({"resourceType": "Foo"})) == {("structure", "Resource")}
    assert _codes(validate({"resourceType": "DomainResource"})) == {("structure", "Resource")}
    assert _codes(validate([])) == {("structure", "Resource")}
    assert _codes(validate({})) == {("structure", "Resource")}
    assert validate({"resourceType": "Patient"}) == []


def test_several_issues_are_all_reported(patient: dict[str, Any]) -> None:
    patient["gender"] = "x"
    patient["active"] = "yes"
    patient["foo"] = 1
    assert _codes(validate(patient)) == {
        ("code-invalid", "Patient.gender"),
        ("value", "Patient.active"),
        ("structure", "Patient.foo"),
    }


def test_validate_type() -> None:
    assert validate_type({"family": "Nguyen", "given": ["An"]}, "HumanName") == []
    issues = validate_type({"family": ["Nguyen"]}, "HumanName", "Patient.name[0]")
    assert _codes(issues) == {("structure", "Patient.name[0].family")}
    assert _codes(validate_type("2020-13", "date")) == {("value", "date")}
    with pytest.raises(KeyError):
        validate_type({}, "NoSuchType")


def test_absurd_nesting_does_not_raise() -> None:
    ext: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(5000):
        ext = {"url": "http://example.org/x", "extension": [ext]}
    issues = validate({"resourceType": "Patient", "extension": [ext]})
    assert _codes(issues) == {("structure", "Patient")}


def test_input_is_not_modified(patient: dict[str, Any]) -> None:
    before = copy.deepcopy(patient)
    patient_bad = copy.deepcopy(patient)
    patient_bad["gender"] = "x"
    validate(patient)
    validate(patient_bad)
    assert patient == before
