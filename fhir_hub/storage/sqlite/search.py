"""Neutral search criteria → SQL over the index tables (``schema.py``).

Each criterion compiles two ways: as a **set** (``SELECT rid ...`` over the value-ordered primary
key of its index table: an index range, whatever the table's size) and as a **probe** of one
candidate (``EXISTS`` over the table's ``(rtype, rid, param)`` index: a seek). The most selective
criterion, by a fixed ranking of kinds (``_id``, references, exact tokens, ... , ``:not``), drives;
the others probe its candidates. Chains and ``_has`` compile to sets of ids fed through ``IN``, so
SQLite materialises the usually tiny inner set once.

Index rows exist for live current versions only (a delete removes them), so a set needs no join
with ``current``; only a query without any positive criterion scans ``current``.

The comparison rules are the in-memory matcher's (``search/matcher.py``); the differential test
runs both over the same data.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from fhir_hub.search import parameters
from fhir_hub.search.dates import approximate
from fhir_hub.search.matcher import CANONICAL, ap_range
from fhir_hub.search.query import (
    AnyOf,
    Chain,
    Clause,
    CompositeValue,
    Criterion,
    DateValue,
    NumberValue,
    OfTypeValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    Value,
)
from fhir_hub.storage.sqlite.schema import param_key, system_key

#: Index table of each parameter type (``schema.INDEX_TABLES`` creates them).
TABLE = {"string": "idx_string", "token": "idx_token", "date": "idx_date", "number": "idx_number",
         "quantity": "idx_quantity", "reference": "idx_reference", "uri": "idx_uri"}
_MAX_CHAR = "\U0010ffff"
#: Lower ranks drive: they are likely to select fewest rows.
_RANK = {"reference": 0, "token": 1, "uri": 2, "string": 3, "date": 4, "quantity": 4, "number": 4, "composite": 5}


class Unsupported(ValueError):
    """A criterion this compiler cannot express (the caller re-checks in memory or refuses)."""


def _table(clause: Clause) -> tuple[str, str]:
    """(table, param) holding the rows a clause compares against."""
    if clause.modifier == "text":
        return "idx_string", clause.param + ":text"
    if clause.modifier == "of-type":
        return "idx_token", clause.param + ":of-type"
    if clause.modifier == "identifier":
        return "idx_token", clause.param + ":identifier"
    if clause.type == "composite":
        raise Unsupported("composite parameters are matched from their components")
    table = TABLE.get(clause.type)
    if table is None:
        raise Unsupported(f"no index for {clause.type} parameters")
    return table, clause.param


def _range(x: str, prefix: str, lo: Any, hi: Any, args: list[Any]) -> str:
    """Date rows are ranges ``[x.low, x.high]``, compared with the value's range ``[lo, hi]``."""
    if prefix == "eq":
        args.extend((lo, hi))
        return f"({x}.low >= ? AND {x}.high <= ?)"
    if prefix == "ne":
        args.extend((lo, hi))
        return f"({x}.low < ? OR {x}.high > ?)"
    if prefix == "gt":
        args.append(hi)
        return f"{x}.high > ?"
    if prefix == "lt":
        args.append(lo)
        return f"{x}.low < ?"
    if prefix == "ge":
        args.extend((hi, lo, hi))
        return f"({x}.high > ? OR ({x}.low >= ? AND {x}.high <= ?))"
    if prefix == "le":
        args.extend((lo, lo, hi))
        return f"({x}.low < ? OR ({x}.low >= ? AND {x}.high <= ?))"
    if prefix == "sa":
        args.append(hi)
        return f"{x}.low > ?"
    if prefix == "eb":
        args.append(lo)
        return f"{x}.high < ?"
    raise Unsupported(f"prefix {prefix}")


def _point(col: str, v: NumberValue | QuantityValue, args: list[Any]) -> str:
    """Number and quantity rows are points, compared with the value's significant-digit range."""
    p = v.prefix
    if p == "eq":
        args.extend((v.low, v.high))
        return f"{col} BETWEEN ? AND ?"
    if p == "ne":
        args.extend((v.low, v.high))
        return f"{col} NOT BETWEEN ? AND ?"
    if p == "ap":
        args.extend(ap_range(v.value, v.low, v.high))
        return f"{col} BETWEEN ? AND ?"
    op = {"gt": ">", "sa": ">", "lt": "<", "eb": "<", "ge": ">=", "le": "<="}[p]
    args.append(v.value)
    return f"{col} {op} ?"


