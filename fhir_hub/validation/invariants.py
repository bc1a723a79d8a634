"""The invariants (``constraint.expression``) of the R4 core StructureDefinitions, compiled once.

Why here and not in the structural pass: FHIRPath is far slower than the structural walker, so the
invariants run only when a resource is checked against its core profile (:mod:`.core`), not on the
ingest hot path. The rules come from ``data/r4-invariants.json`` (``tools/build_r4_rules.py``), keyed
by element path (``Patient``, ``Patient.contact``, ``Quantity``, ``Narrative.div``).

Most rules are evaluated by fhirpathpy, each expression compiled the first time it is needed. The ones
every resource meets, or that fhirpathpy cannot evaluate as the spec means them, are native here
(:data:`_NATIVE`), each next to the expression it stands for:

* ``ele-1``, ``ext-1``, ``ref-1``, ``qty-3`` and ``dom-2``..``dom-6``: on (nearly) every resource, so
  run natively for speed;
* ``txt-1``/``txt-2``: ``htmlChecks()`` is not a FHIRPath function fhirpathpy knows;
* ``ref-1``: a reference ``#`` alone points to the container resource (R4 References, contained
  resources: a contained resource refers to its container by ``#``), which the expression forgets;
* ``rng-2``: fhirpathpy cannot compare Quantities (``low <= high``);
* ``ctm-1``: ``resolve()``, which fhirpathpy lacks, answered from the contained resources;
* ``que-7``: the expression's type name is wrong in R4 (see :func:`_que7`).

``hasValue()``, which fhirpathpy 2.2 lacks too, is given to it as a user function; ``trace()`` is
silenced.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from html.parser import HTMLParser
from importlib import resources
from typing import Any

import orjson

__all__ = ["Rule", "rules"]

# (value, resource, root resource) -> does the rule hold
Holds = Callable[[Any, dict[str, Any], dict[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class Rule:
    key: str
    severity: str
    expression: str
    human: str
    holds: Holds


# --------------------------------------------------------------------------- native rules


def _ele1(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
    # hasValue() or (children().count() > id.count())
    return not isinstance(v, dict) or any(k != "id" for k in v)


def _ext1(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
    # extension.exists() != value.exists(); a primitive value with only extensions (``_valueString``) exists
    return ("extension" in v) != any(k.startswith(("value", "_value")) for k in v)


def _ref1(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
    # reference.startsWith('#').not() or (reference.substring(1) in %rootResource.contained.id)
    ref = v.get("reference")
    if not isinstance(ref, str) or not ref.startswith("#") or ref == "#":
        return True
    return any(isinstance(c, dict) and c.get("id") == ref[1:] for c in root.get("contained") or ())


def _qty3(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
    # code.empty() or system.exists()
    return "code" not in v or "system" in v


def _dom2(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
    # contained.contained.empty()
    return not any(isinstance(c, dict) and "contained" in c for c in v.get("contained") or ())


def _local_refs(value: Any, found: set[str]) -> None:
    if isinstance(value, str):
        if value.startswith("#"):
            found.add(value)
    elif isinstance(value, dict):
        for k, item in value.items():
            if k != "id":
                _local_refs(item, found)
    elif isinstance(value, list):
        for item in value:
            _local_refs(item, found)


def _dom3(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
    # every contained resource is referenced ('#' + id) from elsewhere in the resource, or some
    # element refers to the container ('#'); the references, canonicals, uris and urls the
    # expression collects are the '#'-strings of the resource (ids excluded)
    contained = v.get("contained")
    if not contained:
        return True
    found: set[str] = set()
    _local_refs(v, found)
    if "#" in found:
        return True
    return all(not isinstance(c, dict) or f"#{c.get('id')}" in found for c in contained)


def _dom4(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
    # contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()
    for c in v.get("contained") or ():
        meta = c.get("meta") if isinstance(c, dict) else None
        if isinstance(meta, dict) and ("versionId" in meta or "lastUpdated" in meta):
            return False
    return True


def _dom5(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
    # contained.meta.security.empty()
    return not any(isinstance(c, dict) and isinstance(c.get("meta"), dict) and "security" in c["meta"]
                   for c in v.get("contained") or ())


def _dom6(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
    # text.`div`.exists()
    text = v.get("text")
    return isinstance(text, dict) and "div" in text


# Narrative: the XHTML elements and attributes allowed (R4 2.4 Narrative, "basic html formatting
# elements ... of the HTML 4.0 standard, <a> elements, images and internally contained style")
_HTML_ELEMENTS = frozenset(
    "a abbr acronym b big blockquote br caption cite code col colgroup dd dfn div dl dt em h1 h2 h3 h4 h5 h6 hr "
    "i img li ol p pre q samp small span strong sub sup table tbody td tfoot th thead tr tt ul var".split())
_HTML_ATTRIBUTES = frozenset(
    "abbr accesskey align alt axis bgcolor border cellhalign cellpadding cellspacing cellvalign char charoff charset "
    "cite class colspan compact coords dir frame headers height href hreflang hspace id lang language longdesc name "
    "nowrap rel rev rowspan rules scope shape span src start style summary tabindex title type valign value vspace "
    "width xml:lang xmlns".split())


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ok = True
        self.content = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        name = tag.split(":")[-1]
        if name not in _HTML_ELEMENTS:
            self.ok = False
        if name == "img":
            self.content = True
        for attr, _value in attrs:
            if attr not in _HTML_ATTRIBUTES and not attr.startswith("xmlns:"):
                self.ok = False

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.content = True


@lru_cache(maxsize=1024)  # narratives repeat across a file's resources; bounded, as the input is anyone's
def _html(div: str) -> tuple[bool, bool]:
    parser = _Html()
    parser.feed(div)
    parser.close()
    return parser.ok, parser.content


def _txt1(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
    # htmlChecks(): only the allowed elements and attributes
    return not isinstance(v, str) or _html(v)[0]


def _txt2(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
    # htmlChecks(): some non-whitespace content (text or an image)
    return not isinstance(v, str) or _html(v)[1]


def _quantity_le(low: Any, high: Any) -> bool:
    """``low <= high`` for two Quantities; unknown (so the rule holds) unless both have a value in the
    same unit: converting UCUM units is not this module's job."""
    lv, hv = low.get("value"), high.get("value")
    if not isinstance(lv, int | float) or not isinstance(hv, int | float):
        return True
    if (low.get("system"), low.get("code", low.get("unit"))) != (high.get("system"), high.get("code", high.get("unit"))):
        return True
    return bool(lv <= hv)


