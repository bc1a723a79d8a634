"""The conversion tables are read from their own files, not by loading the whole terminology
catalogue, and say the same as the catalogue's ConceptMaps and CodeSystems."""

from __future__ import annotations

import subprocess
import sys

from fhir_hub.mpi import units
from fhir_hub.terminology import catalogue, code_system, concept_map


def test_tables_load_without_the_terminology_catalogue() -> None:
    """In a fresh interpreter (this one may have loaded the catalogue): the catalogue's parsed
    JSON would stay in the process and slow every full garbage collection down."""
    code = ("from fhir_hub.mpi import units; from fhir_hub.terminology import catalogue; u = units.units(); "
            "print(len(u.ward_old_to_new), catalogue.catalogue.cache_info().currsize)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) > 10_000
    assert out[1] == "0"


def test_tables_match_the_catalogue() -> None:
    from_files = units.units()
    catalogue.catalogue()  # loaded: units() now takes its resources from it
    units.units.cache_clear()
    try:
        from_catalogue = units.units()
    finally:
        units.units.cache_clear()
    assert from_files == from_catalogue
    ward_map = concept_map(units._WARD_MAP)
    assert ward_map is not None
    expected = {code: frozenset(t["code"] for t in element.get("target", ()))
                for elements in ward_map.elements.values() for code, element in elements.items()}
    assert {code: frozenset(v) for code, v in from_files.ward_old_to_new.items()} == expected
    wards = code_system(units.WARD_2025)
    assert wards is not None and set(from_files.ward_province) == set(wards.concepts)
    assert from_files.province_old_to_new["01"] == "01"  # Hà Nội keeps its code
    assert "001" in from_files.cccd_prefixes


def test_split_commune_is_a_tuple_of_each_successor_once() -> None:
    """Tuples, not frozensets: the collector stops tracking a tuple of strings."""
    targets = units.units().ward_old_to_new["00016"]
    assert isinstance(targets, tuple) and sorted(targets) == ["00004", "00008"]
