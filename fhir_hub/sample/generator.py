"""Generated Vietnamese outpatient data as FHIR R4 transaction Bundles (sample data, benches, tests).

Deterministic for a seed. Each patient becomes one transaction: the facility (conditional create
by facility code, so repeated loads do not duplicate it), the Patient, and per visit an outpatient
Encounter with vital signs (R4 vital-signs profile codes, LOINC + UCUM), a few labs and ICD-10
diagnoses. Identifiers follow the formats of research/vietnam-domain.md:

* personal ID (CCCD), 12 digits: 3-digit province of birth, 1 century/sex digit (0/1 for men/women
  born in the 1900s, 2/3 in the 2000s), 2-digit birth year, 6 random digits;
* BHYT card, 15 characters: 2-letter beneficiary code, benefit level digit, 2-digit province,
  10-digit social-insurance number (BHXH).
"""

from __future__ import annotations

import csv
import random
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from functools import cache
from importlib import resources
from typing import Any

NATIONAL_ID = "http://fhir.ehealth.gov.vn/core/sid/national_id"
INSURANCE_NUMBER = "http://fhir.ehealth.gov.vn/core/sid/insurance_number"
PATIENT_INTERNAL_ID = "http://fhir.ehealth.gov.vn/core/sid/patient-internal-id"
#: The draft VN Core IG has no NamingSystem for facility codes yet; this one is the hub's own.
FACILITY_CODE = "http://fhir.ehealth.gov.vn/core/sid/facility_code"
VISIT_ID = "http://fhir.ehealth.gov.vn/core/sid/visit_id"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VN_TZ = timezone(timedelta(hours=7))

#: Surnames with approximate population shares (Nguyễn ~38%).
SURNAMES = [("Nguyễn", 38), ("Trần", 11), ("Lê", 9.5), ("Phạm", 7), ("Hoàng", 4), ("Huỳnh", 2), ("Phan", 4.5),
            ("Vũ", 3.9), ("Võ", 2), ("Đặng", 2.1), ("Bùi", 2), ("Đỗ", 1.4), ("Hồ", 1.3), ("Ngô", 1.3),
            ("Dương", 1), ("Lý", 0.5), ("Đinh", 0.6), ("Trương", 0.6), ("Lương", 0.4), ("Mai", 0.4)]
MIDDLE_MALE = ["Văn", "Hữu", "Đức", "Minh", "Quốc", "Công", "Thành", "Xuân", "Gia", "Anh"]
MIDDLE_FEMALE = ["Thị", "Ngọc", "Thu", "Thanh", "Kim", "Mỹ", "Hồng", "Phương", "Bảo", "Minh"]
GIVEN_MALE = ["An", "Bình", "Cường", "Dũng", "Đạt", "Hải", "Hiếu", "Hùng", "Huy", "Khang", "Khánh", "Long",
              "Minh", "Nam", "Phong", "Phúc", "Quân", "Sơn", "Thắng", "Trung", "Tuấn", "Việt"]
GIVEN_FEMALE = ["Anh", "Châu", "Chi", "Dung", "Giang", "Hà", "Hạnh", "Hằng", "Hoa", "Hương", "Lan", "Linh",
                "Mai", "My", "Ngân", "Nhung", "Phương", "Quỳnh", "Thảo", "Trang", "Vy", "Yến"]
STREETS = ["Lê Lợi", "Trần Hưng Đạo", "Nguyễn Huệ", "Hai Bà Trưng", "Lý Thường Kiệt", "Điện Biên Phủ",
           "Nguyễn Trãi", "Quang Trung", "Lê Duẩn", "Phan Chu Trinh"]
BENEFICIARY = ["DN", "HC", "HT", "TE", "HS", "HN", "GD", "CN", "XK", "TN"]
FACILITIES = [("01001", "Bệnh viện Bạch Mai", "01"), ("01002", "Bệnh viện Hữu nghị Việt Đức", "01"),
              ("79001", "Bệnh viện Chợ Rẫy", "79"), ("79010", "Bệnh viện Nhân dân 115", "79"),
              ("48001", "Bệnh viện Đà Nẵng", "48"), ("92001", "Bệnh viện Đa khoa Trung ương Cần Thơ", "92"),
              ("31001", "Bệnh viện Hữu nghị Việt Tiệp", "31"), ("46001", "Bệnh viện Trung ương Huế", "46")]

