"""Profile plans: slicing by ``type``, ``profile`` and ``exists`` discriminators, and Reference target
profiles checked on targets that resolve (contained, or in the same Bundle). The profiles here are small
hand-written snapshots, compiled by the same code as the shipped ones."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_hub import profiles
from fhir_hub.errors import Issue
from fhir_hub.validation import profile
from tests.validation import vn_samples as s


def _el(eid: str, mn: int = 0, mx: str = "*", **more: Any) -> dict[str, Any]:
    path = ".".join(part.split(":")[0] for part in eid.split("."))
    out = {"id": eid, "path": path, "min": mn, "max": mx, "base": {"path": path, "min": 0, "max": "*"}}
    if ":" in eid.rsplit(".", 1)[-1]:
        out["sliceName"] = eid.rsplit(":", 1)[-1]
    out.update(more)
    return out


def _plan(rtype: str, elements: list[dict[str, Any]]) -> profile.Plan:
    sd = {"url": f"http://example.org/StructureDefinition/{rtype}-test", "type": rtype,
          "snapshot": {"element": [_el(rtype, 0, "*"), *elements]}}
    return profile._build(sd)


def _run(p: profile.Plan, resource: dict[str, Any]) -> list[tuple[str, str, str]]:
    out: list[Issue] = []
    p.check_value(resource, resource["resourceType"], resource, out)
    return [(i.severity, i.code, i.expression[0]) for i in out]


def _bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection",
            "entry": [{"fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{i}", "resource": r}
                      for i, r in enumerate(resources)]}


# --------------------------------------------------------------------------- type


@pytest.fixture(scope="module")
def by_type() -> profile.Plan:
    return _plan("Bundle", [
        _el("Bundle.entry", slicing={"discriminator": [{"type": "type", "path": "resource"}], "rules": "closed"}),
        _el("Bundle.entry:patient", 1, "1"),
        _el("Bundle.entry:patient.resource", 1, "1", type=[{"code": "Patient"}]),
        _el("Bundle.entry:obs", 0, "*"),
        _el("Bundle.entry:obs.resource", 1, "1", type=[{"code": "Observation"}]),
    ])


def test_type_discriminator_matches(by_type: profile.Plan) -> None:
    assert _run(by_type, _bundle(s.patient(), s.vital_sign(), s.lab())) == []


def test_type_discriminator_counts_and_closed(by_type: profile.Plan) -> None:
    assert _run(by_type, _bundle(s.vital_sign())) == [("error", "required", "Bundle.entry")]
    assert _run(by_type, _bundle(s.patient(), s.patient())) == [("error", "structure", "Bundle.entry")]
    org = {"resourceType": "Organization", "name": "BV"}
    assert _run(by_type, _bundle(s.patient(), org)) == [("error", "structure", "Bundle.entry[1]")]


def test_type_discriminator_on_a_choice() -> None:
    p = _plan("Observation", [
        _el("Observation.component", slicing={"discriminator": [{"type": "type", "path": "value"}], "rules": "open"}),
        _el("Observation.component:quantity", 1, "1"),
        _el("Observation.component:quantity.value[x]", 1, "1", type=[{"code": "Quantity"}]),
    ])
    obs = s.vital_sign()
    obs["component"] = [{"code": {"text": "a"}, "valueString": "x"}, {"code": {"text": "b"}, "valueQuantity": {"value": 1}}]
    assert _run(p, obs) == []
    obs["component"].pop()
    assert _run(p, obs) == [("error", "required", "Observation.component")]


def test_type_discriminator_on_a_single_choice_value() -> None:
    p = _plan("Observation", [
        _el("Observation.value[x]", 0, "1", type=[{"code": "Quantity"}, {"code": "string"}],
            slicing={"discriminator": [{"type": "type", "path": "$this"}], "rules": "closed"}),
        _el("Observation.value[x]:valueQuantity", 1, "1", type=[{"code": "Quantity"}]),
        _el("Observation.value[x]:valueQuantity.code", 1, "1"),
    ])
    obs = s.vital_sign()
    assert _run(p, obs) == []
    del obs["valueQuantity"]["code"]
    assert _run(p, obs) == [("error", "required", "Observation.value.ofType(Quantity).code")]
    del obs["valueQuantity"]
    obs["valueString"] = "high"
    assert _run(p, obs) == [("error", "structure", "Observation.value.ofType(string)"),
                            ("error", "required", "Observation.value.ofType(string)")]
    del obs["valueString"]
    assert _run(p, obs) == [("error", "required", "Observation.value")]


# --------------------------------------------------------------------------- profile


@pytest.fixture(scope="module")
def by_profile() -> profile.Plan:
    return _plan("Bundle", [
        _el("Bundle.entry", slicing={"discriminator": [{"type": "profile", "path": "resource"}], "rules": "open"}),
        _el("Bundle.entry:vnpatient", 1, "1"),
        _el("Bundle.entry:vnpatient.resource", 1, "1", type=[{"code": "Patient", "profile": [profiles.PATIENT]}]),
    ])


def test_profile_discriminator_matches_a_conforming_resource(by_profile: profile.Plan) -> None:
    assert _run(by_profile, _bundle(s.patient(), s.vital_sign())) == []


def test_profile_discriminator_ignores_a_resource_that_does_not_conform(by_profile: profile.Plan) -> None:
    bad = s.patient()
    del bad["name"][0]["text"]  # VN Patient requires the name as written
    assert _run(by_profile, _bundle(bad)) == [("error", "required", "Bundle.entry")]
    two = _bundle(s.patient(), s.patient())
    assert _run(by_profile, two) == [("error", "structure", "Bundle.entry")]


# --------------------------------------------------------------------------- exists


@pytest.fixture(scope="module")
def by_exists() -> profile.Plan:
    return _plan("Observation", [
        _el("Observation.component",
            slicing={"discriminator": [{"type": "exists", "path": "dataAbsentReason"}], "rules": "open"}),
        _el("Observation.component:missing", 0, "1"),
        _el("Observation.component:missing.dataAbsentReason", 1, "1"),
        _el("Observation.component:measured", 1, "*"),
        _el("Observation.component:measured.dataAbsentReason", 0, "0"),
    ])


def test_exists_discriminator(by_exists: profile.Plan) -> None:
    obs = s.vital_sign()
    measured = {"code": {"text": "systolic"}, "valueQuantity": {"value": 120}}
    missing = {"code": {"text": "diastolic"}, "dataAbsentReason": {"text": "error"}}
    obs["component"] = [measured, missing]
    assert _run(by_exists, obs) == []
    obs["component"] = [missing, copy.deepcopy(missing)]
    assert _run(by_exists, obs) == [("error", "structure", "Observation.component"),  # two 'missing'
                                    ("error", "required", "Observation.component")]  # no 'measured'


def test_exists_discriminator_must_be_required_or_prohibited() -> None:
    with pytest.raises(ValueError, match="neither required nor prohibited"):
        _plan("Observation", [
            _el("Observation.component", slicing={"discriminator": [{"type": "exists", "path": "dataAbsentReason"}]}),
            _el("Observation.component:x", 0, "1"),
            _el("Observation.component:x.dataAbsentReason", 0, "1"),
        ])


# --------------------------------------------------------------------------- reference target profiles


@pytest.fixture(scope="module")
def vn_subject() -> profile.Plan:
    return _plan("Encounter", [_el("Encounter.subject", 1, "1", type=[
        {"code": "Reference", "targetProfile": [profiles.PATIENT, "http://hl7.org/fhir/StructureDefinition/Group"]}])])


def test_contained_target_meets_the_target_profile(vn_subject: profile.Plan) -> None:
    enc = s.encounter()
    enc["contained"] = [dict(s.patient(), id="p")]
    enc["subject"] = {"reference": "#p"}
    assert _run(vn_subject, enc) == []


def test_contained_target_misses_the_target_profile(vn_subject: profile.Plan) -> None:
    enc = s.encounter()
    patient = s.patient()
    del patient["name"][0]["text"]
    enc["contained"] = [dict(patient, id="p")]
    enc["subject"] = {"reference": "#p"}
    out: list[Issue] = []
    vn_subject.check_value(enc, "Encounter", enc, out)
    assert [(i.severity, i.code, i.expression[0]) for i in out] == [("error", "invalid", "Encounter.subject.reference")]
    assert profiles.PATIENT in out[0].diagnostics


def test_target_of_a_type_without_profile_needs_only_its_type(vn_subject: profile.Plan) -> None:
    enc = s.encounter()
    enc["contained"] = [{"resourceType": "Group", "id": "g", "type": "person", "actual": True}]
    enc["subject"] = {"reference": "#g"}
    assert _run(vn_subject, enc) == []
    enc["contained"] = [{"resourceType": "Device", "id": "g"}]
    assert _run(vn_subject, enc) == [("error", "invalid", "Encounter.subject.reference")]


def test_bundle_target_meets_or_misses_the_target_profile(vn_subject: profile.Plan) -> None:
    enc = s.encounter()
    enc["subject"] = {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"}
    good = _bundle(s.patient(), enc)
    bad_patient = s.patient()
    del bad_patient["name"][0]["text"]
    bad = _bundle(bad_patient, enc)
    for bundle, expected in ((good, []), (bad, [("error", "invalid", "Encounter.subject.reference")])):
        token = profile.BUNDLE.set(profile.references.bundle_index(bundle))
        try:
            assert _run(vn_subject, enc) == expected
        finally:
            profile.BUNDLE.reset(token)
    assert _run(vn_subject, enc) == []  # outside its Bundle the target cannot be resolved: not judged


def test_literal_reference_of_another_type(vn_subject: profile.Plan) -> None:
    enc = s.encounter()
    enc["subject"] = {"reference": "Practitioner/d1"}
    assert _run(vn_subject, enc) == [("error", "invalid", "Encounter.subject.reference")]


def test_shipped_profile_resolves_in_a_bundle_through_validate_tree() -> None:
    enc = s.encounter()
    enc["subject"] = {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"}
    practitioner = {"resourceType": "Practitioner", "id": "d1"}
    enc["meta"] = {"profile": [profiles.ENCOUNTER_OUTPATIENT]}
    issues = profile.validate_tree(_bundle(practitioner, enc), defaults=False)
    assert ("error", "invalid", "Bundle.entry[1].resource.subject.reference") in {
        (i.severity, i.code, i.expression[0]) for i in issues}


# --------------------------------------------------------------------------- core checks in validate_resource


def test_validate_resource_checks_extension_contexts() -> None:
    obs = s.vital_sign()
    obs["extension"] = [{"url": f"{s.SD}/extension-race", "valueCodeableConcept": {"text": "Kinh"}}]  # context Patient
    issues = profile.validate_resource(obs)
    assert [(i.severity, i.code, i.expression[0]) for i in issues if i.severity == "error"] == [
        ("error", "structure", "Observation.extension[0]")]


def test_validate_resource_reports_one_fault_once() -> None:
    patient = s.patient()
    patient["extension"][0] = {"url": f"{s.SD}/extension-race", "valueString": "Kinh"}
    errors = [i for i in profile.validate_resource(patient) if i.severity == "error"]
    # the profile's slice says the value type is wrong; the core extension check does not say it again
    assert [i.expression[0] for i in errors] == ["Patient.extension[0].value.ofType(string)"]


def test_validate_tree_reports_an_entry_fault_once() -> None:
    patient = s.patient()
    patient["extension"][0] = {"url": f"{s.SD}/extension-race", "valueString": "Kinh"}
    errors = [i for i in profile.validate_tree(_bundle(patient)) if i.severity == "error"]
    assert [i.expression[0] for i in errors] == ["Bundle.entry[0].resource.extension[0].value.ofType(string)"]


def test_core_invariants_on_request_only() -> None:
    patient = s.patient()
    patient["contact"] = [{"gender": "female"}]  # pat-1: a contact needs details
    plain = {(i.code, i.expression[0]) for i in profile.validate_tree(_bundle(patient))}
    full = {(i.code, i.expression[0]) for i in profile.validate_tree(_bundle(patient), invariants=True)}
    assert ("invariant", "Bundle.entry[0].resource.contact[0]") in full - plain
