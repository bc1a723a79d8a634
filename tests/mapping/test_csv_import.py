"""CSV exports → bundles: the synthetic patient list and vital-signs files against golden bundles,
the VN profiles, and faulty rows reported by row and column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fhir_hub.mapping.csv_import import map_csv
from fhir_hub.validation.profile import validate_resource
from tests.mapping.conftest import RECORDED
from tests.mapping.test_claims_xml import _check_golden, _golden_form

DATA = Path(__file__).parent / "data" / "csv"


def _map(stem: str, **kw: Any) -> Any:
    return map_csv((DATA / f"{stem}.csv").read_bytes(), f"{stem}.csv", stem, recorded=RECORDED, **kw)


@pytest.mark.parametrize("stem", ["patients", "vitals"])
def test_csv_files_match_the_golden_bundles_and_the_vn_profiles(stem: str) -> None:
    result = _map(stem)
    assert len(result.records) == 1 and result.records[0].bundle is not None
    _check_golden(f"csv_{stem}.json", _golden_form(result.records[0].bundle))
    _check_golden(f"csv_{stem}.outcome.json", result.outcome())
    for e in result.records[0].bundle["entry"]:
        errors = [i for i in validate_resource(e["resource"]) if i.severity in ("error", "fatal")]
        assert errors == [], (e["resource"]["resourceType"], errors)


def test_patient_rows_and_their_errors() -> None:
    result = _map("patients")
    patients = [e["resource"] for e in result.records[0].bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert [p["name"][0]["text"] for p in patients] == ["Nguyễn Văn Mẫu", "Trần Thị Thử", "Lò Văn Giả"]
    assert patients[1]["birthDate"] == "1985-05-12" and patients[2]["birthDate"] == "1950"
    found = {(p.line, p.severity, p.field) for p in result.records[0].problems}
    assert {("5", "error", "so_cccd"), ("5", "error", "gioi_tinh"), ("5", "error", "ngay_sinh"),
            ("6", "warning", None), ("7", "error", "ho_ten")} <= found


def test_vital_rows_reference_the_patient_conditionally_and_carry_the_spec_unit() -> None:
    obs = [e["resource"] for e in _map("vitals").records[0].bundle["entry"]
           if e["resource"]["resourceType"] == "Observation"]
    assert len(obs) == 6
    assert obs[0]["subject"]["reference"] == ("Patient?identifier=http%3A%2F%2Ffhir.ehealth.gov.vn%2Fcore%2Fsid"
                                              "%2Fnational_id%7C001080012345")
    assert obs[1]["valueQuantity"] == {"value": 135, "unit": "mmHg", "system": "http://unitsofmeasure.org",
                                       "code": "mm[Hg]"}
    assert obs[3]["effectiveDateTime"] == "2025-03-01T08:30:00+07:00"


def test_rows_are_chunked_and_a_missing_column_is_fatal() -> None:
    assert [r.label for r in _map("vitals", chunk=4).records] == ["rows 2-5", "rows 6-9", "row 10"]
    bad = map_csv(b"ma_tram,so_cccd\nT1,001080012345\n", "x.csv", "vitals")
    assert not bad.records and bad.problems[0].severity == "fatal" and "chi_so" in bad.problems[0].reason
