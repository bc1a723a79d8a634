"""The built CodeSystems, ValueSets and ConceptMaps, loaded once, on first use, and indexed by canonical URL.

Why lazily: the VN lists are about 6 MB of JSON (ICD-10 and the communes dominate); a server that
never answers a terminology request, and every CLI command, should not pay for parsing them.
Why once: after the first load every lookup is a dictionary access.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class CodeSystemIndex:
    """One CodeSystem resource, its concepts by code and, for a hierarchy, each code's children
    (from the ``parent`` property; empty for a flat list)."""

    resource: dict[str, Any]
    concepts: dict[str, dict[str, Any]]
    children: dict[str, tuple[str, ...]]

    @property
    def url(self) -> str:
        return str(self.resource["url"])


@dataclass(frozen=True, slots=True)
class ConceptMapIndex:
    """One ConceptMap and, per (source system, target system) group, its elements by source code."""

    resource: dict[str, Any]
    elements: dict[tuple[str, str], dict[str, dict[str, Any]]]

    @property
    def url(self) -> str:
        return str(self.resource["url"])


@dataclass(frozen=True, slots=True)
class Catalogue:
    code_systems: dict[str, CodeSystemIndex]
    concept_maps: dict[str, ConceptMapIndex]
    value_sets: dict[str, dict[str, Any]]


def _children(concepts: list[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for concept in concepts:
        for prop in concept.get("property", ()):
            if prop["code"] == "parent" and "valueCode" in prop:
                found.setdefault(prop["valueCode"], []).append(concept["code"])
    return {code: tuple(kids) for code, kids in found.items()}


def _read_all() -> list[dict[str, Any]]:
    """The VN resources (a file each), then R4's own (``data/r4``: arrays, built by
    ``tools/build_r4_terminology.py``); a VN canonical URL is never one of R4's."""
    folder = resources.files("fhir_hub.terminology") / "data"
    found = [orjson.loads(entry.read_bytes()) for entry in sorted(folder.iterdir(), key=lambda e: e.name)
             if entry.name.endswith(".json")]
    for name in ("codesystems.json", "valuesets.json"):
        found.extend(orjson.loads((folder / "r4" / name).read_bytes()))
    return found


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    """Everything under ``fhir_hub/terminology/data`` (built by ``tools/build_terminology.py``)."""
    systems: dict[str, CodeSystemIndex] = {}
    maps: dict[str, ConceptMapIndex] = {}
    value_sets: dict[str, dict[str, Any]] = {}
    for res in _read_all():
        if res["resourceType"] == "CodeSystem":
            concepts = res.get("concept", [])
            systems[res["url"]] = CodeSystemIndex(res, {c["code"]: c for c in concepts}, _children(concepts))
        elif res["resourceType"] == "ValueSet":
            value_sets[res["url"]] = res
        elif res["resourceType"] == "ConceptMap":
            groups = {(g["source"], g["target"]): {e["code"]: e for e in g.get("element", [])}
                      for g in res.get("group", [])}
            maps[res["url"]] = ConceptMapIndex(res, groups)
    return Catalogue(systems, maps, value_sets)


def code_system(url: str) -> CodeSystemIndex | None:
    """The CodeSystem with this canonical URL; a ``|version`` suffix is accepted and ignored
    (one version of each list is loaded)."""
    return catalogue().code_systems.get(url.split("|", 1)[0])


def concept_map(url: str) -> ConceptMapIndex | None:
    return catalogue().concept_maps.get(url.split("|", 1)[0])


def value_set(url: str) -> dict[str, Any] | None:
    """The ValueSet with this canonical URL (``|version`` ignored, as for :func:`code_system`)."""
    return catalogue().value_sets.get(url.split("|", 1)[0])
