"""Claims tables beyond XML1–XML4 (XML5 clinical course, XML7/XML8 papers, XML13 referral, XML14
re-exam), the QĐ 4210 layout, the fields that copy XML1, and the VN profiles on every bundle."""

from __future__ import annotations

import base64
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fhir_hub.mapping import map_file
from fhir_hub.mapping.claims_xml import HosoResult
from fhir_hub.validation.profile import validate_resource
from tests.mapping.conftest import RECORDED, decoded_tables, envelope, sample_files
from tests.mapping.test_claims_xml import _check_golden, _golden_form

QD4210 = Path(__file__).parent / "data" / "qd4210"


def _hoso(file_index: int, hoso: int) -> HosoResult:
    return map_file(sample_files()[file_index].read_bytes(), "t.xml", recorded=RECORDED).hosos[hoso - 1]


def _of(h: HosoResult, rtype: str) -> list[dict[str, Any]]:
    assert h.bundle is not None
    return [e["resource"] for e in h.bundle["entry"] if e["resource"]["resourceType"] == rtype]


def _qd4210_tables() -> dict[str, bytes]:
    return {p.stem: p.read_bytes() for p in sorted(QD4210.glob("XML*.xml"))}


def test_xml5_entries_are_clinical_impressions_with_their_vital_signs() -> None:
    h = _hoso(0, 1)
    notes = _of(h, "ClinicalImpression")
    assert [n["effectiveDateTime"] for n in notes] == ["2025-03-03T08:00:00+07:00", "2025-03-07T08:00:00+07:00"]
    assert h.bundle is not None
    staff = {e["fullUrl"]: e["resource"] for e in h.bundle["entry"] if e["resource"]["resourceType"] == "Practitioner"}
    assessor = staff[notes[0]["assessor"]["reference"]]
    assert notes[0]["summary"].startswith("Sốt 39 độ") and assessor["identifier"][0]["value"] == "004567/HNO-CCHN"
    vitals = [o for o in _of(h, "Observation") if o["category"][0]["coding"][0]["code"] == "vital-signs"
              and o.get("effectiveDateTime") == "2025-03-03T08:00:00+07:00"]
    by_code = {o["code"]["coding"][0]["code"]: o for o in vitals}
    assert by_code["8867-4"]["valueQuantity"] == {"value": 102, "unit": "/min", "system": "http://unitsofmeasure.org",
                                                  "code": "/min"}
    assert by_code["8310-5"]["valueQuantity"]["value"] == 39
    assert by_code["2708-6"]["valueQuantity"]["value"] == 94
    assert [c["valueQuantity"]["value"] for c in by_code["85354-9"]["component"]] == [140, 85]


def test_xml7_is_a_composition_and_a_document_reference_holding_the_paper_as_sent() -> None:
    h = _hoso(0, 1)
    paper = next(c for c in _of(h, "Composition") if c["type"]["coding"][0]["code"] == "18842-5")
    assert paper["date"] == "2025-03-07" and paper["attester"][0]["mode"] == "legal"
    assert paper["author"][0]["display"] == "Trần Văn Giả Định"
    assert {s["title"] for s in paper["section"]} >= {"Chẩn đoán", "Phương pháp điều trị", "Số lưu trữ"}
    doc = next(d for d in _of(h, "DocumentReference") if d["type"]["coding"][0]["code"] == "18842-5")
    sent = base64.b64decode(doc["content"][0]["attachment"]["data"])
    assert sent == decoded_tables("GIAMDINHHS_synthetic_01_00999", 1)["XML7"]
    assert doc["context"]["related"][0]["reference"].startswith("urn:uuid:")


def test_xml8_summary_sections() -> None:
    summary = next(c for c in _of(_hoso(0, 1), "Composition") if c["type"]["coding"][0]["code"] == "34133-9")
    results = next(s for s in summary["section"] if s["title"] == "Kết quả điều trị")
    assert "2 — " in results["text"]["div"]


