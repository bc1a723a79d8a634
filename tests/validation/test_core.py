"""Validation against the R4 core StructureDefinitions: every official example passes (but for the
documented errata of the examples), invariants, reference targets and extension contexts each report
the right issue at the right FHIRPath, and do not report correct content."""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from fhir_hub.errors import Issue
from fhir_hub.rest.validate import outcome
from fhir_hub.validation import core, invariants
from fhir_hub.validation.profile import ProfileIssue
from tests.validation import errata
from tests.validation.test_profile import _DELETE, GOLDEN, ROOT, _set
from tests.validation.test_structure import EXAMPLES, SHARED, _example


def test_every_official_example_meets_its_core_profile() -> None:
    if not EXAMPLES.is_dir():
        pytest.skip("official FHIR R4 examples not available")
    files = sorted(EXAMPLES.glob("*.json"))
    assert len(files) == 5082
    results = [(path.name, core.validate_rules(orjson.loads(path.read_bytes()))) for path in files]
    unevaluated = {name: [i.diagnostics for i in issues if i.code == "not-supported"] for name, issues in results}
    assert not {k: v for k, v in unevaluated.items() if v}  # every invariant of every example was evaluated
    assert len(errata.check("core", results)) == 13  # by 7 errata; with the structural ones 26, 5,056 clean


# --------------------------------------------------------------------------- broken variants

_Change = Callable[[dict[str, Any]], Any]

