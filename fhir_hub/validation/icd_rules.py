"""ICD-10 sex and age rules: a Condition's ICD-10 code checked against its Patient's gender and age.

Why here and not in a profile: the rule joins two resources (the Condition and the Patient it is
about), which no StructureDefinition can say. The checks are pure: the caller finds the Patient (in
the same Bundle, or in the store for ``$validate``) and passes it in.

Sources. The Vietnamese material (``shared/vn/code-lists/icd10_vn_catalogue.csv``, the QĐ 4469-era
BHYT catalogue) lists codes and titles only: it states no sex or age rule. The rules below are
therefore the WHO ICD-10 conventions, each read off the classification itself:

* sex: the chapter or block title names the sex — Chapter XV "Pregnancy, childbirth and the
  puerperium" (O00–O99) and the pregnancy, delivery and postpartum Z codes (Z32–Z37, Z39), puerperal
  mental disorders (F53); blocks and categories "of female genital organs" (C51–C58, D06, D07.0–D07.3,
  D25–D28, D39, N70–N98, Q50–Q52, R87, E28 ovarian, B37.3 vulva/vagina, N99.2–N99.3, M80.0/M81.0
  postmenopausal, Z01.4, Z12.4, Z30.1/Z30.3/Z30.5 intrauterine device and menstrual extraction) and
  "of male genital organs" (C60–C63, D07.4–D07.6, D29, D40, N40–N51, Q53–Q55, R86, E29 testicular,
  Z12.5 prostate). A code of one sex on a Patient whose ``gender`` is the other is an **error**;
  ``other``, ``unknown`` or no gender is not checked (``Patient.gender`` is administrative gender).
* age, **warnings** (the classification allows exceptions): Chapter XVI (P00–P96) and Z38 liveborn
  infants are for the perinatal period — WHO's neonatal period ends at 28 completed days, and the
  chapter "includes conditions that have their origin in the perinatal period even though death or
  morbidity occurs later", so later use is flagged, not refused; R95 "Sudden infant death syndrome"
  under one year; G30.0/F00.0 Alzheimer's with early onset "usually before the age of 65", G30.1/F00.1
  late onset "usually after"; and pregnancy codes (O00–O99) outside 12–55 years, where WHO sets no
  bound — that one is the common ICD-10 edit convention (the US Medicare Code Editor's maternity
  ages), named as such in the rule.

ICD-10-CM's ``O9A`` is not in the Vietnamese (WHO) catalogue and is not matched. Age is taken at
``onset[x]`` (``onsetAge``, ``onsetDateTime``, ``onsetPeriod.start``), else ``recordedDate``, against
``Patient.birthDate``; partial dates (``1990``, ``1990-04``) give a range of possible ages and a rule
fires only when every age in it breaks the rule.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fhir_hub.errors import Issue
from fhir_hub.validation.profile import ProfileIssue, reroot

__all__ = ["ICD10_SYSTEMS", "RULES", "Rule", "age_range", "check", "check_condition", "normalise",
           "outside_subjects", "rules_for"]

#: The code systems read as ICD-10: the Vietnamese edition the hub uses, and WHO's canonical URL.
ICD10_SYSTEMS = frozenset({"http://fhir.ehealth.gov.vn/core/CodeSystem/vn-icd10",
                           "http://hl7.org/fhir/sid/icd-10"})


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: the codes it covers (inclusive ranges of dot-less code prefixes), and either the
    one sex those codes are for or the ages (``unit`` ``days`` or ``years``, bounds inclusive)."""

    id: str
    en: str
    vi: str
    ranges: tuple[tuple[str, str], ...]
    severity: str
    sex: str | None = None
    unit: str = "years"
    low: int | None = None
    high: int | None = None
    source: str = "WHO ICD-10"

    def covers(self, code: str) -> bool:
        return any(lo <= code[:len(lo)] <= hi for lo, hi in self.ranges)


def _r(spec: str) -> tuple[tuple[str, str], ...]:
    """``"C51-C58 D06 D070-D073"`` -> ``(("C51", "C58"), ("D06", "D06"), ("D070", "D073"))``."""
    return tuple((p.split("-")[0], p.split("-")[-1]) for p in spec.split())


_FEMALE_GENITAL = ("C51-C58 D06 D070-D073 D25-D28 D39 E28 N70-N98 N992-N993 Q50-Q52 R87 B373 M800 M810 "
                   "Z014 Z124 Z301 Z303 Z305")
_MALE_GENITAL = "C60-C63 D074-D076 D29 D40 E29 N40-N51 Q53-Q55 R86 Z125"

