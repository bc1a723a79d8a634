"""The CapabilityStatement lists the operations the server answers (``rest/capability.py``)."""

from __future__ import annotations

from typing import Any

import httpx

from fhir_hub.rest.capability import SUMMARY, capability_statement


def _patient(cs: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")


def test_patient_lists_summary_beside_everything() -> None:
    ops = {o["name"]: o["definition"] for o in _patient(capability_statement("http://h/fhir", "2026-01-01"))["operation"]}
    assert ops == {"everything": "http://hl7.org/fhir/OperationDefinition/Patient-everything", "summary": SUMMARY}
    assert SUMMARY == "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"


def test_the_listed_summary_is_answered(client: httpx.Client) -> None:
    """What /metadata lists on Patient, the server does: ``Patient/[id]/$summary`` gives a document."""
    ops = {o["name"] for o in _patient(client.get("/metadata").json())["operation"]}
    assert {"everything", "summary"} <= ops
    pid = client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Lê"}]}).json()["id"]
    r = client.get(f"/Patient/{pid}/$summary")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["resourceType"] == "Bundle" and doc["type"] == "document"
    assert doc["entry"][0]["resource"]["resourceType"] == "Composition"
