"""The in-memory reference matcher: does one resource satisfy a parsed query?

It reads the index rows that ``search/extract.py`` makes of a resource, never the resource itself
(except for composites, below), so it is pure, testable with hand-made rows, and says exactly what
each backend's compiled query must return: a differential test runs both and compares.

Rows are ``(kind, param, a, b, c)``::

    ("string",    param,             normalised, exact, None)   also param+":text" for token :text
    ("token",     param,             system, code, None)        system "" when absent
    ("token",     param+":of-type",  "typesys|typecode", value, None)
    ("token",     param+":identifier", system, value, None)     reference :identifier
    ("date",      param,             low, high, None)           inclusive µs; open ends are sentinels
    ("number",    param,             value, None, None)
    ("quantity",  param,             system, code, value)       UCUM values once more in canonical units
    ("reference", param,             "Type/id" or absolute URL, None, None)
    ("uri",       param,             uri, None, None)

A clause matches when some row of its parameter satisfies some of its values (OR); a query when
every criterion matches (AND). Values arrive pre-normalised (``search/query.py``), so the rules
below are plain comparisons, and the SQL compiler copies them as they are.

Rule table (search.html#prefix, #date, #number; R4)
---------------------------------------------------
Dates: the row is the range ``[lo, hi]``, the value ``[vlo, vhi]``, both inclusive µs.

====== ======================================== ==============================================
prefix matches when                             search.html says
====== ======================================== ==============================================
eq     ``vlo <= lo and hi <= vhi``              the search range fully contains the target's
ne     ``not eq``                               ... does not fully contain it
gt     ``hi > vhi``                             the range above the value intersects the target
lt     ``lo < vlo``                             the range below the value intersects the target
ge     ``gt or eq``                             gt, or the search range fully contains the target
le     ``lt or eq``                             lt, or the search range fully contains the target
sa     ``lo > vhi``                             no overlap, and the target lies above the value
eb     ``hi < vlo``                             no overlap, and the target lies below the value
ap     ``lo <= vhi + w and hi >= vlo - w``      overlap with the value widened by ``w``
====== ======================================== ==============================================

``w`` (as in :func:`fhir_hub.search.dates.approximate`) is 10% of the distance from now to the farther end of the value
(search.html recommends "10% of the gap between now and the date"; the farther end keeps ``w``
above zero when now lies inside a coarse value such as ``ap2026``). ``dates.approximate`` is the
same rule, for compilers that widen the value once.
``ge``/``le`` are read literally: a Period that starts before ``ge2024`` and ends inside 2024 does
not match (the range above 2024 misses it, 2024 does not contain it); ``lt2024`` does.

Numbers and quantities: the row is a point ``x``; the value ``v`` was written with precision range
``[vlo, vhi]`` (``100`` → ``[99.5, 100.5]``, ``1e2`` → ``[95, 105]``).

====== ========================================================================================
eq     ``vlo <= x <= vhi``
ne     ``not eq``
gt sa  ``x > v``             (search.html#number: "greater than exactly 100")
lt eb  ``x < v``
ge     ``x >= v``
le     ``x <= v``
ap     ``min(vlo, v - |v|/10) <= x <= max(vhi, v + |v|/10)``   (10% of the value, never
       narrower than its precision)
====== ========================================================================================

A quantity also needs ``system is None or row system == system`` and ``code is None or row code ==
code``.

Other types:

* string: ``normalised.startswith(text)``; ``:contains`` ``text in normalised``; ``:exact``
  ``exact == text``.
* token: ``system|code`` both equal, ``|code`` system ``""``, ``code`` any system, ``system|`` any
  code; ``:not`` no row of the parameter matches any value (so a resource without the element
  matches); ``:text`` a string prefix match on the ``param:text`` rows; ``:of-type`` equality on
  the ``param:of-type`` rows.
* reference: the target equals the row; a bare id (``types`` set) matches ``T/id`` for every
  ``T`` in ``types``; ``:identifier`` is a token match on the ``param:identifier`` rows.
* uri: equality; ``:above`` the row is a prefix of the value; ``:below`` the value a prefix of the
  row.
* ``:missing=true``: no row of ``param`` itself (the derived ``:text``, ``:of-type`` and
  ``:identifier`` rows do not count); ``:missing=false``: at least one.
* every prefix, ``ne`` included, is tested row by row: a resource dated both 2024 and 2025 matches
  ``eq2024`` and ``ne2024``. A resource without rows for a parameter matches no value of it;
  only ``:not`` and ``:missing=true`` match an absent element.

Composites need elements, which rows lose (``code-value-quantity`` must find the code and the value
on the same ``Observation.component``): :func:`matches_composite` asks a :data:`ComponentRows` hook
for each element's rows per component. Chains and ``_has`` need other resources: :func:`matches`
asks an :class:`Env`, so the server plugs in its store and the tests plug in dicts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fhir_hub.search.dates import approximate
from fhir_hub.search.query import (
    AnyOf,
    Chain,
    Clause,
    CompositeValue,
    Criterion,
    DateValue,
    Has,
    NumberValue,
    OfTypeValue,
    Prefix,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    Value,
)

#: ``(kind, param, a, b, c)``, as ``search/extract.py`` makes them (see the module docstring).
IndexRow = tuple[str, str, Any, Any, Any]
#: One resource's rows by parameter (:func:`group`).
Grouped = Mapping[str, Sequence[IndexRow]]
#: Per element the composite's expression selects, per component (in the SearchParameter's
#: component order), the rows of that component's expression evaluated on that element.
ElementRows = Sequence[Sequence[Sequence[IndexRow]]]
#: ``component_rows(resource_type, param_code, resource)``: the hook extraction provides. For the
#: composite SearchParameter, evaluate its ``expression`` on the resource (one node per element:
#: each ``Observation.component``, or the Observation itself); on each node evaluate each
#: ``component.expression`` and convert the results as the component's own parameter
#: (``component.definition``) would be, giving that component's rows (their ``param`` is not read).
ComponentRows = Callable[[str, str, Mapping[str, Any]], ElementRows]

#: Modifiers each type's clause may carry here (``:missing`` is handled before; terminology
#: modifiers and ``:[type]`` never reach the matcher: the parser refuses or folds them).
_MODIFIERS: dict[str, frozenset[str | None]] = {
    "string": frozenset({None, "exact", "contains"}),
    "token": frozenset({None, "not", "text", "of-type"}),
    "reference": frozenset({None, "identifier"}),
    "uri": frozenset({None, "above", "below"}),
    "date": frozenset({None}),
    "number": frozenset({None}),
    "quantity": frozenset({None}),
}
#: Modifiers answered from derived rows, and the suffix of those rows' parameter.
_DERIVED = {"text": ":text", "of-type": ":of-type", "identifier": ":identifier"}


def group(rows: Iterable[IndexRow]) -> dict[str, list[IndexRow]]:
    """Rows by parameter, once per resource, so each clause looks only at its own."""
    out: dict[str, list[IndexRow]] = {}
    for row in rows:
        found = out.get(row[1])
        if found is None:
            out[row[1]] = [row]
        else:
            found.append(row)
    return out


def now_us() -> int:
    """The current time in µs since the epoch, the unit of date rows."""
    return time.time_ns() // 1000


# --- the rule table -------------------------------------------------------------------------------


def date_matches(prefix: Prefix, lo: int, hi: int, vlo: int, vhi: int, now: int) -> bool:
    """Whether a row's range ``[lo, hi]`` satisfies ``prefix`` ``[vlo, vhi]`` (the date table)."""
    if prefix == "eq":
        return vlo <= lo and hi <= vhi
    if prefix == "ne":
        return not (vlo <= lo and hi <= vhi)
    if prefix == "gt":
        return hi > vhi
    if prefix == "lt":
        return lo < vlo
    if prefix == "ge":
        return hi > vhi or (vlo <= lo and hi <= vhi)
    if prefix == "le":
        return lo < vlo or (vlo <= lo and hi <= vhi)
    if prefix == "sa":
        return lo > vhi
    if prefix == "eb":
        return hi < vlo
    if prefix == "ap":
        alo, ahi = approximate(vlo, vhi, now)
        return lo <= ahi and hi >= alo
    raise ValueError(f"unknown prefix {prefix!r}")


