"""The precompiled code lists (``fhir_hub/validation/data/codes-*.json``) answer as the catalogue does."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import orjson
import pytest

from fhir_hub import terminology
from fhir_hub.validation import codes, ig, profile
from tests.validation import vn_samples

RACE_VS = "http://fhir.ehealth.gov.vn/core/ValueSet/vn-core-race"
RACE_CS = "http://fhir.ehealth.gov.vn/core/CodeSystem/vn-core-race"


@contextmanager
def _catalogue_only() -> Iterator[None]:
    """The validator's answers from the terminology catalogue, as before the precompiled lists."""
    codes.suspend(1)
    profile.forget_codes()
    try:
        yield
    finally:
        codes.suspend(-1)
        profile.forget_codes()


def test_the_shipped_files_equal_a_rebuild() -> None:
    folder = resources.files("fhir_hub.validation") / "data"
    shipped = {e.name[len("codes-"):]: e.read_bytes() for e in folder.iterdir() if e.name.startswith("codes-")}
    built = codes.build()
    assert sorted(shipped) == sorted(built)
    for name, content in built.items():
        assert shipped[name] == content, f"{name} is stale: run python -m fhir_hub.validation.codes"


def _cases() -> list[tuple[str, str | None, str, str | None]]:
    """(ValueSet, system, code, a display to check) over every precompiled VN ValueSet: members (every
    code of small lists, every 50th of big ones), codes of another list, no system, odd displays."""
    index = orjson.loads((resources.files("fhir_hub.validation") / "data" / "codes-index.json").read_bytes())
    out: list[tuple[str, str | None, str, str | None]] = []
    for url, entry in index["value_sets"].items():
        bound = codes.value_set(url)
        assert bound is not None and bound.systems == frozenset(entry["systems"])
        if bound.members is None:
            continue
        for system, members in bound.members.items():
            step = 1 if len(members) < 500 else 50
            for code, (display, _keys) in list(members.items())[::step]:
                out.append((url, system, code, display))
                out.append((url, None, code, display.upper()))
                out.append((url, system + "|2025", code, unicodedata.normalize("NFD", display)))
                out.append((url, system, code, display + " x"))
            out.append((url, system, "no-such-code", None))
        out.append((url, RACE_CS if url != RACE_VS else "urn:other", "01", "Kinh"))
    return out


def _answer(url: str, system: str | None, code: str, display: str | None) -> tuple[tuple[bool, str | None], bool]:
    """Membership, and (as the validator asks it: of a member only) whether the display is the code's."""
    member = profile._vn_member(url, system, code)
    return member, bool(member[0] and display is not None and profile._display_ok(url, system or "", code, display))


def test_membership_and_displays_match_the_catalogue() -> None:
    cases = _cases()
    assert len(cases) > 2000
    fast = [_answer(*case) for case in cases]
    with _catalogue_only():
        slow = [_answer(*case) for case in cases]
    assert fast == slow
    assert any(ok for (ok, _d), _ in fast) and any(not ok for (ok, _d), _ in fast)
    assert any(shown for _m, shown in fast) and any(not shown for (ok, _d), shown in fast if ok)


def test_code_lists_and_systems_match_the_catalogue() -> None:
    for url in codes.CODE_LISTS:
        cs = terminology.code_system(url)
        assert cs is not None and codes.code_list(url) == frozenset(cs.concepts)
    fast = {u: profile._vs_systems(u) for u in codes.bound_urls()}
    with _catalogue_only():
        assert fast == {u: profile._vs_systems(u) for u in codes.bound_urls()}


def test_a_patient_gets_the_same_issues_either_way() -> None:
    p = vn_samples.patient()
    p["extension"][0]["valueCodeableConcept"]["coding"][0].update(code="99", display="Kinh")
    p["address"][0]["extension"][0]["extension"][1]["valueCodeableConcept"]["coding"][0]["code"] = "99999"
    fast = profile.validate_resource(p)
    with _catalogue_only():
        profile.plan.cache_clear()
        slow = profile.validate_resource(p)
    profile.plan.cache_clear()
    assert fast == slow and len(fast) >= 2


def test_an_ig_value_set_replaces_the_precompiled_one_while_loaded(tmp_path: Path) -> None:
    """A package's ValueSet of a shipped URL is the one checked (here: race code 01 taken out)."""
    folder = tmp_path / "ig"
    folder.mkdir()
    vs = {"resourceType": "ValueSet", "url": RACE_VS, "status": "active",
          "compose": {"include": [{"system": RACE_CS, "concept": [{"code": "02"}]}]}}
    (folder / "ValueSet-race.json").write_bytes(orjson.dumps(vs))
    patient = vn_samples.patient()
    assert not [i for i in profile.validate_resource(patient) if i.severity == "error"]
    loaded = ig.load(folder)
    try:
        assert codes.value_set(RACE_VS) is None
        errors = [i for i in profile.validate_resource(patient) if i.severity == "error"]
        assert errors and RACE_VS in errors[0].diagnostics
    finally:
        ig.unload(loaded)
    assert codes.value_set(RACE_VS) is not None
    assert not [i for i in profile.validate_resource(patient) if i.severity == "error"]


@pytest.mark.parametrize("url", [RACE_VS])
def test_an_unknown_system_is_not_a_member(url: str) -> None:
    bound = codes.value_set(url)
    assert bound is not None and bound.member("urn:nothing", "01") == (False, None)
