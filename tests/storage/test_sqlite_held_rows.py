"""The SQLite writer holds index rows back and inserts them in sorted batches; a process that
dies holding some must not lose what it acknowledged: the next start indexes them again."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from fhir_hub.search.extract import Indexer
from fhir_hub.search.query import Clause, StringValue, TokenValue
from fhir_hub.storage.port import Tx
from fhir_hub.storage.sqlite import store as store_module
from fhir_hub.storage.sqlite.rows import table_rows
from fhir_hub.storage.sqlite.schema import param_key, system_key
from fhir_hub.storage.sqlite.store import SQLiteStore

_WRITE_AND_DIE = textwrap.dedent("""
    import asyncio, os, sys
    from fhir_hub.search.extract import Indexer
    from fhir_hub.storage.sqlite import store as store_module
    from fhir_hub.storage.sqlite.store import SQLiteStore

    store_module._IDLE_SECONDS = 3600  # the writer must not insert them while we exit

    async def main():
        store = SQLiteStore(sys.argv[1], indexer=Indexer(), index_batch_rows=1_000_000)
        await store.open()
        for i in range(40):
            p = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": f"id{i}"}]}
            await store.transact(lambda tx, p=p, i=i: tx.put("Patient", f"p{i}", p, "POST"))
        held = store._held.count
        print(held, flush=True)
        os._exit(0)

    asyncio.run(main())
