"""Feature extraction: identifiers, names, dates, addresses and phones as the matcher sees them."""

from __future__ import annotations

import unicodedata

import pytest

from fhir_hub.mpi.features import (
    BirthDate,
    Precision,
    birth_date,
    exact_key,
    extract,
    insurance_number,
    national_id,
    phone,
    split_name,
)
from tests.mpi.conftest import CCCD, address, patient


@pytest.mark.parametrize(("value", "expected"), [
    ("001085012345", ("001085012345", 1985, "male")),
    ("001 185 012345", ("001185012345", 1985, "female")),
    ("079.203.000001", ("079203000001", 2003, "male")),
    ("096312000001", ("096312000001", 2012, "female")),
])
def test_valid_personal_ids_give_their_birth_year_and_sex(value: str, expected: tuple[str, int, str]) -> None:
    assert national_id(value) == expected


@pytest.mark.parametrize("value", [
    "00108501234",      # 11 digits
    "0010850123456",    # 13 digits
    "003085012345",     # 003 is no province code (Hà Giang is 002, Cao Bằng 004)
    "097085012345",     # past 096
    "000085012345",
    "001485012345",     # century digit 4: born in the 2100s
    "00108501234a",
    "０01085012345",    # full-width digit
])
def test_invalid_personal_ids_are_not_used(value: str) -> None:
    assert national_id(value) is None


def test_insurance_number_is_the_card_tail_or_the_bhxh_number() -> None:
    assert insurance_number("DN4010123456789") == "0123456789"
    assert insurance_number("dn4 01 0123456789") == "0123456789"
    assert insurance_number("0123456789") == "0123456789"
    assert insurance_number("DN6010123456789") is None   # benefit level 6 does not exist
    assert insurance_number("012345678") is None


def test_cards_renewed_with_another_object_code_give_one_number() -> None:
    p = patient(card=None)
    p["identifier"] += [{"system": "http://fhir.ehealth.gov.vn/core/sid/insurance_number", "value": v}
                        for v in ("TE1010123456789", "HS4010123456789")]
    assert extract(p).insurance_numbers == {"0123456789"}


def test_name_split_into_ho_dem_ten() -> None:
    family, middle, given = split_name({"family": "Nguyễn", "given": ["Thị Ngọc", "Ánh"]})
    assert (family and family.text, middle and middle.text, given and given.text) == ("Nguyễn", "Thị Ngọc", "Ánh")
    family, middle, given = split_name({"text": "NGUYEN  VAN   HUNG"})
    assert (family and family.folded, middle and middle.folded, given and given.folded) == ("nguyen", "van", "hung")
    family, middle, given = split_name({"family": "Tôn Thất", "text": "Tôn Thất Thuyết"})
    assert (family and family.text, middle, given and given.text) == ("Tôn Thất", None, "Thuyết")
    assert split_name({"given": ["Hùng"]})[2] is not None


@pytest.mark.parametrize(("a", "b"), [("Nguyễn", "NGUYEN"), ("Đức", "duc"), ("đặng", "DANG"), ("Võ", "vo")])
def test_folding_drops_diacritics_case_and_d_stroke(a: str, b: str) -> None:
    fa, fb = extract(patient(name=f"{a} Văn Hùng")), extract(patient(name=f"{b} Văn Hùng"))
    assert fa.family and fb.family
    assert fa.family.folded == fb.family.folded
    assert fa.family.exact != fb.family.exact


def test_exact_key_ignores_case_unicode_form_and_tone_placement() -> None:
    assert exact_key("Hoà") == exact_key("Hòa") == exact_key("HÒA")
    assert exact_key("Thuỷ") == exact_key("Thủy")
    assert exact_key(unicodedata.normalize("NFD", "Nguyễn")) == exact_key("Nguyễn")
    assert exact_key("Hòa") != exact_key("Hoa")


