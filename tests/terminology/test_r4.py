"""R4's own CodeSystems and ValueSets answer like the VN lists, and the shipped copy is a rebuild."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from fhir_hub import terminology
from fhir_hub.terminology import expand, lookup, validate_in_valueset

REPO = Path(__file__).resolve().parents[2]
DEFINITIONS = REPO.parent / "shared" / "fhir-r4" / "definitions"
VS = "http://hl7.org/fhir/ValueSet/"


def test_core_code_systems_and_value_sets_are_loaded() -> None:
    assert lookup("http://hl7.org/fhir/administrative-gender", "male") == ("Male", {})
    assert [e.code for e in expand(terminology.value_set(VS + "administrative-gender") or {}).contains] == [
        "male", "female", "other", "unknown"]
    status = terminology.value_set(VS + "observation-status")
    assert status is not None
    assert validate_in_valueset(status, "final", "http://hl7.org/fhir/observation-status")[0] is True
    assert validate_in_valueset(status, "finished", "http://hl7.org/fhir/observation-status")[0] is False


def test_nested_concepts_become_a_parent_hierarchy() -> None:
    cs = terminology.code_system("http://hl7.org/fhir/restful-interaction")
    assert cs is not None and cs.resource["hierarchyMeaning"] == "is-a"
    assert set(cs.children["history"]) == {"history-instance", "history-type", "history-system"}
    assert {"code": "parent", "valueCode": "search"} in cs.concepts["search-type"]["property"]
    account = expand(terminology.value_set(VS + "account-type") or {})  # is-a _ActAccountCode in v3-ActCode
    assert account.total > 3 and all(e.system.endswith("v3-ActCode") for e in account.contains)


@pytest.mark.skipif(not DEFINITIONS.is_dir(), reason="../shared/fhir-r4 not present")
def test_shipped_r4_terminology_matches_a_rebuild() -> None:
    spec = importlib.util.spec_from_file_location("build_r4_terminology", REPO / "tools" / "build_r4_terminology.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    for name, data in module.build(DEFINITIONS).items():
        assert (REPO / "fhir_hub" / "terminology" / "data" / "r4" / name).read_bytes() == data, name


def test_r4_data_is_shipped_as_package_data() -> None:
    assert '"terminology/data/r4/*.json"' in (REPO / "pyproject.toml").read_text()
