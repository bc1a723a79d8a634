"""Every named function a mapping spec may call, on the formats of QĐ 130 / 4750 (research notes §6.4)."""

from __future__ import annotations

import pytest

from fhir_hub.mapping import functions as f
from fhir_hub.mapping import systems
from fhir_hub.mapping.functions import BadValue, Remark


def test_every_function_is_registered_under_its_name() -> None:
    assert all(fn.__name__ == name for name, fn in f.CONVERTERS.items())
    assert all(fn.__name__ == name for name, fn in f.REQUESTS.items())


@pytest.mark.parametrize(("text", "expected"), [
    ("202503030745", "2025-03-03T07:45:00+07:00"),
    ("202412312359", "2024-12-31T23:59:00+07:00"),
    ("202402290000", "2024-02-29T00:00:00+07:00"),
])
def test_datetime_vn_is_local_time_at_plus_seven(text: str, expected: str) -> None:
    assert f.datetime_vn(text) == expected


@pytest.mark.parametrize("text", ["2025030307", "2025-03-03 07:45", "202502300745", "202503032460",
                                  "202503031299", "20250303074a", "2025030307450"])
def test_datetime_vn_refuses_what_is_not_yyyymmddHHMM(text: str) -> None:
    with pytest.raises(BadValue):
        f.datetime_vn(text)


def test_date_ymd() -> None:
    assert f.date_ymd("20251231") == "2025-12-31"
    for bad in ("2025123", "20251301", "2025-12-31", "20250230"):
        with pytest.raises(BadValue):
            f.date_ymd(bad)


def test_date_or_datetime_takes_both_lengths() -> None:
    assert f.date_or_datetime("20250510") == "2025-05-10"
    assert f.date_or_datetime("202505100800") == "2025-05-10T08:00:00+07:00"


@pytest.mark.parametrize(("text", "expected"), [
    ("196803150000", "1968-03-15"),
    ("194800000000", "1948"),       # day and month unknown: never 1 January
    ("195003000000", "1950-03"),
    ("202209140630", "2022-09-14"),
    ("19680315", "1968-03-15"),
])
def test_birth_date_keeps_its_precision(text: str, expected: str) -> None:
    assert f.birth_date(text) == expected


@pytest.mark.parametrize("text", ["000000000000", "194800150000", "196802300000", "1968031", "19481300000a",
                                  "194813000000"])
def test_birth_date_refuses_impossible_dates(text: str) -> None:
    with pytest.raises(BadValue):
        f.birth_date(text)


def test_birth_time_only_when_the_time_is_known() -> None:
    assert f.birth_time("202209140630") == "2022-09-14T06:30:00+07:00"
    for unknown in ("196803150000", "194800000000"):
        with pytest.raises(BadValue) as exc:
            f.birth_time(unknown)
        assert exc.value.severity == "information"


def test_instant_from_date() -> None:
    assert f.instant_from_date("20250701") == "2025-07-01T00:00:00+07:00"


def test_decimal_uses_the_point_only() -> None:
    assert f.decimal("68.00") == 68.0
    assert f.decimal("60") == 60 and isinstance(f.decimal("60"), int)
    assert f.decimal("-1.5") == -1.5
    for bad in ("68,5", "1 000", "1.000,5", "", "abc", "1e3"):
        with pytest.raises(BadValue):
            f.decimal(bad)


def test_integer() -> None:
    assert f.integer("5") == 5
    with pytest.raises(BadValue):
        f.integer("5.0")


def test_lists_are_split_on_semicolons() -> None:
    assert f.split_list("I10;E78.5") == ["I10", "E78.5"]
    assert f.split_list(" I10 ;; E78.5 ;") == ["I10", "E78.5"]
    assert f.split_list("I10") == ["I10"]
    assert f.first_of_list("001/HNO-CCHN;002/HNO-CCHN") == "001/HNO-CCHN"
    with pytest.raises(BadValue):
        f.first_of_list(";;")


