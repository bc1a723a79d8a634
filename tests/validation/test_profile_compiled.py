"""The compiled shortcuts of the profile plans pick what the general matching picks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir_hub import profiles
from fhir_hub.validation import profile


def _nodes(node: Any) -> Iterator[Any]:
    yield node
    for child in node.children:
        yield from _nodes(child)
    for sl in node.slices:
        yield from _nodes(sl.node)


def _first_match(node: Any, item: Any) -> int:
    for k, sl in enumerate(node.slices):
        if sl.matches(item, {}, None):
            return k
    return -1


def test_slices_found_by_key_are_the_slices_the_discriminators_match() -> None:
    indexed = 0
    for url in profiles.profile_urls():
        for node in _nodes(profile.plan(url).root):
            if node.slice_key is None:
                continue
            indexed += 1
            key = node.slice_key
            items: list[Any] = [{key: want, "value": "x"} for want in node.slice_index]
            items += [{key: "urn:none"}, {"value": "x"}, {key: 3}]
            for item in items:
                found = node.slice_index.get(item.get(key), -1)
                assert found == _first_match(node, item), (node.what, item)
    assert indexed >= 5  # Patient.extension, Patient.identifier, the address extensions...


def test_an_item_of_a_keyed_slice_is_checked_against_it() -> None:
    """Through validate: an identifier whose system names the CCCD slice gets the slice's rule."""
    patient = {"resourceType": "Patient", "identifier": [
        {"system": "http://fhir.ehealth.gov.vn/core/sid/national_id", "value": "12"}],
        "name": [{"text": "A"}], "gender": "male", "birthDate": "1990-01-01"}
    issues = profile.validate(patient, profiles.PATIENT)
    assert any("vn-id-cccd" in i.diagnostics and i.expression == ("Patient.identifier[0].value",) for i in issues)


def test_compiled_patterns_match_as_the_general_matcher() -> None:
    patterns: list[Any] = [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NI"}]},
        {"coding": [{"system": "s", "code": "a"}, {"system": "s", "code": "b"}]},
        "fixed", 3, [1, 2], {"a": {"b": [{"c": True}]}},
    ]
    values: list[Any] = [
        None, "fixed", 3, 3.0, True, [1, 2], [2, 1, 5], [1], {"a": {"b": {"c": True}}}, {"a": {"b": [{"c": False}]}},
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NI", "display": "x"}]},
        {"coding": {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NI"}},
        {"coding": [{"system": "s", "code": "b"}, {"system": "s", "code": "a"}]},
        {"coding": [{"system": "s", "code": "a"}]}, {"text": "NI"}, [],
    ]
    results = []
    for pattern in patterns:
        test = profile._pattern_test(pattern)
        for value in values:
            expected = profile._matches_pattern(value, pattern)
            assert test(value) == expected, (pattern, value)
            results.append(expected)
    assert any(results) and not all(results)
