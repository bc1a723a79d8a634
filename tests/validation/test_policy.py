"""The per-type profile policy: parsing the setting, the issues of a resource, the 422 on write."""

from __future__ import annotations

import pytest

from fhir_hub.config import Settings
from fhir_hub.errors import FhirError
from fhir_hub.validation import policy
from tests.validation import vn_samples

SD = vn_samples.SD
PATIENT = f"{SD}/vn-core-patient"
VITALS = f"{SD}/vn-core-observation-vital-signs"


def test_parse_groups_profiles_by_type() -> None:
    text = f" Patient={PATIENT} , Observation={VITALS},Patient={PATIENT},"
    assert policy.parse(text) == {"Patient": (PATIENT,), "Observation": (VITALS,)}
    assert policy.required(text, "Observation") == (VITALS,)
    assert policy.required(text, "Encounter") == ()
    assert policy.required("", "Patient") == ()


@pytest.mark.parametrize(("text", "message"), [
    ("Patient", "is not Type=profile-url"),
    (f"Patient {PATIENT}", "is not Type=profile-url"),
    (f"Patience={PATIENT}", "'Patience' is not an R4 resource type"),
    ("Patient=http://example.org/StructureDefinition/nope", "is not known to this server"),
    (f"Encounter={PATIENT}", "is for Patient, not Encounter"),
])
def test_a_bad_setting_is_refused_when_the_settings_are_built(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env({"FHIR_HUB_REQUIRE_PROFILE": text})


def test_a_conforming_resource_passes_whatever_it_claims() -> None:
    p = vn_samples.patient()
    del p["meta"]
    assert policy.issues(p, f"Patient={PATIENT}") == []
    policy.enforce(p, f"Patient={PATIENT}")


def test_an_unclaimed_non_conforming_resource_is_refused_with_every_issue() -> None:
    p = vn_samples.patient()
    del p["meta"]
    del p["name"][0]["text"]  # an error against VN Core Patient
    p["birthDate"] = "1991-04-12"  # and a warning (vn-pat-1, the personal ID says 1990)
    with pytest.raises(FhirError) as caught:
        policy.enforce(p, f"Patient={PATIENT}", "Bundle.entry[2].resource")
    assert caught.value.status == 422
    found = {(i.severity, i.expression) for i in caught.value.issues}
    assert ("error", ("Bundle.entry[2].resource.name[0].text",)) in found
    assert ("warning", ("Bundle.entry[2].resource",)) in found


def test_warnings_alone_do_not_refuse_and_other_types_are_not_checked() -> None:
    p = vn_samples.patient()
    p["gender"] = "male"  # vn-pat-2 warning only
    policy.enforce(p, f"Patient={PATIENT}")
    assert [i.severity for i in policy.issues(p, f"Patient={PATIENT}")] == ["warning"]
    o = vn_samples.vital_sign()
    o["valueQuantity"]["code"] = "[lb_av]x"  # not the UCUM unit of a weight (vn-vs-1)
    policy.enforce(o, f"Patient={PATIENT}")  # no Observation profile is required
    with pytest.raises(FhirError):
        policy.enforce(o, f"Patient={PATIENT},Observation={VITALS}")


def test_structure_is_included_when_asked() -> None:
    p = vn_samples.patient()
    p["bogus"] = 1
    assert policy.issues(p, f"Patient={PATIENT}") == []
    assert [i.expression for i in policy.issues(p, f"Patient={PATIENT}", structural=True)] == [("Patient.bogus",)]


def test_profiles_the_caller_checked_are_skipped() -> None:
    p = vn_samples.patient()
    del p["name"][0]["text"]
    assert policy.issues(p, f"Patient={PATIENT}") != []
    assert policy.issues(p, f"Patient={PATIENT}", skip=[PATIENT]) == []
