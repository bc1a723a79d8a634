"""Every backend (SQLite, PostgreSQL) against the in-memory reference matcher, on generated data and queries.

One store holds 30 generated Vietnamese patients (~2,200 resources, ``tests/search/datasets.py``)
plus edge resources: open Periods, mg against g, a non-UCUM unit, names with and without accents,
a deleted Patient still referenced, a deleted and re-created Patient, an updated Patient and
Observation whose old values must not match, RiskAssessments for number parameters, meta tags,
profiles, sources and security labels.

Queries are drawn by a seeded generator from the values actually indexed (and from the old values
of the updated and deleted resources): every parameter type and modifier, every date prefix at
every precision, quantities with and without units and in convertible UCUM units, references as
``Type/id``, bare ids and ``:Type``, ``:missing``, OR lists, ANDs of 2–3 parameters, ``_id``,
chains and ``_has`` (nested too), compartments (``AnyOf``). Each is parsed strictly once, answered
by ``store.find``/``store.count`` (and, for some, by walking the keyset cursor) and by
``matcher.matches`` over every live resource of the type: the answers must be the same sets.
:data:`FIXED` queries also say which edge resources they must and must not find.

Composite parameters are not in the index: ``test_composites_agree_with_the_matcher`` checks the
REST layer's path for them (index prefilter by component, recheck with the matcher) instead.

Any disagreement fails. The bugs these tests found (uri ``:above``/``:below`` refused by the
parser, ``_has`` listing deleted resources, ``combo-*`` composites finding nothing, composite
``:missing``, ``:exact`` on text written decomposed, and in ``test_examples_findable.py`` the
canonical pressure unit) are fixed; each keeps its smallest case as a regression test at the end.

``FHIR_HUB_DIFF_SEED`` and ``FHIR_HUB_DIFF_QUERIES`` change the draw (a failure prints its seed).
"""

from __future__ import annotations

import os
import random
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from fhir_hub import definitions
from fhir_hub.errors import FhirError
from fhir_hub.search import extract, matcher, parameters, ucum
from fhir_hub.search.convert import DATE_MAX, DATE_MIN
from fhir_hub.search.matcher import ElementRows, Env, Indexed, IndexRow, group, matches, now_us
from fhir_hub.search.parse import parse
from fhir_hub.search.query import (
    AnyOf,
    Chain,
    Clause,
    Criterion,
    DateValue,
    Has,
    NumberValue,
    QuantityValue,
    Query,
    ReferenceValue,
    TokenValue,
    UriValue,
)
from fhir_hub.storage.port import Store
from tests.backends import StoreFactory
from tests.search import datasets

SEED = int(os.environ.get("FHIR_HUB_DIFF_SEED", "20250701"))
QUERIES = int(os.environ.get("FHIR_HUB_DIFF_QUERIES", "1500"))
TYPES = ("Patient", "Observation", "Encounter", "Condition", "Organization", "RiskAssessment")
LIMIT = 100_000
Pair = tuple[str, str]


def escape(text: str) -> str:
    """A value as a query string writes it (search.html#escaping)."""
    for ch in "\\,|$":
        text = text.replace(ch, "\\" + ch)
    return text


# --- the reference: the matcher over the live resources -------------------------------------------


class Reference:
    """Every live resource as the matcher sees it, with the callbacks chains and ``_has`` need."""

    def __init__(self, stored: dict[tuple[str, str], dict[str, Any]]):
        self._elements: dict[tuple[str, str, str], ElementRows] = {}
        self.indexed: dict[tuple[str, str], Indexed] = {}
        self.by_type: dict[str, list[tuple[str, Indexed]]] = {}
        self._sources: dict[tuple[str, str, str], list[Indexed]] = {}
        for (rtype, rid), resource in sorted(stored.items()):
            ix = Indexed(f"{rtype}/{rid}", group(extract.index_rows(rtype, resource)), resource)
            self.indexed[rtype, rid] = ix
            self.by_type.setdefault(rtype, []).append((rid, ix))
            for row in ix.rows.values():
                for r in row:
                    if r[0] == "reference":
                        self._sources.setdefault((rtype, r[1], r[2]), []).append(ix)

    def resolve(self, target: str) -> Indexed | None:
        rtype, _, rid = target.partition("/")
        return self.indexed.get((rtype, rid))

    def sources(self, source_type: str, param: str, target: str) -> list[Indexed]:
        return self._sources.get((source_type, param, target), [])

    def component_rows(self, rtype: str, code: str, resource: Mapping[str, Any]) -> ElementRows:
        """``extract.component_rows``, once per resource and composite."""
        key = (rtype, code, resource["id"])
        found = self._elements.get(key)
        if found is None:
            found = self._elements[key] = extract.component_rows(rtype, code, resource)
        return found

    def answer(self, rtype: str, q: Query, now: int) -> set[str]:
        env = Env(self.resolve, self.sources, self.component_rows, now)
        ids = None if q.ids is None else set(q.ids)
        return {rid for rid, ix in self.by_type.get(rtype, ())
                if (ids is None or rid in ids) and matches(q.criteria, ix, env)}


# --- the query generator ----------------------------------------------------------------------------


def _sort_key(row: IndexRow) -> str:
    return repr(row)


def _aliases(rtype: str) -> dict[str, tuple[str, ...]]:
    """Parameters searched as the union of others (``combo-code``), where extraction has them."""
    aliases = getattr(extract, "aliases", None)
    return {} if aliases is None else dict(aliases(rtype))


