"""The golden record an automatic link writes is the one :func:`compose` makes of all its sources.

On an automatic link the write path takes the other sources' blocking keys from the stored golden
record's key tags instead of extracting every source again; these tests check, on a real SQLite
store with the server's indexer, that the record stays exactly the pure function of its sources
(so an undo still restores it), and that the link record of a first-time source is written."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from fhir_hub.mpi import blocking
from fhir_hub.mpi.features import extract
from fhir_hub.mpi.service import KEY_SYSTEM, Golden, Reconciler, compose, current_golden, link_id
from fhir_hub.search.extract import Indexer
from fhir_hub.storage.port import Tx
from fhir_hub.storage.sqlite.store import SQLiteStore
from tests.mpi.conftest import address, patient


def _without_version(body: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in body["meta"].items() if k not in ("versionId", "lastUpdated")}
    return {**body, "meta": meta}


def _copies() -> list[tuple[str, dict[str, Any]]]:
    """Three facilities' copies of one person (same personal ID) with different phones and
    communes, so that each brings blocking keys the others do not have."""
    return [("gc-a", patient(phone="0912345678", addr=address("01", "00004"))),
            ("gc-b", patient(phone="0987654321", addr=address("79", "26734"))),
            ("gc-c", patient(name="Nguyen Van Hung", phone=None, card=None))]


def _unit(sid: str, body: dict[str, Any]) -> Any:
    """One unit as ``rest/write.py``'s create makes it: the source, then reconciliation."""
    def unit(tx: Tx) -> None:
        written = dict(body)
        tx.put("Patient", sid, written, "POST", fresh=True)
        Reconciler().on_patient(tx, sid, written)
    return unit


async def _write_then(store: SQLiteStore, check: Any) -> Any:
    await store.open()
    try:
        for sid, body in _copies():
            await store.transact(_unit(sid, body))
        return await store.transact(check)
    finally:
        await store.close()


def test_auto_linked_golden_is_compose_of_all_its_sources(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "gc.db"), synchronous="NORMAL", indexer=Indexer())

    def check(tx: Tx) -> tuple[dict[str, Any], dict[str, Any], list[str], bool]:
        gid = current_golden(tx, "gc-a")
        assert gid is not None and current_golden(tx, "gc-b") == gid and current_golden(tx, "gc-c") == gid
        stored = tx.current("Patient", gid)
        assert stored is not None and stored.body is not None
        golden = orjson.loads(stored.body)
        sources = []
        for sid in Golden.of(gid, golden).sources:
            v = tx.current("Patient", sid)
            assert v is not None and v.body is not None
            sources.append((sid, orjson.loads(v.body)))
        expected = compose(gid, sources)
        keys = sorted({k for _sid, b in sources for k in blocking.keys(extract(b))})
        link = tx.current("Basic", link_id("gc-c"))
        return golden, expected, keys, link is not None and link.vid == 1

    golden, expected, keys, first_link = asyncio.run(_write_then(store, check))
    assert sorted(s for s, _ in _copies()) == sorted(Golden.of(golden["id"], golden).sources)
    assert _without_version(golden) == expected
    tags = sorted(t["code"] for t in golden["meta"]["tag"] if t["system"] == KEY_SYSTEM)
    assert tags == keys
    assert any(k.startswith("ph:0987654321") for k in tags) and any(k.startswith("ph:0912345678") for k in tags)
    assert first_link  # a source's first link record is version 1, written without a look-up
