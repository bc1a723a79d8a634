"""Hand-written VN resources, valid against the VN Core profiles, that the tests break one way at a time."""

from __future__ import annotations

import copy
from typing import Any

CORE = "http://fhir.ehealth.gov.vn/core"
SD = f"{CORE}/StructureDefinition"
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def patient() -> dict[str, Any]:
    """Trần Thị Lan, born 1990 in Hà Nội (personal ID 001190…: 001 Hà Nội, 1 = female 1900s, 90)."""
    return copy.deepcopy({
        "resourceType": "Patient",
        "meta": {"profile": [f"{SD}/vn-core-patient"]},
        "extension": [
            {"url": f"{SD}/extension-race", "valueCodeableConcept": {"coding": [
                {"system": f"{CORE}/CodeSystem/vn-core-race", "code": "01", "display": "Kinh"}]}},
            {"url": f"{SD}/extension-nationality", "valueCodeableConcept": {"coding": [
                {"system": "urn:iso:std:iso:3166", "code": "VN"}]}},
            {"url": f"{SD}/extension-occupation", "valueCodeableConcept": {"coding": [
                {"system": f"{CORE}/CodeSystem/vn-core-occupation", "code": "22"}]}},
        ],
        "identifier": [
            {"use": "official", "type": {"coding": [{"system": V2, "code": "NI"}]},
             "system": f"{CORE}/sid/national_id", "value": "001190012345"},
            {"type": {"coding": [{"system": V2, "code": "SS"}]}, "system": "urn:fhir-hub:sid:bhxh",
             "value": "0112345678"},
            {"type": {"coding": [{"system": V2, "code": "SB"}]}, "system": f"{CORE}/sid/insurance_number",
             "value": "DN4010112345678"},
            {"type": {"coding": [{"system": V2, "code": "PI"}]}, "system": f"{CORE}/sid/patient-internal-id",
             "value": "BN-0001", "assigner": {"identifier": {"system": f"{CORE}/sid/provider-code", "value": "01001"}}},
        ],
        "name": [{"use": "official", "text": "Trần Thị Lan", "family": "Trần", "given": ["Thị", "Lan"]}],
        "gender": "female",
        "birthDate": "1990-04-12",
        "address": [{"use": "home", "text": "Số 1 phố Tràng Tiền, Phường Hoàn Kiếm, Hà Nội", "country": "VN",
                     "extension": [{"url": f"{SD}/extension-administrative-address", "extension": [
                         {"url": "state", "valueCodeableConcept": {"coding": [
                             {"system": f"{CORE}/CodeSystem/vn-province-2025", "code": "01"}]}},
                         {"url": "ward", "valueCodeableConcept": {"coding": [
                             {"system": f"{CORE}/CodeSystem/vn-ward-2025", "code": "00070"}]}}]}]}],
    })


def encounter() -> dict[str, Any]:
    return copy.deepcopy({
        "resourceType": "Encounter",
        "meta": {"profile": [f"{SD}/vn-core-encounter-outpatient"]},
        "identifier": [{"system": f"{CORE}/sid/VisitNumber", "value": "01001/2025.KB.000123"}],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [{"coding": [{"system": f"{CORE}/CodeSystem/vn-qd130-ma-loai-kcb", "code": "01"}]}],
        "subject": {"reference": "Patient/p1"},
        "period": {"start": "2025-08-01T08:00:00+07:00", "end": "2025-08-01T09:00:00+07:00"},
        "serviceProvider": {"reference": "Organization/o1"},
    })


def vital_sign() -> dict[str, Any]:
    return copy.deepcopy({
        "resourceType": "Observation",
        "meta": {"profile": [f"{SD}/vn-core-observation-vital-signs"]},
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}],
                 "text": "Cân nặng"},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-08-01T08:10:00+07:00",
        "valueQuantity": {"value": 52.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    })


def lab() -> dict[str, Any]:
    return copy.deepcopy({
        "resourceType": "Observation",
        "meta": {"profile": [f"{SD}/vn-core-observation-lab"]},
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "code": {"coding": [{"system": "urn:fhir-hub:vn-dmdc:chi-so", "code": "SH-GLU", "display": "Glucose"},
                            {"system": "http://loinc.org", "code": "2345-7"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2025-08-01T08:30:00+07:00",
        "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
    })
