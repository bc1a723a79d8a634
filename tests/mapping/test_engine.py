"""The spec engine on small specs: paths, code tables, repeats, groups, collects, dropped resources."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_hub.mapping.engine import Spec, SpecError, _table, instantiate, load_spec, parse_path, set_path


def _spec(doc: dict[str, Any]) -> Spec:
    t = _table(doc, "test")
    return Spec("test", {t.table: t})


def test_paths() -> None:
    r: dict[str, Any] = {}
    set_path(r, parse_path("identifier[+].system"), "s1")
    set_path(r, parse_path("identifier[=].value"), "v1")
    set_path(r, parse_path("identifier[+]"), {"value": "v2"})
    set_path(r, parse_path("code.coding[0].code"), "c")
    set_path(r, parse_path("."), {"valueString": "x"})
    set_path(r, parse_path("code"), {"text": "t"}, merge=True)
    assert r == {"identifier": [{"system": "s1", "value": "v1"}, {"value": "v2"}],
                 "code": {"coding": [{"code": "c"}], "text": "t"}, "valueString": "x"}
    with pytest.raises(SpecError):
        parse_path("a..b")


def test_a_spec_naming_an_unknown_function_or_table_fails_on_load() -> None:
    base = {"table": "T", "root": "R"}
    with pytest.raises(SpecError, match="unknown function"):
        _table({**base, "resources": [{"name": "x", "type": "Basic",
                                       "elements": [{"path": "a", "field": "F", "convert": "nope"}]}]}, "t")
    with pytest.raises(SpecError, match="unknown code table"):
        _table({**base, "resources": [{"name": "x", "type": "Basic",
                                       "elements": [{"path": "a", "field": "F", "codes": "nope"}]}]}, "t")
    with pytest.raises(SpecError, match="exactly one"):
        _table({**base, "resources": [{"name": "x", "type": "Basic",
                                       "elements": [{"path": "a", "field": "F", "value": 1}]}]}, "t")


def test_the_shipped_qd130_spec_loads() -> None:
    spec = load_spec("qd130")
    assert list(spec.tables) == ["XML1", "XML2", "XML3", "XML4", "XML5", "XML7", "XML8", "XML13", "XML14"]


def test_the_qd4210_spec_extends_qd130_with_4210_names() -> None:
    spec = load_spec("qd4210")
    assert list(spec.tables) == ["XML1", "XML2", "XML3", "XML4", "XML5"]
    assert spec.tables["XML2"].root == "DSACH_CHI_TIET_THUOC"
    assert "MA_THE" in spec.tables["XML1"].used_fields() and "MA_THE_BHYT" not in spec.tables["XML1"].used_fields()
    assert "DIEN_BIEN" in spec.tables["XML5"].used_fields()


SPEC = {
    "table": "T", "root": "R", "records": "L/I",
    "codes": {"sex": {"1": "male", "2": "female"}},
    "resources": [
        {"name": "p", "type": "Patient", "request": "patient_request", "elements": [
            {"path": "gender", "field": "SEX", "codes": "sex"},
            {"path": "birthDate", "field": "BORN", "convert": "birth_date"}]},
        {"name": "c", "type": "Condition", "repeat": ["CODES"], "elements": [
            {"path": "identifier[+]", "field": "$id", "template": {"system": "sys:claim_line", "value": "$"}},
            {"path": "code.coding[+]", "field": "CODES", "convert": "icd10"},
            {"path": "subject", "ref": "p"}]},
        {"name": "o", "type": "Observation", "when": "VALUE", "incomplete": "drop", "elements": [
            {"path": "identifier[+]", "field": "$id", "template": {"system": "sys:claim_line", "value": "$"}},
            {"path": "valueQuantity.value", "field": "VALUE", "convert": "body_weight", "required": True}]},
        {"name": "g", "type": "DiagnosticReport", "group_by": "GROUP", "elements": [
            {"path": "identifier[+]", "field": "$id", "template": {"system": "sys:claim_line", "value": "$"}}],
         "collect": [{"rule": "o", "path": "result[+]"}]},
    ],
}


def test_repeat_group_collect_and_drop() -> None:
    records = [
        {"STT": "1", "SEX": "2", "BORN": "194800000000", "CODES": "I10;E78.5", "VALUE": "61.5", "GROUP": "A"},
        {"STT": "2", "SEX": "9", "BORN": "19481332", "CODES": "", "VALUE": "0.01", "GROUP": "A"},
        {"STT": "3", "VALUE": "70", "GROUP": "B"},
    ]
    built, problems = instantiate(_spec(SPEC), {"T": records}, "00999", "LK1")
    kinds = [(b.rule, b.key) for b in built]
    assert ("c", "00999/LK1/T/1/2") in kinds and ("c", "00999/LK1/T/1/1") in kinds
    assert [b.rule for b in built].count("c") == 2  # the second record has no codes
    # the sentinel weight of record 2 has no Observation, and the group report does not point at it
    assert [b.key for b in built if b.rule == "o"] == ["00999/LK1/T/1", "00999/LK1/T/3"]
    reports = {b.key.rsplit("=", 1)[1]: b.resource for b in built if b.rule == "g"}
    assert len(reports["A"]["result"]) == 1 and len(reports["B"]["result"]) == 1
    first_patient = next(b for b in built if b.rule == "p")
    assert first_patient.resource == {"resourceType": "Patient", "gender": "female", "birthDate": "1948"}
    assert {(p.field, p.severity) for p in problems} >= {("SEX", "error"), ("BORN", "error"), ("VALUE", "warning")}
    condition = next(b for b in built if b.rule == "c")
    assert condition.resource["subject"] == {"reference": first_patient.full_url}
    assert condition.resource["identifier"][0]["value"] == "c/00999/LK1/T/1/1"


def test_specs_read_by_the_c_loader_are_the_documents_safe_load_gives() -> None:
    """The specs are parsed by libyaml's safe loader when PyYAML has it: every shipped spec must
    come out exactly as ``yaml.safe_load`` reads it (values and their types)."""
    from importlib import resources

    import yaml

    from fhir_hub.mapping.engine import _YAML_LOADER

    files = [f for fmt in (resources.files("fhir_hub") / "mappings").iterdir() if fmt.is_dir()
             for f in fmt.iterdir() if f.name.endswith(".yaml")]
    assert len(files) > 10
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert repr(yaml.load(text, Loader=_YAML_LOADER)) == repr(yaml.safe_load(text)), f.name  # noqa: S506
