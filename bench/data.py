"""Bench input: transaction bundles of patients, and single resources for create.

The bundles come from ``fhir_hub.sample.generator.patient_bundles`` (the project's generator).
Only when that import fails does :func:`fallback_patient_bundles` stand in — it makes bundles of
the same shape (urn:uuid fullUrls, Patient + Encounters + Observations, ~100 entries) so that the
harness still runs; the results record which source was used.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

Bundle = dict[str, Any]

_FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ",
           "Ngô", "Dương", "Lý"]
_MIDDLE = ["Văn", "Thị", "Hữu", "Đức", "Minh", "Ngọc", "Thanh", "Quốc", "Gia", "Hoài"]
_GIVEN = ["An", "Bình", "Châu", "Dũng", "Giang", "Hạnh", "Hùng", "Lan", "Linh", "Mai", "Nam", "Phương",
          "Quân", "Sơn", "Tâm", "Thảo", "Trang", "Tuấn", "Vy", "Yến"]
_PLACES = [("Hà Nội", "Quận Ba Đình", "Phường Điện Biên"), ("Hồ Chí Minh", "Quận 1", "Phường Bến Nghé"),
           ("Đà Nẵng", "Quận Hải Châu", "Phường Thạch Thang"), ("Cần Thơ", "Quận Ninh Kiều", "Phường Tân An"),
           ("Hải Phòng", "Quận Lê Chân", "Phường An Biên"), ("Huế", "Phường Phú Hội", "Phường Vĩnh Ninh")]
_STREETS = ["Lê Lợi", "Trần Hưng Đạo", "Nguyễn Huệ", "Hai Bà Trưng", "Lý Thường Kiệt", "Điện Biên Phủ"]
_VITALS = [("8867-4", "Heart rate", "/min", 55, 110), ("8310-5", "Body temperature", "Cel", 36, 39),
           ("9279-1", "Respiratory rate", "/min", 12, 24), ("29463-7", "Body weight", "kg", 40, 95),
           ("8302-2", "Body height", "cm", 145, 185), ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 70, 180)]


def _urn(rng: random.Random) -> str:
    return f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def fallback_patient(rng: random.Random, n: int) -> dict[str, Any]:
    """A realistic Vietnamese Patient of about 1.2 KB of JSON."""
    family, middle, given = rng.choice(_FAMILY), rng.choice(_MIDDLE), rng.choice(_GIVEN)
    city, district, ward = rng.choice(_PLACES)
    gender = rng.choice(["male", "female"])
    year = rng.randint(1940, 2020)
    phone = f"09{rng.randint(10_000_000, 99_999_999)}"
    return {
        "resourceType": "Patient",
        "extension": [{"url": "http://fhir.hub.vn/StructureDefinition/ethnicity",
                       "valueCoding": {"system": "http://fhir.hub.vn/CodeSystem/ethnicity", "code": "01",
                                       "display": "Kinh"}}],
        "identifier": [
            {"use": "official", "system": "http://fhir.hub.vn/sid/cccd", "value": f"0{rng.randint(10**10, 10**11 - 1)}"},
            {"use": "secondary", "system": "http://fhir.hub.vn/sid/bhyt",
             "value": f"DN4{rng.randint(10**11, 10**12 - 1)}"},
            {"use": "usual", "system": "http://benhvien.example.vn/mrn", "value": f"MRN{n:08d}"},
        ],
        "active": True,
        "name": [{"use": "official", "text": f"{family} {middle} {given}", "family": family,
                  "given": [middle, given]}],
        "telecom": [{"system": "phone", "value": phone, "use": "mobile"},
                    {"system": "email", "value": f"bn{n}@example.vn", "use": "home"}],
        "gender": gender,
        "birthDate": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "address": [{"use": "home", "type": "physical",
                     "text": f"Số {rng.randint(1, 300)} {rng.choice(_STREETS)}, {ward}, {district}, {city}",
                     "line": [f"Số {rng.randint(1, 300)} {rng.choice(_STREETS)}"], "city": city,
                     "district": district, "state": city, "country": "VN"}],
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                                      "code": "M", "display": "Married"}]},
        "contact": [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131",
                                                   "code": "N", "display": "Next-of-Kin"}]}],
                     "name": {"text": f"{rng.choice(_FAMILY)} {rng.choice(_MIDDLE)} {rng.choice(_GIVEN)}"},
                     "telecom": [{"system": "phone", "value": f"09{rng.randint(10_000_000, 99_999_999)}"}]}],
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "vi",
                                                    "display": "Vietnamese"}]}, "preferred": True}],
    }


def _encounter(rng: random.Random, patient: str, day: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB",
                  "display": "ambulatory"},
        "type": [{"text": "Khám ngoại trú"}], "subject": {"reference": patient},
        "period": {"start": f"{day}T08:{rng.randint(0, 59):02d}:00+07:00", "end": f"{day}T09:30:00+07:00"},
        "reasonCode": [{"text": rng.choice(["Sốt", "Ho kéo dài", "Đau đầu", "Khám định kỳ", "Tăng huyết áp"])}],
    }


def _observation(rng: random.Random, patient: str, encounter: str, day: str) -> dict[str, Any]:
    code, display, unit, lo, hi = rng.choice(_VITALS)
    return {
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display},
        "subject": {"reference": patient}, "encounter": {"reference": encounter},
        "effectiveDateTime": f"{day}T08:45:00+07:00",
        "valueQuantity": {"value": round(rng.uniform(lo, hi), 1), "unit": unit, "system": "http://unitsofmeasure.org",
                          "code": unit},
    }


def _entry(full_url: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": full_url, "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"]}}


def fallback_patient_bundles(count: int, seed: int = 0, encounters: int = 5,
                             observations_per_encounter: int = 3, target_entries: int = 100) -> Iterator[Bundle]:
    """Transaction bundles of ``count`` patients, each with encounters and vital-sign observations."""
    rng = random.Random(seed)
    per_patient = 1 + encounters * (1 + observations_per_encounter)
    per_bundle = max(1, round(target_entries / per_patient))
    made = 0
    while made < count:
        entries: list[dict[str, Any]] = []
        for _ in range(min(per_bundle, count - made)):
            p_url = _urn(rng)
            entries.append(_entry(p_url, fallback_patient(rng, seed * 10_000_000 + made)))
            for _ in range(encounters):
                day = f"20{rng.randint(18, 25)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
                e_url = _urn(rng)
                entries.append(_entry(e_url, _encounter(rng, p_url, day)))
                for _ in range(observations_per_encounter):
                    entries.append(_entry(_urn(rng), _observation(rng, p_url, e_url, day)))
            made += 1
        yield {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def patient_bundles(count: int, seed: int = 0, encounters: int = 5) -> tuple[list[Bundle], str]:
    """The bundles the benches post, and where they came from (``generator`` or ``fallback: <why>``)."""
    try:
        from fhir_hub.sample.generator import patient_bundles as project_bundles
    except Exception as exc:  # the generator is being written by another engineer
        return list(fallback_patient_bundles(count, seed, encounters)), f"bench fallback ({type(exc).__name__}: {exc})"
    return list(project_bundles(count, seed=seed, encounters=encounters)), "fhir_hub.sample.generator"


def create_body(seed: int = 12345) -> dict[str, Any]:
    """The Patient that the create bench posts (same shape as the bundles' patients)."""
    return fallback_patient(random.Random(seed), 0)
