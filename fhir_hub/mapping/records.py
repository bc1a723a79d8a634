"""What the line-oriented adapters (HL7 v2 messages, CSV rows) share: a result per record, a
result per file, and the Binary + Provenance every bundle carries.

A *record* is what becomes one transaction Bundle: an HL7 v2 message, or a CSV file's rows.  Its
problems are :class:`~fhir_hub.mapping.engine.Problem` values; :meth:`FileRecords.outcome`
renders them as one OperationOutcome whose ``location`` names the record, segment (or row) and
field, as the adapter's ``locate`` says.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhir_hub.mapping import systems
from fhir_hub.mapping.engine import NAMESPACE, Built, Problem
from fhir_hub.mapping.functions import REQUESTS

__all__ = ["FileRecords", "RecordResult", "assemble"]


@dataclass
class RecordResult:
    index: int  # 1-based position in the file
    label: str  # "message 2 (MSH-10 MSG0002)", "rows 1-500"
    bundle: dict[str, Any] | None
    problems: list[Problem] = field(default_factory=list)
    unmapped: dict[str, list[str]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return self.label


@dataclass
class FileRecords:
    name: str
    records: list[RecordResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: (record or None, problem) → location string
    locate: Callable[[RecordResult | None, Problem], str] = field(default=lambda r, p: "", repr=False)

    def outcome(self) -> dict[str, Any]:
        issues = [self._issue(None, p) for p in self.problems]
        for r in self.records:
            issues += [self._issue(r, p) for p in r.problems]
        if not issues:
            issues = [{"severity": "information", "code": "informational",
                       "diagnostics": f"{self.name}: {len(self.records)} records mapped without problems"}]
        return {"resourceType": "OperationOutcome", "issue": issues}

    def record_outcome(self, record: RecordResult) -> dict[str, Any]:
        """The problems of one record, as :meth:`outcome` words them."""
        return {"resourceType": "OperationOutcome", "issue": [self._issue(record, p) for p in record.problems]}

    def _issue(self, record: RecordResult | None, p: Problem) -> dict[str, Any]:
        parts = [self.name] + ([record.where] if record is not None else [])
        if p.table:
            parts.append(p.table + (f" {p.line}" if p.line else "") + (f" {p.field}" if p.field else ""))
        elif p.field:
            parts.append(p.field)
        shown = f" = {p.value[:80]!r}" if p.value is not None else ""
        out: dict[str, Any] = {"severity": p.severity, "code": p.code,
                               "diagnostics": f"{', '.join(parts)}{shown}: {p.reason}"}
        loc = self.locate(record, p)
        if loc:
            out["location"] = [loc]
        return out


def validate_entries(entries: list[dict[str, Any]], problems: list[Problem], unit: str = "") -> bool:
    """Structural validation of every entry; each failure is an error problem saying which
    ``unit`` (e.g. "HOSO") is therefore not imported."""
    from fhir_hub.validation.structure import validate

    ok = True
    for e in entries:
        for issue in validate(e["resource"]):
            ok = False
            problems.append(Problem("error", issue.code, f"the mapped {e['resource']['resourceType']} is not valid "
                                    f"FHIR R4 at {', '.join(issue.expression)}: {issue.diagnostics}: "
                                    f"{unit + ' ' if unit else ''}not imported"))
    return ok


def assemble(built: list[Built], raw: bytes, content_type: str, key: str, activity: str, source: str,
             sha256: str, recorded: str) -> list[dict[str, Any]]:
    """The entries of one record's bundle: the mapped resources, a Binary with the record's
    original bytes and a Provenance pointing at both and at the file (by sha256).  Ids and fullUrls
    derive from ``key``, so the same input gives the same bundle."""
    entries = [{"fullUrl": b.full_url, "resource": b.resource, "request": REQUESTS[b.request_fn](b.resource)}
               for b in built]
    stable = f"import-{uuid.uuid5(NAMESPACE, key).hex}"
    binary_url = f"urn:uuid:{uuid.uuid5(NAMESPACE, f'{key}/Binary')}"
    binary = {"resourceType": "Binary", "id": stable, "contentType": content_type,
              "data": base64.b64encode(raw).decode("ascii")}
    entries.append({"fullUrl": binary_url, "resource": binary, "request": REQUESTS["replace_by_id"](binary)})
    facility = next((b.full_url for b in built if b.resource["resourceType"] == "Organization"), None)
    provenance = {
        "resourceType": "Provenance", "id": stable,
        "target": [{"reference": b.full_url} for b in built] or [{"reference": binary_url}],
        "recorded": recorded,
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                                 "code": "CREATE", "display": "create"}], "text": activity},
        "agent": [{"type": {"coding": [{"system": systems.PROVENANCE_ROLE, "code": "author"}]},
                   "who": {"reference": facility} if facility else {"display": "unknown source"}}],
        "entity": [
            {"role": "source", "what": {"reference": binary_url, "display": "the record as sent (original bytes)"}},
            {"role": "source", "what": {"identifier": {"system": systems.FILE_SHA256, "value": sha256},
                                        "display": source}},
        ],
    }
    entries.append({"fullUrl": f"urn:uuid:{uuid.uuid5(NAMESPACE, f'{key}/Provenance')}", "resource": provenance,
                    "request": REQUESTS["replace_by_id"](provenance)})
    return entries