def ap_range(value: float, low: float, high: float) -> tuple[float, float]:
    """The inclusive range ``ap`` accepts for a number: 10% of it, at least its precision."""
    tenth = abs(value) / 10
    return min(low, value - tenth), max(high, value + tenth)


def number_matches(prefix: Prefix, x: float, value: float, low: float, high: float) -> bool:
    """Whether a row's point ``x`` satisfies ``prefix`` ``value`` of precision ``[low, high]``."""
    if prefix == "eq":
        return low <= x <= high
    if prefix == "ne":
        return not low <= x <= high
    if prefix in ("gt", "sa"):
        return x > value
    if prefix in ("lt", "eb"):
        return x < value
    if prefix == "ge":
        return x >= value
    if prefix == "le":
        return x <= value
    if prefix == "ap":
        a, b = ap_range(value, low, high)
        return a <= x <= b
    raise ValueError(f"unknown prefix {prefix!r}")


# --- one value against one parameter's rows -------------------------------------------------------


def _targets(value: ReferenceValue) -> frozenset[str]:
    """The row targets a reference value accepts: itself, or its id under each allowed type."""
    if not value.types:
        return frozenset((value.target,))
    rid = value.target.rsplit("/", 1)[-1]
    return frozenset(f"{t}/{rid}" for t in value.types)


