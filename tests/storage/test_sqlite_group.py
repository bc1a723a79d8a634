"""Units of one commit group share a buffer of unsent rows: each unit must still see what the
units before it wrote, and a failing unit must take away its own rows only (sent or not)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from fhir_hub.search.extract import Indexer
from fhir_hub.search.query import Clause, StringValue, TokenValue
from fhir_hub.storage.port import HistoryQuery, Tx
from fhir_hub.storage.sqlite.store import SQLiteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(str(tmp_path / "store.db"), indexer=Indexer())
    await s.open()
    yield s
    await s.close()


def _patient(value: str, family: str = "Nguyen") -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": value}],
            "name": [{"family": family}]}


def _ident(value: str) -> list[Clause]:
    return [Clause("identifier", "token", (TokenValue("urn:test", value),))]


async def _one_group(store: SQLiteStore, units: list[Callable[[Tx], Any]]) -> list[Any]:
    """Run ``units`` in one group: the first waits on the writer until the rest are queued."""
    gate = threading.Event()

    def first(tx: Tx) -> None:
        gate.wait(10)

    blocker = asyncio.ensure_future(store.transact(first))
    await asyncio.sleep(0.05)  # the writer is inside ``first``
    futures = [asyncio.ensure_future(store.transact(u)) for u in units]
    await asyncio.sleep(0.05)
    gate.set()
    await blocker
    return await asyncio.gather(*futures, return_exceptions=True)


async def test_units_see_the_writes_of_earlier_units_of_their_group(store: SQLiteStore) -> None:
    await store.transact(lambda tx: tx.put("Patient", "old", _patient("o1"), "POST"))
    assert await store.find("Patient", _ident("o1"), 5) == ["old"]  # its rows are in the tables now

    def create(tx: Tx) -> int:
        return tx.put("Patient", "a", _patient("a1"), "POST").vid

    def update(tx: Tx) -> tuple[int, int]:
        seen = tx.current("Patient", "a")
        assert seen is not None and seen.vid == 1
        return (tx.put("Patient", "a", _patient("a2", "Tran"), "PUT").vid,
                tx.put("Patient", "old", _patient("o2"), "PUT").vid)

    def search(tx: Tx) -> list[list[str]]:
        return [tx.find("Patient", _ident(v), 5) for v in ("a1", "a2", "o1", "o2")] + [
            tx.find("Patient", [Clause("family", "string", (StringValue("tran"),))], 5)]

    created, updated, found = await _one_group(store, [create, update, search])
    assert (created, updated) == (1, (2, 2))
    # the old identifiers' rows went with the versions they belonged to, held or in the tables
    assert found == [[], ["a"], [], ["old"], ["a"]]
    assert [v.vid for v in await store.history(HistoryQuery(rtype="Patient", rid="a"))] == [2, 1]


async def test_a_failing_unit_takes_away_only_its_own_rows(store: SQLiteStore) -> None:
    def keep(name: str) -> Callable[[Tx], None]:
        return lambda tx: None if tx.put("Patient", name, _patient(name), "POST") else None

    def fail_after_sending(tx: Tx) -> None:
        tx.put("Patient", "sent", _patient("sent"), "POST")
        assert tx.current("Patient", "sent") is not None  # its row had to reach the table
        tx.put("Patient", "unsent", _patient("unsent"), "POST")
        raise ValueError("boom")

    def fail_unsent(tx: Tx) -> None:
        tx.put("Patient", "never", _patient("never"), "POST")
        raise ValueError("boom")

    results = await _one_group(store, [keep("k1"), fail_after_sending, keep("k2"), fail_unsent, keep("k3")])
    assert [type(r).__name__ for r in results] == ["NoneType", "ValueError", "NoneType", "ValueError", "NoneType"]
    for rid in ("k1", "k2", "k3"):
        assert (await store.read("Patient", rid)) is not None
        assert await store.find("Patient", _ident(rid), 5) == [rid]
    for rid in ("sent", "unsent", "never"):
        assert await store.read("Patient", rid) is None
        assert await store.find("Patient", _ident(rid), 5) == []
    # sequence numbers of the failed units are given again: the next write must not collide
    await store.transact(lambda tx: tx.put("Patient", "after", _patient("after"), "POST"))
    assert await store.find("Patient", _ident("after"), 5) == ["after"]


async def test_a_search_answered_by_held_rows_drops_what_the_group_changed(store: SQLiteStore) -> None:
    """The tables still hold the old rows of resources an earlier unit updated or deleted (their
    deletes wait for the group's commit): a search the held rows answer must not return them."""
    for rid in ("x", "y", "gone", "kept"):
        await store.transact(lambda tx, rid=rid: tx.put("Patient", rid, _patient("shared" if rid in "xy" else rid),
                                                        "POST"))
    assert await store.find("Patient", _ident("shared"), 5) == ["x", "y"]  # in the tables now

    def change(tx: Tx) -> None:
        tx.put("Patient", "x", _patient("moved"), "PUT")
        tx.delete("Patient", "gone")
        tx.put("Patient", "new", _patient("fresh"), "POST")  # held: the next unit's searches use the held rows

    def search(tx: Tx) -> list[list[str]]:
        return [tx.find("Patient", _ident("shared"), 1), tx.find("Patient", _ident("shared"), 5),
                tx.find("Patient", _ident("moved"), 5), tx.find("Patient", _ident("gone"), 5),
                tx.find("Patient", _ident("kept"), 5), tx.find("Patient", _ident("fresh"), 5)]

    _changed, found = await _one_group(store, [change, search])
    assert found == [["y"], ["y"], ["x"], [], ["kept"], ["new"]]
    assert await store.find("Patient", _ident("shared"), 5) == ["y"]
