"""Reconciliation's CPU on the write path, in process, against a population of golden records.

    python bench/mpi_write.py [--population 1000 10000 100000] [--patients 1000] [--rounds 3]

No HTTP and no other resource types: the SQLite store the server uses (same indexer, group
commits of up to 64 units) on a temporary file, and per incoming Patient one unit of work that
writes it as ``rest/write.py``'s ``create`` does and then calls
:meth:`~fhir_hub.mpi.service.Reconciler.on_patient`, exactly the server's hook. What is measured
is CPU time, which the machine's other work disturbs much less than wall time:

* ``mpi_ms``: the writer thread's CPU inside ``on_patient`` per Patient (``time.thread_time``
  around the call; candidates, reads, golden/link/audit records and their index rows);
* ``unit_ms_on`` / ``unit_ms_off``: the whole process's CPU per Patient over the measured loop
  with reconciliation on and off (so the commit of the extra records counts too).

Before the measured Patients the store is filled with ``--population`` persons of
:class:`bench.mpi_population.Population`: a source Patient and its golden record (composed by
:func:`~fhir_hub.mpi.service.compose`, blocking keys as tags) each, in big units, without link
records or AuditEvents (matching never reads them). The incoming Patients are facility copies
(90 % of persons in the population, faults injected, :meth:`Population.incoming`), so most
auto-link to a golden record, as re-visits do. The best (least) of ``--rounds`` is kept.
Writes ``bench/results/mpi_write.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import RESULTS  # noqa: E402
from bench.mpi_population import Population  # noqa: E402
from bench.run import git_commit, log  # noqa: E402
from fhir_hub.mpi.service import Reconciler, compose  # noqa: E402
from fhir_hub.search.extract import Indexer  # noqa: E402
from fhir_hub.storage.port import Tx  # noqa: E402
from fhir_hub.storage.sqlite.store import SQLiteStore  # noqa: E402

#: Units submitted at once, so the writer groups them into commits as it does under load.
IN_FLIGHT = 64
#: Persons per unit while filling the population.
FILL_UNIT = 500


def open_store(path: Path) -> SQLiteStore:
    return SQLiteStore(str(path), synchronous="NORMAL", indexer=Indexer())


def _fill_unit(pop: Population, start: int, end: int) -> Callable[[Tx], None]:
    def run(tx: Tx) -> None:
        for i in range(start, end):
            body = pop.golden(pop.person(i))
            sid, gid = f"src{i}", f"gold{i}"
            body = {**body, "id": sid}
            tx.put("Patient", sid, body, "POST", fresh=True)
            tx.put("Patient", gid, compose(gid, [(sid, body)]), "POST", fresh=True)
    return run


async def fill(store: SQLiteStore, pop: Population, size: int) -> float:
    """``size`` persons as source + golden Patients; CPU seconds of the process it took."""
    cpu0 = time.process_time()
    for start in range(0, size, FILL_UNIT):
        await store.transact(_fill_unit(pop, start, min(size, start + FILL_UNIT)))
        if start and start % 20_000 == 0:
            log(f"  filled {start:,} persons")
    return time.process_time() - cpu0


class Timed:
    """``Reconciler.on_patient`` with the calling thread's CPU time added up."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self.cpu = 0.0
        self.calls = 0

    def __call__(self, tx: Tx, sid: str, resource: dict[str, Any]) -> None:
        t0 = time.thread_time()
        self.reconciler.on_patient(tx, sid, resource)
        self.cpu += time.thread_time() - t0
        self.calls += 1


def _write_unit(sid: str, resource: dict[str, Any], hook: Timed | None) -> Callable[[Tx], None]:
    def run(tx: Tx) -> None:
        tx.put("Patient", sid, resource, "POST", fresh=True)
        if hook is not None:
            hook(tx, sid, resource)
    return run


async def ingest(store: SQLiteStore, patients: list[dict[str, Any]], hook: Timed | None, tag: str) -> float:
    """Write ``patients`` one unit each, ``IN_FLIGHT`` at a time; process CPU seconds."""
    cpu0 = time.process_time()
    for start in range(0, len(patients), IN_FLIGHT):
        await asyncio.gather(*(store.transact(_write_unit(f"{tag}-{start + k}", p, hook))
                               for k, p in enumerate(patients[start:start + IN_FLIGHT])))
    return time.process_time() - cpu0


async def one_size(tmp: Path, size: int, n: int, rounds: int) -> dict[str, Any]:
    pop = Population(max(size, 1))
    incoming = [dict(p) for p, _truth, _faults in pop.incoming(n * rounds)]
    for p in incoming:
        p.pop("id", None)
    db = tmp / f"mpi-write-{size}.db"
    store = open_store(db)
    await store.open()
    try:
        fill_cpu = await fill(store, pop, size)
        log(f"population {size:,}: filled in {fill_cpu:.1f} CPU-s")
        on: list[float] = []
        off: list[float] = []
        mpi: list[float] = []
        for r in range(rounds):
            batch = incoming[r * n:(r + 1) * n]
            off.append(await ingest(store, batch, None, f"off{r}") / n)
            hook = Timed(Reconciler())
            on.append(await ingest(store, batch, hook, f"on{r}") / n)
            mpi.append(hook.cpu / max(hook.calls, 1))
            log(f"population {size:,} round {r + 1}: on_patient {1000 * mpi[-1]:.3f} ms, unit on "
                f"{1000 * on[-1]:.3f} ms, off {1000 * off[-1]:.3f} ms per Patient (CPU)")
    finally:
        await store.close()
    return {"population": size, "patients": n, "rounds": rounds, "fill_cpu_s": round(fill_cpu, 1),
            "mpi_ms": round(1000 * min(mpi), 3), "unit_ms_on": round(1000 * min(on), 3),
            "unit_ms_off": round(1000 * min(off), 3),
            "extra_ms": round(1000 * (min(on) - min(off)), 3),
            "all_mpi_ms": [round(1000 * x, 3) for x in mpi]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--population", type=int, nargs="+", default=[1000, 10_000, 100_000])
    p.add_argument("--patients", type=int, default=1000, help="incoming Patients per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS / "mpi_write.json")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="fhirhub-mpi-write-"))
    try:
        sizes = [asyncio.run(one_size(tmp, size, args.patients, args.rounds)) for size in args.population]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"commit": git_commit(), "cpus": os.cpu_count(), "sizes": sizes}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for s in sizes:
        print(f"population {s['population']:>9,}: on_patient {s['mpi_ms']:.3f} ms CPU per Patient; unit with it "
              f"{s['unit_ms_on']:.3f} ms, without {s['unit_ms_off']:.3f} ms (+{s['extra_ms']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
