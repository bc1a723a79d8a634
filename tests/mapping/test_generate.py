"""The synthetic claims-envelope generator: deterministic, tables as the QĐ 3176 dictionary lays
them out, varied visits, and faults exactly where its manifest says."""

from __future__ import annotations

import base64
import csv
import xml.etree.ElementTree as ET
from collections import Counter

import pytest

from fhir_hub.mapping.generate import FAULT_KINDS, FIELDS, generate
from tests.mapping.conftest import SAMPLES


def _tables(data: bytes) -> list[dict[str, str]]:
    root = ET.fromstring(data)
    return [{f.findtext("LOAIHOSO", ""): f.findtext("NOIDUNGFILE", "") for f in h.iter("FILEHOSO")}
            for h in root.iter("HOSO")]


def test_same_seed_same_file_and_faults_do_not_change_the_visits() -> None:
    assert generate(20, seed=7).data == generate(20, seed=7).data
    assert generate(20, seed=7).data != generate(20, seed=8).data
    clean, faulty = generate(20, seed=7), generate(20, seed=7, faults={"date": 1, "ma_lk": 1})
    assert clean.hosos == faulty.hosos
    spoiled = {f.hoso for f in faulty.faults}
    assert [i for i, (a, b) in enumerate(zip(_tables(clean.data), _tables(faulty.data), strict=True), 1)
            if a != b] == sorted(spoiled)


def test_fields_are_those_of_the_dictionary_in_its_order() -> None:
    with (SAMPLES.parent / "BHYT_XML_fields_QD130_4750_3176.csv").open(encoding="utf-8") as f:
        dictionary: dict[str, list[str]] = {}
        for row in csv.DictReader(f):
            dictionary.setdefault(row["table"], []).append(row["field"])
    for table, names in FIELDS.items():
        assert list(names) == dictionary[table], table
    seen = set()
    for hoso in _tables(generate(40, seed=1).data):
        for table, content in hoso.items():
            root = ET.fromstring(base64.b64decode(content))
            record = root if table in ("XML1", "XML7", "XML8", "XML13", "XML14") else next(iter(root[0]))
            assert [c.tag for c in record] == list(FIELDS[table])
            seen.add(table)
    assert seen == set(FIELDS)


def test_visits_vary() -> None:
    g = generate(200, seed=2)
    kinds = Counter(h["XML1"][0]["MA_LOAI_KCB"] for h in g.hosos)
    assert set(kinds) == {"01", "02", "03"}
    assert len({h["XML1"][0]["MA_BENH_CHINH"] for h in g.hosos}) >= 5
    assert any(h["XML1"][0]["NGAY_SINH"].endswith("00000000") for h in g.hosos)  # year-only birth dates
    assert {bool(h["XML1"][0]["MAHUYEN_CU_TRU"]) for h in g.hosos} == {True, False}  # pre-2025 and 2025
    assert all(("XML7" in h) == (h["XML1"][0]["MA_LOAI_KCB"] == "03") for h in g.hosos)
    assert any("XML14" in h for h in g.hosos) and any(";" in h["XML1"][0]["MA_BENH_KT"] for h in g.hosos)
    assert any("XML13" in h and h["XML1"][0]["MA_LOAI_RV"] == "2" for h in g.hosos)  # transfers, with the paper
    assert any(h["XML1"][0].get("MA_NOI_DI") for h in g.hosos)  # referred here
    assert len(set(g.ma_lks)) == 200


def test_faults_are_placed_and_described() -> None:
    g = generate(30, seed=3, faults={kind: 1 for kind in FAULT_KINDS})
    assert sorted(f.kind for f in g.faults) == sorted(FAULT_KINDS)
    assert len({f.hoso for f in g.faults}) == len(FAULT_KINDS)
    tables = _tables(g.data)
    for f in g.faults:
        assert f.ma_lk == g.ma_lks[f.hoso - 1]
        content = tables[f.hoso - 1][f.table]
        if f.kind == "base64":
            assert content == f.value and content.startswith("@@")
        else:
            assert f"<{f.field}>{f.value}</{f.field}>".encode() in base64.b64decode(content) or (
                f.value == "" and f"<{f.field} />".encode() in base64.b64decode(content))


def test_bad_requests_for_faults_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        generate(3, faults={"nonsense": 1})
    with pytest.raises(ValueError, match="at least as many"):
        generate(1, faults={"date": 2})
