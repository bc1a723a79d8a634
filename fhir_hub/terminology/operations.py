"""``$lookup``, ``$validate-code``, ``$expand`` and ``$translate`` as pure functions over the loaded catalogue.

Why pure: the REST handlers, the validator's binding checks and the stewards' CLI all need the same
answers; keeping HTTP out of here lets each of them call these directly and lets the tests check
codes without a server.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fhir_hub.search.text import normalise
from fhir_hub.terminology.catalogue import (
    CodeSystemIndex,
    ConceptMapIndex,
    catalogue,
    code_system,
    concept_map,
)


class UnknownSystem(LookupError):
    """No CodeSystem (or ConceptMap, or ValueSet) with that URL is loaded."""


class UnsupportedCompose(ValueError):
    """A ValueSet rule this server cannot evaluate: another ValueSet, a rule without a system, a
    filter operator other than ``=``, ``is-a``, ``descendent-of``, or a property the code system lacks."""


@dataclass(frozen=True, slots=True)
class Match:
    """One ``$translate`` match: the target concept and how it relates to the source."""

    equivalence: str
    system: str
    code: str
    display: str | None
    comment: str | None = None
    source: str | None = None  # the ConceptMap URL


def lookup(system: str, code: str) -> tuple[str, dict[str, str]] | None:
    """``(display, properties)`` of ``code`` in ``system``, or ``None`` when the code is not there.

    Raises :class:`UnknownSystem` for a system that is not loaded, because "this server does not
    know the list" and "the list has no such code" call for different answers (a 404 naming the
    system versus one naming the code).
    """
    cs = code_system(system)
    if cs is None:
        raise UnknownSystem(system)
    concept = cs.concepts.get(code)
    if concept is None:
        return None
    props = {p["code"]: p["valueString"] for p in concept.get("property", []) if "valueString" in p}
    return concept.get("display", ""), props


def designations(system: str, code: str) -> list[tuple[str, str]]:
    """``(language, value)`` of the concept's designations (the English titles); empty when none."""
    cs = code_system(system)
    concept = cs.concepts.get(code) if cs else None
    if concept is None:
        return []
    return [(d.get("language", ""), d["value"]) for d in concept.get("designation", [])]


def _same_text(a: str, b: str) -> bool:
    """Displays compared after NFC and case folding: a client's decomposed "Nguyễn" or different
    case is the same display, a different word is not."""
    return unicodedata.normalize("NFC", a).casefold() == unicodedata.normalize("NFC", b).casefold()


def validate_code(system: str, code: str, display: str | None = None) -> tuple[bool, str]:
    """``(result, message)``: is ``code`` in ``system``, and is ``display`` (when given) one of its
    displays (the Vietnamese display or a designation)?

    An unknown system is ``False`` with a message, not an exception: ``$validate-code`` answers
    "not valid" rather than failing, so bindings to lists this server lacks can be reported.
    """
    cs = code_system(system)
    if cs is None:
        return False, f"unknown code system {system!r}"
    concept = cs.concepts.get(code)
    if concept is None:
        return False, f"code {code!r} is not in {cs.url}"
    shown = concept.get("display", "")
    if display is not None:
        candidates = [shown] + [d["value"] for d in concept.get("designation", [])]
        if not any(_same_text(display, c) for c in candidates):
            return False, f"code {code!r} of {cs.url} has display {shown!r}, not {display!r}"
    return True, f"code {code!r} is in {cs.url}: {shown}"


#: ``$translate`` with ``reverse``: how the source concept relates to the target, from the
#: map's target-to-source equivalence (a target "wider" than its source makes the source "narrower").
_REVERSED = {"wider": "narrower", "narrower": "wider", "subsumes": "specializes", "specializes": "subsumes"}


@lru_cache(maxsize=8)
def _by_target(url: str, source: str, target: str) -> dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]]:
    """One group of a map turned around: target code -> (source code, element, target entry)."""
    cm = concept_map(url)
    out: dict[str, list[tuple[str, dict[str, Any], dict[str, Any]]]] = {}
    for code, element in (cm.elements.get((source, target), {}) if cm else {}).items():
        for t in element.get("target", []):
            out.setdefault(t["code"], []).append((code, element, t))
    return out


def _fits(cm: ConceptMapIndex, source_scope: str | None, target_scope: str | None, reverse: bool) -> bool:
    """Does the map go from the ValueSet ``source_scope`` to ``target_scope`` (either may be omitted)?"""
    src = cm.resource.get("sourceCanonical") or cm.resource.get("sourceUri")
    tgt = cm.resource.get("targetCanonical") or cm.resource.get("targetUri")
    if reverse:
        src, tgt = tgt, src
    return ((source_scope is None or src == source_scope.split("|", 1)[0])
            and (target_scope is None or tgt == target_scope.split("|", 1)[0]))


