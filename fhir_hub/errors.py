"""Errors that travel to the client as an OperationOutcome.

One exception type carries the outcome; the HTTP layer turns it into a response.
Hierarchy (status -> OperationOutcome ``issue.code``)::

    FhirError                       any status, issues given explicitly
    ├── invalid(...)        400  invalid / structure / value / required
    ├── not_found(...)      404  not-found
    ├── gone(...)           410  deleted
    ├── conflict(...)       409  conflict / duplicate
    ├── precondition(...)   412  conflict (version mismatch, multiple matches)
    └── unprocessable(...)  422  processing / business-rule

Constructors are plain functions so call sites read ``raise not_found("Patient/1")``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: what went wrong and where (FHIRPath)."""

    severity: str  # fatal | error | warning | information
    code: str  # http://hl7.org/fhir/issue-type code
    diagnostics: str
    expression: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def error(code: str, diagnostics: str, *expression: str) -> Issue:
    return Issue("error", code, diagnostics, tuple(expression))


def warning(code: str, diagnostics: str, *expression: str) -> Issue:
    return Issue("warning", code, diagnostics, tuple(expression))


def outcome(issues: Iterable[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


class FhirError(Exception):
    """A failed interaction, with the HTTP status and the issues to report."""

    def __init__(self, status: int, issues: Iterable[Issue] | Issue, headers: dict[str, str] | None = None):
        self.status = status
        self.issues: list[Issue] = [issues] if isinstance(issues, Issue) else list(issues)
        self.headers = headers or {}
        super().__init__("; ".join(i.diagnostics for i in self.issues))

    def outcome(self) -> dict[str, Any]:
        return outcome(self.issues)


def described(outcome: Any) -> str:
    """The human part of an OperationOutcome someone sent back (the CLI's report of a server's
    refusal): each issue's diagnostics, else details.text, else its code, with where it is."""
    if not isinstance(outcome, dict):
        return ""
    parts = []
    for issue in outcome.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or issue.get("code") or ""
        where = issue.get("expression") or issue.get("location")
        parts.append(f"{text} (at {', '.join(map(str, where))})" if where and text else str(text))
    return "; ".join(p for p in parts if p)


def invalid(diagnostics: str, *expression: str, code: str = "invalid") -> FhirError:
    return FhirError(400, error(code, diagnostics, *expression))


def not_found(diagnostics: str) -> FhirError:
    return FhirError(404, error("not-found", diagnostics))


def gone(diagnostics: str, headers: dict[str, str] | None = None) -> FhirError:
    return FhirError(410, error("deleted", diagnostics), headers)


def conflict(diagnostics: str, code: str = "conflict") -> FhirError:
    return FhirError(409, error(code, diagnostics))


def precondition(diagnostics: str) -> FhirError:
    return FhirError(412, error("conflict", diagnostics))


def unprocessable(diagnostics: str, *expression: str, code: str = "processing") -> FhirError:
    return FhirError(422, error(code, diagnostics, *expression))