class Generator:
    """Query strings drawn from the values indexed in a data set, and some that match nothing."""

    def __init__(self, rng: random.Random, resources: Iterable[tuple[str, dict[str, Any]]]):
        self.rng = rng
        pools: dict[str, dict[str, set[IndexRow]]] = {}
        self.ids: dict[str, set[str]] = {}
        for rtype, resource in resources:
            by_param = pools.setdefault(rtype, {})
            for row in extract.index_rows(rtype, resource):
                by_param.setdefault(row[1], set()).add(row)
            self.ids.setdefault(rtype, set()).add(resource["id"])
        for rtype, by_param in pools.items():  # a union parameter (combo-code) draws its members' values
            for code, members in _aliases(rtype).items():
                for m in members:
                    for suffix in ("", ":text", ":of-type", ":identifier", ":canonical"):
                        for row in by_param.get(m + suffix, ()):
                            by_param.setdefault(code + suffix, set()).add((row[0], code + suffix, *row[2:]))
        self.pools = {t: {p: sorted(rows, key=_sort_key) for p, rows in ps.items()} for t, ps in pools.items()}
        self.params = {t: {c: p for c, p in parameters.params_for(t).items()
                           if c != "_id" and p.type not in ("composite", "special") and c not in extract.unsupported(t)}
                       for t in self.pools}

    # -- whole queries

    def query(self, rtype: str) -> list[Pair]:
        rng = self.rng
        n = rng.choices((1, 2, 3), (55, 30, 15))[0]
        pairs: list[Pair] = []
        for _ in range(n):
            if pairs and rng.random() < 0.25:  # the same parameter again: date=ge..&date=le..
                name = pairs[-1][0]
                code, _, modifier = name.partition(":")
                if not name.startswith("_has") and "." not in name and modifier != "missing":
                    again = self.clause(rtype, code, modifier or None)
                    if again is not None:
                        pairs.append(again)
                        continue
            pairs.append(self.criterion(rtype, 0))
        if rng.random() < 0.06:
            ids = sorted(self.ids[rtype])
            pick = rng.sample(ids, min(len(ids), rng.randint(1, 4)))
            pairs.append(("_id", ",".join([*pick, "no-such-id"][: rng.randint(1, len(pick) + 1)])))
        return pairs

    def criterion(self, rtype: str, depth: int) -> Pair:
        r = self.rng.random()
        if depth < 2 and r < 0.10:
            found = self.chain(rtype, depth)
            if found is not None:
                return found
        elif depth < 2 and r < 0.18:
            found = self.has(rtype, depth)
            if found is not None:
                return found
        while True:
            found = self.clause(rtype)
            if found is not None:
                return found

    def _pointing(self, source: str, code: str, target: str) -> bool:
        """Whether some ``source`` resource's ``code`` references a ``target``."""
        return any(r[2].startswith(target + "/") for r in self._rows(source, code))

    def chain(self, rtype: str, depth: int) -> Pair | None:
        refs = [(c, p) for c, p in self.params[rtype].items() if p.type == "reference"]
        options = [(c, t, p) for c, p in refs for t in (p.targets or TYPES) if t in self.pools]
        if not options:
            return None
        weights = [20 if self._pointing(rtype, c, t) else 1 for c, t, _ in options]
        code, target, sp = self.rng.choices(options, weights)[0]
        inner, value = self.criterion(target, depth + 1)
        inner_code = inner.partition(".")[0].partition(":")[0]
        unique = [t for t in sp.targets if parameters.lookup(t, inner_code) is not None] == [target]
        if unique and not inner.startswith("_has") and self.rng.random() < 0.3:
            return f"{code}.{inner}", value
        return f"{code}:{target}.{inner}", value

    def has(self, rtype: str, depth: int) -> Pair | None:
        options = [(s, c) for s in self.pools for c, p in self.params[s].items()
                   if p.type == "reference" and (not p.targets or rtype in p.targets)]
        if not options:
            return None
        weights = [20 if self._pointing(s, c, rtype) else 1 for s, c in options]
        source, code = self.rng.choices(options, weights)[0]
        inner, value = self.criterion(source, depth + 1)
        return f"_has:{source}:{code}:{inner}", value

    def clause(self, rtype: str, code: str | None = None, modifier: str | None = None) -> Pair | None:
        rng = self.rng
        pool = self.pools[rtype]
        params = self.params[rtype]
        if code is None:
            with_rows = sorted({k.partition(":")[0] for k in pool} & set(params))
            code = rng.choice(with_rows) if rng.random() < 0.92 else rng.choice(sorted(params))
            if rng.random() < 0.07:
                return f"{code}:missing", rng.choice(("true", "false"))
        sp = params[code]
        make = getattr(self, "_" + sp.type)
        first = make(rtype, code, modifier)
        if first is None:
            return None
        name, value = first
        values = [value]
        for _ in range(rng.choices((0, 1, 2), (70, 20, 10))[0]):  # OR lists
            more = make(rtype, code, name.partition(":")[2] or None)
            if more is not None and more[0] == name:
                values.append(more[1])
        return name, ",".join(values)

    # -- one value per parameter type: (name with modifier, escaped value) or None

    def _rows(self, rtype: str, param: str) -> list[IndexRow]:
        return self.pools[rtype].get(param, [])

    def _text(self, norm: str, exact: str) -> str:
        """A prefix of the value, accents kept or not, sometimes in another case."""
        rng = self.rng
        text = exact if rng.random() < 0.6 else norm
        text = text[: rng.randint(1, len(text))] if text else text
        if rng.random() < 0.15:
            text = text.upper()
        return text or "x"

    def _string(self, rtype: str, code: str, modifier: str | None) -> Pair | None:
        rng = self.rng
        rows = self._rows(rtype, code)
        if modifier is None:
            modifier = rng.choices((None, "contains", "exact"), (6, 2, 2))[0]
        name = code if modifier is None else f"{code}:{modifier}"
        if not rows or rng.random() < 0.05:
            return name, rng.choice(("zzqx", "Ẑ", "nguyen van a"))
        _, _, norm, exact, _ = rng.choice(rows)
        if modifier is None:
            return name, escape(self._text(norm, exact))
        if modifier == "contains":
            text = exact if rng.random() < 0.5 else norm
            i = rng.randrange(len(text)) if text else 0
            part = text[i: i + rng.randint(1, 6)]
            return name, escape(part if part.strip() else "a")
        r = rng.random()
        text = exact if r < 0.7 else norm if r < 0.85 else exact.upper()
        return name, escape(text or "x")

    def _token(self, rtype: str, code: str, modifier: str | None) -> Pair | None:
        rng = self.rng
        rows = self._rows(rtype, code)
        texts = self._rows(rtype, code + ":text")
        of_type = [r for r in self._rows(rtype, code + ":of-type") if "" not in r[2].split("|")]
        if modifier is None:
            choices: list[tuple[str | None, float]] = [(None, 6), ("not", 2)]
            if texts:
                choices.append(("text", 1.5))
            if of_type:
                choices.append(("of-type", 3))
            modifier = rng.choices([c for c, _ in choices], [w for _, w in choices])[0]
        name = code if modifier is None else f"{code}:{modifier}"
        if modifier == "text":
            if not texts:
                return None
            _, _, norm, exact, _ = rng.choice(texts)
            return name, escape(self._text(norm, exact))
        if modifier == "of-type":
            if not of_type:
                return None
            _, _, kind, value, _ = rng.choice(of_type)
            tsys, tcode = kind.split("|", 1)
            value = value if rng.random() < 0.9 else "nope"
            return name, "|".join(escape(x) for x in (tsys, tcode, value))
        if not rows or rng.random() < 0.05:
            return name, rng.choice(("no-such-code", "http://loinc.org|0000-0", "|nothing"))
        found = self.token_value(rng.choice(rows))
        return None if found is None else (name, found)

    def token_value(self, row: IndexRow) -> str | None:
        _, _, system, value, _ = row
        forms = ["code", "|code"]
        if system:
            forms += ["system|code", "system|code", "system|"]
        if not value:
            forms = ["system|"] if system else []
        if not forms:
            return None
        form = self.rng.choice(forms)
        if form == "code":
            return escape(value)
        if form == "|code":
            return "|" + escape(value)
        if form == "system|":
            return escape(system) + "|"
        return f"{escape(system)}|{escape(value)}"

    def _reference(self, rtype: str, code: str, modifier: str | None) -> Pair | None:
        rng = self.rng
        sp = self.params[rtype][code]
        rows = self._rows(rtype, code)
        idents = self._rows(rtype, code + ":identifier")
        if modifier is None:
            choices: list[tuple[str | None, float]] = [(None, 7), ("type", 2)]
            if idents:
                choices.append(("identifier", 6))
            modifier = rng.choices([c for c, _ in choices], [w for _, w in choices])[0]
        if modifier == "identifier":
            if not idents:
                return None
            _, _, system, value, _ = rng.choice(idents)
            return f"{code}:identifier", f"{escape(system)}|{escape(value)}" if system else "|" + escape(value)
        targets = [r[2] for r in rows if "/" in r[2] and "://" not in r[2]]
        if modifier is not None:  # a :Type modifier, given as "type" when drawn here
            if modifier == "type":
                if not targets:
                    return None
                target = rng.choice(targets)
                kind, _, rid = target.partition("/")
                allowed = sp.targets or TYPES
                if kind not in allowed:
                    return None
                if rng.random() < 0.15:
                    kind = rng.choice(allowed)
                modifier = kind
            else:
                target = rng.choice(targets) if targets else f"{modifier}/nope"
                rid = target.partition("/")[2]
            value = rid if rng.random() < 0.6 else f"{modifier}/{rid}"
            return f"{code}:{modifier}", value
        if not targets or rng.random() < 0.05:
            return code, rng.choice(("Patient/nope", "nope", "http://elsewhere.example/fhir/Patient/pat-1"))
        target = rng.choice(targets)
        if rng.random() < 0.25:
            return code, target.partition("/")[2]
        return code, target

    def _date(self, rtype: str, code: str, modifier: str | None) -> Pair | None:
        rng = self.rng
        rows = self._rows(rtype, code)
        if rows and rng.random() < 0.95:
            return code, self.date_value(rng.choice(rows))
        prefix = rng.choice(("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", ""))
        return code, prefix + self._format(rng.randint(-2 * 10**15, 2 * 10**15))  # 1906 to 2033

    def date_value(self, row: IndexRow) -> str:
        rng = self.rng
        prefix = rng.choice(("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", ""))
        _, _, lo, hi, _ = row
        ends = [x for x in (lo, hi) if DATE_MIN < x < DATE_MAX]
        base = rng.choice(ends)
        r = rng.random()
        if r < 0.5:
            at = base
        elif r < 0.6 and len(ends) == 2:
            at = (lo + hi) // 2
        else:
            at = base + rng.choice((-1, 1)) * rng.choice((1, 60, 3600, 86400, 86400 * 40, 86400 * 400)) * 10**6
        return prefix + self._format(at)

    def _format(self, at: int) -> str:
        """``at`` (µs) as a FHIR date at a random precision; times in UTC or +07:00."""
        rng = self.rng
        utc = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=at)
        precision = rng.choice(("year", "month", "day", "minute", "second", "milli", "micro"))
        if precision == "year":
            return f"{utc.year:04d}"
        if precision == "month":
            return f"{utc.year:04d}-{utc.month:02d}"
        if precision == "day":
            return f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}"
        zone = rng.choice((UTC, timezone(timedelta(hours=7))))
        local = utc.astimezone(zone)
        tz = "Z" if zone is UTC else "+07:00"
        text = local.strftime("%Y-%m-%dT%H:%M")
        if precision == "minute":
            return text + tz
        text += local.strftime(":%S")
        if precision == "milli":
            text += f".{local.microsecond // 1000:03d}"
        elif precision == "micro":
            text += f".{local.microsecond:06d}"
        return text + tz

    def _number_text(self, x: float) -> str:
        rng = self.rng
        if rng.random() < 0.3:
            x *= rng.choice((0.9, 0.99, 0.999, 1.001, 1.01, 1.1))
        digits = rng.randint(1, 6)
        text = f"{x:.{digits}g}"
        if rng.random() < 0.2 and "e" not in text:
            text = f"{x:.{digits}e}"
        return text

    def _number(self, rtype: str, code: str, modifier: str | None) -> Pair | None:
        rng = self.rng
        rows = self._rows(rtype, code)
        prefix = rng.choice(("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", ""))
        x = rng.choice(rows)[2] if rows and rng.random() < 0.95 else rng.uniform(-10, 1000)
        return code, prefix + self._number_text(x)

    #: UCUM units to re-express values in (each converts with ``ucum.canonical``).
    UNITS = ("g", "mg", "ug", "kg", "[lb_av]", "mol/L", "mmol/L", "umol/L", "g/L", "mg/dL", "g/dL", "mg/L", "/min",
             "/s", "/h", "mm[Hg]", "kPa", "cm", "m", "mm", "[in_i]", "%", "1", "min", "h", "s", "d", "a", "mo",
             "10*9/L", "10*3/uL", "10*12/L", "/L", "fL", "L", "mL", "kg/m2")

    def _quantity(self, rtype: str, code: str, modifier: str | None) -> Pair | None:
        rng = self.rng
        rows = self._rows(rtype, code)
        prefix = rng.choice(("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", ""))
        if not rows or rng.random() < 0.05:
            return code, f"{prefix}{rng.uniform(0, 200):.3g}|{datasets.UCUM}|mg"
        return code, self.quantity_value(rng.choice(rows))

    def quantity_value(self, row: IndexRow) -> str:
        rng = self.rng
        prefix = rng.choice(("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap", ""))
        _, _, system, unit, x = row
        form = rng.choices(("bare", "full", "code", "system", "convert"), (2, 4, 2, 1, 3))[0]
        if form == "convert" and system == ucum.SYSTEM and ucum.canonical(x, unit) is not None:
            canon = ucum.canonical(x, unit)
            assert canon is not None
            others = [u for u in self.UNITS if (c := ucum.canonical(1.0, u)) is not None and c[1] == canon[1]]
            if others:
                other = rng.choice(others)
                factor = ucum.canonical(1.0, other)
                assert factor is not None
                return f"{prefix}{self._number_text(canon[0] / factor[0])}|{ucum.SYSTEM}|{escape(other)}"
        num = prefix + self._number_text(x)
        if form == "bare":
            return num
        if form == "code":
            return f"{num}||{escape(unit)}"
        if form == "system":
            return f"{num}|{escape(system)}|"
        return f"{num}|{escape(system)}|{escape(unit)}"

    def composite_value(self, rtype: str, code: str, resource: dict[str, Any]) -> str | None:
        """A value of composite ``code`` from one element of ``resource`` (sometimes a part from
        another element, which must then not match unless some element has both)."""
        rng = self.rng
        elements = extract.component_rows(rtype, code, resource)
        if not elements:
            return None
        element = rng.choice(elements)
        parts = []
        for i, rows in enumerate(element):
            if rng.random() < 0.15:
                rows = rng.choice(elements)[i]
            own = [r for r in rows if ":" not in r[1]]
            if not own:
                return None
            row = rng.choice(own)
            if row[0] == "token":
                value = self.token_value(row)
            elif row[0] == "quantity":
                value = self.quantity_value(row)
            elif row[0] == "date":
                value = self.date_value(row)
            elif row[0] == "string":
                value = escape(self._text(row[2], row[3]))
            else:
                raise AssertionError(f"no composite part drawn from {row}")
            if value is None:
                return None
            parts.append(value)
        return "$".join(parts)

    def _uri(self, rtype: str, code: str, modifier: str | None) -> Pair | None:
        rng = self.rng
        rows = self._rows(rtype, code)
        if modifier is None:
            modifier = rng.choices((None, "above", "below"), (5, 2, 2))[0]
        name = code if modifier is None else f"{code}:{modifier}"
        uri = rng.choice(rows)[2] if rows and rng.random() < 0.95 else "http://example.org/nothing"
        if modifier == "below":
            return name, escape(uri[: rng.randint(1, len(uri))])
        if modifier == "above":
            return name, escape(uri + rng.choice(("", "/sub", "-more", "#x")))
        return name, escape(uri)