def translate(code: str, url: str | None = None, source: str | None = None,
              target: str | None = None, *, reverse: bool = False, source_scope: str | None = None,
              target_scope: str | None = None) -> list[Match]:
    """The targets of ``code`` in the ConceptMap ``url``, or in every loaded map whose groups go
    from ``source`` (the code's system) to ``target`` (either may be omitted when ``url`` is given).

    ``source_scope`` and ``target_scope`` are the maps' source and target ValueSets (``$translate``'s
    ``source`` and ``target``). With ``reverse`` the maps are read backwards: ``code`` is a target
    code of the map, ``source`` its system, and the matches are the map's source concepts, with the
    equivalence turned around (``wider`` becomes ``narrower``).

    Raises :class:`UnknownSystem` when no loaded map fits, so "no such map" (404) stays distinct
    from "the map has no target for this code" (an empty list, ``result = false``).
    """
    if url is not None:
        cm = concept_map(url)
        maps = [cm] if cm is not None else []
    else:
        maps = list(catalogue().concept_maps.values())
    matches: list[Match] = []
    found = False
    for cm in maps:
        if not _fits(cm, source_scope, target_scope, reverse):
            continue
        for (src, tgt), elements in cm.elements.items():
            given, wanted = (tgt, src) if reverse else (src, tgt)
            if (source and given != source.split("|", 1)[0]) or (target and wanted != target.split("|", 1)[0]):
                continue
            found = True
            if reverse:
                for src_code, element, t in _by_target(cm.url, src, tgt).get(code, []):
                    equivalence = t.get("equivalence", "equivalent")
                    matches.append(Match(_REVERSED.get(equivalence, equivalence), src, src_code,
                                         element.get("display"), t.get("comment"), cm.url))
                continue
            for t in elements.get(code, {}).get("target", []):
                matches.append(Match(t.get("equivalence", "equivalent"), tgt, t["code"], t.get("display"),
                                     t.get("comment"), cm.url))
    if not found:
        raise UnknownSystem(url or f"{source or '*'} -> {target or '*'}")
    return matches


# ---- $lookup with everything the operation returns -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Details:
    """What ``$lookup`` answers about one concept."""

    name: str  # the CodeSystem's name
    version: str | None
    code: str
    display: str
    #: ``(language, value)``.
    designations: tuple[tuple[str, str], ...]
    #: ``(property code, FHIR type of the value, value)``, e.g. ``("parent", "code", "E11")``.
    properties: tuple[tuple[str, str, str], ...]


_VALUE_TYPES = {"valueString": "string", "valueCode": "code"}


def _display_in(concept: dict[str, Any], language: str | None) -> str:
    """The concept's display in ``language`` (a designation in it, e.g. ``en`` or ``en-US`` for the
    English titles), else its own (Vietnamese) display."""
    if language:
        wanted = language.lower().split("-", 1)[0]
        for d in concept.get("designation", ()):
            if d.get("language", "").lower().split("-", 1)[0] == wanted:
                return str(d["value"])
    return str(concept.get("display", ""))


def lookup_details(system: str, code: str, display_language: str | None = None) -> Details | None:
    """Everything ``$lookup`` returns about ``code``, or ``None`` when the code is not in ``system``.

    Raises :class:`UnknownSystem` for a system that is not loaded, or a ``system|version`` whose
    version is not the loaded one.
    """
    cs = loaded_system(system)
    concept = cs.concepts.get(code)
    if concept is None:
        return None
    props = tuple((p["code"], _VALUE_TYPES[k], p[k]) for p in concept.get("property", ()) for k in _VALUE_TYPES
                  if k in p)
    return Details(cs.resource.get("name", ""), cs.resource.get("version"), code,
                   _display_in(concept, display_language),
                   tuple((d.get("language", ""), d["value"]) for d in concept.get("designation", ())), props)


def loaded_system(url: str) -> CodeSystemIndex:
    """The loaded code system ``url`` (``url|version`` must name the loaded version)."""
    cs = code_system(url)
    if cs is None:
        raise UnknownSystem(url)
    if "|" in url and url.split("|", 1)[1] != cs.resource.get("version"):
        raise UnknownSystem(url)
    return cs


# ---- ValueSets: compose rules, $expand, $validate-code ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """One code of an expansion."""

    system: str
    version: str | None
    code: str
    display: str


@dataclass(frozen=True, slots=True)
class Expansion:
    """The codes of a ValueSet (after the text filter): ``total`` of them, ``contains`` from ``offset``."""

    total: int
    offset: int
    contains: tuple[Entry, ...]
    #: ``system|version`` (or ``system``) of each code system the expansion drew on.
    used_systems: tuple[str, ...]


#: The filter operators :func:`expand` evaluates.
FILTER_OPS = ("=", "is-a", "descendent-of")


