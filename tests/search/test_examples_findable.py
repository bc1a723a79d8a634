"""Every official R4 example of the core clinical types is found by each of its own index values.

All examples of the types below go into one SQLite store under their own ids. For every index
row extraction makes of a stored example, the query that should find it is built from the row
alone and parsed strictly; the example's id must be in ``store.find``'s answer, and the in-memory
matcher must accept the example too:

============ =====================================================================================
row kind     query
============ =====================================================================================
string       ``p=<normalised value>`` (a prefix of itself), ``p:contains=`` the same, and
             ``p:exact=<value as written>``
``p:text``   ``p:text=<normalised value>``
token        ``p=system|code``, or ``p=|code`` without a system (``system|`` without a code)
``p:of-type`` ``p:of-type=type-system|type-code|value``
``p:identifier`` ``p:identifier=system|value`` (``|value`` without a system)
date         ``p=ge<low>&p=le<high>``, both as instants to the µs (an open end is left out); and
             ``p=eq<date>`` when the row is exactly one date at some precision (``2012``, a day...)
number       ``p=<value>`` with every digit it has (``repr``)
quantity     ``p=<value>|system|code`` (UCUM values then meet the canonical rows), ``p=<value>``,
             and in the canonical unit for a convertible UCUM unit
reference    ``p=<target>`` (``Type/id`` or the absolute URL)
uri          ``p=<uri>``
============ =====================================================================================

``p:canonical`` rows are what a UCUM query meets, not values of their own: not queried.
A parameter searched as the union of others (``combo-code``, where extraction has such aliases)
has no rows: it is queried with each of its members' rows instead.

Every query must find its example; there is no list of known failures. The one bug this test
found (the canonical pressure unit ``g/(m.s2)`` missing from ``ucum.py``) is fixed and keeps its
smallest case, :func:`test_a_query_in_the_canonical_pressure_unit`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from fhir_hub.errors import FhirError
from fhir_hub.search import dates, extract, ucum
from fhir_hub.search.convert import DATE_MAX, DATE_MIN
from fhir_hub.search.matcher import Env, Indexed, IndexRow, group, matches, now_us
from fhir_hub.search.parse import parse
from fhir_hub.storage.port import Store, Tx
from fhir_hub.storage.sqlite.store import SQLiteStore
from tests.conftest import EXAMPLES
from tests.search import datasets

TYPES = ("Patient", "Encounter", "Observation", "Condition", "Organization", "Practitioner")
Pair = tuple[str, str]
LIMIT = 100_000

pytestmark = pytest.mark.skipif(not EXAMPLES.is_dir(), reason="shared R4 examples are not beside the checkout")


def escape(text: str) -> str:
    for ch in "\\,|$":
        text = text.replace(ch, "\\" + ch)
    return text


def instant(us: int) -> str:
    """``us`` as a FHIR instant to the µs, in UTC."""
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}Z"


def _at_precision(low: int, high: int) -> str | None:
    """The FHIR date (in UTC) whose whole precision is exactly ``[low, high]``, if there is one."""
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=low)
    second = t.strftime("%Y-%m-%dT%H:%M:%S")
    for text in (f"{t.year:04d}", f"{t.year:04d}-{t.month:02d}", t.strftime("%Y-%m-%d"), t.strftime("%Y-%m-%dT%H:%MZ"),
                 second + "Z", f"{second}.{t.microsecond // 1000:03d}Z", f"{second}.{t.microsecond:06d}Z"):
        if dates.period(text) == (low, high):
            return text
    return None


def _aliases(rtype: str) -> dict[str, tuple[str, ...]]:
    aliases = getattr(extract, "aliases", None)
    return {} if aliases is None else dict(aliases(rtype))


def queries(row: IndexRow, param: str | None = None) -> list[tuple[str, list[Pair]]]:
    """``(what, pairs)``: the queries that must find the resource a row belongs to, asked as
    ``param`` (default: the row's own parameter)."""
    kind, p, a, b, c = row
    base, _, derived = p.partition(":")
    base = param or base
    if kind == "string":
        if derived == "text":
            return [("text", [(f"{base}:text", escape(a))])]
        return [("prefix", [(base, escape(a))]), ("contains", [(f"{base}:contains", escape(a))]),
                ("exact", [(f"{base}:exact", escape(b))])]
    if kind == "token":
        if derived == "of-type":
            tsys, _, tcode = a.partition("|")
            return [("of-type", [(f"{base}:of-type", "|".join(escape(x) for x in (tsys, tcode, b)))])]
        name = f"{base}:identifier" if derived == "identifier" else base
        if not b:
            return [("system|", [(name, escape(a) + "|")])]
        return [("token", [(name, f"{escape(a)}|{escape(b)}" if a else "|" + escape(b))])]
    if kind == "date":
        pairs = []
        if a > DATE_MIN:
            pairs.append((base, "ge" + instant(a)))
        if b < DATE_MAX:
            pairs.append((base, "le" + instant(b)))
        found = [("ge+le", pairs)]
        text = _at_precision(a, b)
        if text is not None:
            found.append(("eq", [(base, "eq" + text)]))
        return found
    if kind == "number":
        return [("number", [(base, repr(a))])]
    if kind == "quantity":
        found = [("quantity", [(base, f"{c!r}|{escape(a)}|{escape(b)}")]), ("quantity bare", [(base, repr(c))])]
        canon = ucum.canonical(c, b) if a == ucum.SYSTEM and b else None
        if canon is not None:
            found.append(("quantity canonical", [(base, f"{canon[0]!r}|{ucum.SYSTEM}|{escape(canon[1])}")]))
        return found
    if kind == "reference":
        return [("reference", [(base, escape(a))])]
    if kind == "uri":
        return [("uri", [(base, escape(a))])]
    raise AssertionError(f"unknown row kind {row}")


def triples(rtype: str, resource: dict[str, Any]) -> list[tuple[str, IndexRow, str, list[Pair]]]:
    """``(param, row, what, pairs)`` for every index row of ``resource`` that a query should find."""
    rows = extract.index_rows(rtype, resource)
    out = []
    for row in rows:
        if row[1].endswith(":canonical"):
            continue
        for what, pairs in queries(row):
            out.append((row[1], row, what, pairs))
    for alias, members in _aliases(rtype).items():
        for row in rows:
            base, _, derived = row[1].partition(":")
            if base in members and derived != "canonical":
                for what, pairs in queries(row, alias):
                    out.append((alias if not derived else f"{alias}:{derived}", row, what, pairs))
    return out


async def _store(tmp: Path, examples: Sequence[tuple[str, str, dict[str, Any]]]
                 ) -> tuple[Store, dict[tuple[str, str], dict[str, Any]]]:
    store: Store = SQLiteStore(str(tmp / "examples.db"), indexer=extract.Indexer())
    await store.open()

    def unit(tx: Tx) -> None:
        for _, rtype, resource in examples:
            tx.put(rtype, resource["id"], dict(resource), "PUT")

    await store.transact(unit)
    stored = await datasets.read_back(store, [(t, r["id"]) for _, t, r in examples])
    return store, stored


async def findable(store: Store, rtype: str, rid: str, resource: dict[str, Any], pairs: list[Pair]) -> str | None:
    """Why the query does not find ``rtype/rid`` (``None``: it does, in the store and the matcher)."""
    try:
        q = parse([rtype], pairs, strict=True)
    except FhirError as exc:
        return f"refused: {exc}"
    problems = []
    if rid not in await store.find(rtype, list(q.criteria), LIMIT, None, q.ids):
        problems.append("not in store.find")
    ix = Indexed(f"{rtype}/{rid}", group(extract.index_rows(rtype, resource)), resource)
    if not matches(q.criteria, ix, Env(component_rows=extract.component_rows, now=now_us())):
        problems.append("the matcher rejects it")
    return "; ".join(problems) or None


async def test_every_example_is_found_by_each_of_its_values(tmp_path: Path) -> None:
    started = time.monotonic()
    examples = datasets.examples(EXAMPLES, TYPES)
    assert {t for _, t, _ in examples} == set(TYPES)
    store, stored = await _store(tmp_path, examples)
    checked: Counter[str] = Counter()
    failures: dict[tuple[str, str], str] = {}
    values: set[tuple[str, str, IndexRow]] = set()
    try:
        for name, rtype, resource in examples:
            rid = resource["id"]
            body = stored[rtype, rid]
            for param, row, what, pairs in triples(rtype, body):
                checked[f"{rtype} {what}"] += 1
                values.add((name, param, row))
                why = await findable(store, rtype, rid, body, pairs)
                if why is not None:
                    failures[name, "&".join(f"{k}={v}" for k, v in pairs)] = f"{param}: {why}"
    finally:
        await store.close()
    total = sum(checked.values())
    print(f"examples findable: {len(examples)} examples, {len(values)} (example, parameter, value) triples "
          f"by {total} queries, "
          f"{len(failures)} failing, {time.monotonic() - started:.1f}s")
    print("by type and kind:", ", ".join(f"{k} {n}" for k, n in sorted(checked.items())))
    assert not failures, f"{len(failures)} values do not find their example:\n" + "\n".join(
        f"  {name}: {query}  ({why})" for (name, query), why in sorted(failures.items()))
    assert len(values) > 1500 and total > 2000


async def test_a_query_in_the_canonical_pressure_unit(tmp_path: Path) -> None:
    """Regression: a pressure asked in its canonical UCUM unit, g/(m.s2), meets a value in mm[Hg]."""
    obs = {"resourceType": "Observation", "id": "bp", "status": "final", "code": {"text": "bp"},
           "valueQuantity": {"value": 120, "unit": "mmHg", "system": ucum.SYSTEM, "code": "mm[Hg]"}}
    store, stored = await _store(tmp_path, [("x", "Observation", obs)])
    try:
        for value in ("16|http://unitsofmeasure.org|kPa", "15998686.4898|http://unitsofmeasure.org|g/(m.s2)"):
            assert await findable(store, "Observation", "bp", stored["Observation", "bp"],
                                  [("value-quantity", value)]) is None, value
    finally:
        await store.close()