#: name -> (official example, change, the one error it must give: (code, FHIRPath)); golden outcomes
#: (en + vi) in tests/golden/validation/r4-<name>.json
BROKEN: dict[str, tuple[str, _Change, tuple[str, str]]] = {
    "observation-no-status": ("Observation-f001", _set("status", _DELETE), ("required", "Observation.status")),
    "patient-gender-array": ("Patient-example", _set("gender", ["male"]), ("structure", "Patient.gender")),
    "observation-two-subjects": ("Observation-f001", _set("subject", [{"reference": "Patient/f001"}] * 2),
                                 ("structure", "Observation.subject")),
    "patient-active-string": ("Patient-example", _set("active", "yes"), ("value", "Patient.active")),
    "observation-value-as-string": ("Observation-f001", _set("valueQuantity.value", "6.3"),
                                    ("value", "Observation.value.ofType(Quantity).value")),
    "patient-gender-bad-code": ("Patient-example", _set("gender", "man"), ("code-invalid", "Patient.gender")),
    "observation-status-bad-code": ("Observation-f001", _set("status", "done"),
                                    ("code-invalid", "Observation.status")),
    "condition-clinical-status-bad-code": ("Condition-example", _set("clinicalStatus.coding.0.code", "cured"),
                                           ("code-invalid", "Condition.clinicalStatus")),
    "patient-contact-empty": ("Patient-example", _set("contact.0", {"gender": "female"}),
                              ("invariant", "Patient.contact[0]")),
    "observation-quantity-code-no-system": ("Observation-f001", _set("valueQuantity.system", _DELETE),
                                            ("invariant", "Observation.value.ofType(Quantity)")),
    "patient-unknown-element": ("Patient-example", _set("nickname", "Jim"), ("structure", "Patient.nickname")),
    "patient-unknown-nested-element": ("Patient-example", _set("name.0.middle", "J"),
                                       ("structure", "Patient.name[0].middle")),
    "observation-subject-practitioner": ("Observation-f001", _set("subject", {"reference": "Practitioner/f005"}),
                                         ("invalid", "Observation.subject.reference")),
    "observation-patient-extension": ("Observation-f001", _set("extension", [{
        "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": {"city": "Huế"}}]),
        ("structure", "Observation.extension[0]")),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_variants(name: str) -> None:
    example, change, (code, where) = BROKEN[name]
    resource = _example(example)
    change(resource)
    issues = core.validate(resource)
    errors = [(i.code, i.expression[0]) for i in issues if i.severity == "error"]
    assert errors == [(code, where)], errors
    doc = {"en": outcome(issues, "en"), "vi": outcome(issues, "vi")}
    path = GOLDEN / f"r4-{name}.json"
    if os.environ.get("FHIR_HUB_UPDATE_GOLDEN") or not path.exists():
        path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    assert doc == orjson.loads(path.read_bytes()), f"{name} differs from {path}"


# --------------------------------------------------------------------------- invariants


def _keys(issues: list[Issue]) -> set[tuple[str, str, str]]:
    return {(i.severity, i.diagnostics.split(" ")[1] if i.code == "invariant" else i.code, i.expression[0])
            for i in issues}


def test_valid_examples_give_nothing() -> None:
    for name in ("Patient-example", "Observation-heart-rate", "Bundle-bundle-transaction", "CarePlan-f001",
                 "Questionnaire-bb", "Condition-f202"):
        errors = [i for i in core.validate(_example(name)) if i.severity == "error"]
        assert errors == [], name


def test_resource_invariant_at_the_root() -> None:
    appt = _example("Appointment-example")
    del appt["end"]  # app-2: start and end both or neither
    assert ("error", "app-2", "Appointment") in _keys(core.validate_rules(appt))


def test_backbone_invariant_indexed() -> None:
    pat = _example("Patient-example")
    pat["contact"][0] = {"gender": "female"}  # pat-1: name, telecom, address or organization
    assert _keys(core.validate_rules(pat)) >= {("error", "pat-1", "Patient.contact[0]")}


def test_datatype_invariant_inside_choice() -> None:
    obs = _example("Observation-f001")
    obs["valueQuantity"] = {"value": 6.3, "code": "mmol/L"}  # qty-3: a code needs a system
    assert ("error", "qty-3", "Observation.value.ofType(Quantity)") in _keys(core.validate_rules(obs))


def test_period_start_after_end() -> None:
    enc = _example("Encounter-example")
    enc["period"] = {"start": "2020-02-01", "end": "2020-01-01"}  # per-1, uses hasValue()
    assert ("error", "per-1", "Encounter.period") in _keys(core.validate_rules(enc))
    enc["period"] = {"start": "2020-01-01", "end": "2020-02-01"}
    assert not any(i.expression[0] == "Encounter.period" for i in core.validate_rules(enc))


def test_range_low_above_high_same_unit_only() -> None:
    obs = _example("Observation-f001")
    rr = obs["referenceRange"][0]
    rr["low"], rr["high"] = copy.deepcopy(rr["high"]), copy.deepcopy(rr["low"])
    assert ("error", "rng-2", "Observation.referenceRange[0]") not in _keys(core.validate_rules(obs))  # not a Range
    goal = _example("Goal-example")
    goal["target"][0]["detailRange"] = {"low": {"value": 200, "unit": "lbs"}, "high": {"value": 160, "unit": "lbs"}}
    assert ("error", "rng-2", "Goal.target[0].detail.ofType(Range)") in _keys(core.validate_rules(goal))
    goal["target"][0]["detailRange"]["high"] = {"value": 160, "unit": "kg"}  # units differ: not compared
    assert ("error", "rng-2", "Goal.target[0].detail.ofType(Range)") not in _keys(core.validate_rules(goal))


def test_contained_not_referenced_and_nested() -> None:
    plan = _example("CarePlan-f001")
    plan["contained"][0]["id"] = "lonely"  # dom-3: nothing points at it, and ref-1: '#careteam' now dangles
    keys = _keys(core.validate_rules(plan))
    assert ("error", "dom-3", "CarePlan") in keys
    assert any(k[1] == "ref-1" for k in keys)
    plan = _example("CarePlan-f001")
    plan["contained"][0]["contained"] = [{"resourceType": "Patient", "id": "p"}]
    assert ("error", "dom-2", "CarePlan") in _keys(core.validate_rules(plan))


def test_reference_to_the_container_is_fine() -> None:
    plan = _example("CarePlan-f001")
    plan["contained"][0]["subject"] = {"reference": "#"}
    assert not [i for i in core.validate_rules(plan) if i.severity == "error"]


def test_enable_when_exists_needs_a_boolean() -> None:
    q = _example("Questionnaire-bb")
    when = q["item"][0]["item"][1]["item"][2]["item"][0]["enableWhen"][0]
    assert when["operator"] == "exists"
    del when["answerBoolean"]
    when["answerString"] = "yes"
    assert ("error", "que-7", "Questionnaire.item[0].item[1].item[2].item[0].enableWhen[0]") in _keys(
        core.validate_rules(q))


def test_narrative_checks() -> None:
    pat = _example("Patient-example")
    pat["text"]["div"] = '<div xmlns="http://www.w3.org/1999/xhtml"><script>alert(1)</script></div>'
    assert ("error", "txt-1", "Patient.text.div") in _keys(core.validate_rules(pat))
    pat["text"]["div"] = '<div xmlns="http://www.w3.org/1999/xhtml"><p onclick="x()">Hi</p></div>'
    assert ("error", "txt-1", "Patient.text.div") in _keys(core.validate_rules(pat))
    pat["text"]["div"] = '<div xmlns="http://www.w3.org/1999/xhtml"> </div>'
    assert ("error", "txt-2", "Patient.text.div") in _keys(core.validate_rules(pat))
    del pat["text"]
    assert ("warning", "dom-6", "Patient") in _keys(core.validate_rules(pat))  # best practice: a warning


def test_extension_with_value_and_extensions() -> None:
    pat = _example("Patient-example")
    pat["extension"] = [{"url": "http://example.org/x", "valueString": "a",
                         "extension": [{"url": "y", "valueString": "b"}]}]
    assert ("error", "ext-1", "Patient.extension[0]") in _keys(core.validate_rules(pat))
    pat["extension"] = [{"url": "http://example.org/x", "_valueString": {"extension": [
        {"url": "http://example.org/y", "valueString": "b"}]}}]  # a value that has only extensions exists
    assert ("error", "ext-1", "Patient.extension[0]") not in _keys(core.validate_rules(pat))


def test_every_fhirpath_rule_compiles() -> None:
    for path in invariants._data():
        for rule in invariants.rules(path):
            if rule.key not in invariants._NATIVE and not invariants._MATCHES.fullmatch(rule.expression):
                invariants._fhirpath(rule.expression, path.removesuffix("[x]"))


# --------------------------------------------------------------------------- required bindings


def test_required_binding_on_a_codeable_concept() -> None:
    cond = _example("Condition-example")
    assert not [i for i in core.validate_rules(cond) if i.code == "code-invalid"]
    cond["clinicalStatus"] = {"text": "better"}
    issues = [i for i in core.validate_rules(cond) if i.code == "code-invalid"]
    assert [(i.severity, i.expression[0]) for i in issues] == [("error", "Condition.clinicalStatus")]
    assert "text only" in issues[0].diagnostics
    cond["clinicalStatus"] = {"coding": [{"system": "http://example.org/other", "code": "active"}]}
    assert ("error", "code-invalid", "Condition.clinicalStatus") in _keys(core.validate_rules(cond))


def test_shipped_rules_equal_a_rebuild() -> None:
    defs = SHARED / "fhir-r4" / "definitions"
    if not defs.is_dir():
        pytest.skip("official FHIR R4 definitions not available")
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import build_r4_rules
    finally:
        sys.path.remove(str(ROOT / "tools"))
    data = ROOT / "fhir_hub" / "validation" / "data"
    for name, build in (("r4-invariants.json", build_r4_rules.build_invariants),
                        ("r4-extensions.json", build_r4_rules.build_extensions),
                        ("r4-bindings.json", build_r4_rules.build_bindings)):
        assert orjson.loads((data / name).read_bytes()) == build(defs), name


# --------------------------------------------------------------------------- reference targets


def test_literal_reference_of_a_wrong_type() -> None:
    obs = _example("Observation-heart-rate")
    obs["subject"] = {"reference": "Practitioner/1"}
    issues = [i for i in core.validate_rules(obs) if i.code == "invalid"]
    assert [(i.severity, i.expression[0]) for i in issues] == [("error", "Observation.subject.reference")]
    assert "Device, Group, Location, Patient" in str(issues[0].diagnostics)


def test_contained_target_of_a_wrong_type() -> None:
    obs = _example("Observation-heart-rate")
    obs["contained"] = [{"resourceType": "Practitioner", "id": "doc"}]
    obs["subject"] = {"reference": "#doc"}
    assert ("error", "invalid", "Observation.subject.reference") in _keys(core.validate_rules(obs))
    obs["contained"] = [{"resourceType": "Patient", "id": "doc"}]
    assert ("error", "invalid", "Observation.subject.reference") not in _keys(core.validate_rules(obs))


def test_bundle_target_by_full_url() -> None:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:0d2c4a6e-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Practitioner", "id": "a"}},
        {"fullUrl": "urn:uuid:0d2c4a6e-0000-4000-8000-000000000002",
         "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": "urn:uuid:0d2c4a6e-0000-4000-8000-000000000001"}}}]}
    assert ("error", "invalid", "Bundle.entry[1].resource.subject.reference") in _keys(core.validate_rules(bundle))
    bundle["entry"][0]["resource"]["resourceType"] = "Patient"
    assert not [i for i in core.validate_rules(bundle) if i.severity == "error"]


