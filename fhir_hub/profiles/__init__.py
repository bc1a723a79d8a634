"""The VN Core profiles: StructureDefinitions with snapshots, shipped in ``data/``.

Built by ``tools/build_profiles.py`` (differentials there, snapshots generated against the R4 base)
and loaded on first use, once. The outpatient record templates (``templates/``, :mod:`.registry`)
build into more profiles (:mod:`.build`), which :func:`structure_definition` also answers.
:func:`default_profiles` says which of them a resource is checked
against when it names none (the CLI, the tests over the claims mapping's output).
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import orjson

CORE = "http://fhir.ehealth.gov.vn/core"
SD = f"{CORE}/StructureDefinition"

PATIENT = f"{SD}/vn-core-patient"
ENCOUNTER = f"{SD}/vn-core-encounter"
ENCOUNTER_OUTPATIENT = f"{SD}/vn-core-encounter-outpatient"
VITAL_SIGNS = f"{SD}/vn-core-observation-vital-signs"
LAB = f"{SD}/vn-core-observation-lab"
CONDITION = f"{SD}/vn-core-condition"
COVERAGE = f"{SD}/vn-core-coverage-bhyt"
ORGANIZATION = f"{SD}/vn-core-provider"
PRACTITIONER = f"{SD}/vn-core-practitioner"

_BY_TYPE = {"Patient": PATIENT, "Condition": CONDITION, "Coverage": COVERAGE, "Organization": ORGANIZATION,
            "Practitioner": PRACTITIONER}
_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"


@cache
def _load() -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, dict[str, list[str]]]]:
    folder = resources.files(__package__) / "data"
    sds: dict[str, dict[str, Any]] = {}
    value_sets: dict[str, dict[str, Any]] = {}
    r4: dict[str, dict[str, list[str]]] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".json"):
            continue
        doc = orjson.loads(entry.read_bytes())
        if entry.name == "r4-valuesets.json":
            r4 = doc
        elif doc.get("resourceType") == "StructureDefinition":
            sds[doc["url"]] = doc
        elif doc.get("resourceType") == "ValueSet":
            value_sets[doc["url"]] = doc
    return sds, value_sets, r4


#: Canonical URLs of the profiles built from the outpatient template registry start with this.
TEMPLATE_PREFIX = f"{SD}/vn-template-"


def structure_definition(url: str) -> dict[str, Any] | None:
    """The shipped StructureDefinition with this canonical URL (``|version`` ignored), or one of the
    outpatient template profiles (``…/vn-template-…``), built from the shipped registry on first use."""
    url = url.split("|", 1)[0]
    found = _load()[0].get(url)
    if found is None and url.startswith(TEMPLATE_PREFIX):
        from fhir_hub.profiles.build import template_structure_definitions

        return template_structure_definitions().get(url)
    return found


def urls() -> list[str]:
    """Canonical URLs of every shipped StructureDefinition (profiles and extensions)."""
    return sorted(_load()[0])


def profile_urls() -> list[str]:
    """The resource profiles (not the extensions or datatype profiles)."""
    return sorted(u for u, sd in _load()[0].items() if sd["kind"] == "resource")


def value_set(url: str) -> dict[str, Any] | None:
    """A ValueSet the profiles add (both generations of the administrative lists)."""
    return _load()[1].get(url.split("|", 1)[0])


def r4_codes(url: str) -> dict[str, list[str]] | None:
    """``{system: codes}`` of an enumerable R4 ValueSet a profile binds to, or ``None``."""
    return _load()[2].get(url.split("|", 1)[0])


def _has_category(resource: dict[str, Any], code: str) -> bool:
    for cc in resource.get("category") or ():
        if isinstance(cc, dict):
            for c in cc.get("coding") or ():
                if isinstance(c, dict) and c.get("system") == _CATEGORY and c.get("code") == code:
                    return True
    return False


def default_profiles(resource: dict[str, Any]) -> list[str]:
    """The VN profiles a resource is checked against when it claims none: by type, an Encounter of class
    AMB also against the outpatient profile, an Observation by its category (vital-signs, laboratory).
    Empty for a type without a VN profile."""
    rtype = resource.get("resourceType")
    if rtype == "Encounter":
        cls = resource.get("class")
        if isinstance(cls, dict) and cls.get("code") == "AMB":
            return [ENCOUNTER_OUTPATIENT]
        return [ENCOUNTER]
    if rtype == "Observation":
        if _has_category(resource, "vital-signs"):
            return [VITAL_SIGNS]
        if _has_category(resource, "laboratory"):
            return [LAB]
        return []
    url = _BY_TYPE.get(rtype) if isinstance(rtype, str) else None
    return [url] if url else []


__all__ = ["CONDITION", "COVERAGE", "ENCOUNTER", "ENCOUNTER_OUTPATIENT", "LAB", "ORGANIZATION", "PATIENT",
           "PRACTITIONER", "TEMPLATE_PREFIX", "VITAL_SIGNS", "default_profiles", "profile_urls", "r4_codes",
           "structure_definition", "urls", "value_set"]
