"""``$lookup``, ``$validate-code`` and ``$translate`` as pure functions over the loaded catalogue.

Why pure: the REST handlers, the validator's binding checks and the stewards' CLI all need the same
answers; keeping HTTP out of here lets each of them call these directly and lets the tests check
codes without a server.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from fhir_hub.terminology.catalogue import catalogue, code_system, concept_map


class UnknownSystem(LookupError):
    """No CodeSystem (or ConceptMap) with that URL is loaded."""


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


def translate(code: str, url: str | None = None, source: str | None = None,
              target: str | None = None) -> list[Match]:
    """The targets of ``code`` in the ConceptMap ``url``, or in every loaded map whose groups go
    from ``source`` (the code's system) to ``target`` (either may be omitted when ``url`` is given).

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
        for (src, tgt), elements in cm.elements.items():
            if (source and src != source.split("|", 1)[0]) or (target and tgt != target.split("|", 1)[0]):
                continue
            found = True
            element = elements.get(code)
            for t in (element or {}).get("target", []):
                matches.append(Match(t.get("equivalence", "equivalent"), tgt, t["code"], t.get("display"),
                                     t.get("comment"), cm.url))
    if not found:
        raise UnknownSystem(url or f"{source or '*'} -> {target or '*'}")
    return matches