#: (LOINC, display, UCUM unit, low, high, decimals)
VITALS = [("8867-4", "Heart rate", "/min", 58, 105, 0), ("8310-5", "Body temperature", "Cel", 36.1, 38.6, 1),
          ("9279-1", "Respiratory rate", "/min", 12, 24, 0), ("29463-7", "Body weight", "kg", 40, 92, 1),
          ("8302-2", "Body height", "cm", 145, 183, 0)]
LABS = [("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", 70, 190, 0),
        ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.6, 9.5, 1),
        ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.5, 1.6, 2),
        ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 10.5, 16.5, 1),
        ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 140, 260, 0),
        ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 8, 70, 0)]
VITAL_CATEGORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                              "code": "vital-signs", "display": "Vital Signs"}]}
LAB_CATEGORY = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "laboratory", "display": "Laboratory"}]}


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


@cache
def _provinces() -> list[dict[str, str]]:
    return _rows("provinces.csv")


@cache
def _wards_by_province() -> dict[str, list[dict[str, str]]]:
    out: dict[str, list[dict[str, str]]] = {}
    for row in _rows("wards.csv"):
        out.setdefault(row["province_code"], []).append(row)
    return out


@cache
def _diagnoses() -> list[dict[str, str]]:
    return _rows("icd10.csv")


def cccd(rng: random.Random, province: str, birth: date, gender: str) -> str:
    """A 12-digit personal ID consistent with the province of birth, the century and sex."""
    century = 0 if birth.year < 2000 else 2
    digit = century + (1 if gender == "female" else 0)
    return f"0{province}{digit}{birth.year % 100:02d}{rng.randrange(10**6):06d}"


def bhyt(rng: random.Random, province: str) -> str:
    """A 15-character BHYT card number: beneficiary code, benefit level, province, BHXH number."""
    return f"{rng.choice(BENEFICIARY)}{rng.randint(1, 5)}{province}{rng.randrange(10**10):010d}"


class _Bundle:
    def __init__(self, rng: random.Random):
        self.rng = rng
        self.entries: list[dict[str, Any]] = []

    def urn(self) -> str:
        return f"urn:uuid:{uuid.UUID(int=self.rng.getrandbits(128), version=4)}"

    def add(self, resource: dict[str, Any], if_none_exist: str | None = None) -> str:
        full_url = self.urn()
        request: dict[str, Any] = {"method": "POST", "url": resource["resourceType"]}
        if if_none_exist:
            request["ifNoneExist"] = if_none_exist
        self.entries.append({"fullUrl": full_url, "resource": resource, "request": request})
        return full_url


