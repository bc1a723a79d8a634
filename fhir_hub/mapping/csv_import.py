"""CSV exports (commune health stations) → FHIR R4 transaction bundles.

A spec of ``fhir_hub/mappings/csv`` names the columns (``patients``: one person per row;
``vitals``: one measurement per row) and how each becomes an element; :mod:`.engine` applies it
row by row.  Header names are matched case-insensitively, without surrounding spaces; ``,`` or
``;`` separates columns (whichever the header uses); a UTF-8 BOM is dropped.

The spec's ``key`` gives a row's stable key (``first_of`` the listed columns, or ``all_of`` them
joined), from which ids and fullUrls derive: importing the same file again updates.  Errors are
values per row and column: a bad value leaves its element out (or, for a ``required`` one, the row
out), a row repeating an earlier row's key is skipped, a missing required column is the file's
fatal problem.  Rows are written in bundles of ``chunk`` rows, each with a Binary of its rows as
sent and a Provenance.
"""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import yaml

from fhir_hub.mapping.claims_xml import VN_TZ
from fhir_hub.mapping.engine import Problem, Spec, instantiate, load_spec
from fhir_hub.mapping.records import FileRecords, RecordResult, assemble, validate_entries

__all__ = ["SPECS", "map_csv"]

SPECS = ("patients", "vitals")


@cache
def _key_rule(spec_name: str) -> tuple[str, tuple[str, ...]]:
    doc = yaml.safe_load((resources.files("fhir_hub") / "mappings" / "csv" / f"{spec_name}.yaml").read_text("utf-8"))
    kind, columns = next(iter(doc["key"].items()))
    return str(kind), tuple(columns)


def _row_key(spec_name: str, row: dict[str, str]) -> str:
    kind, columns = _key_rule(spec_name)
    values = [row.get(c, "") for c in columns]
    if kind == "first_of":
        return next((f"{c}={v}" for c, v in zip(columns, values, strict=True) if v), "")
    return "/".join(values) if all(values) else ""  # not "|": the key lands in identifier tokens


def _required_columns(spec: Spec, table: str) -> set[str]:
    return {f for r in spec.tables[table].rules for e in r.elements if e.required for f in e.fields if f[0] != "$"}


def _locate(record: RecordResult | None, p: Problem) -> str:
    return " / ".join(x for x in ((f"row {p.line}" if p.line else ""), (f"column {p.field}" if p.field else "")) if x)


def map_csv(data: bytes, name: str, spec_name: str, recorded: str | None = None, chunk: int = 500) -> FileRecords:
    """Map one CSV file with the spec ``spec_name`` (:data:`SPECS`)."""
    if spec_name not in SPECS:
        raise ValueError(f"unknown CSV spec {spec_name!r} (known: {', '.join(SPECS)})")
    recorded = recorded or datetime.now(VN_TZ).replace(microsecond=0).isoformat()
    result = FileRecords(name, locate=_locate)
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as exc:
        result.problems.append(Problem("fatal", "structure", f"not UTF-8 ({exc}): nothing imported"))
        return result
    lines = text.splitlines(keepends=True)
    if not lines:
        result.problems.append(Problem("fatal", "structure", "empty file: nothing imported"))
        return result
    delimiter = ";" if lines[0].count(";") > lines[0].count(",") else ","
    reader = csv.reader(io.StringIO(text), delimiter=delimiter)
    header = [h.strip().lower() for h in next(reader)]
    spec = load_spec("csv")
    missing = sorted(_required_columns(spec, spec_name) - set(header))
    if missing:
        result.problems.append(Problem("fatal", "required", f"required column(s) missing: {', '.join(missing)}: "
                                       "nothing imported", spec_name))
        return result
    used = spec.tables[spec_name].used_fields()
    extra = sorted(set(header) - used)
    if extra:
        result.problems.append(Problem("information", "informational", f"column(s) not mapped: {', '.join(extra)} "
                                       "(kept in the Binary)", spec_name))
    rows: list[tuple[int, dict[str, str], str]] = []
    for n, cells in enumerate(reader, 2):  # line 1 is the header
        if not any(c.strip() for c in cells):
            continue
        raw = lines[n - 1] if n - 1 < len(lines) else delimiter.join(cells)
        if len(cells) != len(header):
            result.problems.append(Problem("error", "structure", f"{len(cells)} cells where the header has "
                                           f"{len(header)}: row skipped", spec_name, None, None, str(n)))
            continue
        rows.append((n, {h: c.strip() for h, c in zip(header, cells, strict=True)}, raw))
    sha = hashlib.sha256(data).hexdigest()
    for start in range(0, max(len(rows), 1), chunk):
        part = rows[start:start + chunk]
        if part:
            result.records.append(_map_chunk(len(result.records) + 1, part, spec, spec_name, name, sha, recorded,
                                             header, delimiter))
    return result


def _map_chunk(index: int, rows: list[tuple[int, dict[str, str], str]], spec: Spec, spec_name: str, name: str,
               sha: str, recorded: str, header: list[str], delimiter: str) -> RecordResult:
    problems: list[Problem] = []
    entries: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    one = Spec(spec.format, {spec_name: spec.tables[spec_name]})
    for n, row, _raw in rows:
        key = _row_key(spec_name, row)
        if not key:
            _, columns = _key_rule(spec_name)
            problems.append(Problem("error", "required", f"no key: {', '.join(columns)} are empty: row skipped",
                                    spec_name, columns[0], None, str(n)))
            continue
        if key in seen:
            problems.append(Problem("warning", "duplicate", f"same key as row {seen[key]} ({key}): row skipped",
                                    spec_name, None, key, str(n)))
            continue
        seen[key] = n
        built, found = instantiate(one, {spec_name: [{**row, "STT": str(n)}]}, row.get("ma_tram", ""), key)
        problems += [Problem(p.severity, p.code, p.reason, p.table, p.field, p.value, str(n)) for p in found]
        row_entries = [{"fullUrl": b.full_url, "resource": b.resource, "request": _request(b)} for b in built]
        row_problems: list[Problem] = []
        if validate_entries(row_entries, row_problems):
            entries += row_entries
        else:
            problems += [Problem(p.severity, p.code, p.reason + " (row skipped)", spec_name, None, None, str(n))
                         for p in row_problems]
    first, last = rows[0][0], rows[-1][0]
    label = f"rows {first}-{last}" if first != last else f"row {first}"
    raw = (delimiter.join(header) + "\n" + "".join(r for _, _, r in rows)).encode("utf-8")
    built_entries = assemble([], raw, "text/csv", f"csv/{spec_name}/{sha}/{index}", f"Import of a CSV file "
                             f"({spec_name}), {label}", name, sha, recorded)
    provenance = built_entries[-1]["resource"]
    if entries:
        provenance["target"] = [{"reference": e["fullUrl"]} for e in entries]
    result = RecordResult(index, label, None, problems)
    if entries:
        result.bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries + built_entries}
    else:
        problems.append(Problem("error", "incomplete", "no row of this part could be mapped: nothing imported"))
    return result


def _request(b: Any) -> dict[str, Any]:
    from fhir_hub.mapping.functions import REQUESTS

    return REQUESTS[b.request_fn](b.resource)
