"""The SQLite backend's lookups seek indexes: no scan of a resource type, however large it grows."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_hub.storage.port import TokenMatch
from fhir_hub.storage.sqlite import schema
from fhir_hub.storage.sqlite.store import _find_sql


@pytest.mark.parametrize("criteria", [
    [TokenMatch("identifier", (("http://fhir.ehealth.gov.vn/core/sid/national_id", "079203000001"),))],
    [TokenMatch("identifier", (("urn:a", "1"), (None, "2")))],
    [TokenMatch("identifier", ((None, "1"),)), TokenMatch("gender", (("", "male"),))],
    [TokenMatch("_id", ((None, "a"), (None, "b"))), TokenMatch("gender", ((None, "male"),))],
])
def test_conditional_lookups_do_not_scan(tmp_path: Path, criteria: list[TokenMatch]) -> None:
    conn = schema.connect(str(tmp_path / "plans.db"), "NORMAL")
    schema.ensure(conn)
    sql, args = _find_sql("Patient", criteria, 2)
    plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]
    assert plan and not any(step.startswith("SCAN") for step in plan), plan
    # ranging over all current rows of the type (rtype=? alone) is a scan in disguise
    assert all("rid=?" in step for step in plan if step.startswith("SEARCH c ")), plan