RULES: tuple[Rule, ...] = (
    Rule("icd10-sex-pregnancy", "pregnancy, childbirth and the puerperium: females only",
         "thai nghén, sinh đẻ và hậu sản: chỉ dành cho nữ", _r("O00-O99 Z32-Z37 Z39 F53"), "error",
         sex="female"),
    Rule("icd10-sex-female-genital", "female genital organs: females only",
         "cơ quan sinh dục nữ: chỉ dành cho nữ", _r(_FEMALE_GENITAL), "error", sex="female"),
    Rule("icd10-sex-male-genital", "male genital organs: males only",
         "cơ quan sinh dục nam: chỉ dành cho nam", _r(_MALE_GENITAL), "error", sex="male"),
    Rule("icd10-age-perinatal", "conditions originating in the perinatal period: the first 28 days of life",
         "bệnh lý xuất phát trong thời kỳ chu sinh: 28 ngày đầu sau sinh", _r("P00-P96 Z38"), "warning",
         unit="days", low=0, high=28),
    Rule("icd10-age-sids", "sudden infant death syndrome: under one year",
         "hội chứng đột tử ở trẻ nhũ nhi: dưới 1 tuổi", _r("R95"), "warning", low=0, high=0),
    Rule("icd10-age-alzheimer-early", "Alzheimer's disease with early onset: onset usually before 65",
         "bệnh Alzheimer khởi phát sớm: thường khởi phát trước 65 tuổi", _r("G300 F000"), "warning",
         low=0, high=64),
    Rule("icd10-age-alzheimer-late", "Alzheimer's disease with late onset: onset usually at 65 or later",
         "bệnh Alzheimer khởi phát muộn: thường khởi phát từ 65 tuổi", _r("G301 F001"), "warning", low=65),
    Rule("icd10-age-maternity", "pregnancy codes: ages 12 to 55", "mã thai nghén: tuổi từ 12 đến 55",
         _r("O00-O99"), "warning", low=12, high=55,
         source="ICD-10 edit convention (US Medicare Code Editor maternity ages)"),
)

_NOT_CODE = re.compile(r"[^A-Z0-9]")
_SEX_VI = {"female": "nữ", "male": "nam"}


def normalise(code: str) -> str:
    """``"B37.3†"`` -> ``"B373"``: the dot, dagger and asterisk marks dropped."""
    return _NOT_CODE.sub("", code.upper())


def rules_for(code: str) -> list[Rule]:
    """The rules that cover an ICD-10 code (with or without its dot and marks)."""
    bare = normalise(code)
    return [r for r in RULES if r.covers(bare)] if bare else []


# ---------------------------------------------------------------------------- ages

_DATE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_AGE_DAYS = {"a": 365.25, "mo": 30.4375, "wk": 7.0, "d": 1.0, "h": 1 / 24, "min": 1 / 1440}


def _span(value: Any) -> tuple[dt.date, dt.date] | None:
    """The earliest and latest day a FHIR date or dateTime (possibly partial) may mean."""
    m = _DATE.match(value) if isinstance(value, str) else None
    if m is None:
        return None
    try:
        year = int(m.group(1))
        if m.group(2) is None:
            return dt.date(year, 1, 1), dt.date(year, 12, 31)
        month = int(m.group(2))
        if m.group(3) is None:
            return dt.date(year, month, 1), dt.date(year, month, calendar.monthrange(year, month)[1])
        day = dt.date(year, month, int(m.group(3)))
        return day, day
    except ValueError:
        return None  # an impossible date: the structural validator reports it