def _value_sql(x: str, clause: Clause, v: Value, args: list[Any], rtype: str) -> str:
    if isinstance(v, StringValue):
        if clause.modifier == "exact":
            from fhir_hub.search.text import normalise

            args.extend((normalise(v.text), v.text))
            return f"({x}.norm = ? AND {x}.exact = ?)"
        if clause.modifier == "contains":
            args.append(v.text)
            return f"instr({x}.norm, ?) > 0"
        args.extend((v.text, v.text + _MAX_CHAR))
        return f"({x}.norm >= ? AND {x}.norm < ?)"
    if isinstance(v, TokenValue):
        if v.system is None:
            args.append(v.code)
            return f"{x}.code = ?"
        if v.code is None:
            args.append(system_key(v.system))
            return f"{x}.system = ?"
        args.extend((v.code, system_key(v.system)))
        return f"({x}.code = ? AND {x}.system = ?)"
    if isinstance(v, OfTypeValue):
        args.extend((v.value, system_key(f"{v.type_system}|{v.type_code}")))
        return f"({x}.code = ? AND {x}.system = ?)"
    if isinstance(v, ReferenceValue):
        if v.types:
            rid = v.target.partition("/")[2]
            args.extend(f"{t}/{rid}" for t in v.types)
            return f"{x}.target IN ({','.join('?' * len(v.types))})"
        args.append(v.target)
        return f"{x}.target = ?"
    if isinstance(v, DateValue):
        lo, hi = v.low, v.high
        if v.prefix == "ap":
            lo, hi = approximate(lo, hi)
            args.extend((hi, lo))
            return f"({x}.low <= ? AND {x}.high >= ?)"
        return _range(x, v.prefix, lo, hi, args)
    if isinstance(v, QuantityValue):
        args.append(param_key(rtype, clause.param + CANONICAL if v.canonical else clause.param))
        parts = [f"{x}.pid = ?", _point(f"{x}.value", v, args)]
        if v.code is not None:
            parts.append(f"{x}.code = ?")
            args.append(v.code)
        if v.system is not None:
            parts.append(f"{x}.system = ?")
            args.append(system_key(v.system))
        return "(" + " AND ".join(parts) + ")"
    if isinstance(v, NumberValue):
        return _point(f"{x}.value", v, args)
    if isinstance(v, UriValue):
        if clause.modifier == "below":
            args.extend((v.uri, v.uri + _MAX_CHAR))
            return f"({x}.uri >= ? AND {x}.uri < ?)"
        if clause.modifier == "above":
            args.append(v.uri)
            return f"substr(?, 1, length({x}.uri)) = {x}.uri"
        args.append(v.uri)
        return f"{x}.uri = ?"
    if isinstance(v, CompositeValue):
        raise Unsupported("composite")
    raise Unsupported(type(v).__name__)


