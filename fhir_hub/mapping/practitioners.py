"""Staff named by licence number (CCHN, ``MA_BAC_SI`` / ``NGUOI_THUC_HIEN`` / ``MA_BS_DOC_KQ`` of the
claims tables) → one Practitioner per number in a visit's bundle, referred to by every resource
that names it.

Why a step of its own and not a spec rule: a rule makes resources per record, but one doctor signs
many lines of many tables, and a transaction may hold one conditional create per Practitioner.
The specs write a *logical* reference (:func:`~fhir_hub.mapping.functions.practitioner`:
``{identifier: {type: LN, value}}``); this step finds those, adds one Practitioner entry per
distinct number (``POST`` with ``ifNoneExist=identifier=<cchn system>|<number>``, fullUrl derived
from the number alone) and points the references at it.  The server then resolves each to the
Practitioner it already holds (repeated imports, other facilities) or to the one it creates: no
duplicates.  An existing Practitioner, maybe richer (from an HR system), is left as it is.

The claims give no name, which the VN Core Practitioner profile requires (``name.text``): the name
is the number, as an ``anonymous`` HumanName (R4: an assigned alias), so that what is not known is
plain.
"""

from __future__ import annotations

from typing import Any

from fhir_hub.mapping import systems
from fhir_hub.mapping.engine import uuid5
from fhir_hub.mapping.functions import REQUESTS

__all__ = ["link_practitioners"]


def _licence(value: Any) -> str | None:
    """The licence number of a logical reference by CCHN (what ``functions.practitioner`` makes)."""
    if not isinstance(value, dict) or "reference" in value:
        return None
    ident = value.get("identifier")
    if not isinstance(ident, dict) or "system" in ident:
        return None
    coding = (ident.get("type") or {}).get("coding") or [{}]
    return ident.get("value") if coding[0].get("code") == "LN" else None


#: The elements of the mapped resources that name a person (MedicationRequest/ServiceRequest
#: ``requester``, ``performer``; ClinicalImpression ``assessor``; DiagnosticReport
#: ``resultsInterpreter``; Appointment ``participant``), as a Reference or a list of them, or of
#: elements holding one as ``actor`` (Procedure, ChargeItem performer, Appointment participant).
#: Only these are looked at: walking whole resources was 15 % of the mapping's time.
_SLOTS = ("requester", "performer", "assessor", "resultsInterpreter", "participant")


def _linked(value: Any, urls: dict[str, str]) -> dict[str, Any] | None:
    """``{reference: fullUrl}`` of the Practitioner when ``value`` is a logical CCHN reference."""
    number = _licence(value)
    if number is None:
        return None
    url = urls.get(number)
    if url is None:
        url = urls[number] = f"urn:uuid:{uuid5(f'Practitioner/{number}')}"
    return {"reference": url}


def _walk(resource: dict[str, Any], urls: dict[str, str]) -> None:
    """Replace, in place, every logical CCHN reference of ``resource`` by ``{reference: fullUrl}``,
    adding the numbers met to ``urls`` (number → fullUrl)."""
    for slot in _SLOTS:
        value = resource.get(slot)
        if isinstance(value, dict):
            resource[slot] = _linked(value, urls) or value
        elif isinstance(value, list):
            for n, item in enumerate(value):
                if isinstance(item, dict) and isinstance(item.get("actor"), dict):
                    item["actor"] = _linked(item["actor"], urls) or item["actor"]
                elif isinstance(item, dict):
                    value[n] = _linked(item, urls) or item


def practitioner(number: str) -> dict[str, Any]:
    """The Practitioner a claim knows: its licence number, nothing else."""
    return {"resourceType": "Practitioner",
            "identifier": [{"use": "official", "type": {"coding": [{"system": systems.V2_0203, "code": "LN"}],
                                                        "text": "CCHN"},
                            "system": systems.PRACTITIONER_LICENCE, "value": number}],
            "name": [{"use": "anonymous", "text": f"CCHN {number}"}]}


def link_practitioners(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Practitioner entries for every licence number the entries' resources name (in order of
    first mention), the references rewritten to them in place."""
    urls: dict[str, str] = {}
    for e in entries:
        _walk(e["resource"], urls)
    out = []
    for number, url in urls.items():
        resource = practitioner(number)
        out.append({"fullUrl": url, "resource": resource, "request": REQUESTS["create_once_by_identifier"](resource)})
    return out
