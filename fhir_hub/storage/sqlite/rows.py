"""A resource's search-index rows in the index tables' own column order, without the resource key.

Made where the rows are extracted (the event loop, or a parser process for a large transaction),
so the writer, which limits ingest, does no work per row: it adds the resource key ``rk`` once
per resource and table, and SQLite unpacks the pairs (``store._INDEX_SQL``). Parameter names
become :func:`schema.param_key` integers and systems :func:`schema.system_key` ones here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from fhir_hub.storage.port import IndexRow, retargeted
from fhir_hub.storage.sqlite import schema

_param = schema.param_key
_system = schema.system_key


class TableRows(NamedTuple):
    """A resource's rows: per table, its rows as JSON array elements without the brackets
    (``[pid,a,b],[pid,a,b]``: the writer splices them into a batch and never parses them), the
    token rows again as tuples (the writer answers conditional matches from them), and how many
    rows there are. Bytes pickle for next to nothing: unpickling rows as tuples cost the server
    about 20 µs per resource of its GIL."""

    frags: dict[str, bytes]
    tokens: list[tuple[int, str, int]]
    size: int


EMPTY = TableRows({}, [], 0)


def table_rows(rtype: str, rows: Sequence[IndexRow], last_updated: bool = True) -> TableRows:
    """``rows`` (``search/extract.py``'s shapes) as :class:`TableRows`; without the
    ``_lastUpdated`` row unless ``last_updated``."""
    by_kind: dict[str, list[tuple[Any, ...]]] = {}
    for kind, param, a, b, c in rows:
        if kind == "token":
            row: tuple[Any, ...] = (_param(rtype, param), b, _system(a))
        elif kind == "reference" or kind == "uri" or kind == "number":
            row = (_param(rtype, param), a)
        elif kind == "string":
            row = (_param(rtype, param), a, "" if param.endswith(":text") else b)  # :text never compares exact
        elif kind == "date":
            if param == "_lastUpdated" and not last_updated:
                continue
            row = (_param(rtype, param), a, b)
        else:  # quantity
            row = (_param(rtype, param), b, _system(a), c)
        bucket = by_kind.get(kind)
        if bucket is None:
            by_kind[kind] = [row]
        else:
            bucket.append(row)
    return _packed(by_kind)


def _packed(by_kind: dict[str, list[tuple[Any, ...]]]) -> TableRows:
    frags = {kind: orjson.dumps(kind_rows)[1:-1] for kind, kind_rows in by_kind.items()}
    tokens = by_kind.get("token", [])
    return TableRows(frags, tokens, sum(len(r) for r in by_kind.values()))


def unpacked(rows: TableRows, kind: str) -> list[list[Any]]:
    frag = rows.frags.get(kind)
    return [] if frag is None else list(orjson.loads(b"[" + frag + b"]"))


def with_row(rows: TableRows, kind: str, row: tuple[Any, ...]) -> TableRows:
    """``rows`` and one more row of ``kind`` (the writer's ``_lastUpdated``; never a token)."""
    frag = rows.frags.get(kind)
    extra = orjson.dumps(row)
    frags = dict(rows.frags)
    frags[kind] = extra if not frag else frag + b"," + extra
    return TableRows(frags, rows.tokens, rows.size + 1)  # not _replace: it cost 6 % of the writer


class TableForm:
    """The SQLite store's :class:`fhir_hub.storage.port.IndexForm`."""

    def prepare(self, rtype: str, rows: Sequence[IndexRow]) -> TableRows:
        return table_rows(rtype, rows, last_updated=False)

    def retarget(self, prepared: TableRows, targets: dict[str, str]) -> TableRows | None:
        refs = unpacked(prepared, "reference")

        def rewrite() -> TableRows:
            moved = orjson.dumps([(pid, targets.get(t, t)) for pid, t in refs])[1:-1]
            frags = dict(prepared.frags)
            frags["reference"] = moved
            return TableRows(frags, prepared.tokens, prepared.size)

        return retargeted(prepared, targets, [r[1] for r in refs], rewrite)