class Compiler:
    """Builds one statement; aliases are numbered so nested criteria never collide."""

    def __init__(self) -> None:
        self.args: list[Any] = []
        self._n = 0

    def alias(self) -> str:
        self._n += 1
        return f"x{self._n}"

    def _values(self, x: str, clause: Clause, rtype: str) -> str:
        ors = [_value_sql(x, clause, v, self.args, rtype) for v in clause.values]
        return "(" + " OR ".join(ors) + ")"

    def positive(self, c: Criterion) -> bool:
        """Whether the criterion selects from an index (can drive) rather than excluding."""
        if isinstance(c, Clause):
            return c.modifier not in ("not", "missing") or (c.modifier == "missing" and c.missing is False)
        if isinstance(c, AnyOf):
            return all(self.positive(x) for x in c.criteria)
        return True

    def rank(self, c: Criterion) -> int:
        if isinstance(c, Clause):
            if c.modifier in ("contains", "text") or (c.type == "token" and any(
                    isinstance(v, TokenValue) and v.code is None for v in c.values)):
                return 6
            if c.modifier == "missing":
                return 7
            return _RANK.get(c.type, 5)
        if isinstance(c, AnyOf):
            return max((self.rank(x) for x in c.criteria), default=7)
        return 1 if isinstance(c, Chain) else 5

    def set_sql(self, rtype: str, c: Criterion) -> str:
        """``SELECT rk`` of the live ``rtype`` resources matching ``c`` (``c`` must be positive)."""
        if isinstance(c, Clause):
            table, param = _table(c)
            x = self.alias()
            if c.type == "quantity" and c.modifier is None:  # each value names its rows' param
                return f"SELECT {x}.rk AS rk FROM {table} {x} WHERE {self._values(x, c, rtype)}"
            self.args.append(param_key(rtype, param))
            sql = f"SELECT {x}.rk AS rk FROM {table} {x} WHERE {x}.pid = ?"
            if c.modifier == "missing":  # :missing=false: any row of the parameter
                return sql
            return f"{sql} AND {self._values(x, c, rtype)}"
        if isinstance(c, AnyOf):
            return " UNION ".join(self.set_sql(rtype, x) for x in c.criteria)
        if isinstance(c, Chain):
            x = self.alias()
            self.args.extend((param_key(rtype, c.param), c.target_type + "/"))
            inner = self.ids_sql(c.target_type, [c.clause])
            return (f"SELECT {x}.rk AS rk FROM idx_reference {x} WHERE {x}.pid = ? "
                    f"AND {x}.target IN (SELECT ? || t.rid FROM current t WHERE t.rk IN ({inner}))")
        x = self.alias()
        self.args.extend((rtype, param_key(c.source_type, c.param), rtype + "/", rtype + "0"))
        inner = self.ids_sql(c.source_type, [c.clause])
        return (f"SELECT t.rk AS rk FROM current t WHERE t.rtype = ? AND t.deleted = 0 AND t.rid IN ("
                f"SELECT substr({x}.target, {len(rtype) + 2}) FROM idx_reference {x} "
                f"WHERE {x}.pid = ? AND {x}.target >= ? AND {x}.target < ? AND {x}.rk IN ({inner}))")

    def probe_sql(self, rtype: str, rk: str, c: Criterion) -> str:
        """A condition true when the resource keyed ``{rk}`` matches ``c``."""
        if isinstance(c, Clause):
            table, param = _table(c)
            x = self.alias()
            if c.type == "quantity" and c.modifier is None:
                return f"EXISTS (SELECT 1 FROM {table} {x} WHERE {x}.rk = {rk} AND {self._values(x, c, rtype)})"
            self.args.append(param_key(rtype, param))
            head = f"SELECT 1 FROM {table} {x} WHERE {x}.rk = {rk} AND {x}.pid = ?"
            if c.modifier == "missing":
                return f"{'NOT ' if c.missing else ''}EXISTS ({head})"
            cond = f"EXISTS ({head} AND {self._values(x, c, rtype)})"
            return f"NOT {cond}" if c.modifier == "not" else cond
        if isinstance(c, AnyOf):
            return "(" + " OR ".join(self.probe_sql(rtype, rk, x) for x in c.criteria) + ")"
        return f"{rk} IN ({self.set_sql(rtype, c)})"

    def ids_sql(self, rtype: str, criteria: Sequence[Criterion], ids: Sequence[str] | None = None,
                after: str | None = None) -> str:
        """``SELECT rk`` of live ``rtype`` resources matching all criteria and ids, unordered."""
        drivers = sorted((c for c in criteria if self.positive(c)), key=self.rank)
        if ids is not None or not drivers:
            self.args.append(rtype)
            sql = "SELECT d.rk AS rk FROM current d WHERE d.rtype = ? AND d.deleted = 0"
            rest = list(criteria)
            if ids is not None:
                sql += f" AND d.rid IN ({','.join('?' * len(ids))})"
                self.args.extend(ids)
        else:
            first = drivers[0]
            rest = [c for c in criteria if c is not first]
            sql = f"SELECT d.rk AS rk FROM ({self.set_sql(rtype, first)}) d WHERE 1"
        for c in rest:
            sql += " AND " + self.probe_sql(rtype, "d.rk", c)
        if after is not None:
            sql += " AND d.rk > (SELECT a.rk FROM current a WHERE a.rtype = ? AND a.rid = ?)"
            self.args.extend((rtype, after))
        return sql