def test_xml13_is_a_referral_service_request() -> None:
    referral = next(s for s in _of(_hoso(0, 3), "ServiceRequest") if s.get("category", [{}])[0].get("text") == "Chuyển tuyến")
    assert referral["performer"] == [{"identifier": {"system": "http://fhir.ehealth.gov.vn/core/sid/provider-code",
                                                     "value": "00990"}}]
    assert referral["reasonCode"][0]["coding"][0]["code"] == "2"
    assert [r["coding"][0]["code"] for r in referral["reasonCode"][1:]] == ["I63.9", "I10", "E78.5"]
    assert any(n["text"].startswith("Phương tiện vận chuyển: ") for n in referral["note"])
    assert {i["value"] for i in referral["identifier"][1:]} == {"CT2025-0103", "HS2025-0103", "SCT-2025-015"}


def test_xml14_is_a_proposed_appointment_on_the_re_exam_day() -> None:
    appt = _of(_hoso(0, 2), "Appointment")[0]
    assert appt["status"] == "proposed" and appt["requestedPeriod"] == [{"start": "2025-05-10", "end": "2025-05-10"}]
    assert [p["status"] for p in appt["participant"]] == ["needs-action", "accepted", "accepted"]


def test_a_copy_of_an_xml1_field_that_differs_is_a_warning() -> None:
    tables = dict(decoded_tables("GIAMDINHHS_synthetic_01_00999", 2))
    tables["XML14"] = tables["XML14"].replace("Trần Văn Thử".encode(), "Trần Văn Khác".encode())
    h = map_file(envelope([tables]), "t.xml", recorded=RECORDED).hosos[0]
    assert h.bundle is not None
    assert [(p.severity, p.table, p.field, p.value) for p in h.problems if p.code == "value"] == [
        ("warning", "XML14", "HO_TEN", "Trần Văn Khác")]


def test_qd4210_layout_is_detected_and_matches_the_golden_bundle() -> None:
    result = map_file(envelope([_qd4210_tables()], facility="00997"), "qd4210_synthetic.xml", recorded=RECORDED)
    h = result.hosos[0]
    assert h.bundle is not None
    _check_golden("qd4210_synthetic.hoso1.json", _golden_form(h.bundle))
    assert {p.severity for p in h.problems} == {"information"}
    enc = _of(h, "Encounter")[0]
    assert enc["class"]["code"] == "IMP"
    patient = _of(h, "Patient")[0]
    assert patient["birthDate"] == "1962-07-05"
    assert [i["value"] for i in patient["identifier"]][:1] == ["HT3010765766108"]
    assert _of(h, "Condition")[1]["code"]["coding"][0]["code"] == "I10"
    assert "MA_LYDO_VVIEN" in h.unmapped["XML1"]
    temp = next(o for o in _of(h, "Observation") if o["code"]["coding"][0]["code"] == "8310-5")
    assert temp["valueQuantity"]["value"] == 38.5


def test_qd4210_unknown_visit_type_is_an_error_naming_the_4210_field() -> None:
    tables = _qd4210_tables()
    tables["XML1"] = tables["XML1"].replace(b"<MA_LOAI_KCB>3<", b"<MA_LOAI_KCB>7<")
    h = map_file(envelope([tables], facility="00997"), "t.xml", recorded=RECORDED).hosos[0]
    assert any(p.field == "MA_LOAI_KCB" and p.severity == "error" for p in h.problems)


def _all_bundles() -> list[dict[str, Any]]:
    out = [h.bundle for p in sample_files() for h in map_file(p.read_bytes(), p.name, recorded=RECORDED).hosos]
    out.append(map_file(envelope([_qd4210_tables()], facility="00997"), "t.xml", recorded=RECORDED).hosos[0].bundle)
    return [b for b in out if b is not None]


