"""The code lists the shipped profiles bind to, precompiled for the profile validator.

Why: a binding check asked the terminology catalogue, which parses every list it has on first use
(about 7 MB of JSON: ICD-10, both generations of the communes, the ward ConceptMap, LOINC, R4's
own), about 0.35 s of CPU before ``fhir-hub validate`` checked its first Patient, which needs only
the race, occupation, province and ward lists. Here each ValueSet a shipped profile binds
(``required`` or ``extensible``) is one small file ``data/codes-*.json``, read when a plan first
needs it: its systems, and for a VN ValueSet its member codes with their display and the displays
accepted for them (the Vietnamese one and the designations, in NFC and case-folded, as
:func:`fhir_hub.terminology.validate_code` compares them). Two code lists the native invariants
read (the pre-2025 provinces for the CCCD prefix, the BHYT object codes) are there too.

The files are built from the terminology catalogue by :func:`build` (``python -m
fhir_hub.validation.codes`` rewrites them); a test checks they equal a rebuild, and that every
answer equals the catalogue's. A ValueSet or CodeSystem loaded from an ``--ig`` package may replace a
shipped one: while one is loaded (:func:`suspend`), nothing here is used and the validator asks the
catalogue as before.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import orjson

__all__ = ["Bound", "build", "code_list", "display_key", "suspend", "value_set"]

#: Code systems whose codes the native invariants read (``vn-pat-3``, ``vn-bhyt-1``).
CODE_LISTS = ("http://fhir.ehealth.gov.vn/core/CodeSystem/vn-province-pre2025",
              "http://fhir.ehealth.gov.vn/core/CodeSystem/vn-bhyt-object-code")

_suspended = 0


def suspend(by: int) -> None:
    """``+1`` when a package with ValueSets or CodeSystems is loaded, ``-1`` when it is unloaded: while
    any is, :func:`value_set` and :func:`code_list` answer ``None`` (ask the catalogue)."""
    global _suspended
    _suspended += by


def display_key(text: str) -> str:
    """A display as it is compared: NFC, case-folded (what the terminology operations do)."""
    return unicodedata.normalize("NFC", text).casefold()


@dataclass(frozen=True, slots=True)
class Bound:
    """A bound ValueSet: the systems it draws on, and for a VN ValueSet (``members`` not ``None``) its
    codes by system, each ``(display, accepted display keys)``."""

    systems: frozenset[str]
    single: str | None
    members: dict[str, dict[str, tuple[str, frozenset[str]]]] | None

    def member(self, system: str | None, code: str) -> tuple[bool, str | None]:
        """Is (system, code) in the ValueSet; the code's display when it is (``members`` required)."""
        assert self.members is not None
        if system is None:
            system = self.single
            if system is None:
                return False, None
        found = self.members.get(system.split("|", 1)[0], {}).get(code)
        return (True, found[0]) if found is not None else (False, None)

    def display_ok(self, system: str, code: str, display: str) -> bool:
        """Is ``display`` one of the code's displays (the code a member)."""
        assert self.members is not None
        found = self.members.get(system.split("|", 1)[0], {}).get(code)
        return found is not None and display_key(display) in found[1]


_PREFIX = "codes-"


def _data(name: str) -> bytes:
    return (resources.files("fhir_hub.validation") / "data" / f"{_PREFIX}{name}").read_bytes()


@cache
def _index() -> dict[str, Any]:
    try:
        data = _data("index.json")
    except FileNotFoundError:
        return {"value_sets": {}, "code_lists": {}}
    return dict(orjson.loads(data))


@cache
def _load(url: str) -> Bound | None:
    entry = _index()["value_sets"].get(url)
    if entry is None:
        return None
    members = None
    if entry["file"] is not None:
        doc = orjson.loads(_data(entry["file"]))
        members = {system: {code: (v[0], frozenset(v[1:])) for code, v in codes.items()}
                   for system, codes in doc["members"].items()}
    return Bound(frozenset(entry["systems"]), entry["single"], members)


def value_set(url: str) -> Bound | None:
    """The precompiled ValueSet ``url`` (``|version`` ignored), or ``None`` (not precompiled, or an
    ``--ig`` package is loaded)."""
    if _suspended:
        return None
    return _load(url.split("|", 1)[0])