# --- the test ---------------------------------------------------------------------------------------


def _query_text(rtype: str, pairs: Sequence[Pair]) -> str:
    return f"{rtype}?" + "&".join(f"{k}={v}" for k, v in pairs)


def compartment(rng: random.Random, rtype: str, targets: dict[str, list[str]]) -> tuple[str, AnyOf] | None:
    """Compartment membership (``Patient/x/Observation``) as the REST layer builds it."""
    kinds = [k for k, by_type in definitions.compartments().items() if rtype in by_type and k in targets]
    if not kinds:
        return None
    kind = rng.choice(kinds)
    links = [p for p in definitions.compartments()[kind][rtype] if parameters.lookup(rtype, p) is not None]
    if not links:
        return None
    owner = rng.choice(targets[kind])
    return f"{kind}/{owner}", AnyOf(tuple(Clause(p, "reference", (ReferenceValue(f"{kind}/{owner}"),))
                                          for p in links))


#: The one refusal of a generated query that is not a failure: ``:not`` or ``:missing=true`` on a
#: union parameter (``combo-code``) inside a chain or ``_has`` (an "every member" test that the
#: parser only builds at the top level), a 400 ``not-supported`` saying so.
REFUSED = "cannot be used inside a chain or _has"

#: ``(type, pairs, ids that must be found, ids that must not)``: the edge resources, asked for
#: explicitly, besides going through the differential like every query.
FIXED: list[tuple[str, list[Pair], set[str], set[str]]] = [
    # UCUM: mg and g meet through their canonical unit; a unit-less or non-UCUM query compares as written
    ("Observation", [("value-quantity", "0.5|http://unitsofmeasure.org|g")], {"edge-mg", "edge-g"}, {"edge-g2"}),
    ("Observation", [("value-quantity", "500|http://unitsofmeasure.org|mg")], {"edge-mg", "edge-g"},
     {"edge-unit-only"}),
    ("Observation", [("code", "edge-dose"), ("value-quantity", "500||mg")], {"edge-mg", "edge-unit-only"},
     {"edge-g"}),
    ("Observation", [("code", "edge-dose"), ("value-quantity", "gt0.4|http://unitsofmeasure.org|g")],
     {"edge-mg", "edge-g", "edge-g2"}, {"edge-tablet", "edge-unit-only"}),
    ("Observation", [("code", "edge-dose"), ("value-quantity", "2||vien")], {"edge-tablet"}, set()),
    ("Observation", [("code", "edge-dose"), ("value-quantity", "2|urn:vn:unit|vien")], {"edge-tablet"}, set()),
    ("Observation", [("code", "edge-temp"), ("value-quantity", "lt274|http://unitsofmeasure.org|K")],
     {"edge-negative"}, set()),
    ("Observation", [("code", "edge-temp"), ("value-quantity", "-1.5")], {"edge-negative"}, set()),
    ("Encounter", [("length", "1.5|http://unitsofmeasure.org|h"), ("length", "90|http://unitsofmeasure.org|min")],
     {"edge-open-start", "edge-open-end"}, set()),
    # accents, case and đ fold; :exact does not
    ("Patient", [("family", "Nguyễn"), ("given", "duc")], {"edge-accent", "edge-plain"}, set()),
    ("Patient", [("family:exact", "Nguyễn"), ("given", "đức")], {"edge-accent"}, {"edge-plain"}),
    ("Patient", [("name", "nguyen van duc")], {"edge-accent", "edge-plain"}, set()),
    ("Patient", [("name", "đặng THỊ")], {"edge-dang"}, set()),
    ("Patient", [("name:contains", "ồng")], {"edge-dang"}, set()),
    ("Patient", [("family:exact", "Dang")], set(), {"edge-dang"}),
    # text written decomposed (NFD): found by prefix, and by :exact typed composed or decomposed
    ("Patient", [("family", "nguyen"), ("given", "thi"), ("name", "nguyen thi hang")], {"edge-nfd"}, set()),
    ("Patient", [("family:exact", "Nguyễn"), ("gender", "female")], {"edge-nfd"}, {"edge-accent"}),
    ("Patient", [("family:exact", unicodedata.normalize("NFD", "Nguyễn")), ("gender", "female")], {"edge-nfd"},
     set()),
    # references by identifier, to another server (its Type/id tail is indexed too), to a contained resource
    ("Observation", [("performer:identifier", "urn:vn:cchn|CC-001")], {"edge-refs"}, set()),
    ("Observation", [("performer:identifier", "|CC-001")], set(), {"edge-refs"}),
    ("Observation", [("subject", "http://other.example/fhir/Patient/pat-1")], {"edge-refs"}, set()),
    ("Observation", [("code", "edge-refs"), ("performer:missing", "true")], {"edge-refs"}, set()),
    # escaping
    ("Patient", [("identifier", "urn:edge|P\\,1\\|x\\$y\\\\z")], {"edge-dang"}, set()),
    # updated, deleted and re-created resources: only current values match
    ("Patient", [("identifier", "urn:edge|OLD-1")], set(), {"edge-updated"}),
    ("Patient", [("identifier", "urn:edge|NEW-1")], {"edge-updated"}, set()),
    ("Patient", [("name", "cu")], set(), {"edge-updated"}),
    ("Patient", [("name", "moi"), ("gender", "other"), ("birthdate", "1961-06")], {"edge-updated"}, set()),
    ("Patient", [("gender", "female"), ("birthdate", "1960")], set(), {"edge-updated"}),
    ("Patient", [("organization", "Organization/org-edge")], {"edge-accent"}, {"edge-updated"}),
    ("Observation", [("value-quantity", "61.5|http://unitsofmeasure.org|kg")], set(), {"edge-updated"}),
    ("Observation", [("value-quantity", "62500|http://unitsofmeasure.org|g")], {"edge-updated"}, set()),
    ("Patient", [("identifier", "urn:edge|REBORN-OLD")], set(), {"edge-reborn"}),
    ("Patient", [("identifier", "urn:edge|REBORN-NEW"), ("birthdate", "1991-10-10")], {"edge-reborn"}, set()),
    ("Patient", [("name", "truoc")], set(), {"edge-reborn"}),
    ("Patient", [("identifier", "urn:edge|DEL-1")], set(), {"edge-deleted"}),
    ("Patient", [("_id", "edge-deleted,edge-bare")], {"edge-bare"}, {"edge-deleted"}),
    ("Patient", [("birthdate:missing", "false"), ("birthdate", "1975-05-05")], set(), {"edge-deleted"}),
    ("Observation", [("subject", "Patient/edge-deleted")], {"edge-of-deleted"}, set()),
    ("Observation", [("subject", "edge-deleted")], {"edge-of-deleted"}, set()),
    ("Observation", [("subject:Patient.identifier", "urn:edge|DEL-1")], set(), {"edge-of-deleted"}),
    ("Encounter", [("patient:Patient.name", "xoa")], set(), {"edge-of-deleted"}),
    ("Patient", [("_has:Observation:subject:code", "2345-7")], set(), {"edge-deleted"}),
    ("Patient", [("_has:Encounter:subject:class", "AMB"), ("gender:missing", "true")], set(), {"edge-deleted"}),
    ("Observation", [("subject:Patient._has:Observation:subject:code", "2345-7")], set(), {"edge-of-deleted"}),
    # open Periods: the open end reaches the end of time
    ("Encounter", [("date", "ge2025-06-30")], {"edge-open-start"}, {"edge-open-end"}),
    ("Encounter", [("date", "lt2020")], {"edge-open-end"}, {"edge-open-start"}),
    ("Encounter", [("date", "eq2025")], set(), {"edge-open-start"}),
    ("Encounter", [("date", "ne2025"), ("status", "in-progress")], {"edge-open-start"}, set()),
    ("Encounter", [("date", "sa2025-07-01")], set(), {"edge-open-start"}),
    ("Encounter", [("date", "ap2025-07-01")], {"edge-open-start"}, set()),
    ("Observation", [("code", "edge-period"), ("date", "lt2024-02-10")], {"edge-period-end"}, {"edge-period"}),
    ("Observation", [("code", "edge-period"), ("date", "gt2024-02-10")], {"edge-period"}, {"edge-period-end"}),
    ("Condition", [("onset-date", "ge2019-03-15")], {"edge-onset-period"}, set()),
    ("Condition", [("onset-date", "eb2019-03-01")], set(), {"edge-onset-period"}),
    ("Condition", [("onset-age", "12|http://unitsofmeasure.org|a")], {"edge-onset-age"}, set()),
    ("Condition", [("abatement-date", "2015-06-01")], {"edge-onset-age"}, set()),
    ("Condition", [("abatement-string", "CHƯA")], {"edge-onset-period"}, set()),
    # :missing, :not, tokens without a system
    ("Patient", [("birthdate:missing", "true"), ("name:missing", "true")], {"edge-bare"}, {"edge-accent"}),
    ("Patient", [("gender:not", "male"), ("_tag", "no-system")], {"edge-bare"}, set()),
    ("Patient", [("_tag", "|no-system")], {"edge-bare"}, set()),
    ("Observation", [("code", "|8867-4")], {"edge-no-code-system"}, set()),
    ("Observation", [("code", "http://loinc.org|8867-4"), ("subject", "Patient/edge-plain")], set(),
     {"edge-no-code-system"}),
    # chains and _has, as the issue lists them
    ("Observation", [("subject:Patient.name", "nguyen"), ("code", "edge-dose")],
     {"edge-mg", "edge-g", "edge-g2", "edge-tablet", "edge-unit-only"}, set()),
    ("Encounter", [("service-provider.name", "tram y te xa dong hoa")], {"edge-open-start"}, set()),
    ("Observation", [("subject:Patient.organization:Organization.identifier", "urn:edge|E-1")],
     {"edge-mg"}, set()),
    ("Patient", [("_has:Observation:patient:code", "edge-dose")], {"edge-accent"}, {"edge-plain"}),
    ("Organization", [("_has:Encounter:service-provider:_has:Observation:encounter:code", "8867-4")], set(), set()),
    # uri :above and :below
    ("Patient", [("_profile:below", "http://fhir.ehealth.gov.vn/core/StructureDefinition/vn-core-")],
     {"edge-bare"}, set()),
    ("Patient", [("_profile:above", "http://hl7.org/fhir/StructureDefinition/Patient/x")], {"edge-bare"}, set()),
    # numbers
    ("RiskAssessment", [("probability", "0.25")], {"risk-0"}, {"risk-2"}),
    ("RiskAssessment", [("probability", "gt0.95")], {"risk-3"}, {"risk-0", "risk-4"}),
    ("RiskAssessment", [("probability", "ap0.5")], {"risk-2"}, set()),
]