def _instant(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _value(rng: random.Random, low: float, high: float, decimals: int) -> float | int:
    v = round(rng.uniform(low, high), decimals)
    return int(v) if decimals == 0 else v


def _patient(rng: random.Random, facility_code: str) -> dict[str, Any]:
    gender = rng.choice(["male", "female"])
    family = rng.choices([s for s, _ in SURNAMES], weights=[w for _, w in SURNAMES])[0]
    middle = rng.choice(MIDDLE_MALE if gender == "male" else MIDDLE_FEMALE)
    given = rng.choice(GIVEN_MALE if gender == "male" else GIVEN_FEMALE)
    birth = date(1940, 1, 1) + timedelta(days=rng.randrange(365 * 84))
    home = rng.choice(_provinces())
    ward = rng.choice(_wards_by_province()[home["code"]])
    line = f"Số {rng.randint(1, 300)} {rng.choice(STREETS)}"
    return {
        "resourceType": "Patient",
        "identifier": [
            {"system": NATIONAL_ID, "value": cccd(rng, home["code"], birth, gender)},
            {"system": INSURANCE_NUMBER, "value": bhyt(rng, home["code"])},
            {"system": f"{PATIENT_INTERNAL_ID}/{facility_code}", "value": f"BN{rng.randrange(10**8):08d}"},
        ],
        "name": [{"use": "official", "text": f"{family} {middle} {given}", "family": family, "given": [middle, given]}],
        "telecom": [{"system": "phone", "value": f"09{rng.randrange(10**8):08d}", "use": "mobile"}],
        "gender": gender,
        "birthDate": birth.isoformat(),
        "address": [{"use": "home", "line": [line], "text": f"{line}, {ward['name']}, {home['name']}",
                     "district": ward["name"], "city": home["name"], "country": "VN"}],
    }


def _observation(code: tuple[str, str, str, float, float, int], category: dict[str, Any], rng: random.Random,
                 patient: str, encounter: str, when: str) -> dict[str, Any]:
    loinc, display, unit, low, high, decimals = code
    return {
        "resourceType": "Observation", "status": "final", "category": [category],
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": display},
        "subject": {"reference": patient}, "encounter": {"reference": encounter}, "effectiveDateTime": when,
        "valueQuantity": {"value": _value(rng, low, high, decimals), "unit": unit, "system": UCUM, "code": unit},
    }


def _visit(b: _Bundle, patient: str, facility: str, facility_code: str, day: datetime) -> None:
    rng = b.rng
    when = _instant(day)
    encounter = b.add({
        "resourceType": "Encounter", "status": "finished",
        "identifier": [{"system": f"{VISIT_ID}/{facility_code}", "value": f"LK{rng.randrange(10**10):010d}"}],
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
        "subject": {"reference": patient}, "serviceProvider": {"reference": facility},
        "period": {"start": when, "end": _instant(day + timedelta(minutes=rng.randint(10, 90)))},
    })
    weight = height = None
    for vital in VITALS:
        obs = _observation(vital, VITAL_CATEGORY, rng, patient, encounter, when)
        if vital[0] == "29463-7":
            weight = obs["valueQuantity"]["value"]
        if vital[0] == "8302-2":
            height = obs["valueQuantity"]["value"]
        b.add(obs)
    b.add({
        "resourceType": "Observation", "status": "final", "category": [VITAL_CATEGORY],
        "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}]},
        "subject": {"reference": patient}, "encounter": {"reference": encounter}, "effectiveDateTime": when,
        "component": [
            {"code": {"coding": [{"system": LOINC, "code": code, "display": name}]},
             "valueQuantity": {"value": rng.randint(low, high), "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}}
            for code, name, low, high in (("8480-6", "Systolic blood pressure", 100, 165),
                                          ("8462-4", "Diastolic blood pressure", 60, 100))
        ],
    })
    if weight and height:
        bmi = round(weight / (height / 100) ** 2, 1)
        b.add({
            "resourceType": "Observation", "status": "final", "category": [VITAL_CATEGORY],
            "code": {"coding": [{"system": LOINC, "code": "39156-5", "display": "Body mass index (BMI) [Ratio]"}]},
            "subject": {"reference": patient}, "encounter": {"reference": encounter}, "effectiveDateTime": when,
            "valueQuantity": {"value": bmi, "unit": "kg/m2", "system": UCUM, "code": "kg/m2"},
        })
    for lab in rng.sample(LABS, rng.randint(5, 6)):
        b.add(_observation(lab, LAB_CATEGORY, rng, patient, encounter, when))
    for dx in rng.sample(_diagnoses(), rng.randint(1, 3)):
        b.add({
            "resourceType": "Condition",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                               "code": "confirmed"}]},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                      "code": "encounter-diagnosis"}]}],
            "code": {"coding": [{"system": ICD10, "code": dx["code"], "display": dx["name_vi"]}], "text": dx["name_vi"]},
            "subject": {"reference": patient}, "encounter": {"reference": encounter}, "recordedDate": when,
        })


def patient_bundles(count: int, seed: int = 0, encounters: int = 6) -> Iterator[dict[str, Any]]:
    """One transaction Bundle per patient (about 20 entries per visit, plus Patient and facility)."""
    rng = random.Random(seed)
    now = datetime(2026, 11, 1, 8, 0, tzinfo=VN_TZ)
    for _ in range(count):
        b = _Bundle(rng)
        code, name, province = rng.choice(FACILITIES)
        facility = b.add({"resourceType": "Organization", "active": True, "name": name,
                          "identifier": [{"system": FACILITY_CODE, "value": code}],
                          "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type",
                                                "code": "prov", "display": "Healthcare Provider"}]}],
                          "address": [{"country": "VN", "state": province}]},
                         if_none_exist=f"identifier={FACILITY_CODE}|{code}")
        patient = b.add(_patient(rng, code))
        days = sorted(rng.randrange(3 * 365) for _ in range(encounters))
        for d in days:
            start = now - timedelta(days=d, hours=rng.randint(0, 8), minutes=rng.randint(0, 59))
            _visit(b, patient, facility, code, start)
        yield {"resourceType": "Bundle", "type": "transaction", "entry": b.entries}
