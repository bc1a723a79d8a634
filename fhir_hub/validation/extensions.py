"""Extensions checked by URL against their StructureDefinition: where they may be used (``context``),
what value they may hold, and whether they are modifiers.

Why: an extension's definition is what gives it meaning, and R4 says an extension SHALL only be used
where its ``context`` allows (StructureDefinition.context, R4 Extensibility). The definitions known are the
R4 core extensions (``data/r4-extensions.json``, from ``tools/build_r4_rules.py``) and the shipped VN
extensions (:mod:`fhir_hub.profiles`). An extension whose URL is neither is not judged here: R4 lets
anyone define extensions, and a profile that requires one says so itself.

A context ``element`` expression matches a place in a resource when it names the element's path from
the resource (``Patient.name.family``, ``Questionnaire.item.item``), its path within its datatype
(``HumanName.family``), its type (``string``, ``Address``, ``Quantity`` for an ``Age``), or a type
every element of that kind is (``Element``; ``Resource``/``DomainResource`` for a resource;
``BackboneElement`` for a backbone element).

A few HL7 core extensions are used by the R4 build itself outside the context their own R4 definition
declares (on every StructureDefinition and on the normative terminology resources of the spec). For
those, and only those, :data:`CORRECTIONS` adds the context that FHIR R5 gives the same extension
(same URL), so that R4's own content is not rejected; anything else still has to meet the R4 context.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import orjson

from fhir_hub import profiles

__all__ = ["CORRECTIONS", "Definition", "Place", "allowed", "definition"]

_QUANTITIES = frozenset({"Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity"})


#: The resource types of R4 that R5 makes specialisations of CanonicalResource (R5 resource list:
#: "CanonicalResource"), restricted to those that are already canonical in R4 (carry a ``url``): R4 has
#: no CanonicalResource type, so an R5 context "CanonicalResource" names these here.
_R4_CANONICAL = frozenset({
    "ActivityDefinition", "CapabilityStatement", "ChargeItemDefinition", "CodeSystem", "CompartmentDefinition",
    "ConceptMap", "EventDefinition", "Evidence", "EvidenceVariable", "ExampleScenario", "GraphDefinition",
    "ImplementationGuide", "Library", "Measure", "MessageDefinition", "OperationDefinition", "PlanDefinition",
    "Questionnaire", "SearchParameter", "StructureDefinition", "StructureMap", "TerminologyCapabilities",
    "TestScript", "ValueSet",
})

#: url -> context expressions added to the extension's declared context. Why each one:
CORRECTIONS: dict[str, frozenset[str]] = {
    # R4 4.0.1 declares context ElementDefinition.type.code, but the R4 snapshots put it on
    # ElementDefinition.type (the type of Element.id, Extension.url, primitive values: 437 official
    # examples). FHIR R5 (5.0.0) defines the same extension with context ElementDefinition.type.
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type": frozenset({"ElementDefinition.type"}),
    # R4 4.0.1 declares context StructureDefinition only, but the R4 build marks its normative ValueSets,
    # CodeSystems and OperationDefinitions with it too (130 official examples). FHIR R5 (5.0.0) defines
    # it with contexts CanonicalResource and ElementDefinition.
    "http://hl7.org/fhir/StructureDefinition/structuredefinition-normative-version":
        _R4_CANONICAL | {"ElementDefinition"},
}
# Not corrected: valueset-concept-comments (context ValueSet.compose.include.concept) on CodeSystem.concept
# in CodeSystem-dicom-dcim: R5 and the extensions pack keep that context, and codesystem-concept-comments
# is the extension for a CodeSystem concept, so that use is an error of the example.


@dataclass(frozen=True, slots=True)
class Definition:
    url: str
    context: frozenset[str]
    value: frozenset[str]  # JSON keys allowed for value[x]; empty for a complex extension
    modifier: bool


@dataclass(frozen=True, slots=True)
class Place:
    """Where an extension sits: the element's path from the resource, its path in its own type, its type
    (for a backbone element the path that defines it, which a ``contentReference`` shares:
    ``OperationDefinition.parameter`` for ``parameter.part``), and what kind of thing it is
    (``resource``, ``backbone``, ``datatype`` or ``primitive``)."""

    path: str
    typed: str
    type: str
    kind: str


@cache
def _r4() -> dict[str, dict[str, Any]]:
    blob = resources.files(__package__).joinpath("data", "r4-extensions.json").read_bytes()
    data: dict[str, dict[str, Any]] = orjson.loads(blob)
    return data


def _from_sd(sd: dict[str, Any]) -> Definition:
    value: frozenset[str] = frozenset()
    modifier = False
    for e in sd["snapshot"]["element"]:
        if e["id"] == "Extension.value[x]" and e.get("max") != "0":
            value = frozenset("value" + t["code"][0].upper() + t["code"][1:] for t in e.get("type", ()))
        elif e["id"] == "Extension":
            modifier = bool(e.get("isModifier"))
    context = frozenset(c["expression"] for c in sd.get("context", ()) if c.get("type") == "element")
    return Definition(sd["url"], _corrected(sd["url"], context), value, modifier)


def _corrected(url: str, context: frozenset[str]) -> frozenset[str]:
    """The declared context and the correction of :data:`CORRECTIONS` for ``url``, if any. Applied when the
    definition is read (once per StructureDefinition), so the check itself stays a set lookup."""
    extra = CORRECTIONS.get(url)
    return context if extra is None or not context else context | extra


# url -> (the StructureDefinition it was read from, or None for a core one; the definition)
_SEEN: dict[str, tuple[dict[str, Any] | None, Definition | None]] = {}


def definition(url: str) -> Definition | None:
    """The definition of the extension ``url`` (``|version`` ignored), or ``None`` when unknown. Read once
    per StructureDefinition: a package loaded for a run (``--ig``) can add or replace one, so the shipped
    registry is asked each time, which is a dict lookup."""
    url = url.split("|", 1)[0]
    sd = profiles.structure_definition(url)
    if sd is not None and sd.get("type") != "Extension":
        sd = None
    seen = _SEEN.get(url)
    if seen is not None and seen[0] is sd:
        return seen[1]
    if sd is not None:
        found: Definition | None = _from_sd(sd)
    else:
        raw = _r4().get(url)
        found = None if raw is None else Definition(url, _corrected(url, frozenset(raw["context"])),
                                                    frozenset(raw["value"]), bool(raw["modifier"]))
    if found is None:
        _SEEN.pop(url, None)  # unknown URLs are not remembered: any client can make up as many as it likes
    else:
        _SEEN[url] = (sd, found)
    return found


def allowed(d: Definition, place: Place) -> bool:
    """Does ``d``'s context allow it at ``place``."""
    ctx = d.context
    if not ctx or "Element" in ctx or place.path in ctx or place.typed in ctx or place.type in ctx:
        return True
    if place.kind == "resource":
        return "Resource" in ctx or "DomainResource" in ctx
    if place.kind == "backbone":
        return "BackboneElement" in ctx
    return place.type in _QUANTITIES and "Quantity" in ctx