def _years(born: dt.date, on: dt.date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def _when(condition: dict[str, Any]) -> tuple[str, Any] | None:
    """``("age", Age)`` or ``("date", FHIR date)``: when the condition began (or was recorded)."""
    if isinstance(condition.get("onsetAge"), dict):
        return "age", condition["onsetAge"]
    if isinstance(condition.get("onsetDateTime"), str):
        return "date", condition["onsetDateTime"]
    period = condition.get("onsetPeriod")
    if isinstance(period, dict) and isinstance(period.get("start"), str):
        return "date", period["start"]
    if isinstance(condition.get("recordedDate"), str):
        return "date", condition["recordedDate"]
    return None


def age_range(condition: dict[str, Any], patient: dict[str, Any] | None, unit: str) -> tuple[int, int] | None:
    """The least and greatest age (completed ``days`` or ``years``) the patient may have had when the
    condition began, or ``None`` when it cannot be told (no onset, no birth date, an unknown unit)."""
    when = _when(condition)
    if when is None:
        return None
    if when[0] == "age":
        age = when[1]
        factor = _AGE_DAYS.get(str(age.get("code") or age.get("unit")))
        if factor is None or not isinstance(age.get("value"), (int, float)):
            return None
        days = float(age["value"]) * factor
        n = int(days) if unit == "days" else int(days / 365.25 + 1e-9)
        return n, n
    born = _span(patient.get("birthDate")) if isinstance(patient, dict) else None
    onset = _span(when[1])
    if born is None or onset is None:
        return None
    if unit == "days":
        return (onset[0] - born[1]).days, (onset[1] - born[0]).days
    return _years(born[1], onset[0]), _years(born[0], onset[1])


# ---------------------------------------------------------------------------- checks


def _age_text(low: int, high: int, unit: str) -> tuple[str, str]:
    en_unit, vi_unit = ("days", "ngày") if unit == "days" else ("years", "tuổi")
    if low == high:
        return f"{low} {en_unit[:-1] if low == 1 else en_unit}", f"{low} {vi_unit}"
    return f"{low}–{high} {en_unit}", f"{low}–{high} {vi_unit}"


def check_condition(condition: dict[str, Any], patient: dict[str, Any] | None) -> list[Issue]:
    """The issues of one Condition's ICD-10 codings against its Patient (``None``: not known, so
    only nothing can be said); locations start at ``Condition``."""
    code = condition.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    if not isinstance(codings, list) or patient is None:
        return []
    gender = patient.get("gender")
    who = f"Patient/{patient['id']}" if isinstance(patient.get("id"), str) else "the patient"
    out: list[Issue] = []
    for i, coding in enumerate(codings):
        if not isinstance(coding, dict) or coding.get("system") not in ICD10_SYSTEMS:
            continue
        value = coding.get("code")
        if not isinstance(value, str):
            continue
        where = (f"Condition.code.coding[{i}]",)
        for rule in rules_for(value):
            head_en = f"ICD-10 rule {rule.id} ({rule.en}; {rule.source})"
            head_vi = f"Quy tắc ICD-10 {rule.id} ({rule.vi}; {rule.source})"
            if rule.sex is not None:
                if gender in ("male", "female") and gender != rule.sex:
                    en = f"{head_en}: {value} is for {rule.sex} patients; {who} is {gender}"
                    sex_vi, gender_vi = _SEX_VI[rule.sex], _SEX_VI[gender]
                    vi = f"{head_vi}: {value} dành cho người bệnh {sex_vi}; {who} là {gender_vi}"
                    out.append(ProfileIssue(rule.severity, "business-rule", en, where, vi))
                continue
            ages = age_range(condition, patient, rule.unit)
            if ages is None:
                continue
            low, high = ages
            if (rule.low is not None and high < rule.low) or (rule.high is not None and low > rule.high):
                en, vi = _age_text(low, high, rule.unit)
                out.append(ProfileIssue(rule.severity, "business-rule",
                                        f"{head_en}: {value} at an age of {en} ({who})", where,
                                        f"{head_vi}: {value} ở tuổi {vi} ({who})"))
    return out


def _subject(resource: dict[str, Any]) -> str | None:
    subject = resource.get("subject")
    ref = subject.get("reference") if isinstance(subject, dict) else None
    return ref if isinstance(ref, str) else None


def _entries(bundle: dict[str, Any]) -> list[tuple[int, dict[str, Any], str | None]]:
    out = []
    for i, entry in enumerate(bundle.get("entry") or ()):
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
            full = entry.get("fullUrl")
            out.append((i, entry["resource"], full if isinstance(full, str) else None))
    return out


def _bundle_patients(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The Patients of a Bundle by every reference that may name them: ``fullUrl``, ``Patient/id``."""
    found: dict[str, dict[str, Any]] = {}
    for _, res, full in _entries(bundle):
        if res.get("resourceType") != "Patient":
            continue
        if full:
            found[full] = res
        if isinstance(res.get("id"), str):
            found[f"Patient/{res['id']}"] = res
    return found


def _resolve(ref: str, inside: Mapping[str, dict[str, Any]], known: Mapping[str, dict[str, Any]]
             ) -> dict[str, Any] | None:
    if ref in inside:
        return inside[ref]
    tail = "/".join(ref.rsplit("/", 2)[-2:])  # an absolute reference: its Type/id
    return inside.get(tail) or known.get(ref) or known.get(tail)


def outside_subjects(resource: dict[str, Any]) -> list[str]:
    """The Patient references of ``resource``'s Conditions (itself, or a Bundle's entries) that the
    resource does not hold: what the caller should look up before :func:`check`."""
    if resource.get("resourceType") == "Condition":
        ref = _subject(resource)
        return [ref] if ref and ref.startswith("Patient/") else []
    if resource.get("resourceType") != "Bundle":
        return []
    inside = _bundle_patients(resource)
    wanted: list[str] = []
    for _, res, _full in _entries(resource):
        ref = _subject(res) if res.get("resourceType") == "Condition" else None
        if ref and ref.startswith("Patient/") and _resolve(ref, inside, {}) is None and ref not in wanted:
            wanted.append(ref)
    return wanted


def check(resource: dict[str, Any], known: Mapping[str, dict[str, Any]] | None = None) -> list[Issue]:
    """ICD-10 rule issues of a Condition, or of every Condition of a Bundle (locations under
    ``Bundle.entry[i].resource``), each against its subject: a Patient of the same Bundle, else one
    of ``known`` (by reference, e.g. ``{"Patient/p1": {...}}``); a Condition whose Patient is found
    nowhere is not checked."""
    known = known or {}
    if resource.get("resourceType") == "Condition":
        ref = _subject(resource)
        return check_condition(resource, _resolve(ref, {}, known) if ref else None)
    if resource.get("resourceType") != "Bundle":
        return []
    inside = _bundle_patients(resource)
    out: list[Issue] = []
    for i, res, _full in _entries(resource):
        if res.get("resourceType") != "Condition":
            continue
        ref = _subject(res)
        found = check_condition(res, _resolve(ref, inside, known) if ref else None)
        out.extend(reroot(x, "Condition", f"Bundle.entry[{i}].resource") for x in found)
    return out