""")


def _ident(value: str) -> list[Clause]:
    return [Clause("identifier", "token", (TokenValue("urn:test", value),))]


async def test_rows_held_when_the_process_died_are_indexed_at_the_next_start(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    out = subprocess.run([sys.executable, "-c", _WRITE_AND_DIE, str(db)], capture_output=True, text=True,
                         timeout=120, check=True)
    assert int(out.stdout.split()[0]) > 0, "the writer held no rows: the test would prove nothing"
    store = SQLiteStore(str(db), indexer=Indexer())
    await store.open()
    try:
        for i in (0, 17, 39):
            assert await store.find("Patient", _ident(f"id{i}"), 10) == [f"p{i}"]
        assert await store.count("Patient", [Clause("identifier", "token", (TokenValue("urn:test", None),))]) == 40
    finally:
        await store.close()


async def test_held_rows_are_inserted_when_the_store_closes(tmp_path: Path) -> None:
    db = str(tmp_path / "store.db")
    store = SQLiteStore(db, indexer=Indexer(), index_batch_rows=1_000_000)
    await store.open()
    p = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": "x"}]}
    await store.transact(lambda tx: tx.put("Patient", "a", p, "POST"))
    await store.close()
    again = SQLiteStore(db, indexer=Indexer())
    await again.open()
    try:
        assert again._recover_after is None  # nothing to index again: close inserted the rows
        assert await again.find("Patient", _ident("x"), 10) == ["a"]
    finally:
        await again.close()


async def _store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_rows: int) -> AsyncIterator[SQLiteStore]:
    monkeypatch.setattr(store_module, "_IDLE_SECONDS", 3600)  # no idle insert
    store = SQLiteStore(str(tmp_path / "store.db"), indexer=Indexer(), index_batch_rows=batch_rows)
    await store.open()
    yield store
    await store.close()


@pytest.fixture
async def holding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SQLiteStore]:
    """A store that holds every index row until a search needs it (no batch fills)."""
    async for store in _store(tmp_path, monkeypatch, 1_000_000):
        yield store


def _patient(value: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": value}]}


def _put(rid: str, value: str, tx: Tx) -> None:
    tx.put("Patient", rid, _patient(value), "POST")


async def test_conditional_matches_in_a_unit_come_from_held_rows_without_inserting_them(holding: SQLiteStore) -> None:
    store = holding
    for i in range(5):
        await store.transact(partial(_put, f"p{i}", f"id{i}"))
    held = store._held.count
    assert held > 0
    found = await store.transact(lambda tx: tx.find("Patient", _ident("id3"), 2))
    assert found == ["p3"] and store._held.count == held  # answered from the held rows
    found = await store.transact(lambda tx: tx.find("Patient", [Clause("family", "string", (StringValue("x"),))], 2))
    assert store._held.count == 0  # a string criterion: the rows were inserted first
    assert await store.find("Patient", _ident("id4"), 10) == ["p4"]


async def test_a_unit_that_inserted_held_rows_and_failed_gives_back_the_earlier_ones(holding: SQLiteStore) -> None:
    store = holding
    await store.transact(lambda tx: tx.put("Patient", "before", _patient("before"), "POST"))
    assert store._held.count > 0

    def insert_then_fail(tx: Tx) -> None:
        tx.put("Patient", "failed", _patient("failed"), "POST")
        tx.find("Patient", [Clause("family", "string", (StringValue("x"),))], 1)  # inserts what is held
        raise ValueError("boom")

    with pytest.raises(ValueError):
        await store.transact(insert_then_fail)
    assert store._held.count > 0  # "before" is held again, "failed" is gone
    assert await store.find("Patient", _ident("before"), 10) == ["before"]
    assert await store.find("Patient", _ident("failed"), 10) == []


def test_rows_a_unit_inserted_itself_are_not_kept_for_an_undo() -> None:
    held = store_module._IndexBuffer()
    held.put(1, "Patient", "earlier", table_rows("Patient", [("token", "p", "s", "a", None)]))
    held.begin_unit()
    for rk in range(2, 2002):
        held.put(rk, "Patient", f"p{rk}", table_rows("Patient", [("token", "p", "s", f"c{rk}", None)]))
    assert len(held.take()["token"]) == 2001  # one piece per resource
    for rk in range(3000, 5000):
        held.put(rk, "Patient", f"p{rk}", table_rows("Patient", [("token", "p", "s", f"c{rk}", None)]))
    held.take()
    kept = [step for step in held._undo if isinstance(step, dict)]
    assert [len(step) for step in kept] == [1, 0]  # only the row from before the unit
    held.undo(1)
    assert set(held.by_rk) == {1} and held.count == 1
    assert held.match_tokens("Patient", [Clause("p", "token", (TokenValue("s", "a"),))], None) == [(1, "earlier")]
    assert held.tokens == {(param_key("Patient", "p"), "a"): {1: {system_key("s")}}}


def _code(code: str, system: str = "s") -> list[Clause]:
    return [Clause("p", "token", (TokenValue(system, code),))]


def test_held_token_rows_are_read_for_matching_only_when_a_match_asks() -> None:
    held = store_module._IndexBuffer()
    held.put(1, "Patient", "one", table_rows("Patient", [("token", "p", "s", "a", None)]))
    held.put(2, "Patient", "two", table_rows("Patient", [("string", "name", "x", "X", None)]))
    assert held.tokens == {} and list(held.unmatched) == [1]  # no token rows: nothing to read
    assert held.match_tokens("Patient", _code("a"), None) == [(1, "one")]
    assert held.match_tokens("Patient", _code("a", "other"), None) == []
    assert held.unmatched == {}
    # replaced after it was read: the old code is gone from the match, the new one found
    held.put(1, "Patient", "one", table_rows("Patient", [("token", "p", "s", "b", None)]))
    assert held.match_tokens("Patient", _code("a"), None) == []
    assert held.match_tokens("Patient", _code("b"), None) == [(1, "one")]
    # replaced before it was read: never matched under its old code
    held.put(3, "Patient", "three", table_rows("Patient", [("token", "p", "s", "c", None)]))
    held.put(3, "Patient", "three", table_rows("Patient", [("token", "p", "s", "d", None)]))
    assert held.match_tokens("Patient", _code("c"), None) == []
    assert held.match_tokens("Patient", _code("d"), None) == [(3, "three")]
    # an undone write that replaced read rows: matched under its old code again
    mark = held.begin_unit()
    held.put(3, "Patient", "three", table_rows("Patient", [("token", "p", "s", "e", None)]))
    assert held.match_tokens("Patient", _code("e"), None) == [(3, "three")]
    held.undo(mark)
    held.end_unit()
    assert held.match_tokens("Patient", _code("e"), None) == []
    assert held.match_tokens("Patient", _code("d"), None) == [(3, "three")]
    assert held.take()["token"].keys() == {1, 3}
    assert held.tokens == {} and held.unmatched == {} and held.match_tokens("Patient", _code("d"), None) == []


async def test_reindexed_rows_are_inserted_at_once(holding: SQLiteStore) -> None:
    """A reindex writes no version, so a crash recovery would not redo held rows of it."""
    store = holding
    await store.transact(partial(_put, "r", "reindexed"))
    assert store._held.count > 0
    assert await store.transact(lambda tx: tx.reindex("Patient", "r")) is True
    assert store._held.count == 0
    assert await store.find("Patient", _ident("reindexed"), 10) == ["r"]


# --- a full buffer goes in one table per group ------------------------------------------------


@pytest.fixture
async def spilling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SQLiteStore]:
    """A store whose buffer is full after every write: each group spills or inserts a queued table."""
    async for store in _store(tmp_path, monkeypatch, 1):
        yield store


def _named(rid: str, family: str, value: str, tx: Tx) -> None:
    tx.put("Patient", rid, {**_patient(value), "name": [{"family": family}], "birthDate": "1980-02-03"}, "PUT")


def _family(text: str) -> list[Clause]:
    return [Clause("family", "string", (StringValue(text),))]


def _stored_watermark(store: SQLiteStore) -> int:
    assert store._reader is not None
    return int(store._reader.execute("SELECT value FROM store_meta WHERE key = 'indexed_seq'").fetchone()[0])


async def test_a_full_buffer_is_inserted_one_table_per_group_token_rows_first(spilling: SQLiteStore) -> None:
    store = spilling
    await store.transact(partial(_named, "a", "Old", "id-a"))
    queued = set(store._held.queued)
    assert queued >= {"string", "date"} and "token" not in queued  # the token rows went in at once
    assert store._held.batch_seq == 1 and _stored_watermark(store) == 0
    # a conditional match on tokens needs nothing more inserted
    assert await store.transact(lambda tx: tx.find("Patient", _ident("id-a"), 2)) == ["a"]
    assert len(store._held.queued) == len(queued) - 1  # that group inserted the next table
    while store._held.queued:
        await store.transact(lambda tx: None)
    assert _stored_watermark(store) == 1  # every row of version 1 is in the tables
    assert await store.find("Patient", _family("old"), 10) == ["a"]


async def test_a_write_to_a_queued_resource_takes_its_queued_rows_out(spilling: SQLiteStore) -> None:
    store = spilling
    await store.transact(partial(_named, "a", "Old", "id-a"))
    assert "string" in store._held.queued
    await store.transact(partial(_named, "a", "New", "id-a"))
    assert all(1 not in rows_of for rows_of in store._held.queued.values())
    assert await store.find("Patient", _family("old"), 10) == []
    assert await store.find("Patient", _family("new"), 10) == ["a"]
    assert await store.find("Patient", _ident("id-a"), 10) == ["a"]


async def test_a_unit_that_failed_gives_the_queued_rows_back(spilling: SQLiteStore) -> None:
    store = spilling
    await store.transact(partial(_named, "a", "Old", "id-a"))
    queued = {kind: dict(rows_of) for kind, rows_of in store._held.queued.items()}

    def rename_then_fail(tx: Tx) -> None:
        _named("a", "New", "id-a", tx)
        raise ValueError("boom")

    with pytest.raises(ValueError):
        await store.transact(rename_then_fail)
    # the failed unit's group then inserted the next table, as any group does
    assert all(store._held.queued[kind] == queued[kind] for kind in store._held.queued)
    assert await store.find("Patient", _family("old"), 10) == ["a"]
    assert await store.find("Patient", _family("new"), 10) == []


_SPILL_AND_DIE = _WRITE_AND_DIE.replace("index_batch_rows=1_000_000", "index_batch_rows=1").replace(
    '"identifier": [{"system": "urn:test", "value": f"id{i}"}]}',
    '"identifier": [{"system": "urn:test", "value": f"id{i}"}], "name": [{"family": f"fam{i}"}]}').replace(
    "held = store._held.count", "held = len(store._held.queued)")


async def test_rows_queued_when_the_process_died_are_indexed_at_the_next_start(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    assert _SPILL_AND_DIE != _WRITE_AND_DIE
    out = subprocess.run([sys.executable, "-c", _SPILL_AND_DIE, str(db)], capture_output=True, text=True,
                         timeout=120, check=True)
    assert int(out.stdout.split()[0]) > 0, "nothing was queued: the test would prove nothing"
    store = SQLiteStore(str(db), indexer=Indexer())
    await store.open()
    try:
        for i in (0, 17, 38, 39):
            assert await store.find("Patient", _family(f"fam{i}"), 10) == [f"p{i}"]
        assert await store.count("Patient", _family("fam")) == 40
    finally:
        await store.close()
