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

The five resources are read on their own, not through the whole terminology catalogue (unless it
is loaded already), and only the code tables are kept, as strings and tuples: the catalogue's
parsed JSON (ICD-10, both commune lists, about 150,000 dicts and lists) would otherwise stay in
the server for good, and the garbage collector walks every one of them at each full collection:
measured on the ingest bench, that made reconciliation's full collections about 14 times
slower, +2.5 ms of CPU per Patient spread over the threads that happened to allocate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import orjson

from fhir_hub.terminology import catalogue as _catalogue

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
    #: pre-2025 commune code → every 2025 commune it went (wholly or partly) into (a tuple, not a
    #: frozenset: the collector stops tracking a tuple of strings, never a set)
    ward_old_to_new: dict[str, tuple[str, ...]]
    #: 2025 commune code → its 2025 province
    ward_province: dict[str, str]
    provinces_2025: frozenset[str]
    #: first three digits of a personal ID: "0" + a pre-2025 province code (001 … 096)
    cccd_prefixes: frozenset[str]


def _property(concept: dict[str, Any], name: str) -> str | None:
    for prop in concept.get("property", ()):
        if prop.get("code") == name:
            value = prop.get("valueString") or prop.get("valueCode")
            return str(value) if value else None
    return None


def _resource(url: str, rtype: str) -> dict[str, Any] | None:
    """The built resource with canonical ``url``: from the catalogue when something has loaded
    it already, else its own file (``data/<type>-<id>.json``, as ``tools/build_terminology.py``
    names them; the whole catalogue only if that file is not there)."""
    if _catalogue.catalogue.cache_info().currsize == 0:
        path = resources.files("fhir_hub.terminology") / "data" / f"{rtype}-{url.rsplit('/', 1)[-1]}.json"
        if path.is_file():
            loaded: dict[str, Any] = orjson.loads(path.read_bytes())
            if loaded.get("url") == url:
                return loaded
    index = _catalogue.code_system(url) if rtype == "CodeSystem" else _catalogue.concept_map(url)
    return None if index is None else index.resource


def _map_elements(res: dict[str, Any]) -> Iterable[dict[str, Any]]:
    for group in res.get("group", ()):
        yield from group.get("element", ())


@lru_cache(maxsize=1)
def units() -> Units:
    """Loaded once, on first use (see the module docstring for why not from the catalogue)."""
    province_map = _resource(_PROVINCE_MAP, "ConceptMap")
    ward_map = _resource(_WARD_MAP, "ConceptMap")
    wards_new = _resource(WARD_2025, "CodeSystem")
    provinces_new = _resource(PROVINCE_2025, "CodeSystem")
    provinces_old = _resource(PROVINCE_PRE2025, "CodeSystem")
    if not (province_map and ward_map and wards_new and provinces_new and provinces_old):
        raise RuntimeError("terminology data incomplete: rebuild with tools/build_terminology.py")
    old_to_new = {str(e["code"]): str(e["target"][0]["code"]) for e in _map_elements(province_map) if e.get("target")}
    ward_old_to_new: dict[str, tuple[str, ...]] = {}
    for element in _map_elements(ward_map):
        targets = tuple(dict.fromkeys(str(t["code"]) for t in element.get("target", ())))
        ward_old_to_new[str(element["code"])] = ward_old_to_new.get(str(element["code"]), ()) + targets
    ward_province = {str(c["code"]): p for c in wards_new.get("concept", ())
                     if (p := _property(c, "province_code")) is not None}
    prefixes = frozenset(p for c in provinces_old.get("concept", ())
                         if (p := _property(c, "cccd_birth_registration_prefix")) is not None)
    return Units(old_to_new, ward_old_to_new, ward_province,
                 frozenset(str(c["code"]) for c in provinces_new.get("concept", ())), prefixes)
