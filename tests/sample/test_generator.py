"""The sample generator: deterministic, valid R4, Vietnamese identifiers and names consistent with the person.

Why these checks: the generated data is what demos, benches and other tests load, so a bundle that
the server would reject (dangling reference, bad dateTime, empty array), an identifier that
contradicts the person (CCCD century/sex digit vs birthDate/gender) or a broken name (NFD,
no diacritics) would silently spread into everything built on it.
"""

from __future__ import annotations

import csv
import re
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from importlib import resources
from typing import Any

import orjson
import pytest

from fhir_hub.sample import generator
from fhir_hub.sample.generator import (
    FACILITY_CODE,
    ICD10,
    INSURANCE_NUMBER,
    LOINC,
    NATIONAL_ID,
    UCUM,
    patient_bundles,
)

TODAY = date(2026, 6, 15)

#: LOINC code -> UCUM code, as the R4 vital-signs profiles want them
VITALS = {"8867-4": "/min", "8310-5": "Cel", "9279-1": "/min", "29463-7": "kg", "8302-2": "cm", "39156-5": "kg/m2",
          "2708-6": "%", "9843-4": "cm"}
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+07:00$")


@pytest.fixture(autouse=True)
def pinned_today(monkeypatch: pytest.MonkeyPatch) -> None:
    """Visit dates are relative to today: pin it so that the tests do not depend on the calendar."""
    monkeypatch.setattr(generator, "_today", lambda: TODAY)


