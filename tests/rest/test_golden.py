"""Wire documents as golden files: a change in what the server says shows up as a diff in review.

Run with ``FHIR_HUB_UPDATE_GOLDEN=1`` to rewrite the files after an intended change.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "golden"


def _normalise(doc: Any, base: str) -> Any:
    """Replace what differs between runs (the port, the start time) with placeholders."""
    text = orjson.dumps(doc).decode().replace(base, "{base}")
    out = orjson.loads(text)
    if isinstance(out, dict) and out.get("resourceType") == "CapabilityStatement":
        out["date"] = "{started}"
    return out


def check_golden(name: str, doc: Any, base: str) -> None:
    path = GOLDEN / f"{name}.json"
    doc = _normalise(doc, base)
    if os.environ.get("FHIR_HUB_UPDATE_GOLDEN") or not path.exists():
        path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    assert doc == orjson.loads(path.read_bytes()), f"{name} differs from {path}"


@pytest.mark.parametrize(("name", "method", "url", "kwargs"), [
    ("outcome-unknown-type", "GET", "/Nope/1", {}),
    ("outcome-bad-id", "GET", "/Patient/bad_id!", {}),
    ("outcome-not-found", "GET", "/Patient/golden-missing", {}),
    ("outcome-xml-accept", "GET", "/metadata", {"headers": {"Accept": "application/fhir+xml"}}),
    ("outcome-xml-body", "POST", "/Patient", {"content": b"<Patient/>", "headers": {"Content-Type": "application/xml"}}),
    ("outcome-bad-json", "POST", "/Patient", {"content": b"{oops"}),
    ("outcome-invalid-patient", "POST", "/Patient",
     {"json": {"resourceType": "Patient", "gender": "x", "name": [{"given": "An"}], "bogus": True}}),
    ("outcome-unsupported-search", "GET", "/Observation?code:in=http://example.org/fhir/ValueSet/x", {}),
    ("outcome-bad-search-value", "GET", "/Patient?birthdate=ge2024-13", {}),
    ("outcome-search-strict", "GET", "/Patient?nope=1", {"headers": {"Prefer": "handling=strict"}}),
    ("outcome-method", "DELETE", "/", {}),
])
def test_outcomes(client: httpx.Client, server: Any, name: str, method: str, url: str, kwargs: dict[str, Any]) -> None:
    r = client.request(method, url, **kwargs)
    assert r.status_code >= 400
    check_golden(name, {"status": r.status_code, "body": r.json()}, server.base)


def test_capability_statement(client: httpx.Client, server: Any) -> None:
    check_golden("capability-statement", client.get("/metadata").json(), server.base)