def test_body_weight_refuses_the_missing_weight_sentinel() -> None:
    assert f.body_weight("52.50") == 52.5
    for sentinel in ("0.01", "0", "0.00"):
        with pytest.raises(BadValue) as exc:
            f.body_weight(sentinel)
        assert exc.value.severity == "warning"


def test_icd10_known_and_unknown_codes() -> None:
    assert f.icd10("J18.9") == {"system": systems.ICD10_VN, "code": "J18.9",
                                "display": "Viêm phổi, không đặc hiệu"}
    assert f.icd10("j18.9")["code"] == "J18.9"  # type: ignore[index]
    unknown = f.icd10("Q99.99")
    assert isinstance(unknown, Remark) and unknown.value == {"system": systems.ICD10_VN, "code": "Q99.99"}


def test_code_lists() -> None:
    assert f.ethnic_group("01") == {"system": systems.ETHNIC_GROUP, "code": "01", "display": "Kinh"}
    assert isinstance(f.ethnic_group("77"), Remark)
    assert f.visit_type("02") == {"system": systems.VISIT_TYPE, "code": "02", "display": "Điều trị ngoại trú"}
    assert f.visit_type("2") == f.visit_type("02")  # the pre-4750 one-digit form
    assert f.discharge_type("1")["display"] == "Ra viện"  # type: ignore[index]
    assert f.treatment_result("1")["code"] == "1"  # type: ignore[index]


def test_bhyt_object_is_the_card_prefix() -> None:
    out = f.bhyt_object("HT3010765766108")
    assert out["value"] == "HT" and out["name"].startswith("Người hưởng lương hưu")
    assert out["type"]["coding"][0] == {"system": systems.COVERAGE_CLASS, "code": "group"}
    with pytest.raises(BadValue):
        f.bhyt_object("123456")


def test_admin_address_before_and_after_2025() -> None:
    old = f.admin_address("79", "760", "26734")
    assert old["url"] == systems.ADMIN_ADDRESS_EXT
    assert [e["url"] for e in old["extension"]] == ["state", "district", "ward"]
    state = old["extension"][0]["valueCodeableConcept"]["coding"][0]
    assert state["system"] == systems.PROVINCE_PRE2025 and state["code"] == "79" and "display" in state
    new = f.admin_address("79", "", "26734")
    assert [e["url"] for e in new["extension"]] == ["state", "ward"]
    assert new["extension"][0]["valueCodeableConcept"]["coding"][0]["system"] == systems.PROVINCE_2025


def test_lab_value() -> None:
    assert f.lab_value("8.4", "mmol/L") == {"valueQuantity": {"value": 8.4, "unit": "mmol/L",
                                                              "system": systems.UCUM, "code": "mmol/L"}}
    assert f.lab_value("9.1", "G/L")["valueQuantity"]["code"] == "10*9/L"
    assert f.lab_value("12", "lần/phút") == {"valueQuantity": {"value": 12, "unit": "lần/phút"}}
    assert f.lab_value("Âm tính") == {"valueString": "Âm tính"}
    assert f.lab_value(">1000", "mg/L") == {"valueString": ">1000"}


def test_vn_name() -> None:
    assert f.vn_name("Nguyễn  Thị Mẫu") == {"use": "official", "text": "Nguyễn Thị Mẫu", "family": "Nguyễn",
                                             "given": ["Thị", "Mẫu"]}
    assert f.vn_name("Mẫu") == {"use": "official", "text": "Mẫu", "given": ["Mẫu"]}


def test_practitioner_and_phone() -> None:
    ref = f.practitioner("004567/HNO-CCHN")
    assert not isinstance(ref, f.Remark) and ref["identifier"]["value"] == "004567/HNO-CCHN"
    several = f.practitioner("004567/HNO-CCHN;009876/HCM-CCHN")  # one person fits: the first, and a warning
    assert isinstance(several, f.Remark) and several.value["identifier"]["value"] == "004567/HNO-CCHN"
    assert "2 staff codes" in several.reason
    assert [r["identifier"]["value"] for r in f.practitioners("004567/HNO-CCHN; 009876/HCM-CCHN;")] == [
        "004567/HNO-CCHN", "009876/HCM-CCHN"]
    with pytest.raises(f.BadValue):
        f.practitioner(";")
    assert f.phone("0900000102") == {"system": "phone", "value": "0900000102"}