def value_matches(value: Value, rows: Iterable[IndexRow], modifier: str | None = None,
                  now: int | None = None) -> bool:
    """Whether some row (all of one parameter, or one composite component) satisfies ``value``.

    ``modifier`` is the string (``exact``, ``contains``) or uri (``above``, ``below``) one; ``now``
    (µs, default the clock) only matters to date ``ap``.
    """
    if isinstance(value, StringValue):
        text = value.text
        if modifier is None:
            return any(r[2].startswith(text) for r in rows)
        if modifier == "contains":
            return any(text in r[2] for r in rows)
        if modifier == "exact":
            return any(r[3] == text for r in rows)
    elif isinstance(value, TokenValue):
        system, code = value.system, value.code
        if code is None:
            return any(r[2] == system for r in rows)
        if system is None:
            return any(r[3] == code for r in rows)
        return any(r[3] == code and r[2] == system for r in rows)
    elif isinstance(value, OfTypeValue):
        kind = f"{value.type_system}|{value.type_code}"
        return any(r[2] == kind and r[3] == value.value for r in rows)
    elif isinstance(value, DateValue):
        p, vlo, vhi, clock = value.prefix, value.low, value.high, now_us() if now is None else now
        return any(date_matches(p, r[2], r[3], vlo, vhi, clock) for r in rows)
    elif isinstance(value, NumberValue):
        p, v, lo, hi = value.prefix, value.value, value.low, value.high
        return any(number_matches(p, r[2], v, lo, hi) for r in rows)
    elif isinstance(value, QuantityValue):
        p, v, lo, hi, system, code = value.prefix, value.value, value.low, value.high, value.system, value.code
        return any((system is None or r[2] == system) and (code is None or r[3] == code)
                   and number_matches(p, r[4], v, lo, hi) for r in rows)
    elif isinstance(value, ReferenceValue):
        wanted = _targets(value)
        return any(r[2] in wanted for r in rows)
    elif isinstance(value, UriValue):
        u = value.uri
        if modifier is None:
            return any(r[2] == u for r in rows)
        if modifier == "above":
            return any(u.startswith(r[2]) for r in rows)
        if modifier == "below":
            return any(r[2].startswith(u) for r in rows)
    elif isinstance(value, CompositeValue):
        raise ValueError("a composite value needs its elements: use matches_composite")
    raise ValueError(f"modifier {modifier!r} does not apply to {type(value).__name__}")


# --- clauses ---------------------------------------------------------------------------------------


#: Param suffix of the rows holding UCUM quantities in canonical units (``search/ucum.py``).
CANONICAL = ":canonical"


def matches_clause(clause: Clause, rows: Grouped, now: int | None = None) -> bool:
    """Whether one resource, as its :func:`group`-ed rows, satisfies one non-composite clause."""
    if clause.missing is not None:
        return (not rows.get(clause.param)) is clause.missing
    allowed = _MODIFIERS.get(clause.type)
    if allowed is None:
        raise ValueError(f"{clause.type} clause {clause.param!r} needs more than rows (composite: "
                         "matches_composite)")
    if clause.modifier not in allowed:
        raise ValueError(f"modifier :{clause.modifier} is not the matcher's on {clause.type} {clause.param!r}")
    if clause.modifier == "not":
        return not any(value_matches(v, rows.get(clause.param, ()), None, now) for v in clause.values)
    suffix = _DERIVED.get(clause.modifier or "")
    own = rows.get(clause.param + suffix if suffix else clause.param, ())
    canonical = rows.get(clause.param + CANONICAL, ())
    modifier = None if suffix else clause.modifier
    return any(value_matches(v, canonical if isinstance(v, QuantityValue) and v.canonical else own, modifier, now)
               for v in clause.values)


