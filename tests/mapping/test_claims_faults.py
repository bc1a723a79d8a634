"""A generated claims file with injected faults (malformed base64, bad date, unknown code, missing
MA_LK, a comma decimal): every good HOSO imports, each bad one is reported naming file, HOSO,
MA_LK, table, field, value and reason, and nothing is said about the good ones.  The outcome is a
golden file (``FHIR_HUB_UPDATE_GOLDEN=1`` rewrites it)."""

from __future__ import annotations

from fhir_hub.mapping import map_file
from fhir_hub.mapping.claims_xml import FileResult
from fhir_hub.mapping.generate import FAULT_KINDS, Fault, generate
from tests.mapping.conftest import RECORDED
from tests.mapping.test_claims_xml import _check_golden

#: What each fault's report must say, besides where it is.
_REASONS = {"base64": "not valid base64", "date": "not a yyyymmddHHMM date-time",
            "code": "not a code of encounter_class", "ma_lk": "MA_LK is empty or missing",
            "number": "'.' as the decimal point"}


def _faulty() -> tuple[list[Fault], FileResult]:
    generated = generate(12, seed=7, faults={kind: 1 for kind in FAULT_KINDS})
    return generated.faults, map_file(generated.data, "faulty.xml", recorded=RECORDED)


def test_every_good_hoso_imports_and_only_the_bad_ones_lose_anything() -> None:
    faults, result = _faulty()
    by_index = {f.hoso: f for f in faults}
    for h in result.hosos:
        fault = by_index.get(h.index)
        assert (h.bundle is not None) == (fault is None or fault.imported), h.where
        if fault is None:
            assert not [p for p in h.problems if p.severity in ("error", "fatal", "warning")], h.where


def test_each_bad_hoso_is_reported_precisely() -> None:
    faults, result = _faulty()
    issues = result.outcome()["issue"]
    for f in faults:
        shown = f" = '{f.value[:30]}" if f.value else ":"  # long values are shown cut
        mine = [i for i in issues if i["diagnostics"].startswith(f"faulty.xml, HOSO {f.hoso} (MA_LK {f.ma_lk})")]
        assert any(f"{f.table}" in i["diagnostics"] and f".{f.field}{shown}" in i["diagnostics"]
                   and _REASONS[f.kind] in i["diagnostics"] and i["severity"] in ("error", "fatal")
                   and i["location"][0].startswith(f"/GIAMDINHHS/THONGTINHOSO/DANHSACHHOSO/HOSO[{f.hoso}]"
                                                   f"/FILEHOSO[LOAIHOSO='{f.table}']/NOIDUNGFILE")
                   for i in mine), (f, mine)
        if not f.imported:
            assert any("not imported" in i["diagnostics"] for i in mine), f
    bad = {f.hoso for f in faults}
    assert all(any(f"HOSO {n} " in i["diagnostics"] for n in bad) for i in issues if i["severity"] != "information")


def test_the_faulty_file_outcome_matches_the_golden_file() -> None:
    _check_golden("generated_faults.outcome.json", _faulty()[1].outcome())
