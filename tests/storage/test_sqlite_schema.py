"""The SQLite file's schema version: a file of the previous version is migrated in place at open
(token and quantity systems become integer keys), one of any other version is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fhir_hub.search.extract import Indexer
from fhir_hub.search.query import Clause, QuantityValue, TokenValue
from fhir_hub.storage.sqlite import schema
from fhir_hub.storage.sqlite.store import SQLiteStore

_UCUM = "http://unitsofmeasure.org"


def _patient(i: int) -> dict[str, object]:
    return {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": f"id{i}"}], "gender": "female"}


def _weight(i: int) -> dict[str, object]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "valueQuantity": {"value": 60 + i, "unit": "kg", "system": _UCUM, "code": "kg"}}


async def _write(db: Path) -> dict[int, str]:
    """Five Patients and five weights; the system texts behind every stored system key."""
    store = SQLiteStore(str(db), indexer=Indexer())
    await store.open()
    texts: dict[int, str] = {}
    for i in range(5):
        for rtype, rid, body in (("Patient", f"p{i}", _patient(i)), ("Observation", f"o{i}", _weight(i))):
            for row in Indexer().rows(rtype, body):
                if row[0] in ("token", "quantity"):
                    texts[schema.system_key(row[2])] = row[2]
            await store.transact(lambda tx, t=rtype, r=rid, b=body: tx.put(t, r, b, "PUT"))
    await store.close()
    return texts


def _as_version_4(db: Path, texts: dict[int, str]) -> None:
    """Rewrite the file as version 4 had it: systems as text in both tables."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.create_function("system_text", 1, lambda key: texts[key], deterministic=True)
    for kind in ("token", "quantity"):
        cols = ("pid", *schema.INDEX_COLUMNS[kind], "rk")
        defs = ", ".join(f"{c} {'REAL' if c == 'value' else 'TEXT'} NOT NULL" for c in schema.INDEX_COLUMNS[kind])
        conn.execute(f"CREATE TABLE v4 (pid INTEGER NOT NULL, {defs}, rk INTEGER NOT NULL, "
                     f"PRIMARY KEY (pid, {', '.join(schema.INDEX_COLUMNS[kind])}, rk)) WITHOUT ROWID")
        picks = ", ".join("system_text(system)" if c == "system" else c for c in cols)
        conn.execute(f"INSERT INTO v4 SELECT {picks} FROM idx_{kind}")
        conn.execute(f"DROP TABLE idx_{kind}")
        conn.execute(f"ALTER TABLE v4 RENAME TO idx_{kind}")
        conn.execute(f"CREATE INDEX idx_{kind}_rk ON idx_{kind} (rk, pid)")
    conn.execute("UPDATE store_meta SET value = '4' WHERE key = 'schema_version'")
    assert conn.execute("SELECT typeof(system) FROM idx_token LIMIT 1").fetchone() == ("text",)
    conn.close()


async def test_a_version_4_file_is_migrated_and_answers_the_same_searches(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    _as_version_4(db, await _write(db))
    store = SQLiteStore(str(db), indexer=Indexer())
    await store.open()
    try:
        ident = [Clause("identifier", "token", (TokenValue("urn:test", "id3"),))]
        assert await store.find("Patient", ident, 10) == ["p3"]
        assert await store.count("Patient", [Clause("identifier", "token", (TokenValue("urn:test", None),))]) == 5
        heavy = QuantityValue("gt", 62.0, 62.0, 62.0, _UCUM, "kg")
        assert sorted(await store.find("Observation", [Clause("value-quantity", "quantity", (heavy,))], 10)) == \
            ["o3", "o4"]
        # a write after the migration is found next to the migrated rows
        await store.transact(lambda tx: tx.put("Patient", "p9", _patient(9), "PUT"))
        assert await store.count("Patient", [Clause("identifier", "token", (TokenValue("urn:test", None),))]) == 6
    finally:
        await store.close()
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone() == (
        str(schema.SCHEMA_VERSION),)
    assert {t for (t,) in conn.execute("SELECT DISTINCT typeof(system) FROM idx_token")} == {"integer"}
    conn.close()


async def test_a_file_of_another_version_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "hub.db"
    await _write(db)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("UPDATE store_meta SET value = '3' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(schema.SchemaMismatch, match="version 3"):
        schema.ensure(schema.connect(str(db), "FULL"))
