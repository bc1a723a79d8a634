"""The compiled R4 definitions: present, small, loadable, and faithful to the spec data."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path
from types import ModuleType

import pytest

from fhir_hub import definitions

REPO = Path(__file__).resolve().parents[2]
COMPILED = REPO / "fhir_hub" / "definitions" / "r4"
SHARED = REPO.parent / "shared"
FILES = ("types.json", "search-parameters.json", "compartments.json")


def test_compact_files_exist_and_are_small() -> None:
    sizes = {name: (COMPILED / name).stat().st_size for name in FILES}
    assert all(size > 0 for size in sizes.values())
    assert sum(sizes.values()) < 4 * 1024 * 1024, sizes


def test_everything_loads() -> None:
    # Caches may already be warm from other tests; this only proves the calls work.
    start = time.perf_counter()
    definitions.resource_types()
    definitions.type_names()
    definitions.search_parameters()
    definitions.compartments()
    definitions.summary_elements("Patient")
    elapsed = time.perf_counter() - start
    print(f"definitions loaded in {elapsed * 1000:.1f} ms")


def test_resource_types() -> None:
    types = definitions.resource_types()
    assert len(types) == 146
    assert {"Patient", "Observation", "Bundle", "Parameters", "Binary"} <= types
    assert "Resource" not in types and "DomainResource" not in types
    assert definitions.is_resource_type("Patient")
    assert not definitions.is_resource_type("HumanName")
    assert not definitions.is_resource_type("patient")


def test_element_model_basics() -> None:
    patient = definitions.type_model("Patient")
    assert patient["id"]["type"] == "id"  # Resource.id, although the snapshot says System.String
    assert patient["name"] == {"type": "HumanName", "min": 0, "max": "*", "summary": True}
    assert patient["gender"]["binding"] == "http://hl7.org/fhir/ValueSet/administrative-gender"
    assert patient["active"]["modifier"] is True
    assert patient["contact"]["type"] == "Patient.contact"
    assert definitions.type_kind("Patient.contact") == "backbone"
    assert "relationship" in definitions.type_model("Patient.contact")
    assert "modifierExtension" in definitions.type_model("Patient.contact")
    assert definitions.type_model("HumanName")["id"].get("attr") is True
    assert definitions.type_kind("Patient") == "resource"
    assert definitions.type_kind("HumanName") == "complex-type"
    assert definitions.type_kind("string") == "primitive"
    with pytest.raises(KeyError):
        definitions.type_model("NoSuchType")


def test_choice_elements_are_expanded() -> None:
    obs = definitions.type_model("Observation")
    assert "value[x]" not in obs
    for name, tcode in (
        ("valueQuantity", "Quantity"),
        ("valueString", "string"),
        ("valueDateTime", "dateTime"),
    ):
        assert obs[name]["type"] == tcode
        assert obs[name]["choice"] == "value"
    assert obs["effectivePeriod"]["choice"] == "effective"
    assert len([k for k in definitions.type_model("Extension") if k.startswith("value")]) == 50
    # SimpleQuantity keeps the JSON name of its base type
    dose = definitions.type_model("Dosage.doseAndRate")
    assert dose["doseQuantity"]["type"] == "SimpleQuantity"
    assert "doseSimpleQuantity" not in dose
    assert "comparator" not in definitions.type_model("SimpleQuantity")
    assert "comparator" in definitions.type_model("Quantity")


def test_content_reference_resolution() -> None:
    assert definitions.type_model("Questionnaire.item")["item"]["type"] == "Questionnaire.item"
    assert definitions.type_model("Parameters.parameter")["part"]["type"] == "Parameters.parameter"
    assert definitions.type_model("Bundle.entry")["link"]["type"] == "Bundle.link"
    assert definitions.type_model("Bundle.entry")["resource"]["type"] == "Resource"


def test_reference_targets() -> None:
    assert definitions.type_model("Observation")["subject"]["targets"] == [
        "Device",
        "Group",
        "Location",
        "Patient",
    ]


def test_primitives_have_python_regexes() -> None:
    prims = definitions.primitive_types()
    assert set(prims) >= {
        "boolean",
        "integer",
        "decimal",
        "string",
        "code",
        "id",
        "date",
        "dateTime",
        "instant",
    }
    assert prims["boolean"]["json"] == "boolean"
    assert prims["positiveInt"]["json"] == "integer"
    assert prims["decimal"]["json"] == "number"
    assert prims["date"]["json"] == "string"
    for info in prims.values():
        if "regex" in info:
            re.compile(info["regex"])
    assert re.fullmatch(prims["id"]["regex"], "a-B.9" * 12)
    assert not re.fullmatch(prims["id"]["regex"], "x" * 65)
    # XML Schema whitespace: U+00A0 is not whitespace, so it is fine in strings and codes
    assert re.fullmatch(prims["string"]["regex"], "a\u00a0b")
    assert re.fullmatch(prims["code"]["regex"], "a\u00a0b")
    assert not re.fullmatch(prims["code"]["regex"], "a  b")
    assert re.fullmatch(prims["dateTime"]["regex"], "2015-02-07T13:28:17.239+02:00")
    assert not re.fullmatch(prims["dateTime"]["regex"], "2015-02-07T13:28")


def test_required_value_sets() -> None:
    assert definitions.value_set_codes(
        "http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1"
    ) == frozenset({"male", "female", "other", "unknown"})
    status = definitions.value_set_codes("http://hl7.org/fhir/ValueSet/observation-status")
    assert status is not None and "final" in status
    # not enumerable (external code system): no binding in the model
    assert definitions.value_set_codes("http://hl7.org/fhir/ValueSet/mimetypes") is None
    assert "binding" not in definitions.type_model("Attachment")["contentType"]


def test_search_parameters() -> None:
    params = definitions.search_parameters()
    assert len(params) == 1375
    by_key = {(base, p["code"]): p for p in params for base in p["base"]}
    ident = by_key[("Patient", "identifier")]
    assert ident["type"] == "token" and ident["expression"] == "Patient.identifier"
    code = by_key[("Observation", "code")]
    assert code["id"] == "clinical-code" and "Observation.code" in code["expression"]
    subject = by_key[("Observation", "subject")]
    assert subject["type"] == "reference" and set(subject["target"]) == {
        "Group",
        "Device",
        "Patient",
        "Location",
    }
    composite = by_key[("Observation", "code-value-quantity")]
    assert composite["type"] == "composite"
    assert [c["expression"] for c in composite["component"]] == ["code", "value.as(Quantity)"]
    assert by_key[("Resource", "_id")]["expression"] == "Resource.id"
    assert all(isinstance(p["target"], list) and isinstance(p["comparator"], list) for p in params)


def test_compartments() -> None:
    comps = definitions.compartments()
    assert set(comps) == {"Patient", "Encounter", "RelatedPerson", "Practitioner", "Device"}
    assert "subject" in comps["Patient"]["Observation"]
    assert comps["Patient"]["Patient"] == ["link"]
    assert "ActivityDefinition" not in comps["Patient"]  # no params: cannot be in the compartment


def test_summary_elements() -> None:
    summary = definitions.summary_elements("Patient")
    assert {"resourceType", "id", "meta", "identifier", "name", "gender", "_gender", "birthDate"} <= summary
    assert "contact" not in summary and "photo" not in summary and "text" not in summary
    obs = definitions.summary_elements("Observation")
    assert {"status", "code", "subject", "valueQuantity", "effectiveDateTime"} <= obs
    assert "note" not in obs
    with pytest.raises(KeyError):
        definitions.summary_elements("Nope")


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_definitions", REPO / "tools" / "build_definitions.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_files_are_up_to_date(tmp_path: Path) -> None:
    """Rebuilding from the official definitions gives byte-identical files."""
    if not (SHARED / "fhir-r4" / "definitions").is_dir():
        pytest.skip("shared FHIR R4 definitions not available")
    tool = _load_tool()
    assert tool.main(["--shared", str(SHARED), "--out", str(tmp_path)]) == 0
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (COMPILED / name).read_bytes(), name