@cache
def _code_list(url: str) -> frozenset[str] | None:
    found = _index()["code_lists"].get(url)
    return frozenset(found) if found is not None else None


def code_list(url: str) -> frozenset[str] | None:
    """The codes of the CodeSystem ``url`` when it is one of :data:`CODE_LISTS`, else ``None``."""
    return None if _suspended else _code_list(url)


# --------------------------------------------------------------------------- build (from the catalogue)


def bound_urls() -> list[str]:
    """The ValueSets the shipped profiles bind with ``required`` or ``extensible`` strength."""
    from fhir_hub import profiles

    found: set[str] = set()
    for url in profiles.urls():
        sd = profiles.structure_definition(url) or {}
        for e in (sd.get("snapshot") or {}).get("element", ()):
            binding = e.get("binding") or {}
            if binding.get("strength") in ("required", "extensible") and binding.get("valueSet"):
                found.add(binding["valueSet"].split("|", 1)[0])
    return sorted(found)


def _members(vs: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """Each code of the systems ``vs`` draws on that :func:`terminology.validate_in_valueset` accepts,
    with its display and accepted display keys; empty when the catalogue cannot judge the ValueSet."""
    from fhir_hub import terminology

    out: dict[str, dict[str, list[str]]] = {}
    systems = dict.fromkeys(str(i["system"]).split("|", 1)[0] for i in vs.get("compose", {}).get("include", ())
                            if "system" in i)
    for system in systems:
        cs = terminology.code_system(system)
        for code, concept in (cs.concepts.items() if cs else ()):
            try:
                ok, _message, display = terminology.validate_in_valueset(vs, code, system)
            except (terminology.UnknownSystem, terminology.UnsupportedCompose):
                return {}
            if ok:
                accepted = [str(concept.get("display", ""))] + [d["value"] for d in concept.get("designation", ())]
                keys = sorted({display_key(a) for a in accepted})
                out.setdefault(system, {})[code] = [display or "", *keys]
    return out


def build() -> dict[str, bytes]:
    """The files ``data/codes-*`` (name after the prefix -> content), from the catalogue and the shipped profiles."""
    from fhir_hub.validation import profile

    suspend(1)  # the catalogue's answers, not those of the files being rebuilt
    profile.forget_codes()
    try:
        return _build()
    finally:
        suspend(-1)
        profile.forget_codes()


def _build() -> dict[str, bytes]:
    from fhir_hub import profiles, terminology
    from fhir_hub.validation import profile

    files: dict[str, bytes] = {}
    index: dict[str, Any] = {"value_sets": {}, "code_lists": {}}
    for url in bound_urls():
        vs = terminology.value_set(url) or profiles.value_set(url)
        if vs is None and profiles.r4_codes(url) is None:
            continue  # not checked by the validator
        systems = sorted(profile._vs_systems(url))
        included = {str(i["system"]).split("|", 1)[0] for i in (vs or {}).get("compose", {}).get("include", ())
                    if "system" in i}
        entry: dict[str, Any] = {"systems": systems, "single": next(iter(included)) if len(included) == 1 else None,
                                 "file": None}
        if profiles.r4_codes(url) is None and vs is not None:
            name = f"{url.rstrip('/').rsplit('/', 1)[-1]}.json"
            while name in files:
                name = "x-" + name
            files[name] = orjson.dumps({"url": url, "members": _members(vs)}, option=orjson.OPT_SORT_KEYS) + b"\n"
            entry["file"] = name
        index["value_sets"][url] = entry
    for url in CODE_LISTS:
        cs = terminology.code_system(url)
        if cs is not None:
            index["code_lists"][url] = sorted(cs.concepts)
    files["index.json"] = orjson.dumps(index, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"
    return files


def write() -> list[str]:
    """Rewrite ``data/codes-*`` from :func:`build` (run from a source checkout); the names written."""
    from pathlib import Path

    folder = Path(__file__).resolve().parent / "data"
    files = {_PREFIX + name: content for name, content in build().items()}
    for old in folder.glob(f"{_PREFIX}*.json"):
        if old.name not in files:
            old.unlink()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    _index.cache_clear()
    _load.cache_clear()
    _code_list.cache_clear()
    return sorted(files)


if __name__ == "__main__":  # pragma: no cover
    print("\n".join(write()))
