"""The token modifiers that need a terminology service: ``:in``, ``:not-in``, ``:below``, ``:above``.

Each becomes plain token values before a backend sees it (search.html#modifiers): ``:in`` the
codes of a ValueSet, ``:below`` a code and every code it subsumes, ``:above`` a code and every
code that subsumes it, in the code systems and value sets the server ships
(:mod:`fhir_hub.terminology`). So the SQL compiler and the in-memory matcher need nothing new,
and the answer is what a search for those codes gives. A value set or code system the server does
not hold is a 400 naming it (the search cannot be evaluated, which is not "no match"); a value set
larger than :data:`MAX_CODES` is a 400 too-costly rather than a statement with thousands of terms.
"""

from __future__ import annotations

from itertools import islice

from fhir_hub import terminology
from fhir_hub.errors import FhirError, error
from fhir_hub.search.query import TokenValue
from fhir_hub.terminology.operations import ancestors, descendants

#: The most codes one modifier value may stand for.
MAX_CODES = 2_000
#: Matches no stored token: what an empty value set stands for.
NOTHING = TokenValue("urn:fhir-hub:no-code", "")
#: ICD-10's dagger and asterisk marks (``E11.2†``): records often carry the code without them,
#: so a marked code also stands for its bare form.
_MARKS = "†*"


def _tokens(system: str, codes: list[str]) -> list[TokenValue]:
    out = [TokenValue(system, c) for c in codes]
    out += [TokenValue(system, c.rstrip(_MARKS)) for c in codes if c.endswith(tuple(_MARKS))]
    return out


def codes_in(url: str, where: str) -> tuple[TokenValue, ...]:
    """The codes of the ValueSet ``url`` (``|version`` ignored, as the catalogue does)."""
    valueset = terminology.value_set(url)
    if valueset is None:
        raise FhirError(400, error("not-supported", f"value set {url!r} is not known to this server", where))
    try:
        expansion = terminology.expand(valueset, count=MAX_CODES + 1)
    except (terminology.UnknownSystem, terminology.UnsupportedCompose) as exc:
        raise FhirError(400, error("not-supported", f"value set {url!r} cannot be expanded here: {exc}", where)) from None
    if expansion.total > MAX_CODES:
        raise FhirError(400, error("too-costly", f"value set {url!r} has {expansion.total:,} codes; :in and :not-in "
                                   f"take value sets of at most {MAX_CODES:,}", where))
    return tuple(v for e in expansion.contains for v in _tokens(e.system, [e.code])) or (NOTHING,)


def subsumed(value: TokenValue, direction: str, where: str) -> tuple[TokenValue, ...]:
    """``value`` and the codes below it (``direction`` "below") or above it ("above") in its
    code system's hierarchy; a code the system does not have stands for itself."""
    if not value.system or value.code is None:
        raise FhirError(400, error("invalid", f":{direction} takes system|code (the hierarchy is the code system's)",
                                   where))
    cs = terminology.code_system(value.system)
    if cs is None:
        raise FhirError(400, error("not-supported", f"code system {value.system!r} is not known to this server, so "
                                   f":{direction} cannot be evaluated", where))
    codes = [value.code]
    if value.code not in cs.concepts:  # a bare code for a marked one (E11.2 for E11.2†)
        codes = [c for c in (value.code + m for m in _MARKS) if c in cs.concepts] or codes
    if codes[0] in cs.concepts:
        codes += (list(islice(descendants(cs, codes[0]), MAX_CODES + 1)) if direction == "below"
                  else ancestors(cs, codes[0]))
    if len(codes) > MAX_CODES:
        raise FhirError(400, error("too-costly", f"{value.system}|{value.code} has {len(codes):,} codes "
                                   f"{direction} it; at most {MAX_CODES:,} are searched", where))
    return tuple(dict.fromkeys([TokenValue(value.system, value.code), *_tokens(value.system, codes)]))