def test_non_restful_absolute_url_is_not_judged() -> None:
    obs = _example("Observation-heart-rate")
    obs["subject"] = {"reference": "http://example.org/people/42"}
    assert not [i for i in core.validate_rules(obs) if i.code == "invalid"]


# --------------------------------------------------------------------------- extension contexts


_BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"  # context: Patient, value Address


def test_extension_in_its_context() -> None:
    pat = _example("Patient-example")
    pat["extension"] = [{"url": _BIRTH_PLACE, "valueAddress": {"city": "Hà Nội"}}]
    assert not [i for i in core.validate_rules(pat) if i.severity == "error"]


def test_extension_out_of_its_context() -> None:
    obs = _example("Observation-heart-rate")
    obs["extension"] = [{"url": _BIRTH_PLACE, "valueAddress": {"city": "Hà Nội"}}]
    issues = [i for i in core.validate_rules(obs) if i.code == "structure"]
    assert [(i.severity, i.expression[0]) for i in issues] == [("error", "Observation.extension[0]")]
    assert "not allowed on Observation; its context is: Patient" in issues[0].diagnostics


def test_extension_context_of_a_datatype_element_and_content_reference() -> None:
    pat = _example("Patient-example")
    own_prefix = "http://hl7.org/fhir/StructureDefinition/humanname-own-prefix"  # context HumanName.family
    pat["name"][0]["_family"] = {"extension": [{"url": own_prefix, "valueString": "van"}]}
    assert not [i for i in core.validate_rules(pat) if i.severity == "error"]
    pat["name"][0]["_given"] = [{"extension": [{"url": own_prefix, "valueString": "van"}]}]
    assert ("error", "structure", "Patient.name[0].given[0].extension[0]") in _keys(core.validate_rules(pat))
    op = _example("OperationDefinition-CodeSystem-find-matches")  # allowed-type on parameter.part.part
    assert not [i for i in core.validate_rules(op) if i.severity == "error"]


