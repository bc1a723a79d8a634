"""A resource's search-index rows in the index tables' own column order, the resource key marked.

Made where the rows are extracted (the event loop, or a parser process for a large transaction),
so the writer, which limits ingest, does no work per row: it adds the resource key ``rk`` once
per resource and table (:func:`keyed`), and SQLite unpacks the rows (``store._INDEX_SQL``).
Parameter names become :func:`schema.param_key` integers and systems :func:`schema.system_key`
ones here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from fhir_hub.storage.port import IndexRow, retargeted
from fhir_hub.storage.sqlite import schema

_param = schema.param_key
_system = schema.system_key


#: Each row's last column until the writer puts the resource key there (one ``bytes.replace``
#: of :data:`_MARKED` per resource and table: :func:`keyed`). A row's other columns are numbers
#: and strings, so the marked text ``,<mark>]`` can only be a key column, or inside a string
#: (:func:`_frag` counts, and then escapes the strings' commas).
_MARK = -(2**63) + 7
_MARKED = b",%d]" % _MARK


class TableRows(NamedTuple):
    """A resource's rows: per table, its rows as JSON array elements without the brackets, the
    key column marked (``[pid,a,b,<mark>],[pid,a,b,<mark>]``: the writer puts the key in and
    splices them into a batch, never parsing them), and how many rows there are. Bytes pickle
    for next to nothing: unpickling rows as tuples cost the server about 20 µs per resource of
    its GIL, and the token rows the writer matches conditional writes against are read back from
    their fragment only when a match asks (``store._IndexBuffer``). Rows of one level, the key in
    each, spare SQLite parsing every resource's rows twice: inserting 20,000 rows took about
    115 ms of JSON work before, 60 after."""

    frags: dict[str, bytes]
    size: int


EMPTY = TableRows({}, 0)


def table_rows(rtype: str, rows: Sequence[IndexRow], last_updated: bool = True) -> TableRows:
    """``rows`` (``search/extract.py``'s shapes) as :class:`TableRows`; without the
    ``_lastUpdated`` row unless ``last_updated``."""
    by_kind: dict[str, list[tuple[Any, ...]]] = {}
    for kind, param, a, b, c in rows:
        if kind == "token":
            row: tuple[Any, ...] = (_param(rtype, param), b, _system(a), _MARK)
        elif kind == "reference" or kind == "uri" or kind == "number":
            row = (_param(rtype, param), a, _MARK)
        elif kind == "string":
            row = (_param(rtype, param), a, "" if param.endswith(":text") else b, _MARK)  # :text never compares exact
        elif kind == "date":
            if param == "_lastUpdated" and not last_updated:
                continue
            row = (_param(rtype, param), a, b, _MARK)
        else:  # quantity
            row = (_param(rtype, param), b, _system(a), c, _MARK)
        bucket = by_kind.get(kind)
        if bucket is None:
            by_kind[kind] = [row]
        else:
            bucket.append(row)
    return _packed(by_kind)


def _frag(rows: Sequence[tuple[Any, ...]]) -> bytes:
    """Marked ``rows`` as fragment bytes: one ``orjson.dumps``, unless a string holds a comma
    and the marked text (the count tells); then that table's strings are written with their
    commas escaped (``\\u002c``, the same string to a JSON reader)."""
    frag = orjson.dumps(rows)[1:-1]
    if frag.count(_MARKED) != len(rows):
        frag = b",".join(b"[" + b",".join(_escaped(v) for v in row) + b"]" for row in rows)
    return frag


def _escaped(value: Any) -> bytes:
    text = orjson.dumps(value)
    return text.replace(b",", b"\\u002c") if isinstance(value, str) else text


def _packed(by_kind: dict[str, list[tuple[Any, ...]]]) -> TableRows:
    frags = {kind: _frag(kind_rows) for kind, kind_rows in by_kind.items()}
    return TableRows(frags, sum(len(r) for r in by_kind.values()))


def unpacked(rows: TableRows, kind: str) -> list[list[Any]]:
    """The rows of ``kind`` without their key column."""
    frag = rows.frags.get(kind)
    return [] if frag is None else [row[:-1] for row in orjson.loads(b"[" + frag + b"]")]


def keyed(frag: bytes, rk: int) -> bytes:
    """A fragment with its resource's key in every row."""
    return frag.replace(_MARKED, b",%d]" % rk)


def with_row(rows: TableRows, kind: str, row: tuple[Any, ...]) -> TableRows:
    """``rows`` and one more row of ``kind`` (the writer's ``_lastUpdated``: numbers, never a token)."""
    frag = rows.frags.get(kind)
    extra = orjson.dumps((*row, _MARK))
    frags = dict(rows.frags)
    frags[kind] = extra if not frag else frag + b"," + extra
    return TableRows(frags, rows.size + 1)  # not _replace: it cost 6 % of the writer


class TableForm:
    """The SQLite store's :class:`fhir_hub.storage.port.IndexForm`."""

    def prepare(self, rtype: str, rows: Sequence[IndexRow]) -> TableRows:
        return table_rows(rtype, rows, last_updated=False)

    def retarget(self, prepared: TableRows, targets: dict[str, str]) -> TableRows | None:
        refs = unpacked(prepared, "reference")

        def rewrite() -> TableRows:
            moved = _frag([(pid, targets.get(t, t), _MARK) for pid, t in refs])
            frags = dict(prepared.frags)
            frags["reference"] = moved
            return TableRows(frags, prepared.size)

        return retargeted(prepared, targets, [r[1] for r in refs], rewrite)
