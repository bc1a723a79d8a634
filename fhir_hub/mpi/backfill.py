"""Reconciling Patients that reached the store without going through the write path.

``fhir-hub import --db`` (``cli/move.py``) restores versions as they were, below the REST layer,
so a Patient restored from another server's bulk export has no link record and no golden record;
so has every Patient of a store written before ``FHIR_HUB_MPI`` was switched on. This pass
finds the source Patients without a link record, in id order, and runs each through the same
:class:`~fhir_hub.mpi.service.Reconciler` as a REST create, a batch of them per unit of work.

Restored link and golden records (an export of a store with reconciliation on) are left as
they are: only a source without a link record is matched, so running the pass twice, or over a
store already reconciled, changes nothing.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson

from fhir_hub.mpi.service import GOLDEN_TAG, Reconciler, is_golden, link_id
from fhir_hub.search.query import Clause, TokenValue
from fhir_hub.storage.port import Store, Tx

#: Sources matched per unit of work: each one is a few reads and writes on the writer.
BATCH = 200
_NOT_GOLDEN = Clause("_tag", "token", (TokenValue(GOLDEN_TAG["system"], GOLDEN_TAG["code"]),), modifier="not")


def _unit(reconciler: Reconciler, ids: list[str]) -> Any:
    def run(tx: Tx) -> Counter[str]:
        tally: Counter[str] = Counter()
        for sid in ids:
            v = tx.current("Patient", sid)
            if v is None or v.body is None:
                continue
            if tx.current("Basic", link_id(sid)) is not None:
                tally["already linked"] += 1
                continue
            body: dict[str, Any] = orjson.loads(v.body)
            if is_golden(body):
                continue
            reconciler.on_patient(tx, sid, body)
            tally["matched"] += 1
        return tally
    return run


async def reconcile_store(store: Store, reconciler: Reconciler | None = None, batch: int = BATCH) -> Counter[str]:
    """Match every source Patient of ``store`` that has no link record; counts of what was done."""
    reconciler = reconciler or Reconciler()
    tally: Counter[str] = Counter()
    after: str | None = None
    while True:
        ids = await store.find("Patient", [_NOT_GOLDEN], batch, after=after)
        if not ids:
            return tally
        tally.update(await store.transact(_unit(reconciler, ids)))
        after = ids[-1]
