"""Extra conformance resources for one process: StructureDefinitions, ValueSets and CodeSystems read from
a folder of JSON files or a FHIR NPM package ``.tgz`` (``fhir-hub validate --ig``).

Why: a steward checks files against an implementation guide the hub does not ship — a facility's own
profiles, or the package ``fhir-hub profiles build`` makes after an edit of the templates — without
rebuilding the hub. What is loaded joins what is shipped for the rest of the process: profiles become
known to :func:`fhir_hub.profiles.structure_definition` (so ``--profile``, ``meta.profile`` claims,
extension and type profiles find them), ValueSets and CodeSystems to the terminology catalogue (so
bindings to them are checked). A resource with the URL of a shipped one replaces it.

The shipped registries have no public way to add to them, so this module adds to their loaded
indexes (and clears the compiled profile plans); :func:`unload` takes it all back out. A
StructureDefinition without a snapshot gets one from its differential when its base is known (shipped,
or loaded before it from the same package), else the package is refused.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["IgError", "Loaded", "load", "unload"]


class IgError(ValueError):
    """The package cannot be read or used; the message says which file and why."""


@dataclass
class Loaded:
    """Canonical URLs of what one package added, by kind."""

    source: str
    profiles: list[str] = field(default_factory=list)
    value_sets: list[str] = field(default_factory=list)
    code_systems: list[str] = field(default_factory=list)
    #: ``(index, url, what was there before or None)``, for :func:`unload`, newest last.
    undo: list[tuple[dict[str, Any], str, Any]] = field(default_factory=list)
    #: the precompiled code lists are set aside while this package's ValueSets and CodeSystems are loaded
    suspended: bool = False

    def put(self, index: dict[str, Any], url: str, value: Any) -> None:
        self.undo.append((index, url, index.get(url)))
        index[url] = value


class _NoTypes:
    def type_elements(self, code: str) -> list[dict[str, Any]]:
        from fhir_hub.profiles.snapshot import SnapshotError

        raise SnapshotError(f"reaching inside datatype {code} needs a snapshot in the package")


def _flatten(concepts: list[Any], parent: str | None, out: list[dict[str, Any]]) -> None:
    """Nested ``CodeSystem.concept`` as the catalogue holds them: flat, with a ``parent`` property."""
    for c in concepts:
        if not isinstance(c, dict) or not isinstance(c.get("code"), str):
            continue
        flat = {k: v for k, v in c.items() if k != "concept"}
        if parent is not None:
            flat["property"] = [*flat.get("property", []), {"code": "parent", "valueCode": parent}]
        out.append(flat)
        _flatten(c.get("concept") or [], c["code"], out)


def _add_code_system(cs: dict[str, Any], loaded: Loaded) -> None:
    from fhir_hub.terminology import catalogue

    concepts: list[dict[str, Any]] = []
    _flatten(cs.get("concept") or [], None, concepts)
    children: dict[str, list[str]] = {}
    for c in concepts:
        for p in c.get("property", ()):
            if p.get("code") == "parent" and "valueCode" in p:
                children.setdefault(p["valueCode"], []).append(c["code"])
    index = catalogue.CodeSystemIndex({**cs, "concept": concepts}, {c["code"]: c for c in concepts},
                                      {k: tuple(v) for k, v in children.items()})
    loaded.put(catalogue.catalogue().code_systems, cs["url"], index)


def _with_snapshot(sd: dict[str, Any], name: str) -> dict[str, Any]:
    from fhir_hub import profiles
    from fhir_hub.profiles.snapshot import SnapshotError, snapshot

    missing = [k for k in ("type", "kind") if not isinstance(sd.get(k), str)]
    if missing:
        raise IgError(f"{name}: StructureDefinition {sd['url']} has no {' or '.join(missing)}")
    if (sd.get("snapshot") or {}).get("element"):
        return sd
    base = profiles.structure_definition(str(sd.get("baseDefinition", "")))
    diff = (sd.get("differential") or {}).get("element")
    if base is None or not diff:
        raise IgError(f"{name}: StructureDefinition {sd['url']} has no snapshot, and its base "
                      f"{sd.get('baseDefinition')!r} is not known here to build one from its differential")
    try:
        return {**sd, "snapshot": {"element": snapshot(sd, base["snapshot"]["element"], _NoTypes())}}
    except (SnapshotError, KeyError) as exc:
        raise IgError(f"{name}: cannot build the snapshot of {sd['url']}: {exc}") from None


def load(path: Path) -> Loaded:
    """Add the StructureDefinitions, ValueSets and CodeSystems of ``path`` (folder or ``.tgz``)."""
    from fhir_hub import profiles
    from fhir_hub.profiles.build import read_package
    from fhir_hub.terminology import catalogue
    from fhir_hub.validation import codes, profile

    if not path.exists():
        raise IgError(f"{path}: no such file or folder")
    try:
        members = read_package(path)
    except (OSError, ValueError, tarfile.TarError) as exc:  # orjson's decode error is a ValueError
        raise IgError(f"{path}: cannot read the package: {exc}") from None
    loaded = Loaded(str(path))
    try:
        sds = profiles._load()[0]  # the shipped index (see the module docstring)
        found = [(name, r) for name, r in sorted(members.items())
                 if isinstance(r, dict) and isinstance(r.get("url"), str)
                 and r.get("resourceType") in ("StructureDefinition", "ValueSet", "CodeSystem")]
        # bases first: a profile may derive from another of the same package
        pending = [(n, r) for n, r in found if r["resourceType"] == "StructureDefinition"]
        while pending:
            ready = [(n, r) for n, r in pending if (r.get("snapshot") or {}).get("element")
                     or profiles.structure_definition(str(r.get("baseDefinition", ""))) is not None]
            for name, sd in ready or pending[:1]:  # nothing ready: the first one reports why
                loaded.put(sds, sd["url"], _with_snapshot(sd, name))
                loaded.profiles.append(sd["url"])
            pending = [(n, r) for n, r in pending if r["url"] not in loaded.profiles]
        for _name, res in found:
            if res["resourceType"] == "ValueSet":
                loaded.put(catalogue.catalogue().value_sets, res["url"], res)
                loaded.value_sets.append(res["url"])
            elif res["resourceType"] == "CodeSystem":
                _add_code_system(res, loaded)
                loaded.code_systems.append(res["url"])
        if loaded.value_sets or loaded.code_systems:  # they may replace a shipped list
            codes.suspend(1)
            loaded.suspended = True
    except BaseException:
        unload(loaded)  # nothing half-loaded stays
        raise
    profile.plan.cache_clear()  # a package may replace a shipped profile compiled before
    profile.forget_codes()
    return loaded


def unload(loaded: Loaded) -> None:
    """Put the registries back as they were before :func:`load` (the CLI does on exit, so a process
    that runs it in-process, such as a test, keeps the shipped registries)."""
    from fhir_hub.validation import codes, profile

    for index, url, before in reversed(loaded.undo):
        if before is None:
            index.pop(url, None)
        else:
            index[url] = before
    loaded.undo.clear()
    if loaded.suspended:
        codes.suspend(-1)
        loaded.suspended = False
    profile.plan.cache_clear()
    profile.forget_codes()