def test_extension_value_type_and_modifier() -> None:
    pat = _example("Patient-example")
    pat["extension"] = [{"url": _BIRTH_PLACE, "valueString": "Hà Nội"}]
    found = [i.diagnostics for i in core.validate_rules(pat) if i.code == "structure"]
    assert found == [f"Extension {_BIRTH_PLACE} cannot hold valueString; allowed: valueAddress"]
    pat["extension"] = []
    del pat["extension"]
    pat["modifierExtension"] = [{"url": _BIRTH_PLACE, "valueAddress": {"city": "Huế"}}]
    found = [i.diagnostics for i in core.validate_rules(pat) if i.code == "structure"]
    assert found == [f"Extension {_BIRTH_PLACE} is not a modifier extension: it must be in extension"]


def test_vn_extension_context() -> None:
    ethnic = "http://fhir.ehealth.gov.vn/core/StructureDefinition/extension-race"  # context Patient
    obs = _example("Observation-heart-rate")
    obs["extension"] = [{"url": ethnic, "valueCodeableConcept": {"text": "Kinh"}}]
    issues = core.validate_rules(obs)
    assert [(i.code, i.expression[0]) for i in issues if i.severity == "error"] == [
        ("structure", "Observation.extension[0]")]
    last = issues[-1]
    assert isinstance(last, ProfileIssue)
    assert "ngữ cảnh cho phép: patient" in str(last.to_json("vi")["diagnostics"]).lower()


def test_unknown_extension_is_not_judged() -> None:
    obs = _example("Observation-heart-rate")
    obs["extension"] = [{"url": "http://example.org/anything", "valueString": "x"}]
    assert not [i for i in core.validate_rules(obs) if i.severity == "error"]