def test_every_resource_validates_against_the_vn_profiles_without_errors() -> None:
    warnings: Counter[str] = Counter()
    for bundle in _all_bundles():
        for e in bundle["entry"]:
            issues = validate_resource(e["resource"])
            errors = [i for i in issues if i.severity in ("error", "fatal")]
            assert errors == [], (e["resource"]["resourceType"], errors)
            warnings.update(f"{e['resource']['resourceType']}: {i.diagnostics[:60]}" for i in issues)
    # the warnings the README lists: occupation and ward codes outside the loaded lists, a lab
    # result whose unit has no UCUM code
    assert all(k.split(":")[0] in ("Patient", "Observation") for k in warnings)


@pytest.mark.parametrize("text, label, value", [("M: 80 l/p, T: 36.8 °C", "T", 36.8), ("(M:72)", "M", 72),
                                                ("SP: 98%", "SP", 98), ("NT:18", "NT", 18)])
def test_vital_sign_reads_the_labelled_number(text: str, label: str, value: float) -> None:
    from fhir_hub.mapping.functions import vital_sign

    assert vital_sign(text, label)["valueQuantity"]["value"] == value


def test_xml2_lines_are_an_order_and_a_dispense_of_one_medication() -> None:
    h = _hoso(0, 1)
    by_url = {e["fullUrl"]: e["resource"] for e in h.bundle["entry"]} if h.bundle else {}
    dispenses = _of(h, "MedicationDispense")
    assert len(dispenses) == len(_of(h, "MedicationRequest")) == len(_of(h, "Medication")) > 0
    first = dispenses[0]
    order = by_url[first["authorizingPrescription"][0]["reference"]]
    assert order["resourceType"] == "MedicationRequest"
    assert first["medicationReference"] == order["medicationReference"]
    assert by_url[first["medicationReference"]["reference"]]["code"]["coding"][0]["code"] == "40.226"
    assert first["quantity"] == {"value": 10, "unit": "Lọ"} and first["status"] == "completed"
    assert first["whenHandedOver"] == "2025-03-03T10:30:00+07:00"  # NGAY_TH_YL
    assert first["context"] == order["encounter"] and first["subject"] == order["subject"]


def test_xml3_lines_are_charges_of_the_service_or_of_the_supply() -> None:
    h = _hoso(0, 3)
    charges = {c["identifier"][0]["value"].rsplit("/", 1)[1]: c for c in _of(h, "ChargeItem")
               if "/XML3/" in c["identifier"][0]["value"]}
    assert set(charges) == {"1", "2", "3", "4"}  # every line, the supply line too
    supply = charges["4"]
    assert supply["identifier"][0]["value"].startswith("charge-supply/")
    assert supply["code"] == {"coding": [{"system": "urn:fhir-hub:vn-dmdc:vtyt", "code": "N03.05.070"}],
                              "text": "Bộ dây truyền dịch (giả lập)"}
    assert supply["quantity"] == {"value": 1, "unit": "Bộ"}
    assert supply["priceOverride"] == {"value": 9500, "currency": "VND"} and supply["factorOverride"] == 1
    assert supply["costCenter"] == {"identifier": {"system": "urn:fhir-hub:qd130:ma-khoa", "value": "K05"}}
    assert supply["occurrenceDateTime"] == "2025-06-01T14:10:00+07:00"
    assert charges["1"]["code"]["coding"][0]["code"] == "02.1896" and charges["1"]["status"] == "billable"


def test_xml2_lines_are_charges_for_their_dispense() -> None:
    h = _hoso(0, 1)
    dispenses = {e["fullUrl"] for e in h.bundle["entry"] if e["resource"]["resourceType"] == "MedicationDispense"} \
        if h.bundle else set()
    charges = [c for c in _of(h, "ChargeItem") if "/XML2/" in c["identifier"][0]["value"]]
    assert len(charges) == len(dispenses) and {c["service"][0]["reference"] for c in charges} == dispenses
    assert charges[0]["priceOverride"] == {"value": 28500, "currency": "VND"}
    assert charges[0]["note"] == [{"text": "Thông tin thầu: 1234/QĐ-SYT;G1;N4;2024"}]
