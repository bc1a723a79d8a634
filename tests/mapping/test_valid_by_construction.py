"""Structural validation of mapped resources by construction (``engine.known_valid``): a resource
whose trace (type + the element rules that put something) a valid one had is checked only by
the values it took from its record.  It must never call valid what the full validator refuses,
and the output must be the one full validation gives, refusals included."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from fhir_hub.mapping import claims_xml, engine, map_file
from fhir_hub.mapping.generate import FAULT_KINDS, generate
from fhir_hub.validation.structure import validate
from tests.mapping.conftest import RECORDED, decoded_tables, envelope


def _as_mapped(data: bytes) -> bytes:
    result = map_file(data, "t.xml", recorded=RECORDED)
    return orjson.dumps([result.outcome(), [[h.bundle, h.unmapped] for h in result.hosos]])


def _bad_code_envelope() -> bytes:
    """Three visits of the same shapes; the second's first service code has two spaces inside
    (not an R4 ``code``), the third's drug unit price is a number as before: only the second
    must fail, as the full validation says."""
    tables = [decoded_tables("GIAMDINHHS_synthetic_01_00999", 2) for _ in range(3)]
    for n, t in enumerate(tables):
        for kind in t:
            t[kind] = t[kind].replace(b"00999.2025.NGT.000102", f"00999.2025.NGT.9{n}".encode())
    tables[1]["XML3"] = tables[1]["XML3"].replace(b"<MA_DICH_VU>02.1896</MA_DICH_VU>",
                                                  b"<MA_DICH_VU>02  1896</MA_DICH_VU>", 1)
    return envelope(tables)


def test_a_bad_value_in_a_known_shape_is_refused_as_the_full_validation_refuses_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = _bad_code_envelope()
    map_file(data, "warm.xml", recorded=RECORDED)  # every shape of these visits now known valid
    fast = _as_mapped(data)
    result = map_file(data, "t.xml", recorded=RECORDED)
    assert [h.bundle is not None for h in result.hosos] == [True, False, True]
    assert any("not valid FHIR R4" in p.reason and "coding" in p.reason for p in result.hosos[1].problems)
    monkeypatch.setattr(engine, "known_valid", lambda b: False)
    assert fast == _as_mapped(data)


@pytest.mark.parametrize("kind", [None, *FAULT_KINDS])
def test_known_valid_never_passes_what_the_validator_refuses(kind: str | None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Generated visits (every QĐ 3176 field, varied values, each fault kind): every resource
    known_valid passes is valid in full, most are passed, and the output is full validation's."""
    data = generate(40, seed=7, faults={kind: 6} if kind else None).data
    passed: list[dict[str, Any]] = []
    asked = 0
    real = engine.known_valid

    def watched(b: engine.Built) -> bool:
        nonlocal asked
        asked += 1
        ok = real(b)
        if ok:
            passed.append(b.resource)
        return ok

    monkeypatch.setattr(engine, "known_valid", watched)
    fast = _as_mapped(data)
    assert asked and len(passed) > asked / 2
    assert all(validate(r) == [] for r in passed)
    monkeypatch.setattr(engine, "known_valid", lambda b: False)
    assert fast == _as_mapped(data)


def test_a_value_checked_alone_is_judged_as_the_validator_judges_it_in_place() -> None:
    """The leaf checks against the validator on the same values put in a resource: strings,
    codes with a required binding, dates, arrays, complex values, empties and wrong JSON types."""
    cases: list[tuple[str, str, Any]] = [
        ("Patient", "gender", "male"), ("Patient", "gender", "man"), ("Patient", "gender", ["male"]),
        ("Patient", "birthDate", "1968-03-15"), ("Patient", "birthDate", "1968-02-30"),
        ("Patient", "birthDate", 1968), ("Patient", "active", True), ("Patient", "active", "true"),
        ("Observation", "valueString", " "), ("Observation", "valueString", "Âm tính"),
        ("Observation", "valueQuantity", {"value": 5, "unit": "g/L"}), ("Observation", "valueQuantity", {}),
        ("Observation", "valueQuantity", {"value": "5"}), ("Observation", "valueQuantity", [{"value": 5}]),
        ("Observation", "code", {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}),
        ("Observation", "code", {"coding": [{"code": "a  b"}]}), ("Observation", "code", {"text": None}),
        ("Observation", "category", [{"text": "lab"}]), ("Observation", "category", []),
        ("Observation", "category", {"text": "lab"}), ("Patient", "name", [{"given": ["A", "B"]}]),
        ("Patient", "name", [{"given": "A"}]), ("Observation", "status", None),
    ]
    for rtype, key, value in cases:
        resource = {"resourceType": rtype, key: value}
        here = [i for i in validate(resource) if i.code != "required"]  # the other elements are missing
        check = engine._leaf_check(rtype, ((key, None),))
        assert check(value) == (not here), (rtype, key, value, here)
    assert engine._leaf_check("Observation", (("nonsense", None),))("x") is False
    assert engine._leaf_check("Bundle", (("entry", "+"), ("resource", None)))({"resourceType": "Patient"}) is False


def test_the_shapes_are_learnt_from_valid_resources_only() -> None:
    """A resource refused in full teaches nothing: the same shape stays unknown until a valid
    one has it (here the facility's Organization, made the same way in every visit)."""
    built = engine.Built("facility", "XML1", "k", (0,), "urn:uuid:x", {"resourceType": "Organization"}, "r",
                         trace=[-1], values=[((("name", None),), "A")])
    assert not engine.known_valid(built)
    engine.learn_valid(built)
    assert engine.known_valid(built)
    built.values = [((("name", None),), " ")]  # the same shape, a blank name: not valid
    assert not engine.known_valid(built)
    assert claims_xml  # the adapter that uses it
