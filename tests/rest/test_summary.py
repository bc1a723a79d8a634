"""``Patient/[id]/$summary``: the section rules on fixed resources (pure, with a golden document),
then over real uvicorn: the patient's compartment only, references resolved inside the document,
a golden record's summary covering its linked sources, bad input as 4xx outcomes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from fhir_hub.rest.summary import SECTIONS, compose
from tests.conftest import Server, fhir_client, make_server
from tests.rest.test_golden import check_golden

BASE = "http://hub.example/fhir"
VITAL = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}
LAB = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}
REFERRAL = {"coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}],
            "text": "Chuyển tuyến"}


def _record(patient: str) -> list[dict[str, Any]]:
    """One of every kind the summary shows, about the reference ``patient`` (no ids: the caller gives them)."""
    subject = {"reference": patient}
    return [
        {"resourceType": "Condition", "clinicalStatus": {"coding": [{"code": "active"}]},
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10",
                              "display": "Tăng huyết áp vô căn"}]}, "subject": subject, "onsetDateTime": "2020-01-02"},
        {"resourceType": "Condition", "clinicalStatus": {"coding": [{"code": "resolved"}]},
         "code": {"text": "Viêm phổi"}, "subject": subject, "onsetDateTime": "2018-03-04"},
        {"resourceType": "Condition", "verificationStatus": {"coding": [{"code": "entered-in-error"}]},
         "code": {"text": "nhập nhầm"}, "subject": subject},
        {"resourceType": "AllergyIntolerance", "code": {"text": "Penicillin"}, "patient": subject,
         "recordedDate": "2019-05-06"},
        {"resourceType": "MedicationStatement", "status": "active", "subject": subject,
         "medicationReference": {"reference": "Medication/amlo"}, "effectiveDateTime": "2024-01-01"},
        {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": subject,
         "medicationCodeableConcept": {"text": "Metformin 500 mg"}, "authoredOn": "2024-02-01"},
        {"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": "Vắc xin sởi"},
         "patient": subject, "occurrenceDateTime": "1990-06-01"},
        {"resourceType": "Observation", "status": "final", "category": [VITAL], "subject": subject,
         "code": {"text": "Huyết áp tâm thu"}, "valueQuantity": {"value": 135, "unit": "mmHg"},
         "effectiveDateTime": "2024-03-01"},
        {"resourceType": "Observation", "status": "final", "category": [LAB], "subject": subject,
         "code": {"text": "Glucose"}, "valueQuantity": {"value": 6.1, "unit": "mmol/L"},
         "effectiveDateTime": "2024-03-02"},
        {"resourceType": "Procedure", "status": "completed", "code": {"text": "Nội soi dạ dày"}, "subject": subject,
         "performedDateTime": "2022-07-08"},
        {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB", "display": "ambulatory"},
         "subject": subject, "period": {"start": "2024-03-01"}},
        {"resourceType": "Coverage", "status": "active", "type": {"text": "BHYT"}, "subscriberId": "DN4010123456789",
         "beneficiary": subject, "payor": [{"display": "Bảo hiểm xã hội Việt Nam"}],
         "period": {"start": "2024-01-01", "end": "2024-12-31"}},
        {"resourceType": "Appointment", "status": "proposed", "description": "Giấy hẹn khám lại",
         "requestedPeriod": [{"start": "2024-04-01"}], "participant": [{"actor": subject, "status": "needs-action"}]},
        {"resourceType": "Appointment", "status": "cancelled", "description": "đã hủy",
         "participant": [{"actor": subject, "status": "declined"}]},
        {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "category": [REFERRAL],
         "code": REFERRAL, "subject": subject, "authoredOn": "2024-03-05",
         "performer": [{"display": "Bệnh viện Bạch Mai"}]},
    ]


MEDICATION = {"resourceType": "Medication", "id": "amlo", "code": {"text": "Amlodipin 5 mg"}}
PATIENT = {"resourceType": "Patient", "id": "p1", "name": [{"family": "Nguyễn", "given": ["Văn", "A"]}],
           "identifier": [{"system": "http://example.vn/cccd", "type": {"text": "Số định danh cá nhân"},
                           "value": "001090000001"}]}


def _section(doc: dict[str, Any], code: str) -> dict[str, Any] | None:
    comp = doc["entry"][0]["resource"]
    return next((s for s in comp["section"] if s["code"]["coding"][0]["code"] == code), None)


def test_document_shape_is_golden() -> None:
    resources = [{**r, "id": f"r{i}"} for i, r in enumerate(_record("Patient/p1"))]
    doc = compose(PATIENT, resources, {"Medication/amlo": MEDICATION}, BASE, "2024-05-01T00:00:00Z",
                  "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002")
    check_golden("summary-document", doc, BASE)
    assert doc["type"] == "document" and doc["entry"][0]["resource"]["resourceType"] == "Composition"
    assert doc["entry"][0]["resource"]["type"]["coding"][0]["code"] == "60591-5"
    full_urls = {e["fullUrl"] for e in doc["entry"]}
    for section in doc["entry"][0]["resource"]["section"]:
        for ref in section.get("entry", []):
            assert f"{BASE}/{ref['reference']}" in full_urls  # every section entry is in the document
    assert f"{BASE}/Medication/amlo" in full_urls
    problems = _section(doc, "11450-4")
    assert problems is not None and [e["reference"] for e in problems["entry"]] == ["Condition/r0"]
    past = _section(doc, "11348-0")
    assert past is not None and [e["reference"] for e in past["entry"]] == ["Condition/r1"]
    assert "nhập nhầm" not in orjson.dumps(doc).decode()  # entered in error: nowhere
    plan = _section(doc, "18776-5")
    assert plan is not None and [e["reference"] for e in plan["entry"]] == ["Appointment/r12"]
    meds = _section(doc, "10160-0")
    assert meds is not None and "Amlodipin 5 mg" in meds["text"]["div"] and "Metformin" in meds["text"]["div"]


def test_required_sections_are_there_with_an_empty_reason() -> None:
    doc = compose({"resourceType": "Patient", "id": "p2"}, [], {}, BASE, "2024-05-01T00:00:00Z", "d", "a")
    comp = doc["entry"][0]["resource"]
    assert [s["code"]["coding"][0]["code"] for s in comp["section"]] == \
        [s.code for s in SECTIONS if s.required] == ["11450-4", "48765-2", "10160-0"]
    for section in comp["section"]:
        assert "entry" not in section and section["emptyReason"]["coding"][0]["code"] == "unavailable"
        assert "Không có thông tin" in section["text"]["div"]
    assert [e["resource"]["resourceType"] for e in doc["entry"]] == ["Composition", "Patient", "Device"]


def test_narrative_is_escaped() -> None:
    doc = compose({"resourceType": "Patient", "id": "p3", "name": [{"text": "<b>x</b>"}]},
                  [{"resourceType": "Condition", "id": "c", "code": {"text": "<script>alert(1)</script>"}}],
                  {}, BASE, "2024-05-01T00:00:00Z", "d", "a")
    comp = doc["entry"][0]["resource"]
    divs = " ".join([comp["text"]["div"], *(s["text"]["div"] for s in comp["section"])])
    assert "<script>" not in divs and "&lt;script&gt;" in divs and "<b>" not in divs and "&lt;b&gt;" in divs


# --- over uvicorn -----------------------------------------------------------------------------------


def test_the_document_is_valid_r4(server: Server) -> None:
    resources = [{**r, "id": f"r{i}"} for i, r in enumerate(_record("Patient/p1"))]
    doc = compose(PATIENT, resources, {"Medication/amlo": MEDICATION}, server.base, "2024-05-01T00:00:00Z",
                  "00000000-0000-4000-8000-000000000001", "00000000-0000-4000-8000-000000000002")
    with fhir_client(server) as c:
        r = c.post("/Bundle/$validate", content=orjson.dumps(doc))
    assert r.status_code == 200, r.text
    assert [i for i in r.json()["issue"] if i["severity"] in ("fatal", "error", "warning")] == []


def _load(c: httpx.Client, patient: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """POST the patient and ``records`` (about ``urn:uuid:p``) in one transaction; the patient's id."""
    text = orjson.dumps(records).decode().replace('"Medication/amlo"', '"urn:uuid:m"')
    entries = [{"fullUrl": "urn:uuid:p", "resource": patient, "request": {"method": "POST", "url": "Patient"}},
               {"fullUrl": "urn:uuid:m", "resource": {k: v for k, v in MEDICATION.items() if k != "id"},
                "request": {"method": "POST", "url": "Medication"}}]
    entries += [{"fullUrl": f"urn:uuid:r{i}", "resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
                for i, r in enumerate(orjson.loads(text))]
    r = c.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 200, r.text
    return str(r.json()["entry"][0]["response"]["location"].split("/")[1])


def test_summary_over_the_server(server: Server) -> None:
    with fhir_client(server) as c:
        a = _load(c, {"resourceType": "Patient", "name": [{"family": "Nguyễn"}]}, _record("urn:uuid:p"))
        b = _load(c, {"resourceType": "Patient", "name": [{"family": "Trần"}]},
                  [{"resourceType": "Condition", "code": {"text": "bệnh của người khác"},
                    "subject": {"reference": "urn:uuid:p"}}])
        r = c.get(f"/Patient/{a}/$summary")
        assert r.status_code == 200, r.text
        doc = r.json()
        comp = doc["entry"][0]["resource"]
        assert comp["resourceType"] == "Composition" and comp["subject"]["reference"] == f"Patient/{a}"
        assert [s["code"]["coding"][0]["code"] for s in comp["section"]][:3] == ["11450-4", "48765-2", "10160-0"]
        assert all(_section(doc, s.code) is not None for s in SECTIONS)
        urls = {e["fullUrl"] for e in doc["entry"]}
        for s in comp["section"]:
            for ref in s.get("entry", []):
                assert f"{server.base}/{ref['reference']}" in urls
        kinds = [e["resource"]["resourceType"] for e in doc["entry"]]
        assert "Medication" in kinds and kinds.count("Condition") == 2  # the one in error left out
        assert "người khác" not in r.text and "Trần" not in r.text
        allergies = _section(c.get(f"/Patient/{b}/$summary").json(), "48765-2")
        assert allergies is not None and allergies["emptyReason"]["coding"][0]["code"] == "unavailable"


@pytest.mark.parametrize(("path", "status", "where"), [
    ("/Patient/nope-not-here/$summary", 404, None),
    ("/Patient/bad_id!/$summary", 400, None),
    ("/Patient/{a}/$summary?identifier=x", 400, "identifier"),
])
def test_bad_requests_are_outcomes(server: Server, path: str, status: int, where: str | None) -> None:
    with fhir_client(server) as c:
        pid = c.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
        r = c.get(path.format(a=pid))
    assert r.status_code == status and r.json()["resourceType"] == "OperationOutcome"
    if where:
        assert r.json()["issue"][0]["expression"] == [where]


def test_summary_by_identifier(server: Server) -> None:
    with fhir_client(server) as c:
        ident = {"system": "http://example.vn/cccd", "value": "079300000123"}
        pid = c.post("/Patient", json={"resourceType": "Patient", "identifier": [ident]}).json()["id"]
        for _ in range(2):
            c.post("/Patient", json={"resourceType": "Patient", "identifier": [{**ident, "value": "twice"}]})
        r = c.get("/Patient/$summary", params={"identifier": f"{ident['system']}|{ident['value']}"})
        assert r.status_code == 200, r.text
        assert r.json()["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{pid}"
        for params, status, code in [({"identifier": f"{ident['system']}|nobody"}, 404, "not-found"),
                                     ({"identifier": f"{ident['system']}|twice"}, 400, "multiple-matches"),
                                     ({}, 400, "required"),
                                     ({"identifier": "a|b", "profile": "x"}, 400, "not-supported")]:
            r = c.get("/Patient/$summary", params=params)
            assert r.status_code == status, (params, r.text)
            assert r.json()["issue"][0]["code"] == code


@pytest.fixture(scope="module")
def mpi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server(Path(tmp_path_factory.mktemp("summary-mpi")), mpi="on").start()
    yield srv
    srv.stop()


def test_a_golden_records_summary_covers_its_sources(mpi_server: Server) -> None:
    from tests.mpi.test_person import person  # two facilities' copies of one person, two observations each

    with fhir_client(mpi_server) as c:
        gid, a, b, obs_a, obs_b = person(c)
        doc = c.get(f"/Patient/{gid}/$summary").json()
        results = _section(doc, "30954-2")  # the observations have no category: results
        assert results is not None
        assert {e["reference"] for e in results["entry"]} == {f"Observation/{i}" for i in obs_a | obs_b}
        patients = {e["resource"]["id"] for e in doc["entry"] if e["resource"]["resourceType"] == "Patient"}
        assert patients == {gid, a, b}
        own = _section(c.get(f"/Patient/{a}/$summary").json(), "30954-2")
        assert own is not None and {e["reference"] for e in own["entry"]} == {f"Observation/{i}" for i in obs_a}
