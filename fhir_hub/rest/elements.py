"""``_summary`` and ``_elements``: subsets of a resource (search.html#summary, #elements).

A subset is marked with the ``SUBSETTED`` tag from the v3 ObservationValue code system, as the
spec requires, so that nobody mistakes it for the whole resource and writes it back.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_hub import definitions
from fhir_hub.errors import FhirError, error

_SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}
_ALWAYS = ("resourceType", "id", "meta")


@cache
def _mandatory(rtype: str) -> frozenset[str]:
    """Top-level elements with ``min >= 1``: kept in every subset so it stays valid."""
    if not definitions.is_resource_type(rtype):
        return frozenset()
    return frozenset(name for name, el in definitions.type_model(rtype).items() if el.get("min", 0) >= 1)


def _mark(resource: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    tags = [t for t in meta.get("tag", []) if t.get("code") != "SUBSETTED"]
    tags.append(_SUBSETTED)
    meta["tag"] = tags
    resource["meta"] = meta
    return resource


def summary(resource: dict[str, Any], mode: str) -> dict[str, Any]:
    if mode == "false":
        return resource
    rtype = resource.get("resourceType", "")
    if mode == "true":
        keep = definitions.summary_elements(rtype)
        out = {k: v for k, v in resource.items() if k in _ALWAYS or k in keep}
    elif mode == "text":
        mandatory = _mandatory(rtype)
        out = {k: v for k, v in resource.items() if k in _ALWAYS or k == "text" or k in mandatory}
    elif mode == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
    else:
        raise FhirError(400, error("invalid", f"_summary={mode!r} is not one of true, text, data, false "
                                   "(count applies to searches)", "_summary"))
    return _mark(out)


def only(resource: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """Top-level elements named in ``_elements`` plus the mandatory ones (``Type.element`` allowed)."""
    rtype = resource.get("resourceType", "")
    wanted: set[str] = set()
    for name in names:
        if "." in name:
            prefix, _, name = name.partition(".")
            if prefix != rtype:
                continue
        wanted.add(name)
    mandatory = _mandatory(rtype)
    out = {k: v for k, v in resource.items() if k in _ALWAYS or k in wanted or k in mandatory}
    return _mark(out)
