"""An example outpatient visit recorded with a template: a transaction Bundle that conforms to its profiles.

:func:`bundle` writes, for one template, a patient (VN Core Patient), the facility (VN Core
provider), the Encounter (the template's profile: class AMB, visit type, visit identifier, the
template code in ``type``), one Observation per item (its template profile, a plausible value in the
item's unit), and a Condition with an ICD-10 VN code for the diagnoses, referenced from
``Encounter.diagnosis``. ``omit`` leaves items out, to make an incomplete record. Entries are
linked by ``urn:uuid:`` full URLs derived from the template code, so the output is stable.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from fhir_hub import profiles, terminology
from fhir_hub.profiles.build import CATEGORY, UCUM, encounter_url, observation_url
from fhir_hub.profiles.registry import TEMPLATE_SYSTEM, Item, Template
from fhir_hub.profiles.template_check import ICD10_SYSTEM

__all__ = ["bundle"]

CORE = "http://fhir.ehealth.gov.vn/core"
V2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_NS = uuid.UUID("6f1d3c1e-0a4b-4c55-9a55-3c2f0b7e8d10")
_WHEN = "2026-11-20T08:30:00+07:00"
#: plausible values by LOINC code, else by unit
_VALUES: dict[str, float] = {"8867-4": 78, "8310-5": 36.8, "9279-1": 18, "29463-7": 55, "8302-2": 160,
                             "39156-5": 21.5, "59408-5": 98, "9843-4": 46, "8280-0": 82, "11884-4": 28,
                             "11881-0": 27, "55283-6": 140, "4548-4": 6.8, "14749-6": 6.1, "14682-9": 80,
                             "14647-2": 5.0, "1742-6": 30, "1920-8": 28, "3016-3": 2.1, "718-7": 13.2,
                             "6690-2": 7.2, "777-3": 250, "20447-9": 50, "24467-3": 520}
_BY_UNIT: dict[str, float] = {"mm[Hg]": 16, "dB": 20, "%": 5, "L/min": 380, "[IU]/mL": 1000, "mg": 60, "cm": 25}


def _urn(template: str, name: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, f'{template}/{name}')}"


def _first_code(value_set: str) -> dict[str, Any] | None:
    vs = terminology.value_set(value_set) or profiles.value_set(value_set)
    for entry in terminology.expand(vs, count=1).contains if vs else ():
        return {"system": entry.system, "code": entry.code, "display": entry.display}
    return None


def _value(item: Item) -> dict[str, Any]:
    if item.type == "Quantity" and item.unit:
        v = _VALUES.get(item.code, _BY_UNIT.get(item.unit, 1))
        return {"valueQuantity": {"value": v, "unit": item.unit, "system": UCUM, "code": item.unit}}
    if item.type == "integer":
        return {"valueInteger": 2}
    if item.type == "boolean":
        return {"valueBoolean": True}
    if item.type == "dateTime":
        return {"valueDateTime": "2026-05-01"}
    if item.type == "CodeableConcept":
        found = _first_code(item.value_set) if item.value_set else None
        return {"valueCodeableConcept": {"coding": [found]} if found else {"text": item.vi}}
    return {"valueString": f"{item.vi}: bình thường"}


def _observation(t: Template, item: Item, patient: str, encounter: str) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation", "meta": {"profile": [observation_url(item)]}, "status": "final",
        "code": {"coding": [{"system": item.system, "code": item.code, "display": item.en}], "text": item.vi},
        "subject": {"reference": patient}, "encounter": {"reference": encounter}, "effectiveDateTime": _WHEN,
    }
    if item.category:
        obs["category"] = [{"coding": [{"system": CATEGORY, "code": item.category}]}]
    if item.components:
        obs["component"] = [{"code": {"coding": [{"system": c.system, "code": c.code, "display": c.en}]},
                             "valueQuantity": {"value": 120 if n == 0 else 80, "unit": c.unit, "system": UCUM,
                                               "code": c.unit}} for n, c in enumerate(item.components)]
    else:
        obs.update(_value(item))
    return obs


def _patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient", "meta": {"profile": [profiles.PATIENT]},
        "identifier": [{"type": {"coding": [{"system": V2, "code": "NI"}]}, "system": f"{CORE}/sid/national_id",
                        "value": "001190012345"}],
        "name": [{"text": "Trần Thị Lan", "family": "Trần", "given": ["Thị", "Lan"]}],
        "gender": "female", "birthDate": "1990-04-12",
    }


def _facility() -> dict[str, Any]:
    return {"resourceType": "Organization", "meta": {"profile": [profiles.ORGANIZATION]},
            "identifier": [{"system": f"{CORE}/sid/provider-code", "value": "01001"}],
            "name": "Bệnh viện mẫu"}


def bundle(t: Template, omit: Iterable[str] = ()) -> dict[str, Any]:
    """A transaction Bundle recording a visit with template ``t``; items whose code is in ``omit`` are
    left out."""
    skip = set(omit)
    pat, org, enc, cond = (_urn(t.code, n) for n in ("patient", "facility", "encounter", "diagnosis"))
    encounter: dict[str, Any] = {
        "resourceType": "Encounter", "meta": {"profile": [encounter_url(t.code)]},
        "identifier": [{"system": f"{CORE}/sid/VisitNumber", "value": f"01001/{t.code}.000001"}],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [{"coding": [{"system": f"{CORE}/CodeSystem/vn-qd130-ma-loai-kcb", "code": "01"}]},
                 {"coding": [{"system": TEMPLATE_SYSTEM, "code": t.code, "display": t.en}], "text": t.vi}],
        "subject": {"reference": pat},
        "period": {"start": _WHEN, "end": "2026-11-20T09:15:00+07:00"},
        "serviceProvider": {"reference": org},
    }
    entries: list[tuple[str, dict[str, Any]]] = [(pat, _patient()), (org, _facility()), (enc, encounter)]
    for item in t.items():
        if item.code in skip:
            continue
        if item.type == "Condition":
            encounter["diagnosis"] = [{"condition": {"reference": cond}, "rank": 1}]
            entries.append((cond, {
                "resourceType": "Condition", "meta": {"profile": [profiles.CONDITION]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                          "code": "encounter-diagnosis"}]}],
                "code": {"coding": [{"system": ICD10_SYSTEM, "code": "I10", "display": "Bệnh lý tăng huyết áp"}]},
                "subject": {"reference": pat}, "encounter": {"reference": enc}}))
        else:
            entries.append((_urn(t.code, item.code), _observation(t, item, pat, enc)))
    return {"resourceType": "Bundle", "type": "transaction",
            "entry": [{"fullUrl": url, "resource": res, "request": {"method": "POST", "url": res["resourceType"]}}
                      for url, res in entries]}