def _parent(cs: CodeSystemIndex, code: str) -> str | None:
    for p in cs.concepts[code].get("property", ()):
        if p["code"] == "parent" and "valueCode" in p:
            return str(p["valueCode"])
    return None


def _descends(cs: CodeSystemIndex, code: str, ancestor: str) -> bool:
    parent = _parent(cs, code)
    seen = 0
    while parent is not None and seen < 64:  # a cycle in bad data must not loop for ever
        if parent == ancestor:
            return True
        parent = _parent(cs, parent) if parent in cs.concepts else None
        seen += 1
    return False


def descendants(cs: CodeSystemIndex, code: str) -> Iterator[str]:
    """Every code below ``code`` in the ``parent`` hierarchy, depth first."""
    for child in cs.children.get(code, ()):
        yield child
        yield from descendants(cs, child)


def ancestors(cs: CodeSystemIndex, code: str) -> list[str]:
    """The codes above ``code``, nearest first (at most 64: a cycle in bad data must end)."""
    found: list[str] = []
    parent = _parent(cs, code)
    while parent is not None and parent in cs.concepts and parent not in found and len(found) < 64:
        found.append(parent)
        parent = _parent(cs, parent)
    return found


def _check_filter(cs: CodeSystemIndex, f: Any) -> tuple[str, str, str]:
    if not isinstance(f, dict) or not all(isinstance(f.get(k), str) for k in ("property", "op", "value")):
        raise UnsupportedCompose("a compose filter needs property, op and value (strings)")
    prop, op, value = f["property"], f["op"], f["value"]
    if op not in FILTER_OPS:
        raise UnsupportedCompose(f"filter op {op!r} is not supported (only {', '.join(FILTER_OPS)})")
    if prop in ("concept", "code"):
        return prop, op, value
    if op != "=":
        raise UnsupportedCompose(f"filter op {op!r} applies to the concept itself, not to property {prop!r}")
    declared = {p.get("code") for p in cs.resource.get("property", ())}
    if prop not in declared:
        raise UnsupportedCompose(f"{cs.url} has no property {prop!r}")
    return prop, op, value


def _holds(cs: CodeSystemIndex, f: tuple[str, str, str], code: str) -> bool:
    prop, op, value = f
    if prop in ("concept", "code"):
        if op == "=":
            return code == value
        return (op == "is-a" and code == value) or _descends(cs, code, value)
    return any(p["code"] == prop and (p.get("valueString") == value or p.get("valueCode") == value)
               for p in cs.concepts[code].get("property", ()))


@dataclass(frozen=True, slots=True)
class _Rule:
    """One ``compose.include`` or ``exclude``, checked: its code system and what it selects."""

    cs: CodeSystemIndex
    concepts: dict[str, str | None] | None  # listed code -> display given in the ValueSet
    filters: tuple[tuple[str, str, str], ...]

    def selects(self, code: str) -> bool:
        if code not in self.cs.concepts:
            return False
        if self.concepts is not None:
            return code in self.concepts
        return all(_holds(self.cs, f, code) for f in self.filters)

    def codes(self) -> Iterator[str]:
        """The selected codes, in the ValueSet's order for a list, else in the code system's."""
        if self.concepts is not None:
            yield from (c for c in self.concepts if c in self.cs.concepts)
            return
        tree = next((f for f in self.filters if f[0] in ("concept", "code") and f[1] != "="), None)
        if tree is not None:  # walk down from the named code instead of testing every code
            root = [tree[2]] if tree[1] == "is-a" and tree[2] in self.cs.concepts else []
            candidates: Iterator[str] | list[str] = [*root, *descendants(self.cs, tree[2])]
        else:
            candidates = iter(self.cs.concepts)
        yield from (c for c in candidates if all(_holds(self.cs, f, c) for f in self.filters))


def _rules(valueset: dict[str, Any], part: str) -> list[_Rule]:
    compose = valueset.get("compose")
    if not isinstance(compose, dict):
        if part == "include":
            raise UnsupportedCompose(f"ValueSet {valueset.get('url')!r} has no compose")
        return []
    out = []
    for rule in compose.get(part, ()):
        if not isinstance(rule, dict) or rule.get("valueSet"):
            raise UnsupportedCompose(f"compose.{part} of another ValueSet is not supported")
        system = rule.get("system")
        if not isinstance(system, str):
            raise UnsupportedCompose(f"compose.{part} without a system is not supported")
        cs = loaded_system(f"{system}|{rule['version']}" if isinstance(rule.get("version"), str) else system)
        if rule.get("concept") and rule.get("filter"):
            raise UnsupportedCompose(f"compose.{part} has both concept and filter (vsd-3)")
        listed = None
        if rule.get("concept"):
            listed = {c["code"]: c.get("display") for c in rule["concept"] if isinstance(c, dict) and "code" in c}
        out.append(_Rule(cs, listed, tuple(_check_filter(cs, f) for f in rule.get("filter", ()))))
    return out


