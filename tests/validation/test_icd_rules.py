"""ICD-10 sex and age rules: which codes each rule covers, ages from partial dates, Bundles."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_hub import terminology
from fhir_hub.rest.validate import outcome
from fhir_hub.validation import icd_rules

ICD = "http://fhir.ehealth.gov.vn/core/CodeSystem/vn-icd10"


def _patient(gender: str | None = "female", birth: str | None = "1990-04-12",
             pid: str = "p1") -> dict[str, Any]:
    p: dict[str, Any] = {"resourceType": "Patient", "id": pid}
    if gender:
        p["gender"] = gender
    if birth:
        p["birthDate"] = birth
    return p


def _condition(code: str, onset: str | None = "2025-08-01", subject: str = "Patient/p1",
               system: str = ICD, **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"resourceType": "Condition", "subject": {"reference": subject},
                         "code": {"coding": [{"system": "http://snomed.info/sct", "code": "77386006"},
                                             {"system": system, "code": code}]}, **extra}
    if onset:
        c["onsetDateTime"] = onset
    return c


def _rules(condition: dict[str, Any], patient: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    return [(i.severity, i.diagnostics.split(" ")[2], i.expression[0])
            for i in icd_rules.check_condition(condition, patient)]


@pytest.mark.parametrize(("code", "rules"), [
    ("O80", ["icd10-sex-pregnancy", "icd10-age-maternity"]),
    ("O99.8", ["icd10-sex-pregnancy", "icd10-age-maternity"]),
    ("Z34.0", ["icd10-sex-pregnancy"]),
    ("B37.3†", ["icd10-sex-female-genital"]),
    ("B37.4", []),
    ("D07.3", ["icd10-sex-female-genital"]),
    ("D07.4", ["icd10-sex-male-genital"]),
    ("N40", ["icd10-sex-male-genital"]),
    ("N51.2*", ["icd10-sex-male-genital"]),
    ("N52", []),
    ("N99.2", ["icd10-sex-female-genital"]),
    ("N99.4", []),
    ("P07.3", ["icd10-age-perinatal"]),
    ("P96.9", ["icd10-age-perinatal"]),
    ("Q53.1", ["icd10-sex-male-genital"]),
    ("F00.0*", ["icd10-age-alzheimer-early"]),
    ("G30.1", ["icd10-age-alzheimer-late"]),
    ("I10", []),
    ("O9A.1", []),  # ICD-10-CM only
])
def test_rules_cover_the_right_codes(code: str, rules: list[str]) -> None:
    assert [r.id for r in icd_rules.rules_for(code)] == rules


def test_every_covered_range_starts_and_ends_on_codes_of_the_vn_catalogue() -> None:
    cs = terminology.code_system(ICD)
    assert cs is not None
    bare = {icd_rules.normalise(c) for c in cs.concepts}
    for rule in icd_rules.RULES:
        for lo, hi in rule.ranges:
            assert lo in bare and hi in bare, (rule.id, lo, hi)


def test_a_pregnancy_code_on_a_man_is_an_error_on_its_coding() -> None:
    found = icd_rules.check_condition(_condition("O80"), _patient("male"))
    [issue] = found
    assert (issue.severity, issue.code) == ("error", "business-rule")
    assert issue.expression == ("Condition.code.coding[1]",)
    assert issue.diagnostics == ("ICD-10 rule icd10-sex-pregnancy (pregnancy, childbirth and the puerperium: "
                                 "females only; WHO ICD-10): O80 is for female patients; Patient/p1 is male")
    assert "dành cho người bệnh nữ; Patient/p1 là nam" in issue.vi  # type: ignore[attr-defined]
    assert icd_rules.check_condition(_condition("O80"), _patient("female")) == []


def test_prostate_on_a_woman_and_unknown_gender() -> None:
    assert _rules(_condition("N40"), _patient("female")) == [
        ("error", "icd10-sex-male-genital", "Condition.code.coding[1]")]
    for gender in ("other", "unknown", None):
        assert icd_rules.check_condition(_condition("N40"), _patient(gender)) == []


def test_other_systems_and_a_missing_patient_are_not_checked() -> None:
    assert icd_rules.check_condition(_condition("N40", system="http://snomed.info/sct"), _patient()) == []
    who = "http://hl7.org/fhir/sid/icd-10"
    assert icd_rules.check_condition(_condition("N40", system=who), _patient()) != []
    assert icd_rules.check_condition(_condition("N40"), None) == []


def test_perinatal_codes_after_28_days_are_a_warning() -> None:
    baby = _patient("male", "2025-07-01")
    assert icd_rules.check_condition(_condition("P07.3", "2025-07-29"), baby) == []  # day 28
    [issue] = icd_rules.check_condition(_condition("P07.3", "2025-07-30"), baby)
    assert issue.severity == "warning" and "P07.3 at an age of 29 days" in issue.diagnostics


def test_maternity_ages_from_onset_age_and_partial_dates() -> None:
    woman = _patient("female", "1960")
    # born some day in 1960, onset some day in 2016: 55 or 56, so not every possible age breaks the rule
    assert icd_rules.check_condition(_condition("O80", "2016"), woman) == []
    [issue] = icd_rules.check_condition(_condition("O80", "2017-01"), woman)  # 56 at least
    assert "at an age of 56–57 years" in issue.diagnostics
    girl = _condition("O80", None, onsetAge={"value": 11, "unit": "years",
                                             "system": "http://unitsofmeasure.org", "code": "a"})
    assert "at an age of 11 years" in icd_rules.check_condition(girl, _patient("female", None))[0].diagnostics
    recorded = _condition("G30.0", None, recordedDate="2025-01-01")
    assert _rules(recorded, _patient("female", "1950-06-01")) == [
        ("warning", "icd10-age-alzheimer-early", "Condition.code.coding[1]")]
    no_date = _condition("G30.0", None)
    assert icd_rules.check_condition(no_date, _patient("female", "1950")) == []


def test_sudden_infant_death_from_one_year() -> None:
    assert icd_rules.check_condition(_condition("R95.9", "2025-06-30"), _patient("male", "2024-07-01")) == []
    one = icd_rules.check_condition(_condition("R95.9", "2025-07-01"), _patient("male", "2024-07-01"))
    assert [i.severity for i in one] == ["warning"]


def test_a_bundle_resolves_patients_by_full_url_and_id_and_falls_back_to_known() -> None:
    urn = "urn:uuid:7d3f1c52-0c1e-4a7a-9b1e-5b0d1f0a2c11"
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": urn, "resource": {"resourceType": "Patient", "gender": "male"}},
        {"resource": _condition("O80", subject=urn)},
        {"resource": _patient("female", pid="p2")},
        {"resource": _condition("N40", subject="Patient/p2")},
        {"resource": _condition("N41.0", subject="Patient/stored")},
        {"resource": _condition("N41.0", subject="Patient/nowhere")},
    ]}
    assert icd_rules.outside_subjects(bundle) == ["Patient/stored", "Patient/nowhere"]
    found = icd_rules.check(bundle, {"Patient/stored": _patient("female", pid="stored")})
    assert [(i.severity, i.expression) for i in found] == [
        ("error", ("Bundle.entry[1].resource.code.coding[1]",)),
        ("error", ("Bundle.entry[3].resource.code.coding[1]",)),
        ("error", ("Bundle.entry[4].resource.code.coding[1]",))]
    assert "the patient is male" in found[0].diagnostics
    assert icd_rules.outside_subjects(_condition("N40")) == ["Patient/p1"]
    assert icd_rules.check(_condition("N40"), {"Patient/p1": _patient()})[0].severity == "error"


def test_golden_outcome_of_every_rule() -> None:
    """One Condition breaking each rule, the outcome in English and Vietnamese (tests/golden/icd-rules)."""
    people = [_patient("male", "1990-04-12", "man"), _patient("female", "1950-06-01", "old"),
              _patient("female", "2024-01-01", "baby"), _patient("female", "2014-05-01", "girl")]
    cases = [("O80", "man"), ("N83.2", "man"), ("N40", "old"), ("P59.9", "baby"), ("R95.9", "baby"),
             ("G30.0", "old"), ("G30.1", "girl"), ("O80", "girl")]
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": p} for p in people]
              + [{"resource": _condition(code, "2025-08-01", f"Patient/{pid}")} for code, pid in cases]}
    issues = icd_rules.check(bundle)
    rules = [i.diagnostics.split(" ")[2] for i in issues]
    assert rules == ["icd10-sex-pregnancy", "icd10-sex-female-genital", "icd10-sex-male-genital",
                     "icd10-age-perinatal", "icd10-age-sids", "icd10-age-alzheimer-early",
                     "icd10-age-alzheimer-late", "icd10-age-maternity"], rules
    doc = {"en": outcome(issues, "en"), "vi": outcome(issues, "vi")}
    path = Path(__file__).resolve().parents[1] / "golden" / "icd-rules" / "every-rule.json"
    if os.environ.get("FHIR_HUB_UPDATE_GOLDEN") or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    assert doc == orjson.loads(path.read_bytes()), f"differs from {path}"