def test_extension_definitions_follow_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A package loaded for a run (--ig) can add an extension definition; it is seen at once, and
    forgotten when the package goes."""
    from fhir_hub import profiles
    from fhir_hub.validation import extensions

    url = "http://example.org/StructureDefinition/flag"
    assert extensions.definition(url) is None
    sd = {"url": url, "type": "Extension", "context": [{"type": "element", "expression": "Patient"}],
          "snapshot": {"element": [{"id": "Extension"}, {"id": "Extension.value[x]", "max": "1",
                                                          "type": [{"code": "boolean"}]}]}}
    real = profiles.structure_definition
    monkeypatch.setattr(profiles, "structure_definition", lambda u: sd if u == url else real(u))
    obs = _example("Observation-heart-rate")
    obs["extension"] = [{"url": url, "valueBoolean": True}]
    assert ("error", "structure", "Observation.extension[0]") in _keys(core.validate_rules(obs))
    monkeypatch.setattr(profiles, "structure_definition", real)
    assert extensions.definition(url) is None
    assert ("error", "structure", "Observation.extension[0]") not in _keys(core.validate_rules(obs))


# --------------------------------------------------------------------------- context corrections

_FHIR_TYPE = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
_NORMATIVE = "http://hl7.org/fhir/StructureDefinition/structuredefinition-normative-version"


def _structure_errors(resource: dict[str, Any]) -> list[tuple[str, str]]:
    return [(i.expression[0], i.diagnostics) for i in core.validate_rules(resource)
            if i.severity == "error" and i.code == "structure"]


def test_fhir_type_on_element_definition_type_and_type_code() -> None:
    """The R4 build's own use (on ElementDefinition.type, R5's context) and R4's declared one (on
    type.code) are both accepted."""
    sd = _example("StructureDefinition-patient-birthPlace")
    element = sd["snapshot"]["element"][1]
    assert element["type"][0]["extension"][0]["url"] == _FHIR_TYPE  # Extension.id: the build's own use
    element["type"][0]["_code"] = {"extension": [{"url": _FHIR_TYPE, "valueUrl": "id"}]}
    assert _structure_errors(sd) == []


def test_fhir_type_elsewhere_is_still_an_error() -> None:
    pat = _example("Patient-example")
    pat["name"][0]["extension"] = [{"url": _FHIR_TYPE, "valueUrl": "string"}]
    sd = _example("StructureDefinition-patient-birthPlace")
    sd["snapshot"]["element"][1]["extension"] = [{"url": _FHIR_TYPE, "valueUrl": "id"}]  # on the element itself
    found = _structure_errors(pat) + _structure_errors(sd)
    assert [where for where, _ in found] == ["Patient.name[0].extension[0]",
                                             "StructureDefinition.snapshot.element[1].extension[0]"]
    assert all(f"Extension {_FHIR_TYPE} is not allowed on" in text for _, text in found)


def test_normative_version_on_canonical_resources_and_element_definitions() -> None:
    """R5 gives normative-version the contexts CanonicalResource and ElementDefinition."""
    vs = _example("ValueSet-account-status")
    vs["extension"] = [{"url": _NORMATIVE, "valueCode": "4.0.0"}]
    op = _example("OperationDefinition-CodeSystem-find-matches")
    op["extension"] = [{"url": _NORMATIVE, "valueCode": "4.0.0"}]
    sd = _example("StructureDefinition-patient-birthPlace")
    sd["snapshot"]["element"][0].setdefault("extension", []).append({"url": _NORMATIVE, "valueCode": "4.0.0"})
    assert _structure_errors(vs) + _structure_errors(op) + _structure_errors(sd) == []


def test_normative_version_elsewhere_is_still_an_error() -> None:
    pat = _example("Patient-example")
    pat["extension"] = [{"url": _NORMATIVE, "valueCode": "4.0.0"}]
    obs = _example("Observation-heart-rate")
    obs["code"]["extension"] = [{"url": _NORMATIVE, "valueCode": "4.0.0"}]
    found = _structure_errors(pat) + _structure_errors(obs)
    assert [where for where, _ in found] == ["Patient.extension[0]", "Observation.code.extension[0]"]
    assert all(f"Extension {_NORMATIVE} is not allowed on" in text for _, text in found)


def test_corrections_name_real_r4_contexts() -> None:
    """Every resource type a correction names is an R4 resource with a url (canonical in R4 as in R5),
    and no correction narrows a context: the R4 declared context stays allowed."""
    from fhir_hub.validation import extensions

    defs = SHARED / "fhir-r4" / "definitions" / "profiles-resources.json"
    if not defs.is_file():
        pytest.skip("FHIR R4 definitions not available")
    with_url = {e["resource"]["type"] for e in orjson.loads(defs.read_bytes())["entry"]
                if e["resource"].get("resourceType") == "StructureDefinition"
                and any(x["id"] == f"{e['resource']['type']}.url" for x in e["resource"]["snapshot"]["element"])}
    named = {c for extra in extensions.CORRECTIONS.values() for c in extra
             if "." not in c and c != "ElementDefinition"}
    assert named and named <= with_url
    for url, extra in extensions.CORRECTIONS.items():
        d = extensions.definition(url)
        declared = frozenset(extensions._r4()[url]["context"])
        assert d is not None and d.context == declared | extra and declared