@dataclass
class Stats:
    queries: int = 0
    nonempty: int = 0
    total_found: int = 0
    paged: int = 0
    #: Refused with a 400 that says so (:data:`REFUSED`).
    refused: int = 0
    features: Counter[str] = field(default_factory=Counter)


def _precision(low: int, high: int) -> str:
    width = high - low + 1
    names = {1: "micro", 1000: "milli", 10**6: "second", 60 * 10**6: "minute", 86400 * 10**6: "day"}
    if width in names:
        return names[width]
    return "month" if width <= 31 * 86400 * 10**6 else "year"


def features(criteria: Iterable[Criterion], out: Counter[str], depth: int = 0) -> None:
    """What a query exercises, to check the generator still reaches every case."""
    for c in criteria:
        if isinstance(c, AnyOf):
            out["compartment"] += 1
            features(c.criteria, out, depth)
            continue
        if isinstance(c, (Chain, Has)):
            out["chain" if isinstance(c, Chain) else "_has"] += 1
            if depth:
                out["nested chain/_has"] += 1
            features([c.clause], out, depth + 1)
            continue
        out[c.type if c.modifier is None else f"{c.type}:{c.modifier}"] += 1
        if len(c.values) > 1:
            out["OR"] += 1
        for v in c.values:
            if isinstance(v, DateValue):
                out[f"date {v.prefix}"] += 1
                out[f"date {_precision(v.low, v.high)}"] += 1
            elif isinstance(v, (NumberValue, QuantityValue)):
                out[f"{c.type} {v.prefix}"] += 1
                if isinstance(v, QuantityValue):
                    out["quantity canonical" if v.canonical else "quantity with unit" if v.code else
                        "quantity without unit"] += 1
            elif isinstance(v, ReferenceValue) and v.types:
                out["reference bare id"] += 1
            elif isinstance(v, TokenValue):
                out["token " + ("code" if v.system is None else "system|" if v.code is None else
                                "|code" if v.system == "" else "system|code")] += 1


