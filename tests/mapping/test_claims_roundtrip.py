"""Round-trip honesty: for generated claims files, every non-empty input field value is either
found in the resources its HOSO became or listed as unmapped for its record (and that list is
kept with the record, on the Provenance).  A value silently dropped fails the test.

"Found" is checked against the resources alone (the Binary, which holds everything as sent, and
base64 attachments are left out): the value itself as a string (whole, inside a longer text when
it is at least 4 characters, as a narrative paragraph or the code opening one, or after a label
``…: value``), each item
of a ``;``-list, or the value as the mapping renders it — a ``yyyymmddHHMM`` time or ``yyyymmdd``
date in FHIR form, a number as a JSON number (a ``TYLE_*`` percentage also as its factor),
GIOI_TINH as the FHIR gender.  STT is the line key
``XMLn/STT`` the claim-line identifiers carry.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from fhir_hub.mapping import map_file
from fhir_hub.mapping.claims_xml import HosoResult
from fhir_hub.mapping.functions import BadValue, birth_date, date_ymd, datetime_vn, decimal
from fhir_hub.mapping.generate import generate
from fhir_hub.mapping.systems import UNMAPPED_EXT
from tests.mapping.conftest import RECORDED

_GENDER = {"1": "male", "2": "female", "3": "unknown"}


class _Resources:
    """Every string and number of a bundle's resources but the Binary and attachment data."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        self.strings: set[str] = set()
        self.numbers: set[float] = set()
        for e in bundle["entry"]:
            if e["resource"]["resourceType"] != "Binary":
                self._walk(e["resource"])
        self.text = "\x00".join(sorted(self.strings)) + "\x00"

    def _walk(self, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k != "data":
                    self._walk(v)
        elif isinstance(value, list):
            for v in value:
                self._walk(v)
        elif isinstance(value, bool):
            return
        elif isinstance(value, int | float):
            self.numbers.add(float(value))
        elif isinstance(value, str):
            self.strings.add(value)

    def has(self, text: str) -> bool:
        return (text in self.strings or (len(text) >= 4 and text in self.text) or f">{text}<" in self.text
                or f"<p>{text} — " in self.text  # a coded section: "2 — Đỡ"
                or re.search(f": {re.escape(text)}(?:<|\x00)", self.text) is not None)


def _renderings(field: str, value: str) -> Iterator[str]:
    yield value
    if field == "GIOI_TINH" and value in _GENDER:
        yield _GENDER[value]
    for render in (datetime_vn, date_ymd, birth_date):
        try:
            yield render(value)
        except BadValue:
            pass


def _found(res: _Resources, field: str, value: str) -> bool:
    if any(res.has(r) for r in _renderings(field, value)):
        return True
    for item in [p.strip() for p in value.split(";") if p.strip()]:
        if any(res.has(r) for r in _renderings(field, item)):
            continue
        try:
            number = float(decimal(item))
            if number in res.numbers or (field.startswith("TYLE_") and round(number / 100, 6) in res.numbers):
                continue
        except BadValue:
            pass
        return False
    return True


def _listed(h: HosoResult, table: str, field: str, stt: str | None) -> bool:
    for entry in h.unmapped.get(table, []):
        if entry == field:
            return True
        if stt is not None and entry.startswith(f"{field} (STT ") and stt in entry[len(field) + 6:-1].split(", "):
            return True
    return False


def _dropped(tables: dict[str, list[dict[str, str]]], h: HosoResult) -> list[str]:
    assert h.bundle is not None
    res = _Resources(h.bundle)
    lost = []
    for table, records in tables.items():
        for rec in records:
            stt = rec.get("STT")
            for field, value in rec.items():
                if not value or _listed(h, table, field, stt):
                    continue
                if not _found(res, field, f"{table}/{value}" if field == "STT" else value):
                    lost.append(f"{table} STT {stt}.{field} = {value!r}")
    return lost


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_input_value_is_in_the_resources_or_listed_unmapped(seed: int) -> None:
    generated = generate(60, seed=seed)
    result = map_file(generated.data, "generated.xml", recorded=RECORDED)
    assert [i["severity"] for i in result.outcome()["issue"]] == ["information"]  # a clean file
    dropped = [f"HOSO {h.index}: {d}" for tables, h in zip(generated.hosos, result.hosos, strict=True)
               for d in _dropped(tables, h)]
    assert dropped == []


def test_the_unmapped_list_is_kept_on_the_provenance() -> None:
    h = map_file(generate(5, seed=4).data, "generated.xml", recorded=RECORDED).hosos[0]
    assert h.bundle is not None and h.unmapped
    provenance = next(e["resource"] for e in h.bundle["entry"] if e["resource"]["resourceType"] == "Provenance")
    kept = [x["valueString"] for x in provenance["entity"][0]["extension"] if x["url"] == UNMAPPED_EXT]
    assert kept == [f"{table}: {', '.join(names)}" for table, names in h.unmapped.items()]


def test_the_check_catches_a_dropped_value() -> None:
    """The honesty check itself: a value that no resource holds and no list names is reported;
    named in the unmapped list, it is not."""
    generated = generate(3, seed=5)
    h = map_file(generated.data, "generated.xml", recorded=RECORDED).hosos[0]
    tables = {k: [dict(r) for r in v] for k, v in generated.hosos[0].items()}
    tables["XML1"][0]["LY_DO_VV"] = "Một lý do không có trong tệp"
    tables["XML2"][0]["TRUONG_MOI"] = "Giá trị lạ 12345"
    assert _dropped(tables, h) == ["XML1 STT 1.LY_DO_VV = 'Một lý do không có trong tệp'",
                                   "XML2 STT 1.TRUONG_MOI = 'Giá trị lạ 12345'"]
    h.unmapped.setdefault("XML2", []).append("TRUONG_MOI (STT 1)")
    assert _dropped(tables, h) == ["XML1 STT 1.LY_DO_VV = 'Một lý do không có trong tệp'"]


def test_a_field_some_lines_map_is_listed_for_the_others_only() -> None:
    """NGAY_KQ goes into the Procedure of an imaging line; a laboratory line makes none (its
    result time is XML4's): listed for the laboratory lines, by STT."""
    generated = generate(60, seed=6)
    result = map_file(generated.data, "generated.xml", recorded=RECORDED)
    for tables, h in zip(generated.hosos, result.hosos, strict=True):
        labs = [r["STT"] for r in tables["XML3"] if r.get("MA_NHOM") == "1"]
        if labs and any(r.get("MA_NHOM") == "2" for r in tables["XML3"]):
            assert f"NGAY_KQ (STT {', '.join(labs)})" in h.unmapped["XML3"]
            return
    pytest.fail("no generated visit with both laboratory and imaging lines")
