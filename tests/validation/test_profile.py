"""The VN Core profiles and the snapshot validator: golden outcomes, CCCD warnings, the claims mapping's
output, native invariants against fhirpathpy, and the shipped files against a rebuild."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fhirpathpy
import orjson
import pytest
from fhirpathpy.models import models

from fhir_hub import profiles
from fhir_hub.mapping import map_file
from fhir_hub.rest.validate import outcome
from fhir_hub.validation import profile
from tests.validation import vn_samples as s

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "validation"
SAMPLES = ROOT.parent / "shared" / "vn" / "bhyt-xml" / "sample-synthetic"
SD = s.SD


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(r: dict[str, Any]) -> None:
        *head, last = path.split(".")
        node: Any = r
        for step in head:
            node = node[int(step)] if step.isdigit() else node[step]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return apply


_DELETE = object()

#: name -> (sample, change); each golden file holds the OperationOutcome, in English and in Vietnamese.
CASES: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[dict[str, Any]], object] | None]] = {
    "patient-valid": (s.patient, None),
    "patient-no-name-text": (s.patient, _set("name.0.text", _DELETE)),
    "patient-cccd-11-digits": (s.patient, _set("identifier.0.value", "00119001234")),
    "patient-two-cccd": (s.patient, lambda r: r["identifier"].append(dict(r["identifier"][0]))),
    "patient-bhyt-card-short": (s.patient, _set("identifier.2.value", "DN40101")),
    "patient-bhxh-wrong-type": (s.patient, _set("identifier.1.type.coding.0.code", "SB")),
    "patient-facility-number-without-assigner": (s.patient, _set("identifier.3.assigner", _DELETE)),
    "patient-unknown-ethnic-group": (s.patient, _set("extension.0.valueCodeableConcept.coding.0.code", "77")),
    "patient-ethnic-group-as-string": (s.patient, _set("extension.0", {"url": f"{SD}/extension-race",
                                                                       "valueString": "Kinh"})),
    "patient-ward-not-in-the-lists": (s.patient, _set(
        "address.0.extension.0.extension.1.valueCodeableConcept.coding.0.code", "99999")),
    "patient-address-mixed-generations": (s.patient, _set(
        "address.0.extension.0.extension.0.valueCodeableConcept.coding.0.system",
        f"{s.CORE}/CodeSystem/vn-province-pre2025")),
    "patient-unknown-address-part": (s.patient, lambda r: r["address"][0]["extension"][0]["extension"].append(
        {"url": "hamlet", "valueString": "Thôn 1"})),
    "encounter-valid": (s.encounter, None),
    "encounter-inpatient-class": (s.encounter, _set("class.code", "IMP")),
    "encounter-no-visit-type": (s.encounter, _set("type", _DELETE)),
    "encounter-bad-visit-type": (s.encounter, _set("type.0.coding.0.code", "99")),
    "encounter-no-period-or-facility": (s.encounter, lambda r: (r.pop("period"), r.pop("serviceProvider"))),
    "encounter-subject-a-group": (s.encounter, _set("subject.reference", "Group/g1")),
    "vital-sign-valid": (s.vital_sign, None),
    "vital-sign-weight-in-pounds-unit-missing": (s.vital_sign, _set("valueQuantity.code", "lb")),
    "vital-sign-no-effective": (s.vital_sign, _set("effectiveDateTime", _DELETE)),
    "vital-sign-effective-month-only": (s.vital_sign, _set("effectiveDateTime", "2025-08")),
    "vital-sign-effective-instant-type": (s.vital_sign, lambda r: (r.pop("effectiveDateTime"),
                                                                    r.update(effectiveInstant="2025-08-01T08:10:00Z"))),
    "vital-sign-no-category": (s.vital_sign, _set("category.0.coding.0.code", "exam")),
    "vital-sign-no-loinc": (s.vital_sign, _set("code.coding.0.system", "urn:example:local")),
    "lab-valid": (s.lab, None),
    "lab-not-coded": (s.lab, _set("code", {"text": "Đường huyết"})),
    "lab-two-loinc-codes": (s.lab, lambda r: r["code"]["coding"].append({"system": "http://loinc.org",
                                                                          "code": "2339-0"})),
    "lab-no-ucum": (s.lab, _set("valueQuantity.system", _DELETE)),
}


def _case(name: str) -> dict[str, Any]:
    make, change = CASES[name]
    r = make()
    if change is not None:
        change(r)
    return r


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_outcomes(name: str) -> None:
    issues = profile.validate_resource(_case(name))
    doc = {"en": outcome(issues, "en"), "vi": outcome(issues, "vi")}
    path = GOLDEN / f"{name}.json"
    if os.environ.get("FHIR_HUB_UPDATE_GOLDEN") or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    assert doc == orjson.loads(path.read_bytes()), f"{name} differs from {path}"
    errors = [i for i in issues if i.severity == "error"]
    assert bool(errors) == (name.endswith("-valid") is False and name not in _WARNINGS_ONLY), issues


_WARNINGS_ONLY = {"patient-ward-not-in-the-lists", "patient-address-mixed-generations", "lab-no-ucum",
                  "patient-cccd-11-digits-no"}


@pytest.mark.parametrize(("change", "keys"), [
    ({"birthDate": "1991-04-12"}, ["vn-pat-1"]),
    ({"gender": "male"}, ["vn-pat-2"]),
    ({"birthDate": "2001-04-12", "gender": "male"}, ["vn-pat-1", "vn-pat-2"]),
    ({"birthDate": "1990"}, []),  # a year alone is enough
    ({"gender": "unknown"}, []),
])
def test_cccd_structure_inconsistencies_are_warnings(change: dict[str, Any], keys: list[str]) -> None:
    p = {**s.patient(), **change}
    issues = profile.validate_resource(p)
    assert [i.diagnostics.split()[1] for i in issues] == keys
    assert all(i.severity == "warning" and i.expression == ("Patient",) for i in issues)


def test_cccd_century_digit_for_the_2000s_and_the_prefix_check() -> None:
    p = s.patient()
    p["identifier"][0]["value"] = "079305012345"  # HCMC, 3 = female born 2000-2099, 05
    p["birthDate"] = "2005-01-02"
    assert profile.validate_resource(p) == []
    p["identifier"][0]["value"] = "099305012345"  # 099: no pre-2025 province (abroad, or a typo)
    [issue] = profile.validate_resource(p)
    assert issue.severity == "warning" and "vn-pat-3" in issue.diagnostics


def _mapped() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(SAMPLES.glob("GIAMDINHHS_*.xml")):
        result = map_file(path.read_bytes(), path.name)
        for h in result.hosos:
            assert h.bundle is not None
            out.append((f"{path.name} HOSO {h.index}", h.bundle))
    return out


def test_every_claims_bundle_validates_without_errors() -> None:
    bundles = _mapped()
    assert len(bundles) >= 6
    checked: set[str] = set()
    for where, bundle in bundles:
        issues = profile.validate_tree(bundle)
        errors = [(i.expression, i.diagnostics) for i in issues if i.severity in ("error", "fatal")]
        assert not errors, f"{where}: {errors}"
        checked.update(u for e in bundle["entry"] for u in profiles.default_profiles(e["resource"]))
    # the bundles exercise the profiles they can: every one but Practitioner (staff are logical references)
    assert checked >= {profiles.PATIENT, profiles.ENCOUNTER, profiles.ENCOUNTER_OUTPATIENT, profiles.VITAL_SIGNS,
                       profiles.LAB, profiles.CONDITION, profiles.COVERAGE, profiles.ORGANIZATION}


def test_claims_bundles_claiming_the_profiles_still_validate() -> None:
    """Claimed profiles (meta.profile) are what the write path enforces: the same answer."""
    for where, bundle in _mapped():
        for entry in bundle["entry"]:
            r = entry["resource"]
            wanted = profiles.default_profiles(r)
            if wanted:
                r = {**r, "meta": {"profile": wanted}}
                errors = [i for i in profile.validate_resource(r, structural=False) if i.severity == "error"]
                assert not errors, (where, r["resourceType"], errors)


# fhirpathpy against the native invariants: the expressions in the StructureDefinitions mean what runs.

def _constraints() -> dict[str, tuple[str, dict[str, Any]]]:
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for url in profiles.urls():
        sd = profiles.structure_definition(url)
        assert sd is not None
        for e in sd["snapshot"]["element"]:
            for c in e.get("constraint", ()):
                if c["key"].startswith("vn-") and e["id"] == sd["type"] and sd["kind"] == "resource":
                    found[c["key"]] = (sd["type"], c)
    return found


@pytest.mark.parametrize("key", ["vn-pat-1", "vn-pat-2", "vn-pat-3", "vn-vs-1", "vn-lab-1", "vn-lab-2"])
def test_native_invariants_agree_with_fhirpathpy(key: str) -> None:
    rtype, constraint = _constraints()[key]
    compiled = fhirpathpy.compile(constraint["expression"], models["r4"])
    native = profile._NATIVE[key]
    inputs = [r for name in CASES if (r := _case(name))["resourceType"] == rtype]
    inputs += [{**s.patient(), "birthDate": b, "gender": g} for b in ("1991-01-01", "1990", "2090-01-01")
               for g in ("male", "female", "other")]
    for r in inputs:
        answer = compiled(r, {"resource": r})
        expected = all(v is True for v in answer) if answer else True
        assert native(r, r) == expected, (key, r)


def test_every_profile_compiles_and_the_snapshots_match_the_differentials() -> None:
    for url in profiles.urls():
        sd = profiles.structure_definition(url)
        assert sd is not None and sd["snapshot"]["element"][0]["id"] == sd["type"]
        ids = {e["id"] for e in sd["snapshot"]["element"]}
        assert {e["id"] for e in sd["differential"]["element"]} <= ids, url
        profile.plan(url)


def test_unknown_claims_are_a_warning_and_the_wrong_type_an_error() -> None:
    p = s.patient()
    p["meta"] = {"profile": ["http://example.org/StructureDefinition/other"]}
    issues = profile.validate_resource(p, structural=False)
    assert [(i.severity, i.code) for i in issues] == [("warning", "not-supported")]
    with pytest.raises(profile.UnknownProfile):
        profile.validate(p, "http://example.org/nope")
    [issue] = profile.validate(s.encounter(), profiles.PATIENT)
    assert issue.severity == "error" and "is for Patient, not Encounter" in issue.diagnostics


def test_the_shipped_profiles_match_a_rebuild(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import build_profiles
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert build_profiles.main(["--shared", str(ROOT.parent / "shared"), "--out", str(tmp_path)]) == 0
    shipped = ROOT / "fhir_hub" / "profiles" / "data"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in shipped.iterdir())
    for p in tmp_path.iterdir():
        assert p.read_bytes() == (shipped / p.name).read_bytes(), p.name