def find_sql(rtype: str, criteria: Sequence[Criterion], limit: int, after: str | None = None,
             ids: Sequence[str] | None = None) -> tuple[str, list[Any]]:
    """Ids of the matches in key order (creation order) after the resource ``after``, at most
    ``limit``: the page is cut on the keys, and only its ids are looked up."""
    comp = Compiler()
    inner = comp.ids_sql(rtype, criteria, ids, after)
    comp.args.append(limit)
    return (f"SELECT c.rid FROM (SELECT DISTINCT rk FROM ({inner}) ORDER BY rk LIMIT ?) p "
            "CROSS JOIN current c ON c.rk = p.rk ORDER BY p.rk"), comp.args


#: Sort value of a resource per parameter type: (column, table); the lowest value sorts
#: ascending, the highest descending (search.html#sort: a resource with several values sorts by
#: the one that puts it first).
_SORT_COLUMN = {"string": ("norm", "idx_string"), "token": ("code", "idx_token"), "date": ("low", "idx_date"),
                "number": ("value", "idx_number"), "quantity": ("value", "idx_quantity"),
                "reference": ("target", "idx_reference"), "uri": ("uri", "idx_uri")}


def sorted_sql(rtype: str, criteria: Sequence[Criterion], sort: Sequence[tuple[str, str, bool]], limit: int,
               after: Sequence[Any] | None = None, ids: Sequence[str] | None = None) -> tuple[str, list[Any]]:
    """A page ordered by ``sort`` keys ``(param, type, descending)``, then by key ``rk``.

    Rows are ``(rid, key values..., rk)``; the last row's values are the keyset position of the
    next page (``after``): a page starts after that position in the order, so pages stay valid
    across restarts and are not shifted by writes elsewhere in the order. Resources without a value
    for a key sort after those with one, either direction.
    """
    comp = Compiler()
    columns: list[str] = []
    for i, (param, kind, descending) in enumerate(sort):  # the select list comes first: its arguments too
        if param == "_id":
            expr = "c.rid"
        elif param == "_lastUpdated":
            expr = "(SELECT v.ts FROM version v WHERE v.seq = c.seq)"
        else:
            column, table = _SORT_COLUMN[kind]
            if kind == "date" and descending:
                column = "high"
            agg = "max" if descending else "min"
            expr = f"(SELECT {agg}(s.{column}) FROM {table} s WHERE s.rk = p.rk AND s.pid = ?)"
            comp.args.append(param_key(rtype, param))
        columns.append(f"{expr} AS k{i}")
    inner = comp.ids_sql(rtype, criteria, ids)
    body = (f"SELECT c.rid AS rid, {', '.join(columns)}, p.rk AS rk FROM (SELECT DISTINCT rk FROM ({inner})) p "
            "CROSS JOIN current c ON c.rk = p.rk")
    order = ", ".join([f"k{i} IS NULL, k{i}{' DESC' if d else ''}" for i, (_p, _k, d) in enumerate(sort)] + ["rk"])
    where = ""
    if after is not None:
        where = " WHERE " + _after(sort, after, comp.args)
    comp.args.append(limit)
    return f"SELECT * FROM ({body}){where} ORDER BY {order} LIMIT ?", comp.args


def _after(sort: Sequence[tuple[str, str, bool]], last: Sequence[Any], args: list[Any]) -> str:
    """Rows that come after ``last`` (key values, then rk) in the order: lexicographic, each key
    ordered ``(is null, value)`` ascending or descending, missing values last either way."""
    ors: list[str] = []
    for i in range(len(sort) + 1):
        if i < len(sort) and last[i] is None:
            continue  # nothing sorts after a missing value on this key: a later key decides
        same = [f"k{j} IS ?" for j in range(i)]
        args.extend(last[:i])
        if i == len(sort):
            same.append("rk > ?")
        else:
            same.append(f"(k{i} IS NULL OR k{i} {'<' if sort[i][2] else '>'} ?)")
        args.append(last[i])
        ors.append("(" + " AND ".join(same) + ")")
    return "(" + " OR ".join(ors) + ")"


def count_sql(rtype: str, criteria: Sequence[Criterion], ids: Sequence[str] | None = None) -> tuple[str, list[Any]]:
    comp = Compiler()
    inner = comp.ids_sql(rtype, criteria, ids)
    return f"SELECT count(DISTINCT rk) FROM ({inner})", comp.args


@lru_cache(maxsize=256)
def param_names(rtype: str) -> dict[int, str]:
    """``param_key`` → parameter code for ``rtype`` (the reference parameters an include names)."""
    return {param_key(rtype, sp.code): sp.code for sp in parameters.params_for(rtype).values()}
