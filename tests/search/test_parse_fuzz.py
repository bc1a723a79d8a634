"""Any query string is either a query that compiles and runs, or a 4xx naming what is wrong: never
another exception (which the server would answer with a 500)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_hub.errors import FhirError
from fhir_hub.search import parameters
from fhir_hub.search.parse import parse
from fhir_hub.search.query import Clause
from fhir_hub.storage.sqlite import schema
from fhir_hub.storage.sqlite.search import count_sql, find_sql, sorted_sql

TYPES = ["Patient", "Observation", "Encounter", "Condition"]
CODES = sorted({sp.code for t in TYPES for sp in parameters.params_for(t).values()}) + ["_has", "zzz", ""]
MODIFIERS = ["", ":exact", ":contains", ":text", ":not", ":missing", ":of-type", ":identifier", ":above", ":below",
             ":in", ":Patient", ":Organization", ":nope", ":iterate"]
PIECES = ["", "2024", "ge2024-01", "lt2020-13-40", "eq1e2", "5.4||mg", "8480-6$gt150", "http://loinc.org|8867-4",
          "|x", "x|", "Patient/1", "1", "true", "false", "a,b", "\\,", "\\", "$", "|", "||", "nguyễn", "%", "'", '"',
          "?", "&", "=", ":", ".", "urn:uuid:1", "http://h/fhir/Patient/2", "ap2025", "ne5", "sa1990", "9" * 400]


@st.composite
def names(draw: st.DrawFn) -> str:
    name = draw(st.sampled_from(CODES)) + draw(st.sampled_from(MODIFIERS))
    if draw(st.booleans()):
        name += "." + draw(st.sampled_from(CODES)) + draw(st.sampled_from(MODIFIERS))
    if name.startswith("_has"):
        name = "_has:" + draw(st.sampled_from(TYPES + ["Nope"])) + ":" + draw(st.sampled_from(CODES)) + ":" + \
            draw(st.sampled_from(CODES))
    return name


values = st.one_of(st.sampled_from(PIECES), st.text(max_size=12),
                   st.lists(st.sampled_from(PIECES), min_size=1, max_size=3).map("".join))
results = st.sampled_from([("_sort", "family,-birthdate"), ("_sort", "-zzz"), ("_count", "x"), ("_count", "10"),
                           ("_include", "Observation:subject"), ("_include", "*"), ("_revinclude", "x:y:z"),
                           ("_total", "accurate"), ("_summary", "count"), ("_elements", "id"), ("_id", "a,b"),
                           ("_contained", "true"), ("_cursor", "s!!")])


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    path = Path(tmp_path_factory.mktemp("fuzz")) / "fuzz.db"
    c = schema.connect(str(path), "NORMAL")
    schema.ensure(c)
    yield c
    c.close()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rtype=st.sampled_from(TYPES), pairs=st.lists(st.one_of(st.tuples(names(), values), results), max_size=4),
       strict=st.booleans())
def test_any_query_parses_or_is_a_4xx_and_compiles(conn: sqlite3.Connection, rtype: str,
                                                   pairs: list[tuple[str, str]], strict: bool) -> None:
    try:
        q = parse([rtype], pairs, base_url="http://h/fhir", strict=strict)
    except FhirError as exc:
        assert 400 <= exc.status < 500 and exc.issues and exc.issues[0].diagnostics
        return
    criteria = [c for c in q.criteria if not (isinstance(c, Clause) and c.type == "composite")]
    for sql, args in (find_sql(rtype, criteria, 10, None, q.ids), find_sql(rtype, criteria, 10, "x", q.ids),
                      count_sql(rtype, criteria, q.ids),
                      sorted_sql(rtype, criteria, [("_id", "special", True)], 10, ["x", 1], q.ids)):
        conn.execute(sql, args).fetchall()
