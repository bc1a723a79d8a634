"""FHIR R4 (4.0.1) definitions, compiled into small JSON files shipped with the package.

Why a compiled form: the official bundles are ~75 MB; the server needs only the element model,
the SearchParameters and the compartments.  ``tools/build_definitions.py`` produces the files in
``fhir_hub/definitions/r4/``; this module loads them lazily (each file once, ``functools.cache``)
with orjson.  Loading all three takes a few tens of milliseconds.

The returned structures are shared, cached objects: treat them as read-only.

Element model (``type_model(name)``): ``{jsonName: element}`` where ``element`` is a dict with
``type`` (a primitive type code such as ``"code"``, a complex type such as ``"HumanName"``,
``"Resource"`` for contained/entry resources, or a backbone path such as ``"Patient.contact"``),
``min`` (int), ``max`` (int or ``"*"``), ``summary`` (bool) and, only when relevant,
``modifier`` (True), ``choice`` (the ``[x]`` stem, e.g. ``"value"`` for ``valueQuantity``),
``binding`` (URL of a required ValueSet whose codes are in ``value_set_codes``), ``attr`` (True
for XML attributes such as ``Element.id``, which take no ``_name`` sibling) and ``targets``
(Reference target resource types).  For a choice element the cardinality is that of the whole
``[x]`` group, repeated on each concrete alternative: ``min: 1`` on ``medicationReference``
means one of the ``medication[x]`` alternatives is required, not that one.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import orjson

__all__ = [
    "FHIR_VERSION",
    "compartments",
    "is_resource_type",
    "primitive_types",
    "resource_types",
    "search_parameters",
    "summary_elements",
    "type_kind",
    "type_model",
    "type_names",
    "value_set_codes",
]

FHIR_VERSION = "4.0.1"


def _load(name: str) -> Any:
    return orjson.loads(resources.files(__package__).joinpath("r4", name).read_bytes())


@cache
def _types_doc() -> dict[str, Any]:
    doc: dict[str, Any] = _load("types.json")
    return doc


@cache
def resource_types() -> frozenset[str]:
    """The 146 concrete resource types of R4 (excludes the abstract Resource/DomainResource)."""
    return frozenset(_types_doc()["resourceTypes"])


def is_resource_type(name: str) -> bool:
    """True when ``name`` is a concrete R4 resource type (what ``resourceType`` may hold)."""
    return name in resource_types()


@cache
def type_names() -> frozenset[str]:
    """Every type with an element model: resources, complex datatypes, backbone paths."""
    return frozenset(_types_doc()["types"])


def type_model(name: str) -> dict[str, dict[str, Any]]:
    """Element model of a resource, complex datatype or backbone path (see the module docstring).

    Raises ``KeyError`` for an unknown name.  Primitive types have no model: see
    ``primitive_types``.
    """
    elements: dict[str, dict[str, Any]] = _types_doc()["types"][name]["elements"]
    return elements


def type_kind(name: str) -> str:
    """``resource`` | ``abstract-resource`` | ``complex-type`` | ``backbone`` | ``constraint``
    (SimpleQuantity, MoneyQuantity) | ``primitive``.  Raises ``KeyError`` for an unknown name."""
    doc = _types_doc()
    if name in doc["primitives"]:
        return "primitive"
    kind: str = doc["types"][name]["kind"]
    return kind


def primitive_types() -> dict[str, dict[str, str]]:
    """``{name: {"json": "string"|"boolean"|"integer"|"number", "regex"?: pattern}}``.

    ``regex`` is the StructureDefinition's pattern translated to Python (XML Schema ``\\s`` is
    only space/tab/CR/LF); use it with ``re.fullmatch``.
    """
    prims: dict[str, dict[str, str]] = _types_doc()["primitives"]
    return prims


@cache
def value_set_codes(url: str) -> frozenset[str] | None:
    """Codes of a required-binding ValueSet used by the model (URL with or without ``|version``);
    ``None`` if the value set is not one the model binds to (or is not enumerable)."""
    codes = _types_doc()["valueSets"].get(url.split("|", 1)[0])
    return None if codes is None else frozenset(codes)


@cache
def search_parameters() -> list[dict[str, Any]]:
    """The 1,375 R4 SearchParameters, compact.

    Each item always has ``id``, ``url``, ``code``, ``base`` (list), ``type``, ``target``,
    ``modifier``, ``comparator`` (lists, possibly empty) and ``component`` (list of
    ``{"definition", "expression"}``); ``expression``, ``xpathUsage``, ``multipleOr``,
    ``multipleAnd`` and ``chain`` only when the definition has them.  Look a parameter up by
    (resource type in ``base``, ``code``): shared parameters have several bases.
    """
    params: list[dict[str, Any]] = _load("search-parameters.json")
    return params


@cache
def compartments() -> dict[str, dict[str, list[str]]]:
    """``{compartment: {resourceType: [searchParamCode, ...]}}`` for the five R4 compartments
    (``Patient``, ``Encounter``, ``RelatedPerson``, ``Practitioner``, ``Device``).  Resource types
    that cannot be in a compartment are absent."""
    comps: dict[str, dict[str, list[str]]] = _load("compartments.json")
    return comps


@cache
def summary_elements(resource_type: str) -> frozenset[str]:
    """Top-level JSON keys kept by ``_summary=true`` for ``resource_type``.

    These are the elements marked isSummary plus the mandatory ones (min >= 1), with choice
    elements expanded (``effectiveDateTime``...), the ``_name`` sibling of each primitive one
    (so primitive extensions survive) and ``resourceType``.  Raises ``KeyError`` for an unknown
    type.  Adding the SUBSETTED tag to ``meta`` is the caller's job.
    """
    doc = _types_doc()
    prims = doc["primitives"]
    keep: set[str] = {"resourceType"}
    for name, el in doc["types"][resource_type]["elements"].items():
        if el["summary"] or el["min"] >= 1:
            keep.add(name)
            if el["type"] in prims:
                keep.add("_" + name)
    # A mandatory choice group is reported as min>=1 on each concrete alternative, so all of
    # them are kept: harmless, as at most one is present.
    return frozenset(keep)
