"""Lookup, validate-code and translate against codes checked by hand in ../shared/vn/code-lists."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest

from fhir_hub import terminology
from fhir_hub.terminology import UnknownSystem, lookup, translate, validate_code

CS = "http://fhir.ehealth.gov.vn/core/CodeSystem/"
ICD = CS + "vn-icd10"
WARD_MAP = "http://fhir.ehealth.gov.vn/core/ConceptMap/vn-ward-pre2025-to-2025"


def test_icd10_code_with_its_vietnamese_title() -> None:
    assert lookup(ICD, "E11.9") == ("Bệnh đái tháo đường không phụ thuộc insuline (Chưa có biến chứng)", {})
    assert lookup(ICD, "J45") == ("Hen [suyễn]", {})
    # dagger codes keep their mark, as in the BHYT catalogue
    assert lookup(ICD, "A17.0†") is not None
    assert lookup(ICD, "E11.99") is None
    assert terminology.designations(ICD, "J45") == [("en", "Asthma")]


def _built_here() -> list[Any]:
    """The code systems tools/build_terminology.py makes (R4's own come as published)."""
    return [cs for cs in terminology.catalogue.catalogue().code_systems.values()
            if cs.url.startswith("http://fhir.ehealth.gov.vn/") or cs.url == "http://loinc.org"]


def test_every_display_is_nfc() -> None:
    for cs in _built_here():
        for concept in cs.concepts.values():
            assert unicodedata.is_normalized("NFC", concept["display"]), (cs.url, concept["code"])


def test_province_2025_and_its_predecessors() -> None:
    display, props = lookup(CS + "vn-province-2025", "79") or ("", {})
    assert display == "Thành phố Hồ Chí Minh"
    assert props["merged_from_province_codes_pre2025"] == "74;77;79"
    assert lookup(CS + "vn-province-2025", "74") is None  # Bình Dương merged into HCMC
    assert lookup(CS + "vn-province-pre2025", "74") == (
        "Tỉnh Bình Dương", {"division_type": "Tỉnh", "cccd_birth_registration_prefix": "074", "iso_3166_2": "VN-57",
                            "province_code_2025": "79"})


def test_ig_urls_reused_for_ethnic_groups_and_occupations() -> None:
    assert lookup(CS + "vn-core-race", "01") == ("Kinh", {"other_names_vi": "Việt", "in_official_54": "Y",
                                                          "code_qd1019_2008_if_known": "01"})
    cs = terminology.code_system(CS + "vn-core-occupation")
    assert cs is not None and cs.resource["content"] == "fragment"


def test_unknown_system_is_an_exception_for_lookup() -> None:
    with pytest.raises(UnknownSystem):
        lookup("http://example.org/nope", "1")


def test_validate_code() -> None:
    assert validate_code(CS + "vn-qd130-ket-qua-dtri", "1") == (True, f"code '1' is in {CS}vn-qd130-ket-qua-dtri: Khỏi")
    assert validate_code(CS + "vn-qd130-ket-qua-dtri", "1", "Khỏi")[0]
    assert validate_code(CS + "vn-qd130-ket-qua-dtri", "1", "cured")[0]  # English designation, any case
    decomposed = unicodedata.normalize("NFD", "Khỏi")
    assert validate_code(CS + "vn-qd130-ket-qua-dtri", "1", decomposed)[0]
    ok, message = validate_code(CS + "vn-qd130-ket-qua-dtri", "1", "Đỡ")
    assert not ok and "Khỏi" in message
    assert validate_code(CS + "vn-qd130-ket-qua-dtri", "99") == (False, f"code '99' is not in {CS}vn-qd130-ket-qua-dtri")
    assert validate_code("http://example.org/nope", "1")[0] is False
    assert validate_code(CS + "vn-bhyt-object-code", "DN")[0]
    assert validate_code(CS + "vn-qd130-ma-loai-kcb", "01")[0]
    assert validate_code(CS + "vn-qd130-ma-loai-rv", "2")[0]


def test_provenance_is_recorded_the_same_way_everywhere() -> None:
    cat = terminology.catalogue.catalogue()
    for res in [c.resource for c in _built_here()] + [m.resource for m in cat.concept_maps.values()]:
        tag = res["meta"]["tag"][0]
        assert tag["system"] == "urn:fhir-hub:source-status"
        assert tag["code"] in ("verified", "secondary", "unverified")
        assert "Source: shared/vn/code-lists/" in res["description"] or "Source: shared/fhir-r4 " in res["description"]
        assert res["description"].endswith(f"status: {tag['code']}.")
    assert cat.code_systems[ICD].resource["meta"]["tag"][0]["code"] == "secondary"
    assert cat.code_systems[CS + "vn-bhyt-benefit-level"].resource["meta"]["tag"][0]["code"] == "unverified"


def test_ward_merged_whole_and_split() -> None:
    # 00001 Phường Phúc Xá (Ba Đình) was merged whole into 00097 Phường Hồng Hà
    [m] = translate("00001", url=WARD_MAP)
    assert (m.code, m.display, m.equivalence, m.system) == ("00097", "Phường Hồng Hà", "wider", CS + "vn-ward-2025")
    # 00016 Phường Ngọc Hà was split between 00004 Ba Đình and 00008 Ngọc Hà
    split = translate("00016", source=CS + "vn-ward-pre2025", target=CS + "vn-ward-2025")
    assert sorted((x.code, x.equivalence) for x in split) == [("00004", "inexact"), ("00008", "inexact")]
    assert translate("99999", url=WARD_MAP) == []


def test_province_map() -> None:
    [m] = translate("02", source=CS + "vn-province-pre2025")
    assert (m.code, m.display, m.equivalence) == ("08", "Tỉnh Tuyên Quang", "wider")
    [same] = translate("01", source=CS + "vn-province-pre2025")
    assert (same.code, same.equivalence) == ("01", "equal")
    with pytest.raises(UnknownSystem):
        translate("01", url="http://example.org/ConceptMap/nope")


def test_reverse_translate_turns_the_equivalence_around() -> None:
    # HCMC (79) since 2025 took in Bình Dương (74) and Bà Rịa - Vũng Tàu (77): each is narrower than it
    back = translate("79", source=CS + "vn-province-2025", reverse=True)
    assert sorted((m.code, m.equivalence, m.system) for m in back) == [
        (c, "narrower", CS + "vn-province-pre2025") for c in ("74", "77", "79")]
    [hanoi] = translate("01", source=CS + "vn-province-2025", reverse=True)
    assert (hanoi.code, hanoi.display, hanoi.equivalence) == ("01", "Thành phố Hà Nội", "equal")
    # the maps' ValueSets scope the search, read backwards too
    vs = "http://fhir.ehealth.gov.vn/core/ValueSet/"
    assert translate("02", source_scope=vs + "vn-province-pre2025", target_scope=vs + "vn-province-2025")
    with pytest.raises(UnknownSystem):
        translate("02", source_scope=vs + "vn-province-2025", target_scope=vs + "vn-province-pre2025")
    assert translate("08", source_scope=vs + "vn-province-2025", reverse=True)


def test_lookup_details() -> None:
    found = terminology.lookup_details(ICD, "J45.9", "en-GB")
    assert found is not None
    assert (found.name, found.version, found.display) == ("VnIcd10", "QD4469-2020", "Asthma, unspecified")
    assert found.designations == (("en", "Asthma, unspecified"),)
    assert found.properties == (("parent", "code", "J45"),)
    assert terminology.lookup_details(ICD, "J45.9", "vi").display == "Hen, không phân loại"  # type: ignore[union-attr]
    assert terminology.lookup_details(ICD + "|QD4469-2020", "J45") is not None
    with pytest.raises(UnknownSystem):
        terminology.lookup_details(ICD + "|2019", "J45")