def test_birth_date_precision() -> None:
    assert birth_date("1985") == BirthDate(1985)
    assert birth_date("1985").precision is Precision.YEAR  # type: ignore[union-attr]
    assert birth_date("1985-03").precision is Precision.MONTH  # type: ignore[union-attr]
    assert birth_date("1985-03-04") == BirthDate(1985, 3, 4)
    assert birth_date("1985-03-04T10:00:00+07:00") == BirthDate(1985, 3, 4)
    assert birth_date("85") is None and birth_date(None) is None


def test_sex_other_and_unknown_count_as_missing() -> None:
    assert extract(patient(sex="other")).sex is None
    assert extract(patient(sex="unknown")).sex is None


@pytest.mark.parametrize(("value", "expected"), [
    ("0912345678", "0912345678"), ("+84 912 345 678", "0912345678"), ("+84912345678", "0912345678"),
    ("84912345678", "0912345678"), ("0912.345.678", "0912345678"), ("912345678", "0912345678"),
    ("01623456789", "0323456789"), ("024 3825 1234", "02438251234"),
    ("+1 650 555 0100", None), ("12345", None), ("0012345678", None),
])
def test_phone_normalisation(value: str, expected: str | None) -> None:
    assert phone(value) == expected


def test_old_commune_code_converts_to_its_2025_commune() -> None:
    # Phường Trúc Bạch (00004, Ba Đình, Hà Nội) merged wholly into the 2025 Phường Ba Đình (00004)
    f = extract(patient(addr=address("01", "00004", old=True)))
    assert f.communes == {"00004"} and f.provinces == {"01"}
    # Phường Quán Thánh (00013) too: its old code is not the new one
    assert extract(patient(addr=address("01", "00013", old=True))).communes == {"00004"}


def test_split_commune_converts_to_every_successor() -> None:
    # Phường Ngọc Hà (00016) was split between Ba Đình (00004) and Ngọc Hà (00008)
    assert extract(patient(addr=address("01", "00016", old=True))).communes == {"00004", "00008"}


def test_old_province_converts_and_province_follows_the_commune() -> None:
    assert extract(patient(addr=address("02", "00004", old=True))).provinces == {"08"}  # Hà Giang → Tuyên Quang
    p = patient()
    p["address"][0]["extension"][0]["extension"].pop(0)  # no state part
    assert extract(p).provinces == {"01"}


def test_admin_address_coding_with_version_and_without() -> None:
    ext_url = "http://fhir.ehealth.gov.vn/core/StructureDefinition/extension-administrative-address"
    system = "http://fhir.ehealth.gov.vn/core/CodeSystem/vn-core-administrative-address"

    def with_version(version: str | None) -> frozenset[str]:
        coding = {"system": system, "code": "00013", **({"version": version} if version else {})}
        p = patient(addr={"extension": [{"url": ext_url, "extension": [
            {"url": "ward", "valueCodeableConcept": {"coding": [coding]}}]}]})
        return extract(p).communes

    assert with_version("2025-01-04") == {"00004"}   # the pre-2025 list's version: converted
    assert with_version("2025") == set()             # 00013 is no 2025 commune
    assert with_version(None) == {"00004"}           # either list: what it can be


def test_extract_of_a_full_patient() -> None:
    f = extract(patient())
    assert (f.national_id, f.id_birth_year, f.id_sex) == (CCCD, 1985, "male")
    assert f.insurance_numbers == {"0123456789"}
    assert f.folded_name == "nguyen van hung"
    assert f.phones == {"0912345678"} and f.communes == {"00004"} and f.sex == "male"


def test_extract_tolerates_odd_shapes() -> None:
    f = extract({"resourceType": "Patient", "identifier": [{"system": "x"}, "junk"], "name": ["x", {"use": "old"}],
                 "telecom": [{"system": "email", "value": "a@b.vn"}], "address": [{"use": "old"}],
                 "birthDate": "1985-13-40"})
    assert f.national_id is None and f.given is None and not f.phones and not f.communes
    assert f.birth == BirthDate(1985)
