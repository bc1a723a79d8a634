"""A resource's search-index rows in the index tables' own column order, without the resource key.

Made where the rows are extracted (the event loop, or a parser process for a large transaction),
so the writer, which limits ingest, does no work per row: it adds the resource key ``rk`` once
per resource and table, and SQLite unpacks the pairs (``store._INDEX_SQL``). Parameter names
become :func:`schema.param_key` integers and systems :func:`schema.system_key` ones here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir_hub.storage.port import IndexRow, retargeted
from fhir_hub.storage.sqlite import schema

#: ``kind -> rows``; each row is the table's columns after ``pid`` and before ``rk``, ``pid`` first.
TableRows = dict[str, list[tuple[Any, ...]]]

_param = schema.param_key
_system = schema.system_key


def table_rows(rtype: str, rows: Sequence[IndexRow], last_updated: bool = True) -> TableRows:
    """``rows`` (``search/extract.py``'s shapes) as :data:`TableRows`; without the
    ``_lastUpdated`` row unless ``last_updated``."""
    out: TableRows = {}
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
        bucket = out.get(kind)
        if bucket is None:
            out[kind] = [row]
        else:
            bucket.append(row)
    return out


class TableForm:
    """The SQLite store's :class:`fhir_hub.storage.port.IndexForm`."""

    def prepare(self, rtype: str, rows: Sequence[IndexRow]) -> TableRows:
        return table_rows(rtype, rows, last_updated=False)

    def retarget(self, prepared: TableRows, targets: dict[str, str]) -> TableRows | None:
        refs = prepared.get("reference", [])
        return retargeted(prepared, targets, [r[1] for r in refs],
                          lambda: {**prepared, "reference": [(pid, targets.get(t, t)) for pid, t in refs]})


def count(rows: TableRows) -> int:
    return sum(len(r) for r in rows.values())