@pytest.fixture(scope="module")
def bundles() -> list[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(generator, "_today", lambda: TODAY)
        return list(patient_bundles(40, seed=11))


def resources_of(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (path, value) in a JSON tree, containers included."""
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk(v, f"{path}[{i}]")


def data_rows(name: str) -> list[dict[str, str]]:
    text = resources.files("fhir_hub.sample").joinpath("data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def test_same_seed_same_bundles_other_seed_other_bundles() -> None:
    a = orjson.dumps(list(patient_bundles(4, seed=7)))
    assert a == orjson.dumps(list(patient_bundles(4, seed=7)))
    assert a != orjson.dumps(list(patient_bundles(4, seed=8)))
    # a bigger data set extends a smaller one
    assert orjson.dumps(list(patient_bundles(2, seed=7))) == orjson.dumps(list(patient_bundles(4, seed=7))[:2])


def test_bundle_shape_and_entry_counts(bundles: list[dict[str, Any]]) -> None:
    sizes = []
    for bundle in bundles:
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
        entries = bundle["entry"]
        sizes.append(len(entries))
        assert 60 <= len(entries) <= 110
        types = Counter(e["resource"]["resourceType"] for e in entries)
        assert types["Patient"] == 1 and types["Encounter"] == 5 and types["Organization"] == 1
        assert types["Observation"] >= 5 * 10 and 5 <= types["Condition"] <= 15
        for e in entries:
            assert e["fullUrl"].startswith("urn:uuid:")
            assert uuid.UUID(e["fullUrl"][9:]).version == 4
            assert e["request"]["method"] == "POST" and e["request"]["url"] == e["resource"]["resourceType"]
            assert "id" not in e["resource"]
        assert len({e["fullUrl"] for e in entries}) == len(entries)
    assert 65 <= sum(sizes) / len(sizes) <= 90


def test_encounters_parameter() -> None:
    (none,) = patient_bundles(1, seed=3, encounters=0)
    assert Counter(e["resource"]["resourceType"] for e in none["entry"]) == {"Organization": 1, "Patient": 1}
    (two,) = patient_bundles(1, seed=3, encounters=2)
    assert len(resources_of(two, "Encounter")) == 2
    with pytest.raises(ValueError):
        list(patient_bundles(-1))


def test_every_reference_resolves_inside_the_bundle(bundles: list[dict[str, Any]]) -> None:
    for bundle in bundles:
        urls = {e["fullUrl"] for e in bundle["entry"]}
        refs = [v for e in bundle["entry"] for p, v in walk(e["resource"]) if p.endswith(".reference")]
        assert refs and all(r in urls for r in refs), set(refs) - urls
        # and every resource but the facilities and the patient is reachable from the patient's data
        patient_url = next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        for e in bundle["entry"]:
            if e["resource"]["resourceType"] in ("Encounter", "Observation", "Condition"):
                assert e["resource"]["subject"]["reference"] == patient_url


def test_facilities_are_conditional_creates(bundles: list[dict[str, Any]]) -> None:
    codes = {f.code for f in generator.facilities()}
    assert len(codes) == len(generator.facilities()) and all(re.fullmatch(r"\d{5}", c) for c in codes)
    for bundle in bundles:
        orgs = {e["fullUrl"]: e for e in bundle["entry"] if e["resource"]["resourceType"] == "Organization"}
        for e in orgs.values():
            ident = e["resource"]["identifier"][0]
            assert ident["system"] == FACILITY_CODE and ident["value"] in codes
            assert e["request"]["ifNoneExist"] == f"identifier={FACILITY_CODE}|{ident['value']}"
        for enc in resources_of(bundle, "Encounter"):
            provider = enc["serviceProvider"]["reference"]
            assert provider in orgs
            visit = enc["identifier"][0]
            assert visit["assigner"]["reference"] == provider
            assert visit["value"].startswith(orgs[provider]["resource"]["identifier"][0]["value"] + ".")


def test_cccd_matches_birth_year_sex_and_a_birth_province(bundles: list[dict[str, Any]]) -> None:
    prefixes = {"0" + r["code"] for r in data_rows("provinces_pre2025.csv")}
    assert len(prefixes) == 63
    for bundle in bundles:
        (patient,) = resources_of(bundle, "Patient")
        ids = {i["system"]: i["value"] for i in patient["identifier"]}
        cccd = ids[NATIONAL_ID]
        year = int(patient["birthDate"][:4])
        assert re.fullmatch(r"\d{12}", cccd)
        assert cccd[:3] in prefixes
        assert int(cccd[3]) == (year // 100 - 19) * 2 + (patient["gender"] == "female")
        assert cccd[4:6] == f"{year % 100:02d}"


def test_bhyt_card_format() -> None:
    levels = {r["object_code"]: r["benefit_level"] for r in data_rows("bhyt_beneficiary_codes.csv")}
    provinces = {r["code"] for r in data_rows("provinces_pre2025.csv")}
    cards = []
    for bundle in patient_bundles(150, seed=21, encounters=1):
        (patient,) = resources_of(bundle, "Patient")
        card = next((i["value"] for i in patient["identifier"] if i["system"] == INSURANCE_NUMBER), None)
        if card is None:
            continue
        cards.append(card)
        assert re.fullmatch(r"[A-Z]{2}[1-5]\d{2}\d{10}", card), card
        assert levels[card[:2]] == card[2], card
        assert card[3:5] in provinces
        age = (date(2025, 7, 1) - date.fromisoformat(patient["birthDate"])).days / 365.25
        if age < 5:
            assert card[:2] == "TE"  # children under six
    assert 0.85 * 150 <= len(cards) < 150  # most are insured, a few are not


def test_names_nfc_with_diacritics_in_family_middle_given_order(bundles: list[dict[str, Any]]) -> None:
    families = []
    for bundle in patient_bundles(300, seed=5, encounters=0):
        (patient,) = resources_of(bundle, "Patient")
        (name,) = patient["name"]
        families.append(name["family"])
        assert name["text"] == " ".join([name["family"], *name["given"]])
        assert 2 <= len(name["given"]) <= 3
        for part in (name["text"], name["family"], *name["given"]):
            assert unicodedata.is_normalized("NFC", part) and part == part.strip() and part
    share = families.count("Nguyễn") / len(families)
    assert 0.28 < share < 0.45
    assert {"Trần", "Lê", "Phạm"} <= set(families)
    assert sum(any(ord(ch) > 127 for ch in f) for f in families) > len(families) / 2
    # every string anywhere in the data is NFC
    for bundle in bundles[:10]:
        for _, v in walk(bundle):
            if isinstance(v, str):
                assert unicodedata.is_normalized("NFC", v), v


def test_addresses_use_the_2025_units(bundles: list[dict[str, Any]]) -> None:
    wards = {r["code"]: r for r in data_rows("wards.csv")}
    provinces = {r["code"]: r["name"] for r in data_rows("provinces.csv")}
    for bundle in bundles:
        (patient,) = resources_of(bundle, "Patient")
        (address,) = patient["address"]
        codes = {x["url"]: x["valueCodeableConcept"]["coding"][0]["code"] for x in address["extension"][0]["extension"]}
        ward = wards[codes["ward"]]
        assert ward["province_code"] == codes["state"]
        assert address["city"] == ward["name"] and address["state"] == provinces[codes["state"]]
        assert address["text"].endswith(f"{ward['name']}, {address['state']}") and address["line"][0] in address["text"]
        for telecom in patient.get("telecom", []):
            assert re.fullmatch(r"09\d{8}", telecom["value"])


def test_no_empty_values_and_datetimes_carry_the_vietnam_offset(bundles: list[dict[str, Any]]) -> None:
    for bundle in bundles:
        for path, v in walk(bundle):
            assert v not in ("", [], {}, None), path
            if isinstance(v, str) and "T" in v and re.match(r"^\d{4}-\d{2}-\d{2}T", v):
                assert DATETIME.match(v), (path, v)


def test_visits_and_observations_happen_in_the_last_three_years(bundles: list[dict[str, Any]]) -> None:
    first = TODAY - timedelta(days=3 * 365)
    for bundle in bundles:
        (patient,) = resources_of(bundle, "Patient")
        birth = date.fromisoformat(patient["birthDate"])
        periods = {}
        for e in bundle["entry"]:
            enc = e["resource"]
            if enc["resourceType"] != "Encounter":
                continue
            assert enc["status"] == "finished"
            assert enc["class"] == {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB",
                                    "display": "ambulatory"}
            start, end = (datetime.fromisoformat(enc["period"][k]) for k in ("start", "end"))
            assert first <= start.date() < TODAY and start < end and start.date() > birth
            periods[e["fullUrl"]] = (start, end)
        for obs in resources_of(bundle, "Observation"):
            start, end = periods[obs["encounter"]["reference"]]
            assert start <= datetime.fromisoformat(obs["effectiveDateTime"]) <= end
            if "issued" in obs:
                assert datetime.fromisoformat(obs["effectiveDateTime"]) < datetime.fromisoformat(obs["issued"]) <= end


def test_vital_signs_follow_the_r4_profiles(bundles: list[dict[str, Any]]) -> None:
    seen: Counter[str] = Counter()
    for bundle in bundles:
        for obs in resources_of(bundle, "Observation"):
            assert obs["status"] == "final"
            category = obs["category"][0]["coding"][0]
            assert category["system"] == "http://terminology.hl7.org/CodeSystem/observation-category"
            code = obs["code"]["coding"][0]
            assert code["system"] == LOINC
            if category["code"] == "laboratory":
                q = obs["valueQuantity"]
                assert q["system"] == UCUM and isinstance(q["value"], int | float) and q["value"] > 0
                assert obs["interpretation"][0]["coding"][0]["code"] in ("H", "L", "N")
                continue
            assert category["code"] == "vital-signs"
            seen[code["code"]] += 1
            if code["code"] == "85354-9":
                components = {c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in obs["component"]}
                assert set(components) == {"8480-6", "8462-4"} and "valueQuantity" not in obs
                assert all(q["code"] == "mm[Hg]" and q["system"] == UCUM for q in components.values())
                assert components["8480-6"]["value"] > components["8462-4"]["value"]
            else:
                q = obs["valueQuantity"]
                assert q["system"] == UCUM and q["code"] == VITALS[code["code"]], (code, q)
    assert set(seen) >= {"8867-4", "8310-5", "85354-9", "9279-1", "29463-7", "8302-2", "39156-5", "2708-6"}


def test_bmi_is_weight_over_height_squared(bundles: list[dict[str, Any]]) -> None:
    for bundle in bundles[:10]:
        by_encounter: dict[str, dict[str, float]] = {}
        for obs in resources_of(bundle, "Observation"):
            if "valueQuantity" in obs:
                code = obs["code"]["coding"][0]["code"]
                by_encounter.setdefault(obs["encounter"]["reference"], {})[code] = obs["valueQuantity"]["value"]
        for values in by_encounter.values():
            bmi = values["29463-7"] / (values["8302-2"] / 100) ** 2
            assert abs(bmi - values["39156-5"]) <= 0.06


def test_conditions_are_vietnamese_icd10(bundles: list[dict[str, Any]]) -> None:
    names = {r["code"]: r["name_vi"] for r in data_rows("icd10_outpatient.csv")}
    for bundle in bundles:
        encounters = {e["fullUrl"]: e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Encounter"}
        condition_urls = {e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Condition"}
        for enc in encounters.values():
            ranks = [d["rank"] for d in enc["diagnosis"]]
            assert ranks == list(range(1, len(ranks) + 1))
            assert {d["condition"]["reference"] for d in enc["diagnosis"]} <= condition_urls
        for cond in resources_of(bundle, "Condition"):
            coding = cond["code"]["coding"][0]
            assert coding["system"] == ICD10 and coding["display"] == names[coding["code"]]
            assert cond["encounter"]["reference"] in encounters
            assert cond["clinicalStatus"]["coding"][0]["code"] in ("active", "resolved")
            assert cond["verificationStatus"]["coding"][0]["code"] in ("confirmed", "provisional")
            if "abatementDateTime" in cond:
                assert cond["clinicalStatus"]["coding"][0]["code"] == "resolved"
                assert date.fromisoformat(cond["abatementDateTime"]) < TODAY


def test_every_resource_passes_structural_validation(bundles: list[dict[str, Any]]) -> None:
    structure = pytest.importorskip("fhir_hub.validation.structure")
    for bundle in bundles[:15]:
        assert structure.validate(bundle) == []
        for entry in bundle["entry"]:
            assert structure.validate(entry["resource"]) == [], entry["resource"]["resourceType"]
