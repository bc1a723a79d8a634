"""The SQLite backend answers the hot queries from its indexes: no scan of a resource type or of a
whole index table, however large they grow (EXPLAIN QUERY PLAN on the compiled SQL)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from fhir_hub.search.parse import parse
from fhir_hub.storage.sqlite import schema
from fhir_hub.storage.sqlite.search import count_sql, find_sql

NID = "http://fhir.ehealth.gov.vn/core/sid/national_id"


@pytest.mark.parametrize("url", [
    f"Patient?identifier={NID}|079203000001",
    "Patient?identifier=urn:a|1,2",
    "Patient?identifier=1&gender=male",
    "Patient?_id=a,b&gender=male",
    "Patient?name=nguyen&birthdate=ge1980",
    "Observation?subject=Patient/p1&code=http://loinc.org|8867-4&date=ge2024-01-01",
    "Observation?subject=Patient/p1,Patient/p2,Patient/p3",
    "Observation?patient=p1&value-quantity=gt5|http://unitsofmeasure.org|mg",
    "Observation?subject:Patient.identifier=urn:x|1",
    "Patient?_has:Observation:patient:code=8867-4&identifier=1",
    "Encounter?subject=Patient/p1&date=2024",
    "Observation?code=8867-4&subject=Patient/p1&status:not=cancelled",
])
def test_hot_queries_do_not_scan(tmp_path: Path, url: str) -> None:
    rtype, _, qs = url.partition("?")
    q = parse([rtype], parse_qsl(qs), strict=True)
    conn = schema.connect(str(tmp_path / "plans.db"), "NORMAL")
    schema.ensure(conn)
    for sql, args in (find_sql(rtype, q.criteria, 20, None, q.ids), find_sql(rtype, q.criteria, 20, "x", q.ids),
                      count_sql(rtype, q.criteria, q.ids)):
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]
        assert plan, url
        for step in plan:
            # scanning a co-routine (the page of keys, a subquery's result) is fine; a table is not
            assert not re.match(r"SCAN (x\d+|[a-z_]+)( |$)", step) or step.split()[1] in ("p", "d"), (url, plan)
            if step.startswith("SEARCH"):
                # every seek fixes a value key, an owner key or an id, not just a type or parameter
                assert re.search(r"\((pid=\? AND |rk=\?|rtype=\? AND rid|rid=\?)", step), (url, step, plan)