_WORD = re.compile(r"\w+")


@lru_cache(maxsize=32)
def _words(system: str) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Per code, the folded words of its display and of each designation (computed once per system)."""
    cs = code_system(system)
    concepts = cs.concepts if cs else {}
    return {code: tuple(tuple(_WORD.findall(normalise(text)))
                        for text in [c.get("display", "")] + [d["value"] for d in c.get("designation", ())])
            for code, c in concepts.items()}


def _text_filter(text: str | None) -> tuple[str, tuple[str, ...]] | None:
    if text is None or not text.strip():
        return None
    return text.strip().casefold(), tuple(_WORD.findall(normalise(text)))


def _matches_text(system: str, code: str, wanted: tuple[str, tuple[str, ...]]) -> bool:
    """The code starts with the filter, or every word of it starts a word of one display (the
    Vietnamese one or a designation), case-, accent- and ``đ``-insensitively: ``ha noi`` finds
    "Thành phố Hà Nội", ``dai thao duong`` the diabetes codes, ``E11`` E11 and its subdivisions."""
    raw, words = wanted
    if code.casefold().startswith(raw):
        return True
    return bool(words) and any(all(any(w.startswith(x) for w in shown) for x in words)
                               for shown in _words(system).get(code, ()))


def expand(valueset: dict[str, Any], filter: str | None = None, count: int | None = None, offset: int = 0,
           display_language: str | None = None) -> Expansion:
    """The codes of ``valueset`` (a ValueSet resource) that match the text ``filter``, ``count`` of
    them from ``offset`` (all when ``count`` is ``None``), each shown in ``display_language``.

    ``compose.include`` and ``exclude`` rules name a loaded code system, with a ``concept`` list or
    ``filter`` (:data:`FILTER_OPS`; ``is-a`` and ``descendent-of`` follow the ``parent`` property).
    Raises :class:`UnknownSystem` for a code system that is not loaded and
    :class:`UnsupportedCompose` for a rule this cannot evaluate.
    """
    includes, excludes = _rules(valueset, "include"), _rules(valueset, "exclude")
    wanted = _text_filter(filter)
    selected: list[Entry] = []
    seen: set[tuple[str, str]] = set()
    for rule in includes:
        url, version = rule.cs.url, rule.cs.resource.get("version")
        for code in rule.codes():
            if (url, code) in seen or any(x.cs is rule.cs and x.selects(code) for x in excludes):
                continue
            seen.add((url, code))
            if wanted is not None and not _matches_text(url, code, wanted):
                continue
            given = rule.concepts.get(code) if rule.concepts else None
            shown = _display_in(rule.cs.concepts[code], display_language) if display_language or not given else given
            selected.append(Entry(url, version, code, shown))
    used = tuple(dict.fromkeys(f"{r.cs.url}|{r.cs.resource['version']}" if r.cs.resource.get("version")
                               else r.cs.url for r in includes))
    offset = max(offset, 0)
    end = None if count is None else offset + max(count, 0)
    return Expansion(len(selected), offset, tuple(selected[offset:end]), used)


def validate_in_valueset(valueset: dict[str, Any], code: str, system: str | None = None,
                         display: str | None = None) -> tuple[bool, str, str | None]:
    """``(result, message, display)``: is ``code`` of ``system`` in ``valueset``, and ``display``
    (when given) one of its displays? Without ``system``, the ValueSet must draw on one code system.

    Tests the compose rules for this one code instead of expanding, so a code of ICD-10 costs a
    dictionary access. Raises as :func:`expand` does.
    """
    includes, excludes = _rules(valueset, "include"), _rules(valueset, "exclude")
    url = valueset.get("url")
    systems = list(dict.fromkeys(r.cs.url for r in includes))
    if system is None:
        if len(systems) != 1:
            return False, f"code {code!r} has no system, and {url} draws on {len(systems)} code systems", None
        system = systems[0]
    system = system.split("|", 1)[0]
    if system not in systems:
        return False, f"{url} has no codes of {system}", None
    cs = loaded_system(system)
    concept = cs.concepts.get(code)
    if concept is None:
        return False, f"code {code!r} is not in {system}", None
    shown = str(concept.get("display", ""))
    if not any(r.cs is cs and r.selects(code) for r in includes) or any(r.cs is cs and r.selects(code)
                                                                          for r in excludes):
        return False, f"code {code!r} of {system} is not in {url}", shown
    ok, message = validate_code(system, code, display)
    if not ok:
        return False, message, shown
    return True, f"code {code!r} of {system} is in {url}: {shown}", shown
