"""Query string → :class:`fhir_hub.search.query.Query` (search.html).

Parsing decides everything a backend should not have to: which parameter a name means, what its
values are as numbers, ranges and normalised strings, which chains and ``_has`` nest how, and
what is refused. Errors name the parameter, so the 400 says what and where.

Unknown parameters follow search.html#errors: ignored (and left out of the self link) unless the
client sends ``Prefer: handling=strict``. Conditional interactions always parse strictly —
ignoring a criterion there would update or delete the wrong resource.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from fhir_hub import definitions
from fhir_hub.errors import FhirError, error
from fhir_hub.search import dates, parameters, terminology, ucum
from fhir_hub.search.parameters import SearchParam
from fhir_hub.search.query import (
    AnyOf,
    Chain,
    Clause,
    CompositeValue,
    Criterion,
    DateValue,
    Has,
    Include,
    NumberValue,
    OfTypeValue,
    Prefix,
    QuantityValue,
    Query,
    ReferenceValue,
    SortKey,
    StringValue,
    TokenValue,
    UriValue,
    Value,
)
from fhir_hub.search.text import normalise

_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_MODIFIERS = {
    "string": {"exact", "contains", "missing"},
    "token": {"text", "not", "of-type", "missing", "in", "not-in", "above", "below"},
    "reference": {"identifier", "missing", "above", "below"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"above", "below", "missing"},
    "composite": {"missing"},
    "special": {"missing"},
}
#: Token modifiers answered through the terminology service (``search/terminology.py``).
_TERMINOLOGY = {"in", "not-in", "above", "below"}
#: Result parameters (search.html#return) and the transport ones every interaction accepts.
_RESULT = {"_sort", "_count", "_include", "_revinclude", "_total", "_summary", "_elements", "_contained",
           "_containedType", "_format", "_pretty", "_cursor", "_type"}
_RELATIVE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
#: Deepest chain or ``_has`` nesting accepted: enough for real queries, bounded for the planner.
MAX_DEPTH = 4


def split_or(raw: str) -> list[str]:
    """Split on commas not escaped with a backslash, then unescape (search.html#escaping)."""
    return [_unescape(p) for p in _split(raw, ",")]


def _split(raw: str, sep: str) -> list[str]:
    """``raw`` split on ``sep`` where no backslash escapes it."""
    if "\\" not in raw:  # nothing escaped: str.split, not a loop in Python over every character
        return raw.split(sep)
    parts: list[str] = []
    start = 0
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\":
            i += 2
            continue
        if ch == sep:
            parts.append(raw[start:i])
            start = i + 1
        i += 1
    parts.append(raw[start:])
    return parts


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _bad(what: str, where: str) -> FhirError:
    return FhirError(400, error("invalid", what, where))


# --- values -------------------------------------------------------------------------------------


def _prefix(raw: str) -> tuple[Prefix, str]:
    if len(raw) > 2 and raw[:2] in _PREFIXES and not raw[:2].isdigit():
        return raw[:2], raw[2:]  # type: ignore[return-value]
    return "eq", raw


def _decimal(text: str, where: str) -> tuple[float, float, float]:
    """The value and the inclusive range its significant digits imply (search.html#number)."""
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise _bad(f"{text!r} is not a number", where) from None
    if not d.is_finite():
        raise _bad(f"{text!r} is not a number", where)
    half = Decimal(5).scaleb(d.as_tuple().exponent - 1)  # type: ignore[operator]
    return float(d), float(d - half), float(d + half)


def _date(raw: str, where: str) -> DateValue:
    prefix, text = _prefix(raw)
    span = dates.period(text)
    if span is None:
        raise _bad(f"{text!r} is not a FHIR date, dateTime or instant", where)
    return DateValue(prefix, span[0], span[1])


def _number(raw: str, where: str) -> NumberValue:
    prefix, text = _prefix(raw)
    value, low, high = _decimal(text, where)
    return NumberValue(prefix, value, low, high)


def _quantity(raw: str, where: str) -> QuantityValue:
    parts = [_unescape(p) for p in _split(raw, "|")]
    if len(parts) not in (1, 3):
        raise _bad(f"{raw!r} is not [prefix]number[|system|code]", where)
    prefix, text = _prefix(parts[0])
    value, low, high = _decimal(text, where)
    system = parts[1] or None if len(parts) == 3 else None
    code = parts[2] or None if len(parts) == 3 else None
    if system == ucum.SYSTEM and code:
        canon = [ucum.canonical(v, code) for v in (value, low, high)]
        if all(c is not None for c in canon):
            (value, unit), (low, _), (high, _) = canon  # type: ignore[misc]
            return QuantityValue(prefix, value, low, high, system, unit, canonical=True)
    return QuantityValue(prefix, value, low, high, system, code)


def _token(raw: str, where: str) -> TokenValue:
    parts = _split(raw, "|")
    if len(parts) == 1:
        code = _unescape(parts[0])
        if not code:
            raise _bad("empty token value", where)
        return TokenValue(None, code)
    if len(parts) != 2:
        raise _bad(f"{raw!r} is not [system|]code", where)
    system, code = _unescape(parts[0]), _unescape(parts[1])
    if not system and not code:
        raise _bad("empty token value", where)
    return TokenValue(system, code or None)


def _terminology_clause(sp: SearchParam, modifier: str, raw: str, where: str) -> Clause:
    """``:in``/``:not-in`` (comma-separated ValueSet URLs) and ``:below``/``:above``
    (``system|code`` values) as the token values they stand for (``search/terminology.py``)."""
    parts = [_unescape(p) for p in _split(raw, ",")]
    if not all(parts):
        raise _bad(f":{modifier} takes a comma-separated list of non-empty values", where)
    if modifier in ("in", "not-in"):
        values = [v for url in parts for v in terminology.codes_in(url, where)]
    else:
        values = [v for part in _split(raw, ",") for v in terminology.subsumed(_token(part, where), modifier, where)]
    return Clause(sp.code, "token", tuple(dict.fromkeys(values)), "not" if modifier == "not-in" else None)


def _of_type(raw: str, where: str) -> OfTypeValue:
    parts = [_unescape(p) for p in _split(raw, "|")]
    if len(parts) != 3 or not all(parts):
        raise _bad(f"{raw!r} is not type-system|type-code|value", where)
    return OfTypeValue(parts[0], parts[1], parts[2])


def _reference(raw: str, sp: SearchParam, type_modifier: str | None, base_url: str, where: str) -> ReferenceValue:
    text = _unescape(raw)
    if base_url and text.startswith(base_url + "/"):
        text = text[len(base_url) + 1:]  # our own absolute URL is the local reference
    m = _RELATIVE.match(text)
    if m:
        if type_modifier and m.group(1) != type_modifier:
            raise _bad(f"{text!r} does not name a {type_modifier}", where)
        return ReferenceValue(f"{m.group(1)}/{m.group(2)}")
    if "://" in text or text.startswith("urn:"):
        return ReferenceValue(text)
    if not _ID.match(text):
        raise _bad(f"{text!r} is not an id, Type/id or absolute URL", where)
    if type_modifier:
        return ReferenceValue(f"{type_modifier}/{text}")
    types = sp.targets or tuple(sorted(definitions.resource_types()))
    return ReferenceValue(f"{types[0]}/{text}", types)


def _values(sp: SearchParam, modifier: str | None, raw: str, base_url: str, where: str,
            type_modifier: str | None) -> tuple[Value, ...]:
    out: list[Value] = []
    for item in _split(raw, ","):
        if item == "":
            raise _bad("empty value", where)
        out.append(_value(sp, modifier, item, base_url, where, type_modifier))
    return tuple(out)


def _value(sp: SearchParam, modifier: str | None, item: str, base_url: str, where: str,
           type_modifier: str | None) -> Value:
    kind = sp.type
    if kind == "string" or modifier == "text":
        text = _unescape(item)
        # :exact compares composed (NFC) text: a name typed decomposed still matches
        return StringValue(unicodedata.normalize("NFC", text) if modifier == "exact" else normalise(text))
    if kind == "token":
        return _of_type(item, where) if modifier == "of-type" else _token(item, where)
    if kind == "reference":
        if modifier == "identifier":
            return _token(item, where)
        return _reference(item, sp, type_modifier, base_url, where)
    if kind == "date":
        return _date(_unescape(item), where)
    if kind == "number":
        return _number(_unescape(item), where)
    if kind == "quantity":
        return _quantity(item, where)
    if kind == "uri":
        return UriValue(_unescape(item))
    if kind == "composite":
        return _composite(sp, item, base_url, where)
    raise FhirError(400, error("not-supported", f"search parameters of type {kind!r} are not supported", where))


def _composite(sp: SearchParam, item: str, base_url: str, where: str) -> CompositeValue:
    parts = _split(item, "$")
    if len(parts) != len(sp.components):
        raise _bad(f"{item!r} needs {len(sp.components)} '$'-separated parts", where)
    values: list[Value] = []
    for part, (url, _expr) in zip(parts, sp.components, strict=True):
        comp = parameters.by_url(url)
        if comp is None:
            raise FhirError(400, error("not-supported", f"component {url} of {sp.code} is unknown", where))
        values.append(_value(comp, None, part, base_url, where, None))
    return CompositeValue(tuple(values))


# --- parameters ---------------------------------------------------------------------------------


class _Parser:
    def __init__(self, rtype: str, base_url: str, strict: bool, where: str):
        self.rtype = rtype
        self.base_url = base_url
        self.strict = strict
        self.where = where
        self.ignored: list[str] = []

    def unknown(self, name: str, why: str) -> None:
        if self.strict:
            raise FhirError(400, error("not-supported", why, name))
        self.ignored.append(name)

    def criterion(self, rtype: str, name: str, raw: str, depth: int = 0) -> Criterion | _AllOf | None:
        if depth > MAX_DEPTH:
            raise _bad(f"chains and _has nest at most {MAX_DEPTH} levels", name)
        if name.startswith("_has:"):
            return self._has(rtype, name, raw, depth)
        head, dot, rest = name.partition(".")
        code, _, modifier = head.partition(":")
        sp = parameters.lookup(rtype, code)
        if sp is None:
            self.unknown(name, f"{rtype} has no search parameter {code!r}")
            return None
        if code in _unsupported(rtype):
            self.unknown(name, f"search parameter {code!r} of {rtype} is not supported by this server")
            return None
        if dot:
            return self._chain(rtype, sp, modifier or None, rest, raw, name, depth)
        members = _aliases(rtype).get(code)
        if members:
            return self._union(rtype, members, modifier or None, raw, name, depth)
        return self._clause(sp, modifier or None, raw, name)

    def _union(self, rtype: str, members: tuple[str, ...], modifier: str | None, raw: str, name: str,
               depth: int) -> Criterion | _AllOf | None:
        """A parameter that is the union of others (``combo-code``): any member matches — or, for
        ``:not`` and ``:missing=true``, every member does (returned as ``AllOf`` at the top level)."""
        parts = []
        for m in members:
            sp = parameters.lookup(rtype, m)
            assert sp is not None
            part = self._clause(sp, modifier, raw, name)
            if part is None:
                return None
            parts.append(part)
        if modifier == "not" or (modifier == "missing" and raw == "true"):
            if depth:
                raise FhirError(400, error("not-supported", f"{name} cannot be used inside a chain or _has", name))
            return _AllOf(tuple(parts))
        return AnyOf(tuple(parts))

    def _clause(self, sp: SearchParam, modifier: str | None, raw: str, where: str) -> Clause | None:
        type_modifier = None
        if modifier and sp.type == "reference" and definitions.is_resource_type(modifier):
            if sp.targets and modifier not in sp.targets:
                raise _bad(f"{sp.code} cannot reference a {modifier}", where)
            type_modifier, modifier = modifier, None
        if modifier is not None and modifier not in _MODIFIERS.get(sp.type, ()):
            raise _bad(f"modifier :{modifier} does not apply to {sp.type} parameter {sp.code}", where)
        if modifier in _TERMINOLOGY and sp.type == "token":
            return _terminology_clause(sp, modifier, raw, where)
        if modifier in _TERMINOLOGY and sp.type != "uri":
            raise FhirError(400, error("not-supported", f"modifier :{modifier} is not supported on reference "
                                       f"parameter {sp.code}", where))
        if modifier == "missing":
            if raw not in ("true", "false"):
                raise _bad(":missing takes true or false", where)
            return Clause(sp.code, sp.type, (), "missing", raw == "true")
        values = _values(sp, modifier, raw, self.base_url, where, type_modifier)
        return Clause(sp.code, sp.type, values, modifier)

    def _chain(self, rtype: str, sp: SearchParam, modifier: str | None, rest: str, raw: str, name: str,
               depth: int) -> Criterion | None:
        if sp.type != "reference":
            raise _bad(f"{sp.code} is not a reference parameter and cannot be chained", name)
        inner_code = rest.partition(".")[0].partition(":")[0]
        if modifier:
            if not definitions.is_resource_type(modifier):
                raise _bad(f"chain type {modifier!r} is not a resource type", name)
            targets: tuple[str, ...] = (modifier,)
        else:
            targets = tuple(t for t in (sp.targets or ()) if parameters.lookup(t, inner_code) is not None)
        if not targets:
            self.unknown(name, f"no target of {rtype}.{sp.code} has a search parameter {inner_code!r}")
            return None
        if len(targets) > 1:
            raise _bad(f"chain {name!r} is ambiguous between {', '.join(targets)}: "
                       f"name the type, as {sp.code}:{targets[0]}.{rest}", name)
        inner = self.criterion(targets[0], rest, raw, depth + 1)
        assert not isinstance(inner, _AllOf)  # refused below the top level
        return None if inner is None else Chain(sp.code, targets[0], inner)

    def _has(self, rtype: str, name: str, raw: str, depth: int) -> Criterion | None:
        parts = name.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise _bad("_has takes the form _has:Type:reference-param:search-param", name)
        _, source, param, rest = parts
        if not definitions.is_resource_type(source):
            raise _bad(f"{source!r} is not a resource type", name)
        sp = parameters.lookup(source, param)
        if sp is None or sp.type != "reference":
            raise _bad(f"{source} has no reference parameter {param!r}", name)
        if sp.targets and rtype not in sp.targets:
            raise _bad(f"{source}.{param} cannot reference a {rtype}", name)
        inner = self.criterion(source, rest, raw, depth + 1)
        assert not isinstance(inner, _AllOf)  # refused below the top level
        return None if inner is None else Has(source, param, inner)


def _common(p: _Parser, types: Sequence[str], name: str, raw: str, per_type: dict[str, list[Criterion]]) -> None:
    """A criterion of a ``_type`` search: it must apply to every type (search.html#all-types)."""
    code = name.partition(".")[0].partition(":")[0]
    if not code.startswith("_has") and any(parameters.lookup(t, code) is None for t in types):
        p.unknown(name, f"{code!r} is not a search parameter of every type in _type ({', '.join(types)})")
        return
    found = [(t, p.criterion(t, name, raw)) for t in types]
    if any(c is None for _, c in found):
        return  # ignored (lenient) for one type: ignored for all, and left out of the self link once
    for t, c in found:
        if isinstance(c, _AllOf):
            per_type[t].extend(c.criteria)
        elif c is not None:
            per_type[t].append(c)


def _unsupported(rtype: str) -> frozenset[str]:
    from fhir_hub.search import extract

    return extract.unsupported(rtype)


def _aliases(rtype: str) -> dict[str, tuple[str, ...]]:
    from fhir_hub.search import extract

    return extract.aliases(rtype)


@dataclass(frozen=True, slots=True)
class _AllOf:
    """Criteria that all must hold, produced by one query parameter; flattened into the query."""

    criteria: tuple[Criterion, ...]


def _include(rtype: str, raw: str, reverse: bool, iterate: bool, where: str) -> Include:
    parts = raw.split(":")
    if parts == ["*"]:
        return Include(rtype, "*", None, iterate, reverse)
    if len(parts) not in (2, 3) or not definitions.is_resource_type(parts[0]):
        raise _bad(f"{raw!r} is not SourceType:param[:TargetType]", where)
    source, param = parts[0], parts[1]
    if param != "*":
        sp = parameters.lookup(source, param)
        if sp is None or sp.type != "reference":
            raise _bad(f"{source} has no reference parameter {param!r}", where)
    target = parts[2] if len(parts) == 3 else None
    if target is not None and not definitions.is_resource_type(target):
        raise _bad(f"{target!r} is not a resource type", where)
    return Include(source, param, target, iterate, reverse)


def parse(types: Sequence[str], pairs: Sequence[tuple[str, str]], *, base_url: str = "", strict: bool = False,
          where: str = "search", max_count: int = 1000) -> Query:
    """Parse query ``pairs`` for a search over ``types`` (one type, or several for ``_type``)."""
    rtype = types[0]
    p = _Parser(rtype, base_url, strict, where)
    criteria: list[Criterion] = []
    per_type: dict[str, list[Criterion]] = {t: [] for t in types} if len(types) > 1 else {}
    ids: list[str] | None = None
    sort: list[SortKey] = []
    includes: list[Include] = []
    passthrough: list[tuple[str, str]] = []
    count = None
    total = summary = cursor = None
    elements: tuple[str, ...] = ()
    for name, raw in pairs:
        base = name.partition(":")[0]
        if name == "_id":
            found = [v for v in split_or(raw) if v]
            if not found:
                raise _bad("empty value", "_id")
            ids = found if ids is None else [i for i in ids if i in found]  # repeated _id: AND
            continue
        if base in _RESULT:
            if name == "_count":
                if not raw.isdigit():
                    raise _bad(f"_count {raw!r} is not a non-negative integer", "_count")
                count = min(int(raw), max_count)
            elif name == "_sort":
                for key in raw.split(","):
                    key = key.strip()
                    code = key.lstrip("-")
                    if not code:
                        raise _bad("empty sort key", "_sort")
                    if code not in ("_id", "_lastUpdated") and all(parameters.lookup(t, code) is None for t in types):
                        raise _bad(f"cannot sort by unknown parameter {code!r}", "_sort")
                    sort.append(SortKey(code, key.startswith("-")))
            elif base in ("_include", "_revinclude"):
                mod = name.partition(":")[2]
                if mod not in ("", "iterate", "recurse"):
                    raise _bad(f"unknown modifier :{mod}", name)
                includes.append(_include(rtype, raw, base == "_revinclude", bool(mod), name))
            elif name == "_total":
                if raw not in ("none", "estimate", "accurate"):
                    raise _bad("_total takes none, estimate or accurate", "_total")
                total = raw
            elif name == "_summary":
                if raw not in ("true", "false", "text", "data", "count"):
                    raise _bad("_summary takes true, false, text, data or count", "_summary")
                summary = raw
            elif name == "_elements":
                elements = tuple(e.strip() for e in raw.split(",") if e.strip())
            elif name == "_contained":
                if raw != "false":
                    raise FhirError(400, error("not-supported", "searching contained resources is not supported",
                                               "_contained"))
            elif name == "_cursor":
                cursor = raw
            elif name in ("_format", "_pretty"):
                passthrough.append((name, raw))
            continue
        if per_type:
            _common(p, types, name, raw, per_type)
            continue
        crit = p.criterion(rtype, name, raw)
        if isinstance(crit, _AllOf):
            criteria.extend(crit.criteria)
        elif crit is not None:
            criteria.append(crit)
    for inc in includes:
        if not inc.reverse and not inc.iterate and inc.source_type not in types:
            raise _bad(f"_include source {inc.source_type} is not a searched type", "_include")
    return Query(types=tuple(types), criteria=tuple(criteria),
                 per_type=tuple((t, tuple(c)) for t, c in per_type.items()), ids=None if ids is None else tuple(ids),
                 sort=tuple(sort), count=count, includes=tuple(includes), total=total,  # type: ignore[arg-type]
                 summary=summary, elements=elements, passthrough=tuple(passthrough), ignored=tuple(p.ignored),
                 cursor=cursor)


@dataclass(frozen=True, slots=True)
class Conditions:
    """The criteria of a conditional interaction (``If-None-Exist``, conditional update/delete,
    conditional references): parsed strictly, never empty."""

    criteria: tuple[Criterion, ...]
    ids: tuple[str, ...] | None


def conditions(rtype: str, pairs: Sequence[tuple[str, str]], where: str, base_url: str = "") -> Conditions:
    """Parse conditional criteria; anything that would not narrow the match is a 400."""
    if not pairs:
        raise FhirError(400, error("invalid", f"{where}: search criteria are empty"))
    q = parse([rtype], [(k, v) for k, v in pairs if k not in ("_format", "_pretty")], base_url=base_url,
              strict=True, where=where)
    result = [k for k, _ in pairs if k.partition(":")[0] in _RESULT and k not in ("_format", "_pretty")]
    if result:
        raise FhirError(400, error("invalid", f"{where}: {result[0]} is not a criterion", result[0]))
    if not q.criteria and q.ids is None:
        raise FhirError(400, error("invalid", f"{where}: search criteria are empty"))
    for c in q.criteria:
        if isinstance(c, Clause) and c.type == "composite":
            raise FhirError(400, error("not-supported", f"{where}: composite parameter {c.param!r} cannot be a "
                                       "conditional criterion", c.param))
    return Conditions(q.criteria, q.ids)
