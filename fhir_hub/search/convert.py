"""Index rows of JSON values: one converter per (search parameter type, FHIR type).

``search/extract.py`` picks a converter once per route of a compiled expression, from the FHIR
type the route reaches, so converting a value is a few dict reads; the row shapes are listed in
that module's docstring. A converter serves every parameter that reaches the same values
(``name`` and ``phonetic`` on Patient.name, ``code`` and ``combo-code`` on Observation.code): it
reads the value once and adds a row per parameter code. Values from fhirpathpy may come without
a type: :func:`infer_type` guesses it from their shape.

Values of the wrong shape (extraction also runs with validation off) give no rows, never an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache, lru_cache
from typing import Any

from fhir_hub import definitions
from fhir_hub.search import ucum
from fhir_hub.search.dates import period
from fhir_hub.search.text import composed, normalise

__all__ = ["DATE_MAX", "DATE_MIN", "Codes", "Emit", "IndexRow", "Out", "converter", "infer_type", "PARTS",
           "parts_converter", "reference_targets"]

IndexRow = tuple[str, str, Any, Any, Any]
#: Rows of one resource, as an insertion-ordered set.
Out = dict[IndexRow, None]
#: Adds the rows of a JSON value (an item, or a JSON list of items) to ``Out``.
Emit = Callable[[Any, Out], None]
#: The parameter codes one converter adds rows for.
Codes = tuple[str, ...]

#: Open ends of a Period: 0001-01-01T00:00:00Z and the last µs of 9999.
DATE_MIN = -62135596800000000
DATE_MAX = 253402300799999999

_period = lru_cache(maxsize=16384)(period)

_STRINGS = frozenset({"string", "markdown", "code", "id", "uri", "url", "canonical", "oid", "uuid"})
_URIS = frozenset({"uri", "url", "canonical", "oid", "uuid"})
_NUMBERS = frozenset({"integer", "decimal", "positiveInt", "unsignedInt"})
_QUANTITIES = frozenset({"Quantity", "Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity"})
#: The parts of a HumanName or an Address that a string search matches.
PARTS = {"HumanName": ("given", "family", "prefix", "suffix", "text"),
         "Address": ("line", "city", "district", "state", "postalCode", "country", "text")}
_CURRENCY_SYSTEM = "urn:iso:std:iso:4217"


def _str(value: Any) -> str:
    """``value`` if it is a string, else ``""`` (an absent system, or a malformed one)."""
    return value if value.__class__ is str else ""


def _items(value: Any) -> Iterable[Any]:
    """A JSON value as a sequence of items (the emitters inline this, for speed)."""
    return value if value.__class__ is list else (value,)


# --- converters: each adds its rows under every code in ``ps`` --------------------------------

def _string_emit(ps: Codes, leaf: str) -> Emit | None:
    if leaf in _STRINGS:
        def strings(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                if v.__class__ is str:
                    n = normalise(v)
                    for p in ps:
                        out["string", p, n, composed(v), None] = None
        return strings
    parts = PARTS.get(leaf)
    return None if parts is None else parts_converter(tuple((part, ps) for part in parts))


@cache
def parts_converter(parts: tuple[tuple[str, Codes], ...]) -> Emit:
    """String rows of HumanName/Address values, each part under the codes that want it:
    ``name`` wants every part, ``family`` only ``family`` (one pass serves both)."""
    wanted: dict[str, Codes] = {}
    for part, ps in parts:
        wanted[part] = wanted.get(part, ()) + tuple(p for p in ps if p not in wanted.get(part, ()))

    def parted(value: Any, out: Out) -> None:
        for v in (value if value.__class__ is list else (value,)):
            if v.__class__ is dict:
                for part, s in v.items():
                    ps = wanted.get(part)
                    if ps is None:
                        continue
                    for x in (s if s.__class__ is list else (s,)):
                        if x.__class__ is str:
                            n = normalise(x)
                            for p in ps:
                                out["string", p, n, composed(x), None] = None
    return parted


def _text(out: Out, pts: Codes, text: Any) -> None:
    if text.__class__ is str:
        n = normalise(text)
        for p in pts:
            out["string", p, n, composed(text), None] = None


def _coding(out: Out, ps: Codes, pts: Codes, c: Any) -> None:
    if c.__class__ is dict:
        code = c.get("code")
        if code.__class__ is str:
            system = _str(c.get("system"))
            for p in ps:
                out["token", p, system, code, None] = None
        display = c.get("display")
        if display is not None:
            _text(out, pts, display)


def _token_emit(ps: Codes, leaf: str) -> Emit | None:
    pts = tuple(p + ":text" for p in ps)
    if leaf in _STRINGS:
        def strings(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                if v.__class__ is str:
                    for p in ps:
                        out["token", p, "", v, None] = None
        return strings
    if leaf == "boolean":
        def booleans(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                if v.__class__ is bool:
                    for p in ps:
                        out["token", p, "", "true" if v else "false", None] = None
        return booleans
    if leaf == "Coding":
        def codings(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                _coding(out, ps, pts, v)
        return codings
    if leaf == "CodeableConcept":
        def concepts(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                if v.__class__ is dict:
                    codings = v.get("coding")
                    if codings.__class__ is list:
                        for c in codings:
                            _coding(out, ps, pts, c)
                    text = v.get("text")
                    if text is not None:
                        _text(out, pts, text)
        return concepts
    if leaf == "Identifier":
        pos = tuple(p + ":of-type" for p in ps)

        def identifiers(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                if v.__class__ is not dict:
                    continue
                val = v.get("value")
                kind = v.get("type")
                if val.__class__ is str:
                    system = _str(v.get("system"))
                    for p in ps:
                        out["token", p, system, val, None] = None
                    if kind.__class__ is dict:
                        for c in _items(kind.get("coding", ())):
                            if c.__class__ is dict and c.get("code").__class__ is str:
                                of_type = f"{_str(c.get('system'))}|{c['code']}"
                                for p in pos:
                                    out["token", p, of_type, val, None] = None
                if kind.__class__ is dict:
                    _text(out, pts, kind.get("text"))
        return identifiers
    if leaf == "ContactPoint":
        def contacts(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                if v.__class__ is dict:
                    val = v.get("value")
                    if val.__class__ is str:
                        for p in ps:
                            out["token", p, "", val, None] = None
        return contacts
    return None


def _period_bounds(v: Any) -> tuple[int, int] | None:
    if v.__class__ is not dict:
        return None
    start, end = v.get("start"), v.get("end")
    low = _period(start) if start.__class__ is str else None
    high = _period(end) if end.__class__ is str else None
    if low is None and high is None:
        return None
    return (low[0] if low else DATE_MIN), (high[1] if high else DATE_MAX)


def _date_emit(ps: Codes, leaf: str) -> Emit | None:
    if leaf in ("date", "dateTime", "instant", "string"):
        def dates(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                if v.__class__ is str:
                    span = _period(v)
                    if span is not None:
                        for p in ps:
                            out["date", p, span[0], span[1], None] = None
        return dates
    if leaf == "Period":
        def periods(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                span = _period_bounds(v)
                if span is not None:
                    for p in ps:
                        out["date", p, span[0], span[1], None] = None
        return periods
    if leaf == "Timing":
        # Each event, and the outer limits of the repeat (search.html#date: the schedule
        # details are ignored and only the outer limits matter).
        def timings(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                if v.__class__ is not dict:
                    continue
                spans = [_period(e) for e in _items(v.get("event", ())) if e.__class__ is str]
                repeat = v.get("repeat")
                if repeat.__class__ is dict:
                    spans.append(_period_bounds(repeat.get("boundsPeriod")))
                for span in spans:
                    if span is not None:
                        for p in ps:
                            out["date", p, span[0], span[1], None] = None
        return timings
    return None


def _number(v: Any) -> float | None:
    cls = v.__class__
    return float(v) if cls is int or cls is float else None


def _number_emit(ps: Codes, leaf: str) -> Emit | None:
    if leaf in _NUMBERS:
        def numbers(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                n = _number(v)
                if n is not None:
                    for p in ps:
                        out["number", p, n, None, None] = None
        return numbers
    if leaf in _QUANTITIES or leaf == "Range":
        key = "low" if leaf == "Range" else None

        def quantity_values(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                if key is not None and v.__class__ is dict:
                    v = v.get(key)
                n = _number(v.get("value")) if v.__class__ is dict else None
                if n is not None:
                    for p in ps:
                        out["number", p, n, None, None] = None
        return quantity_values
    return None


def _quantity(out: Out, ps: Codes, q: Any) -> None:
    if q.__class__ is not dict:
        return
    n = _number(q.get("value"))
    if n is None:
        return
    system = _str(q.get("system"))
    code = _str(q.get("code")) or _str(q.get("unit"))
    canon = ucum.canonical(n, code) if system == ucum.SYSTEM and code else None
    for p in ps:
        out["quantity", p, system, code, n] = None
        if canon is not None:  # kept apart: a query without units must not meet 61.5 kg as 61500 g
            out["quantity", p + ":canonical", system, canon[1], canon[0]] = None


def _quantity_emit(ps: Codes, leaf: str) -> Emit | None:
    if leaf in _QUANTITIES:
        def quantities(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                _quantity(out, ps, v)
        return quantities
    if leaf == "Range":
        # A range is indexed as its two ends: comparisons against either end still work; ``eq``
        # inside the range does not (the row shape holds one value).
        def ranges(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                if v.__class__ is dict:
                    _quantity(out, ps, v.get("low"))
                    _quantity(out, ps, v.get("high"))
        return ranges
    if leaf == "Money":
        def money(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                if v.__class__ is dict:
                    n = _number(v.get("value"))
                    if n is not None:
                        for p in ps:
                            out["quantity", p, _CURRENCY_SYSTEM, _str(v.get("currency")), n] = None
        return money
    if leaf == "SampledData":
        return lambda value, out: None  # a series, not one value: nothing a quantity can match
    return None


@lru_cache(maxsize=65536)
def reference_targets(ref: str) -> tuple[str, ...]:
    """Index targets of a ``Reference.reference``: ``Type/id`` (version dropped), an absolute URL
    as written plus its ``Type/id`` tail, nothing for a contained ``#id``."""
    if not ref or ref.startswith("#"):
        return ()
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if ":" in parts[0]:  # absolute: http://..., urn:uuid:...
        if len(parts) >= 2 and parts[-1] and definitions.is_resource_type(parts[-2]):
            return ref, f"{parts[-2]}/{parts[-1]}"
        return (ref,)
    return ("/".join(parts),)


