"""HL7 v2 messages → bundles: synthetic ADT^A01/A04/A08/A40 and ORU^R01 against golden bundles, the
VN profiles, and faulty messages reported per message, segment and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fhir_hub.mapping.hl7v2 import map_messages
from fhir_hub.validation.profile import validate_resource
from tests.mapping.conftest import RECORDED
from tests.mapping.test_claims_xml import _check_golden, _golden_form

DATA = Path(__file__).parent / "data" / "hl7v2"
GOOD = ["adt_a01", "adt_a04", "adt_a08", "adt_a40", "oru_r01"]


def _map(stem: str) -> Any:
    return map_messages((DATA / f"{stem}.hl7").read_bytes(), f"{stem}.hl7", recorded=RECORDED)


def _of(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


@pytest.mark.parametrize("stem", GOOD)
def test_messages_match_the_golden_bundles_and_the_vn_profiles(stem: str) -> None:
    result = _map(stem)
    assert [r.bundle is not None for r in result.records] == [True]
    bundle = result.records[0].bundle
    _check_golden(f"hl7v2_{stem}.json", _golden_form(bundle))
    for e in bundle["entry"]:
        errors = [i for i in validate_resource(e["resource"]) if i.severity in ("error", "fatal")]
        assert errors == [], (e["resource"]["resourceType"], errors)


def test_adt_a01_vietnamese_name_cccd_card_and_visit() -> None:
    bundle = _map("adt_a01").records[0].bundle
    patient = _of(bundle, "Patient")[0]
    assert patient["name"][0] == {"use": "official", "text": "Nguyễn Thị Mẫu", "family": "Nguyễn", "given": ["Thị", "Mẫu"]}
    assert patient["identifier"][0]["system"] == "http://fhir.ehealth.gov.vn/core/sid/national_id"
    assert patient["identifier"][0]["value"] == "079168003456"
    assert patient["birthDate"] == "1968-03-15" and patient["gender"] == "female"
    enc = _of(bundle, "Encounter")[0]
    assert enc["identifier"][0]["value"] == "00999/00999.2025.NT.000101"  # the claims' Encounter key
    assert enc["status"] == "in-progress" and enc["class"]["code"] == "IMP"
    assert enc["period"] == {"start": "2025-03-03T07:45:00+07:00"}
    assert enc["reasonCode"][0]["coding"][0]["code"] == "J18.9"
    cov = _of(bundle, "Coverage")[0]
    assert cov["subscriberId"] == "HT3795395358183" and cov["period"] == {"start": "2025-01-01", "end": "2025-12-31"}
    entry = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert entry["request"]["ifNoneExist"].endswith("national_id|079168003456")


def test_a08_with_a_discharge_time_finishes_the_visit() -> None:
    enc = _of(_map("adt_a08").records[0].bundle, "Encounter")[0]
    assert enc["status"] == "finished" and enc["period"]["end"] == "2025-03-07T15:00:00+07:00"


def test_oru_r01_observations_grouped_per_obr() -> None:
    bundle = _map("oru_r01").records[0].bundle
    obs = _of(bundle, "Observation")
    assert obs[0]["valueQuantity"] == {"value": 14.2, "unit": "10*9/L", "system": "http://unitsofmeasure.org",
                                       "code": "10*9/L"}
    assert obs[0]["interpretation"][0]["coding"][0]["code"] == "H"
    assert obs[2] ["valueString"] == "Âm tính" and obs[2]["status"] == "preliminary"
    reports = _of(bundle, "DiagnosticReport")
    assert [len(r["result"]) for r in reports] == [3, 1]
    assert reports[0]["identifier"][0]["value"] == "00999/LAB-0101"


def test_faulty_messages_are_reported_per_message_segment_and_field() -> None:
    result = _map("faults")
    assert [r.bundle is not None for r in result.records] == [True, False, True, False]
    found = {(r.index, p.severity, p.table, p.field) for r in result.records for p in r.problems}
    assert {(1, "warning", "PID", "PID-3"), (1, "error", "PID", "PID-7"), (1, "error", "PID", "PID-8"),
            (1, "error", "PV1", "PV1-19"), (2, "fatal", "MSH", "MSH-9"), (3, "error", "OBX", "OBX-2"),
            (4, "fatal", "PID", None)} <= found
    issues = result.outcome()["issue"]
    assert any(i["location"] == ["message 1 (MSH-10 MSG0101) / PID / PID-7"] for i in issues)


def test_not_utf8_and_empty_files_are_fatal() -> None:
    assert map_messages(b"MSH|^~\\&|A|\xff\xfe", "x.hl7").problems[0].severity == "fatal"
    assert map_messages(b"\n\n", "x.hl7").problems[0].severity == "fatal"


def test_v2_datetime_and_name() -> None:
    from fhir_hub.mapping.v2_functions import v2_datetime, v2_name

    assert v2_datetime("202501031430") == "2025-01-03T14:30:00+07:00"
    assert v2_datetime("20250103143000+0000") == "2025-01-03T14:30:00+00:00"
    assert v2_datetime("1968") == "1968"
    assert v2_name("Lê", "An", "Văn")["text"] == "Lê Văn An"


def test_a40_retires_the_prior_record_by_a_conditional_patch() -> None:
    bundle = _map("adt_a40").records[0].bundle
    survivor = next(e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert survivor["request"]["ifNoneExist"].endswith("national_id|079168003456")
    patch = next(e for e in bundle["entry"] if e["request"]["method"] == "PATCH")
    assert patch["request"]["url"] == "Patient?identifier=http://fhir.ehealth.gov.vn/core/sid/patient-internal-id|BN2025009999"
    ops = [{p["name"]: p for p in op["part"]} for op in patch["resource"]["parameter"]]
    assert [o["type"]["valueCode"] for o in ops] == ["delete", "add", "delete", "add"]
    assert ops[0]["path"]["valueString"] == "Patient.active" and ops[1]["value"]["valueBoolean"] is False
    assert ops[2]["path"]["valueString"].startswith("Patient.link.where(type = 'replaced-by' and ")
    link = {p["name"]: p for p in ops[3]["value"]["part"]}
    assert link["other"]["valueReference"] == {"identifier": {
        "system": "http://fhir.ehealth.gov.vn/core/sid/national_id", "value": "079168003456"}}
    assert link["type"]["valueCode"] == "replaced-by"


def test_a40_without_a_usable_mrg_is_not_imported() -> None:
    base = (DATA / "adt_a40.hl7").read_bytes().split(b"\r")
    no_mrg = b"\r".join(seg for seg in base if not seg.startswith(b"MRG"))
    bad_id = b"\r".join(seg if not seg.startswith(b"MRG") else b"MRG|X123^^^XYZ^ZZ" for seg in base)
    for data, field in ((no_mrg, "MRG-1"), (bad_id, "MRG-1")):
        record = map_messages(data, "a40.hl7", recorded=RECORDED).records[0]
        assert record.bundle is None
        assert any(p.severity == "fatal" and p.field == field and "not imported" in p.reason for p in record.problems)
