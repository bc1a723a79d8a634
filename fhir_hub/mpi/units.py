"""Administrative units for matching: every address code turned into codes of the 2025 lists.

Two records of one person may carry the same commune under its pre-2025 and its 2025 code
(research notes §3: the 2025 reform merged 10,051 communes into 3,321, and a merged unit keeps
the code of *one* predecessor, so an old code can mean another place today). Comparing codes
therefore needs the conversion first. The tables come from the shipped terminology (the
``vn-province-pre2025-to-2025`` and ``vn-ward-pre2025-to-2025`` ConceptMaps and the province and
ward CodeSystems built by ``tools/build_terminology.py``), so there is one copy of the NSO
conversion in the package, not two.

An old commune split between several new ones ("Nhập một phần") converts to all of them: without
the street the target is not known, and :mod:`fhir_hub.mpi.score` counts two addresses as agreeing
when their sets of possible 2025 communes meet.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from fhir_hub.terminology import code_system, concept_map

_CORE = "http://fhir.ehealth.gov.vn/core"
PROVINCE_PRE2025 = f"{_CORE}/CodeSystem/vn-province-pre2025"
PROVINCE_2025 = f"{_CORE}/CodeSystem/vn-province-2025"
WARD_PRE2025 = f"{_CORE}/CodeSystem/vn-ward-pre2025"
WARD_2025 = f"{_CORE}/CodeSystem/vn-ward-2025"
_PROVINCE_MAP = f"{_CORE}/ConceptMap/vn-province-pre2025-to-2025"
_WARD_MAP = f"{_CORE}/ConceptMap/vn-ward-pre2025-to-2025"


@dataclass(frozen=True, slots=True)
class Units:
    """The conversion tables, by code."""

    #: pre-2025 province code → its 2025 province (the province map is one-to-one per old code)
    province_old_to_new: dict[str, str]
    #: pre-2025 commune code → every 2025 commune it went (wholly or partly) into
    ward_old_to_new: dict[str, frozenset[str]]
    #: 2025 commune code → its 2025 province
    ward_province: dict[str, str]
    provinces_2025: frozenset[str]
    #: first three digits of a personal ID: "0" + a pre-2025 province code (001 … 096)
    cccd_prefixes: frozenset[str]


def _property(concept: dict[str, object], name: str) -> str | None:
    for prop in concept.get("property", ()):  # type: ignore[attr-defined]
        if prop.get("code") == name:
            value = prop.get("valueString") or prop.get("valueCode")
            return str(value) if value else None
    return None


@lru_cache(maxsize=1)
def units() -> Units:
    """Loaded once from the terminology catalogue (which loads its files on first use)."""
    province_map = concept_map(_PROVINCE_MAP)
    ward_map = concept_map(_WARD_MAP)
    wards_new = code_system(WARD_2025)
    provinces_new = code_system(PROVINCE_2025)
    provinces_old = code_system(PROVINCE_PRE2025)
    if not (province_map and ward_map and wards_new and provinces_new and provinces_old):
        raise RuntimeError("terminology data incomplete: rebuild with tools/build_terminology.py")
    old_to_new: dict[str, str] = {}
    for elements in province_map.elements.values():
        for code, element in elements.items():
            targets = element.get("target", ())
            if targets:
                old_to_new[code] = str(targets[0]["code"])
    ward_old_to_new: dict[str, frozenset[str]] = {}
    for elements in ward_map.elements.values():
        for code, element in elements.items():
            ward_old_to_new[code] = frozenset(str(t["code"]) for t in element.get("target", ()))
    ward_province = {code: p for code, c in wards_new.concepts.items()
                     if (p := _property(c, "province_code")) is not None}
    prefixes = frozenset(p for c in provinces_old.concepts.values()
                         if (p := _property(c, "cccd_birth_registration_prefix")) is not None)
    return Units(old_to_new, ward_old_to_new, ward_province, frozenset(provinces_new.concepts), prefixes)