def _rng2(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
    # low.empty() or high.empty() or (low <= high)
    low, high = v.get("low"), v.get("high")
    return not isinstance(low, dict) or not isinstance(high, dict) or _quantity_le(low, high)


def _ctm1(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
    # onBehalfOf.exists() implies (member.resolve().iif(empty(), true, ofType(Practitioner).exists()))
    if "onBehalfOf" not in v:
        return True
    member = v.get("member")
    ref = member.get("reference") if isinstance(member, dict) else None
    if not isinstance(ref, str):
        return True
    if ref.startswith("#"):
        target = next((c for c in root.get("contained") or () if isinstance(c, dict) and c.get("id") == ref[1:]), None)
        return target is None or target.get("resourceType") == "Practitioner"
    from fhir_hub.validation.references import literal_type

    kind = literal_type(ref)
    return kind is None or kind == "Practitioner"


def _que7(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
    # operator = 'exists' implies (answer is Boolean): R4 writes the System type ``Boolean`` where the
    # element's type is FHIR ``boolean`` (R5 corrects it to ``answer is boolean``), so a strict engine
    # fails every correct enableWhen; the rule means an ``answerBoolean``
    return v.get("operator") != "exists" or "answerBoolean" in v or "_answerBoolean" in v


_NATIVE: dict[str, Holds] = {
    "rng-2": _rng2, "ctm-1": _ctm1, "que-7": _que7,
    "ele-1": _ele1, "ext-1": _ext1, "ref-1": _ref1, "qty-3": _qty3, "dom-2": _dom2, "dom-3": _dom3,
    "dom-4": _dom4, "dom-5": _dom5, "dom-6": _dom6, "txt-1": _txt1, "txt-2": _txt2,
}


# --------------------------------------------------------------------------- FHIRPath rules

_MATCHES = re.compile(r"(\w+)\.matches\('([^']*)'\)")


def _has_value(inputs: list[Any]) -> list[bool]:
    return [len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], dict | list)]


_OPTIONS: dict[str, Any] = {
    "userInvocationTable": {"hasValue": {"fn": _has_value, "arity": {0: []}}},
    "traceFn": lambda *args: None,
}


@cache
def _fhirpath(expression: str, base: str) -> Holds:
    import fhirpathpy
    from fhirpathpy.engine.nodes import ResourceNode
    from fhirpathpy.models import models

    compiled = fhirpathpy.compile(expression, models["r4"], options=_OPTIONS)

    def holds(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
        result = compiled(ResourceNode.create_node(v, base), {"resource": res, "rootResource": root})
        return all(x is True for x in result) if result else True

    return holds


def _matches(name: str, pattern: str) -> Holds:
    """``name.matches('re')``: the regex is unanchored in FHIRPath, so ``search``."""
    search = re.compile(pattern).search

    def holds(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
        value = v.get(name) if isinstance(v, dict) else None
        items = value if isinstance(value, list) else [value]
        return all(not isinstance(x, str) or search(x) is not None for x in items)

    return holds


@cache
def _data() -> dict[str, list[list[str]]]:
    blob = resources.files(__package__).joinpath("data", "r4-invariants.json").read_bytes()
    data: dict[str, list[list[str]]] = orjson.loads(blob)
    return data


def _lazy(expression: str, base: str) -> Holds:
    def holds(v: Any, res: dict[str, Any], root: dict[str, Any]) -> bool:
        return _fhirpath(expression, base)(v, res, root)

    return holds


@cache
def rules(path: str) -> tuple[Rule, ...]:
    """The invariants on element ``path`` (a type, a backbone path, or ``Type.element``), compiled."""
    out: list[Rule] = []
    base = path[:-3] if path.endswith("[x]") else path
    for key, severity, expression, human in _data().get(path, ()):
        holds = _NATIVE.get(key)
        if holds is None:
            m = _MATCHES.fullmatch(expression)
            holds = _matches(m.group(1), m.group(2)) if m else _lazy(expression, base)
        out.append(Rule(key, severity, expression, human, holds))
    return tuple(out)
