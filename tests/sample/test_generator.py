"""The sample generator: deterministic, valid R4, Vietnamese identifiers consistent with the person."""

from __future__ import annotations

import unicodedata

import orjson

from fhir_hub.sample.generator import INSURANCE_NUMBER, NATIONAL_ID, patient_bundles
from fhir_hub.validation import structure


def test_same_seed_same_data_other_seed_other_data() -> None:
    a = orjson.dumps(list(patient_bundles(5, seed=7)))
    assert a == orjson.dumps(list(patient_bundles(5, seed=7)))
    assert a != orjson.dumps(list(patient_bundles(5, seed=8)))


def test_every_resource_is_valid_and_every_reference_resolves() -> None:
    for bundle in patient_bundles(30, seed=3):
        assert bundle["type"] == "transaction" and 60 <= len(bundle["entry"]) <= 130
        urls = {e["fullUrl"] for e in bundle["entry"]}
        for entry in bundle["entry"]:
            assert structure.validate(entry["resource"]) == []
            refs = [v["reference"] for v in entry["resource"].values() if isinstance(v, dict) and "reference" in v]
            assert all(r in urls for r in refs)


def test_identifiers_match_birth_year_sex_and_formats() -> None:
    for bundle in patient_bundles(50, seed=11):
        patient = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
        ids = {i["system"]: i["value"] for i in patient["identifier"]}
        cccd = ids[NATIONAL_ID]
        year = int(patient["birthDate"][:4])
        assert len(cccd) == 12 and cccd.isdigit()
        century_sex = int(cccd[3])
        assert century_sex == (0 if year < 2000 else 2) + (1 if patient["gender"] == "female" else 0)
        assert cccd[4:6] == f"{year % 100:02d}"
        card = ids[INSURANCE_NUMBER]
        assert len(card) == 15 and card[:2].isalpha() and card[2:].isdigit()
        name = patient["name"][0]
        assert name["text"] == " ".join([name["family"], *name["given"]])
        assert unicodedata.is_normalized("NFC", name["text"])


def test_names_carry_diacritics_and_nguyen_is_common() -> None:
    families = [e["resource"]["name"][0]["family"] for b in patient_bundles(300, seed=5) for e in b["entry"]
                if e["resource"]["resourceType"] == "Patient"]
    share = families.count("Nguyễn") / len(families)
    assert 0.28 < share < 0.48
    assert any(ch > "\u007f" for f in families for ch in f)
