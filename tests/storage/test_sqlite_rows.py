"""SQLite's table form of index rows (``storage/sqlite/rows.py``): columns in table order, keys
for parameters and systems, no ``_lastUpdated`` from the form, references repointed in place."""

from __future__ import annotations

import orjson

from fhir_hub.search.extract import Indexer
from fhir_hub.storage.sqlite.rows import TableForm, keyed, table_rows, unpacked
from fhir_hub.storage.sqlite.schema import param_key, system_key

_OBS = {"resourceType": "Observation", "status": "final", "meta": {"lastUpdated": "2026-01-02T03:04:05Z"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
        "subject": {"reference": "Patient/urn-1"},
        "valueQuantity": {"value": 61.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}}


def test_rows_take_the_tables_column_order_and_keys() -> None:
    rows = table_rows("Observation", Indexer().rows("Observation", _OBS))
    token = (param_key("Observation", "code"), "29463-7", system_key("http://loinc.org"))
    assert list(token) in unpacked(rows, "token")
    assert [param_key("Observation", "subject"), "Patient/urn-1"] in unpacked(rows, "reference")
    assert [param_key("Observation", "code:text"), "body weight", ""] in unpacked(rows, "string")
    assert [param_key("Observation", "value-quantity"), "kg", system_key("http://unitsofmeasure.org"), 61.5] \
        in unpacked(rows, "quantity")
    assert any(r[0] == param_key("Observation", "_lastUpdated") for r in unpacked(rows, "date"))
    assert rows.size == sum(len(unpacked(rows, kind)) for kind in rows.frags)


def test_the_form_leaves_last_updated_to_the_writer_and_repoints_references() -> None:
    form = TableForm()
    prepared = form.prepare("Observation", Indexer().rows("Observation", _OBS))
    assert not any(r[0] == param_key("Observation", "_lastUpdated") for r in unpacked(prepared, "date"))
    moved = form.retarget(prepared, {"Patient/urn-1": "Patient/abc"})
    assert moved is not None
    assert [param_key("Observation", "subject"), "Patient/abc"] in unpacked(moved, "reference")
    assert [param_key("Observation", "subject"), "Patient/urn-1"] in unpacked(prepared, "reference")  # a copy
    # an absolute URL was indexed by its tail too, a conditional reference not at all: extract again
    assert form.retarget(prepared, {"http://x/fhir/Patient/1": "Patient/1"}) is None
    assert form.retarget(prepared, {"Patient?identifier=a|b": "Patient/1"}) is None


def test_a_string_that_looks_like_the_key_column_is_kept_as_it_is() -> None:
    """The writer puts each resource's key in by replacing the marked key column's text: a code
    or display holding that text must come back unchanged, and every row must get its key once."""
    marked = f",{-(2**63) + 7}]"
    tricky = [marked, "a" + marked + "b", "[1" + marked, "plain, with a comma"]
    obs = {**_OBS, "code": {"coding": [{"system": "http://loinc.org", "code": c, "display": c} for c in tricky]}}
    rows = table_rows("Observation", Indexer().rows("Observation", obs))
    codes = {r[1] for r in unpacked(rows, "token") if r[0] == param_key("Observation", "code")}
    assert codes == set(tricky)
    for kind, frag in rows.frags.items():
        keyed_rows = orjson.loads(b"[" + keyed(frag, 42) + b"]")
        assert [row[:-1] for row in keyed_rows] == unpacked(rows, kind)
        assert all(row[-1] == 42 for row in keyed_rows)
    assert rows.size == sum(len(unpacked(rows, kind)) for kind in rows.frags)