def composite_matches(clause: Clause, elements: ElementRows, now: int | None = None) -> bool:
    """Whether one element satisfies every part of some composite value of ``clause``."""
    if clause.missing is not None:  # a value is an element with something for every component
        present = any(all(components) for components in elements)
        return (not present) is clause.missing
    for value in clause.values:
        if not isinstance(value, CompositeValue):
            raise ValueError(f"composite clause {clause.param!r} holds a {type(value).__name__}")
        for components in elements:
            if all(value_matches(part, _own(part, rows), None, now)
                   for part, rows in zip(value.parts, components, strict=True)):
                return True
    return False


def _own(part: Value, rows: Sequence[IndexRow]) -> list[IndexRow]:
    """A component's rows that a part compares with: canonical quantities only with a canonical value."""
    canonical = isinstance(part, QuantityValue) and part.canonical
    return [r for r in rows if r[1].endswith(CANONICAL) is canonical]


def matches_composite(clause: Clause, resource: Mapping[str, Any], component_rows: ComponentRows,
                      now: int | None = None) -> bool:
    """:func:`composite_matches` on the elements ``component_rows`` finds in ``resource``."""
    return composite_matches(clause, component_rows(resource["resourceType"], clause.param, resource), now)


# --- whole criteria lists, chains and _has --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Indexed:
    """One resource as the matcher sees it."""

    #: ``"Type/id"``: what ``_has`` sources point at.
    ref: str
    #: Its rows, :func:`group`-ed.
    rows: Grouped
    #: The resource itself, needed only by composite clauses.
    resource: Mapping[str, Any] | None = None


#: ``resolve(target)``: the resource a reference row points at (``"Type/id"`` or absolute URL), or
#: ``None`` when it is not here (another server's, deleted).
Resolve = Callable[[str], Indexed | None]
#: ``sources(source_type, param, target)``: the ``source_type`` resources whose ``param`` rows
#: reference ``target`` (``"Type/id"``).
Sources = Callable[[str, str, str], Iterable[Indexed]]


@dataclass(frozen=True, slots=True)
class Env:
    """What the matcher may ask beyond the rows: other resources, composite elements, the clock.

    A callback a query needs but the caller left out is an error, never a silent non-match.
    """

    resolve: Resolve | None = None
    sources: Sources | None = None
    component_rows: ComponentRows | None = None
    #: µs since the epoch, for date ``ap``; ``None``: read the clock once per :func:`matches`.
    now: int | None = None


def _target_type(target: str) -> str | None:
    """``Patient`` for ``Patient/1``, ``http://x/fhir/Patient/1`` or ``Patient/1/_history/2``."""
    parts = target.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    return parts[-2] if len(parts) >= 2 else None


def matches(criteria: Sequence[Criterion], subject: Indexed, env: Env | None = None) -> bool:
    """Whether ``subject`` satisfies every criterion (AND), chains and ``_has`` through ``env``."""
    env = env or Env()
    if env.now is None:
        env = replace(env, now=now_us())
    return all(_criterion(c, subject, env) for c in criteria)


def _criterion(c: Criterion, subject: Indexed, env: Env) -> bool:
    if isinstance(c, AnyOf):
        return any(_criterion(x, subject, env) for x in c.criteria)
    if isinstance(c, Chain):
        if env.resolve is None:
            raise ValueError(f"chain on {c.param!r} needs Env.resolve")
        for row in subject.rows.get(c.param, ()):
            if _target_type(row[2]) != c.target_type:
                continue
            found = env.resolve(row[2])
            if found is not None and _criterion(c.clause, found, env):
                return True
        return False
    if isinstance(c, Has):
        if env.sources is None:
            raise ValueError(f"_has:{c.source_type}:{c.param} needs Env.sources")
        return any(_criterion(c.clause, source, env) for source in env.sources(c.source_type, c.param, subject.ref))
    if c.type == "composite":
        if env.component_rows is None or subject.resource is None:
            raise ValueError(f"composite {c.param!r} needs Env.component_rows and the resource")
        return matches_composite(c, subject.resource, env.component_rows, env.now)
    return matches_clause(c, subject.rows, env.now)