def _reference_emit(ps: Codes, leaf: str) -> Emit | None:
    if leaf == "Reference":
        pis = tuple(p + ":identifier" for p in ps)

        def references(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                if v.__class__ is not dict:
                    continue
                ref = v.get("reference")
                if ref.__class__ is str:
                    for target in reference_targets(ref):
                        for p in ps:
                            out["reference", p, target, None, None] = None
                ident = v.get("identifier")
                if ident.__class__ is dict:
                    val = ident.get("value")
                    if val.__class__ is str:
                        system = _str(ident.get("system"))
                        for p in pis:
                            out["token", p, system, val, None] = None
        return references
    if leaf in _URIS or leaf == "string":  # "string": a URL from fhirpathpy, which lost its type
        def canonicals(value: Any, out: Out) -> None:
            for v in (value if value.__class__ is list else (value,)):
                if v.__class__ is str and v:
                    url = v.split("|", 1)[0]
                    for p in ps:
                        out["reference", p, url, None, None] = None
        return canonicals
    return None


def _uri_emit(ps: Codes, leaf: str) -> Emit | None:
    if leaf not in _URIS and leaf != "string":
        return None

    def uris(value: Any, out: Out) -> None:
        for v in (value if value.__class__ is list else (value,)):
            if v.__class__ is str:
                for p in ps:
                    out["uri", p, v, None, None] = None
    return uris


_EMITTERS: dict[str, Callable[[Codes, str], Emit | None]] = {
    "string": _string_emit, "token": _token_emit, "date": _date_emit, "number": _number_emit,
    "quantity": _quantity_emit, "reference": _reference_emit, "uri": _uri_emit,
}


@cache
def converter(codes: Codes, param_type: str, fhir_type: str) -> Emit | None:
    """The row maker for values of ``fhir_type`` under the ``param_type`` parameters ``codes``
    (``None``: such values give no rows)."""
    make = _EMITTERS.get(param_type)
    return None if make is None else make(codes, fhir_type)


# --- types of values that come without one (fhirpathpy results) -------------------------------

_CONTACT_SYSTEMS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})