def test_requests() -> None:
    patient = {"resourceType": "Patient", "identifier": [
        {"system": systems.PATIENT_INTERNAL_ID, "value": "BN1"},
        {"system": systems.NATIONAL_ID, "value": "079168864770"}]}
    assert f.patient_request(patient) == {"method": "POST", "url": "Patient",
                                          "ifNoneExist": f"identifier={systems.NATIONAL_ID}|079168864770"}
    only_mrn = {"resourceType": "Patient", "identifier": [{"system": systems.PATIENT_INTERNAL_ID, "value": "B N"}]}
    assert f.patient_request(only_mrn)["ifNoneExist"] == f"identifier={systems.PATIENT_INTERNAL_ID}|B%20N"
    assert f.patient_request({"resourceType": "Patient"}) == {"method": "POST", "url": "Patient"}
    obs = {"resourceType": "Observation", "identifier": [{"system": systems.CLAIM_LINE, "value": "a/b&c"}]}
    assert f.put_by_identifier(obs) == {"method": "PUT",
                                        "url": f"Observation?identifier={systems.CLAIM_LINE}|a%2Fb%26c"}
    org = {"resourceType": "Organization", "identifier": [{"system": systems.FACILITY_CODE, "value": "00999"}]}
    assert f.create_once_by_identifier(org) == {"method": "POST", "url": "Organization",
                                                "ifNoneExist": f"identifier={systems.FACILITY_CODE}|00999"}
    assert f.replace_by_id({"resourceType": "Binary", "id": "x"}) == {"method": "PUT", "url": "Binary/x"}


def test_search_tokens_escape_as_quote_does() -> None:
    """The plain-value shortcut and the per-system memo write what ``urllib.parse.quote`` would:
    value with nothing safe kept, system with ``:/`` kept; asked twice, the same."""
    from urllib.parse import quote

    values = ["00999/00999.2025.NT.000101/XML3/MA_NHOM=8", "a:b/c=d~e_f.g-h", "B N", "Việt", "a&b", "x%3D", "=", ""]
    systems_ = [systems.CLAIM_LINE, "http://example.org/a b", "urn:x:é", "http://h/p?q=1&r"]
    for system in systems_:
        for value in values:
            for _ in range(2):
                token = f._token({"system": system, "value": value})
                assert token == f"{quote(system, safe=':/')}|{quote(value, safe='')}", (system, value)
    assert f._token({"value": "a=b"}) == "a%3Db"


def test_class_history_from_the_admission_time() -> None:
    amb = {"system": systems.ACT_CODE, "code": "AMB", "display": "ambulatory"}
    imp = {"system": systems.ACT_CODE, "code": "IMP", "display": "inpatient encounter"}
    assert f.class_history("202503031000", "202503030745", "202503071500") == [
        {"class": amb, "period": {"start": "2025-03-03T07:45:00+07:00", "end": "2025-03-03T10:00:00+07:00"}},
        {"class": imp, "period": {"start": "2025-03-03T10:00:00+07:00", "end": "2025-03-07T15:00:00+07:00"}}]
    # a bad start or end is its own field's problem: left out here, not blamed on NGAY_VAO_NOI_TRU
    assert f.class_history("202503031000", "2025-03-03", "") == [
        {"class": imp, "period": {"start": "2025-03-03T10:00:00+07:00"}}]
    assert f.class_history("202503031000", "", "", "04")[0]["class"]["code"] == "SS"  # day care
    with pytest.raises(f.BadValue):
        f.class_history("20250303")