#: Cases the generator must keep reaching (at least this many queries each).
REQUIRED = {f"date {p}": 10 for p in ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")}
REQUIRED |= {f"date {p}": 10 for p in ("year", "month", "day", "minute", "second", "milli")}
REQUIRED |= {f"quantity {p}": 5 for p in ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")}
REQUIRED |= {f"number {p}": 2 for p in ("eq", "ne", "gt", "lt", "ge", "le", "ap")}
REQUIRED |= {k: 3 for k in ("reference:identifier",)}
REQUIRED |= {k: 10 for k in ("string", "string:contains", "string:exact", "token", "token:not", "token:text",
                             "token:of-type", "reference", "reference bare id", "uri", "uri:above", "uri:below",
                             "quantity canonical", "quantity with unit", "quantity without unit", "token code",
                             "token system|", "token |code", "token system|code", "chain", "_has", "OR",
                             "compartment", "AND", "_id", "nested chain/_has", "missing=true", "missing=false")}


class Runner:
    def __init__(self, store: Store, ref: Reference):
        self.store = store
        self.ref = ref
        self.stats = Stats()
        self.failures: list[str] = []
        self.seen: set[str] = set()

    async def check(self, rtype: str, pairs: Sequence[Pair], inside: tuple[str, AnyOf] | None = None
                    ) -> set[str] | None:
        """Run one query both ways; the store's answer, or ``None`` if it was seen or failed to parse."""
        stats = self.stats
        text = _query_text(rtype, pairs)
        if inside is not None:
            text = f"{inside[0]}/{text}"
        if text in self.seen:
            return None
        self.seen.add(text)
        try:
            q = parse([rtype], pairs, strict=True)
        except FhirError as exc:
            if REFUSED in str(exc):
                stats.refused += 1
            else:
                self.failures.append(f"{text}\n    parse refused it: {exc}")
            return None
        if inside is not None:
            q = replace(q, criteria=(*q.criteria, inside[1]))
        stats.queries += 1
        features(q.criteria, stats.features)
        stats.features["AND"] += (len(q.criteria) + (q.ids is not None)) > 1
        stats.features["_id"] += q.ids is not None
        for name, value in pairs:
            if name.endswith(":missing"):
                stats.features[f"missing={value}"] += 1
        criteria = list(q.criteria)
        want = self.ref.answer(rtype, q, now_us())
        found = await self.store.find(rtype, criteria, LIMIT, None, q.ids)
        got = set(found)
        counted = await self.store.count(rtype, criteria, q.ids)
        stats.nonempty += bool(want)
        stats.total_found += len(want)
        problems = []
        if len(found) != len(got):
            problems.append(f"find listed duplicates: {len(found)} ids, {len(got)} distinct")
        if got != want:
            problems.append(f"store only: {sorted(got - want)[:8]}  matcher only: {sorted(want - got)[:8]}")
        if counted != len(want):
            problems.append(f"count {counted}, matcher {len(want)}")
        if not problems and len(want) > 1 and stats.queries % 6 == 0:  # paging: limit and cursor
            stats.paged += 1
            size = max(1, len(want) // 3)
            walked = await _pages(self.store, rtype, q, criteria, size)
            if len(walked) != len(got) or set(walked) != got:
                problems.append(f"pages of {size}: {len(walked)} ids, {len(set(walked))} distinct, "
                                f"missing {sorted(got - set(walked))[:5]}")
        if problems:
            self.failures.append(f"{text}\n    " + "\n    ".join(problems))
        return got

    async def generated(self, gen: Generator, count: int) -> None:
        weights = {"Observation": 4, "Patient": 4, "Encounter": 3, "Condition": 3, "Organization": 2,
                   "RiskAssessment": 3}
        types = list(weights)
        owners = {t: sorted(ids) for t, ids in gen.ids.items()}
        start = self.stats.queries
        for _ in range(count * 3):
            if self.stats.queries - start >= count:
                break
            rtype = gen.rng.choices(types, [weights[t] for t in types])[0]
            pairs = gen.query(rtype)
            inside = compartment(gen.rng, rtype, owners) if gen.rng.random() < 0.06 else None
            await self.check(rtype, pairs, inside)


async def _pages(store: Store, rtype: str, q: Query, criteria: list[Criterion], size: int) -> list[str]:
    """Every id, walking the keyset cursor (the last id of a page) ``size`` at a time."""
    out: list[str] = []
    after = None
    for _ in range(1000):
        page = await store.find(rtype, criteria, size, after, q.ids)
        out.extend(page)
        if len(page) < size:
            break
        after = page[-1]
    return out


async def test_store_agrees_with_the_matcher(tmp_path: Path, store_factory: StoreFactory) -> None:
    started = time.monotonic()
    data = datasets.generated(patients=30, seed=7)
    store = store_factory(tmp_path, "diff")
    await store.open()
    try:
        stored = await datasets.load(store, data)
        runner = Runner(store, Reference(stored))
        expected: list[str] = []
        for rtype, pairs, must, must_not in FIXED:
            got = await runner.check(rtype, pairs)
            if got is not None and (not must <= got or must_not & got):
                expected.append(f"{_query_text(rtype, pairs)}: missing {sorted(must - got)}, "
                                f"unexpected {sorted(must_not & got)}")
        seeds = [(t, r) for (t, _), r in stored.items()]
        seeds += [(t, {**r, "id": i}) for t, i, r in data.stale]  # old values must not match
        await runner.generated(Generator(random.Random(SEED), seeds), QUERIES)
    finally:
        await store.close()
    stats, failures = runner.stats, runner.failures
    elapsed = time.monotonic() - started
    print(f"differential: {len(stored)} resources, {stats.queries} distinct queries ({len(FIXED)} fixed; "
          f"{stats.nonempty} with matches, {stats.total_found} ids in all, {stats.paged} paged; "
          f"{stats.refused} refused as not supported), "
          f"{elapsed:.1f}s, seed {SEED}")
    print("cases:", ", ".join(f"{k} {n}" for k, n in sorted(stats.features.items())))
    assert not failures, f"{len(failures)} of {stats.queries} queries disagree (seed {SEED}):\n" + "\n".join(
        failures[:25])
    assert not expected, "edge resources found wrongly (by both):\n" + "\n".join(expected)
    assert stats.queries >= min(QUERIES, 500) + len(FIXED)
    assert stats.nonempty >= stats.queries // 3, "the generator draws too few queries that match anything"
    if QUERIES >= 1000:
        thin = {k: stats.features[k] for k, n in REQUIRED.items() if stats.features[k] < n}
        assert not thin, f"the generator no longer reaches these cases often enough: {thin}"


# --- composites: the REST layer's index prefilter and in-memory recheck ----------------------------


FIXED_COMPOSITES: list[tuple[list[Pair], set[str], set[str]]] = [
    ([("component-code-value-quantity", "http://loinc.org|8480-6$150|http://unitsofmeasure.org|mm[Hg]")],
     {"edge-bp"}, set()),
    ([("component-code-value-quantity", "http://loinc.org|8480-6$95")], set(), {"edge-bp"}),  # the diastolic value
    ([("component-code-value-quantity", "8462-4$95,8480-6$95")], {"edge-bp"}, set()),
    ([("component-code-value-quantity", "http://loinc.org|8480-6$20|http://unitsofmeasure.org|kPa")], {"edge-bp"},
     set()),
    ([("code-value-quantity", "http://loinc.org|edge-dose$0.5|http://unitsofmeasure.org|g")], {"edge-mg", "edge-g"},
     {"edge-g2", "edge-unit-only"}),
    ([("code-value-quantity", "edge-dose$500"), ("subject", "Patient/edge-accent")], {"edge-mg", "edge-unit-only"},
     {"edge-g"}),
    ([("code-value-string", "edge-period$dang theo")], {"edge-period"}, set()),
    # union components: Observation.code or component.code, with the value of the same element
    ([("combo-code-value-quantity", "http://loinc.org|8480-6$150")], {"edge-bp"}, set()),
    ([("combo-code-value-quantity", "http://loinc.org|8480-6$95")], set(), {"edge-bp"}),
    # :missing: no element has a value for every component (a code and no value[x] is missing)
    ([("code-value-quantity:missing", "true"), ("subject", "Patient/edge-accent")],
     {"edge-bp", "edge-period", "edge-period-end"}, {"edge-mg", "edge-tablet"}),
    ([("code-value-quantity:missing", "false"), ("subject", "Patient/edge-accent")], {"edge-mg", "edge-tablet"},
     {"edge-bp", "edge-period"}),
]


async def test_composites_agree_with_the_matcher(tmp_path: Path, store_factory: StoreFactory) -> None:
    """Composite parameters are not in the index: ``rest/search.py`` finds candidates through the
    store by each component alone and rechecks them with the matcher. Checked against the matcher
    over every Observation (what is compared is the prefilter: it must never drop a match)."""
    from types import SimpleNamespace

    from fhir_hub.rest.search import _find as rest_find

    started = time.monotonic()
    data = datasets.generated(patients=30, seed=7)
    store = store_factory(tmp_path, "composite")
    await store.open()
    rng = random.Random(SEED + 1)
    failures: list[str] = []
    seen: set[str] = set()
    nonempty = 0
    try:
        stored = await datasets.load(store, data)
        ref = Reference(stored)
        gen = Generator(rng, [(t, r) for (t, _), r in stored.items()])
        hub = SimpleNamespace(store=store)
        observations = [r for (t, _), r in sorted(stored.items()) if t == "Observation"]
        codes = sorted(c for c, p in parameters.params_for("Observation").items()
                       if p.type == "composite" and c not in extract.unsupported("Observation"))
        drawn: list[tuple[list[Pair], set[str] | None, set[str] | None]] = [(p, m, n) for p, m, n in FIXED_COMPOSITES]
        while len(drawn) < 320:
            code = rng.choice(codes)
            values = [v for _ in range(rng.choice((1, 1, 1, 2)))
                      if (v := gen.composite_value("Observation", code, rng.choice(observations))) is not None]
            if not values:
                continue
            pairs = [(code, ",".join(values))]
            if rng.random() < 0.3:
                pairs.append(gen.criterion("Observation", 1))
            drawn.append((pairs, None, None))
        for pairs, must, must_not in drawn:
            text = _query_text("Observation", pairs)
            if text in seen:
                continue
            seen.add(text)
            try:
                q = parse(["Observation"], pairs, strict=True)
            except FhirError as exc:
                if REFUSED not in str(exc):
                    failures.append(f"{text}\n    parse refused it: {exc}")
                continue
            want = ref.answer("Observation", q, now_us())
            got = set(await rest_find(hub, "Observation", q, list(q.criteria), LIMIT, None))
            nonempty += bool(want)
            if got != want:
                failures.append(f"{text}\n    found only: {sorted(got - want)[:8]}  "
                                f"matcher only: {sorted(want - got)[:8]}")
            if must is not None and must_not is not None and (not must <= got or must_not & got):
                failures.append(f"{text}\n    expected {sorted(must)}, not {sorted(must_not)}; found {sorted(got)}")
    finally:
        await store.close()
    print(f"composites: {len(seen)} queries ({nonempty} with matches), "
          f"{time.monotonic() - started:.1f}s")
    assert not failures, f"{len(failures)} composite queries disagree:\n" + "\n".join(failures[:25])
    assert len(seen) >= 250 and nonempty >= 100


# --- regression tests: the bugs found, each as its smallest case --------------------------------------


@pytest.mark.parametrize("modifier", ["above", "below"])
def test_uri_above_below_parse(modifier: str) -> None:
    """``:above``/``:below`` on a uri parameter are prefix tests, not terminology modifiers."""
    q = parse(["Patient"], [(f"_profile:{modifier}", "http://example.org/StructureDefinition/p")], strict=True)
    assert q.criteria == (Clause("_profile", "uri", (UriValue("http://example.org/StructureDefinition/p"),),
                                 modifier),)


async def _tiny_store(tmp_path: Path, store_factory: StoreFactory, deleted: bool) -> Store:
    store = store_factory(tmp_path, "tiny")
    await store.open()
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "subject": {"reference": "Patient/p"}}
    await store.transact(lambda tx: (tx.put("Patient", "p", {"resourceType": "Patient"}, "PUT"),
                                     tx.put("Observation", "o", obs, "PUT")))
    if deleted:
        await store.transact(lambda tx: tx.delete("Patient", "p"))
    return store


@pytest.mark.parametrize(("rtype", "name"), [("Patient", "_has:Observation:subject:status"),
                                             ("Observation", "subject:Patient._has:Observation:subject:status")])
async def test_has_skips_deleted_resources(tmp_path: Path, store_factory: StoreFactory, rtype: str,
                                           name: str) -> None:
    """``_has`` finds live targets only, not a deleted Patient a live Observation still references."""
    store = await _tiny_store(tmp_path, store_factory, deleted=True)
    try:
        q = parse([rtype], [(name, "final")], strict=True)
        assert (await store.find(rtype, list(q.criteria), 10), await store.count(rtype, list(q.criteria))) == ([], 0)
    finally:
        await store.close()


@pytest.mark.parametrize(("rtype", "name", "want"), [("Patient", "_has:Observation:subject:status", ["p"]),
                                                     ("Observation", "subject:Patient._has:Observation:subject:status",
                                                      ["o"])])
async def test_has_before_the_delete(tmp_path: Path, store_factory: StoreFactory, rtype: str, name: str,
                                     want: list[str]) -> None:
    """The same store without the delete: the ``_has`` above finds the Patient then."""
    store = await _tiny_store(tmp_path, store_factory, deleted=False)
    try:
        q = parse([rtype], [(name, "final")], strict=True)
        assert await store.find(rtype, list(q.criteria), 10) == want
    finally:
        await store.close()


@pytest.mark.parametrize("code", ["code-value-quantity", "combo-code-value-quantity"])
async def test_combo_composites_are_found(tmp_path: Path, store_factory: StoreFactory, code: str) -> None:
    """A composite whose components are union parameters (``combo-code``, ``combo-value-quantity``)
    is found through the REST prefilter, which expands the union members as the parser does."""
    from types import SimpleNamespace

    from fhir_hub.rest.search import _find as rest_find

    store = store_factory(tmp_path, "combo")
    await store.open()
    try:
        obs = {"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
               "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}
        await store.transact(lambda tx: tx.put("Observation", "o", obs, "PUT"))
        q = parse(["Observation"], [(code, "http://loinc.org|8867-4$72")], strict=True)
        assert await rest_find(SimpleNamespace(store=store), "Observation", q, list(q.criteria), 10, None) == ["o"]
    finally:
        await store.close()


def test_composite_missing_means_no_value() -> None:
    """Composite ``:missing=true``: no element has a value for every component (here: a code, no value)."""
    obs = {"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}
    elements = extract.component_rows("Observation", "code-value-quantity", obs)
    missing = Clause("code-value-quantity", "composite", (), "missing", True)
    assert matcher.composite_matches(missing, elements)
    assert not matcher.composite_matches(replace(missing, missing=False), elements)


NFD = unicodedata.normalize("NFD", "Nguyễn")


@pytest.mark.parametrize("typed", ["nfc", "nfd"])
async def test_exact_finds_text_written_decomposed(tmp_path: Path, store_factory: StoreFactory, typed: str) -> None:
    """``:exact`` compares NFC on both sides: a name written decomposed is found typed either way."""
    store = store_factory(tmp_path, "nfd")
    await store.open()
    try:
        patient = {"resourceType": "Patient", "name": [{"family": NFD}]}
        await store.transact(lambda tx: tx.put("Patient", "x", dict(patient), "PUT"))
        q = parse(["Patient"], [("family:exact", NFD if typed == "nfd" else "Nguyễn")], strict=True)
        ix = Indexed("Patient/x", group(extract.index_rows("Patient", patient)), patient)
        assert (await store.find("Patient", list(q.criteria), 10), matches(q.criteria, ix)) == (["x"], True)
    finally:
        await store.close()