def infer_type(value: Any) -> str | None:
    """The FHIR type a JSON value most likely has, from its shape."""
    cls = value.__class__
    if cls is str:
        return "string"
    if cls is bool:
        return "boolean"
    if cls is int:
        return "integer"
    if cls is float:
        return "decimal"
    if cls is not dict:
        return None
    keys = value.keys()
    if "resourceType" in keys:
        return "Resource"
    if "coding" in keys:
        return "CodeableConcept"
    if keys & {"given", "family", "prefix", "suffix"}:
        return "HumanName"
    if keys & {"line", "city", "district", "state", "postalCode", "country"}:
        return "Address"
    if "reference" in keys:
        return "Reference"
    if keys & {"start", "end"}:
        return "Period"
    if keys & {"event", "repeat"}:
        return "Timing"
    if keys & {"low", "high"}:
        return "Range"
    if "currency" in keys:
        return "Money"
    if "origin" in keys:
        return "SampledData"
    v = value.get("value")
    if v.__class__ in (int, float):
        return "Quantity"
    if v.__class__ is str:
        contact = _str(value.get("system")) in _CONTACT_SYSTEMS and not keys & {"type", "assigner"}
        return "ContactPoint" if contact else "Identifier"
    if "code" in keys:
        return "Coding"
    if "identifier" in keys:
        return "Reference"
    if "text" in keys:
        # Only a CodeableConcept is text alone; a HumanName or an Address (same string rows)
        # has its use or period beside it.
        return "HumanName" if keys & {"use", "period"} else "CodeableConcept"
    return None
