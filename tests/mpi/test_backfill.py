"""``reconcile_store`` over a real SQLite store: Patients written below the write path (as
``fhir-hub import --db`` restores them) are matched page by page, once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from fhir_hub.mpi.backfill import reconcile_store
from fhir_hub.mpi.service import GOLDEN_TAG, current_golden, link_id
from fhir_hub.search.extract import Indexer
from fhir_hub.search.query import Clause, TokenValue
from fhir_hub.storage.port import Tx
from fhir_hub.storage.sqlite.store import SQLiteStore
from tests.mpi.conftest import patient

GIVEN = [("Hùng", "Hung"), ("Dũng", "Dung"), ("Tuấn", "Tuan"), ("Minh", "Minh"), ("Quân", "Quan"),
         ("Khải", "Khai"), ("Phong", "Phong")]
GOLDEN = [Clause("_tag", "token", (TokenValue(GOLDEN_TAG["system"], GOLDEN_TAG["code"]),))]


def copies(n: int) -> list[tuple[str, dict[str, Any]]]:
    """Two sites' copies of ``n`` persons (same personal ID, site B without diacritics)."""
    out = []
    for i, (given, plain) in enumerate(GIVEN[:n]):
        nid = f"0010{85:02d}{i:03d}{i:03d}"
        out.append((f"a-{i:02d}", patient(name=f"Nguyễn Văn {given}", cccd=nid, card=None, phone=f"09{i:08d}")))
        out.append((f"b-{i:02d}", patient(name=f"Nguyen Van {plain}", cccd=nid, card=None, phone=None)))
    return out


def test_every_unlinked_source_is_matched_across_pages_and_only_once(tmp_path: Path) -> None:
    async def run() -> None:
        store = SQLiteStore(str(tmp_path / "hub.db"), indexer=Indexer())
        await store.open()
        try:
            written = copies(7)

            def write(tx: Tx) -> None:
                for rid, body in written:
                    tx.put("Patient", rid, body, "PUT")
            await store.transact(write)
            first = await reconcile_store(store, batch=4)  # 14 sources: four pages, goldens made between them
            assert first == {"matched": 14}
            assert await store.count("Patient", GOLDEN) == 7

            def check(tx: Tx) -> None:
                for i in range(7):
                    golden = current_golden(tx, f"a-{i:02d}")
                    assert golden is not None and golden == current_golden(tx, f"b-{i:02d}")
                    stored = tx.current("Patient", golden)
                    assert stored is not None and stored.body is not None
                    body = orjson.loads(stored.body)
                    assert sorted(ln["other"]["reference"] for ln in body["link"]) == [
                        f"Patient/a-{i:02d}", f"Patient/b-{i:02d}"]
                    assert tx.current("Basic", link_id(f"a-{i:02d}")) is not None
            await store.transact(check)
            again = await reconcile_store(store, batch=4)
            assert again == {"already linked": 14}
            assert await store.count("Patient", GOLDEN) == 7
        finally:
            await store.close()

    asyncio.run(run())
