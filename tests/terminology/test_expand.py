"""$expand and ValueSet-level validate-code over the shipped ValueSets and hand-written composes,
against codes checked by hand in ../shared/vn/code-lists."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_hub import terminology
from fhir_hub.terminology import UnknownSystem, UnsupportedCompose, expand, validate_in_valueset

CS = "http://fhir.ehealth.gov.vn/core/CodeSystem/"
VS = "http://fhir.ehealth.gov.vn/core/ValueSet/"
ICD = CS + "vn-icd10"
#: E11 and its subdivisions, three of them dagger codes
E11 = ["E11", "E11.0", "E11.1", "E11.2†", "E11.3†", "E11.4†", "E11.5", "E11.6", "E11.7", "E11.8", "E11.9"]


def vs(*include: dict[str, Any], exclude: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    compose: dict[str, Any] = {"include": list(include)}
    if exclude:
        compose["exclude"] = list(exclude)
    return {"resourceType": "ValueSet", "url": "http://example.org/ValueSet/test", "compose": compose}


def codes(valueset: dict[str, Any], **kwargs: Any) -> list[str]:
    return [e.code for e in expand(valueset, **kwargs).contains]


def shipped(name: str) -> dict[str, Any]:
    found = terminology.value_set(VS + name)
    assert found is not None, name
    return found


def test_every_code_system_has_its_all_codes_value_set() -> None:
    cat = terminology.catalogue.catalogue()
    lists = [cs for cs in cat.code_systems.values() if cs.url.startswith("http://fhir.ehealth.gov.vn/")]
    assert len([u for u in cat.value_sets if u.startswith("http://fhir.ehealth.gov.vn/")]) == len(lists) == 12
    for cs in lists:
        valueset = cat.value_sets[cs.resource["valueSet"]]
        assert valueset["compose"] == {"include": [{"system": cs.url, **({"version": cs.resource["version"]}
                                                                           if "version" in cs.resource else {})}]}
        assert valueset["meta"] == cs.resource["meta"]
        assert expand(valueset).total == len(cs.concepts) == cs.resource["count"]
    # the IG's ValueSet vn-core-occupation also has SNOMED CT: ours, with only the CodeSystem, is named apart
    assert cat.code_systems[CS + "vn-core-occupation"].resource["valueSet"] == VS + "vn-core-occupation-level2"
    assert cat.code_systems[CS + "vn-core-race"].resource["valueSet"] == VS + "vn-core-race"
    # the ConceptMaps go between these ValueSets
    cm = cat.concept_maps["http://fhir.ehealth.gov.vn/core/ConceptMap/vn-province-pre2025-to-2025"].resource
    assert (cm["sourceCanonical"], cm["targetCanonical"]) == (VS + "vn-province-pre2025", VS + "vn-province-2025")


def test_text_filter_folds_case_accents_and_d() -> None:
    provinces = shipped("vn-province-2025")
    assert codes(provinces, filter="ha noi") == ["01"]
    assert codes(provinces, filter="HO CHI MINH") == ["79"]
    assert codes(provinces, filter="dak lak") == ["66"]  # Đắk Lắk: đ folds to d
    assert codes(provinces, filter="Hà Nội") == ["01"]
    assert codes(provinces, filter="ha noi xyz") == []
    # every word starts a word of the display, in any order; a word inside another does not count
    assert codes(provinces, filter="noi ha") == ["01"]
    assert codes(provinces, filter="hoa") == ["38", "56"]  # Thanh Hóa, Khánh Hòa
    assert codes(provinces, filter="thanh hoa") == ["38"]
    assert codes(provinces, filter="anh hoa") == []
    races = shipped("vn-core-race")
    assert codes(races, filter="kinh") == ["01"]
    assert codes(races, filter="hmong") == codes(races, filter="HMÔNG")


def test_filter_on_icd10_titles_codes_and_english() -> None:
    icd = shipped("vn-icd10")
    # the words in any order: E11 (không phụ thuộc) and E10.8 (phụ thuộc ... không xác định)
    diabetes = codes(icd, filter="dai thao duong khong phu thuoc")
    assert set(E11) <= set(diabetes) and "E10.8" in diabetes and "E10.0" not in diabetes
    assert codes(icd, filter="E11") == E11  # a code prefix
    assert codes(icd, filter="asthma") == ["J45", "J45.0", "J45.1", "J45.8", "J45.9", "J46", "Z82.5"]
    [entry] = expand(icd, filter="J45.9", display_language="en").contains
    assert (entry.system, entry.version, entry.display) == (ICD, "QD4469-2020", "Asthma, unspecified")
    assert expand(icd, filter="J45.9").contains[0].display == "Hen, không phân loại"


def test_count_and_offset_page_through_the_expansion() -> None:
    provinces = shipped("vn-province-pre2025")
    whole = codes(provinces)
    assert len(whole) == 63
    page = expand(provinces, count=10, offset=60)
    assert (page.total, page.offset, [e.code for e in page.contains]) == (63, 60, whole[60:])
    assert codes(provinces, count=0) == [] and expand(provinces, count=0).total == 63
    assert codes(provinces, offset=100) == []
    assert expand(provinces).used_systems == (CS + "vn-province-pre2025|2025-01-04",)


def test_concept_lists_and_excludes() -> None:
    picked = vs({"system": CS + "vn-qd130-ket-qua-dtri", "concept": [{"code": "2"}, {"code": "1", "display": "Khỏi bệnh"},
                                                                    {"code": "99"}]})
    assert [(e.code, e.display) for e in expand(picked).contains] == [("2", "Đỡ"), ("1", "Khỏi bệnh")]
    no_hcmc = vs({"system": CS + "vn-province-2025"}, exclude=({"system": CS + "vn-province-2025",
                                                               "concept": [{"code": "79"}]},))
    assert expand(no_hcmc).total == 33 and "79" not in codes(no_hcmc)
    assert validate_in_valueset(no_hcmc, "79", CS + "vn-province-2025")[0] is False
    assert validate_in_valueset(no_hcmc, "01", CS + "vn-province-2025")[0] is True


def test_hierarchy_filters_on_icd10() -> None:
    is_a = vs({"system": ICD, "filter": [{"property": "concept", "op": "is-a", "value": "E11"}]})
    assert codes(is_a) == E11
    below = vs({"system": ICD, "filter": [{"property": "concept", "op": "descendent-of", "value": "E11"}]})
    assert codes(below) == E11[1:]
    # two levels: M01.0* Meningococcal arthritis has site subdivisions M01.00*..M01.09*
    m01 = codes(vs({"system": ICD, "filter": [{"property": "concept", "op": "descendent-of", "value": "M01"}]}))
    assert "M01.0*" in m01 and "M01.00*" in m01
    # a dagger code's category is the unmarked one
    assert terminology.lookup_details(ICD, "A17.0†").properties == (("parent", "code", "A17"),)  # type: ignore[union-attr]
    # "=" on the parent property: direct children only
    children = vs({"system": ICD, "filter": [{"property": "parent", "op": "=", "value": "M01"}]})
    assert "M01.0*" in codes(children) and "M01.00*" not in codes(children)
    # and "=" on the concept: that one code
    assert codes(vs({"system": ICD, "filter": [{"property": "concept", "op": "=", "value": "J45"}]})) == ["J45"]
    # is-a on a flat list is the code itself
    flat = vs({"system": CS + "vn-province-2025", "filter": [{"property": "concept", "op": "is-a", "value": "79"}]})
    assert codes(flat) == ["79"]
    # exclude by hierarchy
    no_e11 = vs({"system": ICD, "filter": [{"property": "concept", "op": "is-a", "value": "E11"}]},
                exclude=({"system": ICD, "filter": [{"property": "concept", "op": "descendent-of", "value": "E11"}]},))
    assert codes(no_e11) == ["E11"]


def test_property_filter_wards_of_a_province() -> None:
    hanoi = vs({"system": CS + "vn-ward-2025", "filter": [{"property": "province_code", "op": "=", "value": "01"}]})
    found = expand(hanoi, filter="ba dinh")
    assert [(e.code, e.display) for e in found.contains] == [("00004", "Phường Ba Đình")]
    assert expand(hanoi).total == 126


@pytest.mark.parametrize("include", [
    {"valueSet": [VS + "vn-icd10"]},
    {"concept": [{"code": "1"}]},
    {"system": ICD, "filter": [{"property": "concept", "op": "regex", "value": "E1.*"}]},
    {"system": ICD, "filter": [{"property": "nope", "op": "=", "value": "x"}]},
    {"system": ICD, "filter": [{"property": "concept", "op": "is-a"}]},
    {"system": ICD, "concept": [{"code": "E11"}], "filter": [{"property": "concept", "op": "=", "value": "E11"}]},
])
def test_unsupported_rules_say_so(include: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedCompose):
        expand(vs(include))


def test_unknown_code_system_or_version() -> None:
    with pytest.raises(UnknownSystem):
        expand(vs({"system": "http://example.org/nope"}))
    with pytest.raises(UnknownSystem):
        expand(vs({"system": ICD, "version": "2010"}))
    assert expand(vs({"system": ICD, "version": "QD4469-2020", "concept": [{"code": "J45"}]})).total == 1


def test_validate_in_value_set() -> None:
    races = shipped("vn-core-race")
    assert validate_in_valueset(races, "01") == (True, f"code '01' of {CS}vn-core-race is in {VS}vn-core-race: Kinh",
                                                 "Kinh")
    assert validate_in_valueset(races, "01", CS + "vn-core-race", "kinh")[0]
    ok, message, display = validate_in_valueset(races, "01", CS + "vn-core-race", "Tày")
    assert not ok and "Kinh" in message and display == "Kinh"
    assert validate_in_valueset(races, "77")[:2] == (False, f"code '77' is not in {CS}vn-core-race")
    ok, message, _ = validate_in_valueset(races, "01", ICD)
    assert not ok and "has no codes of" in message
    icd = shipped("vn-icd10")
    assert validate_in_valueset(icd, "E11.9", ICD)[0]
    assert not validate_in_valueset(icd, "E11.99", ICD)[0]
