"""Reconciliation's CPU on the write path, in process, against a population of golden records.

    python bench/mpi_write.py [--population 1000 10000 100000] [--patients 1000] [--rounds 3]

No HTTP and no other resource types: the SQLite store the server uses (same indexer, group
commits of up to 64 units) on a temporary file, and per incoming Patient one unit of work that
writes it as ``rest/write.py``'s ``create`` does and then calls
:meth:`~fhir_hub.mpi.service.Reconciler.on_patient`, exactly the server's hook. What is measured
is CPU time, which the machine's other work disturbs much less than wall time:

* ``mpi_ms``: the writer thread's CPU inside ``on_patient`` per Patient (``time.thread_time``
  around the call; candidates, reads, golden/link/audit records and their index rows);
  ``mpi_own_ms`` the same without the store's inserts of held index rows that a read inside
  ``on_patient`` happened to trigger (:class:`HeldInserts`: every unit's rows since the last
  insert, reconciliation's ~70 rows per Patient among them, whose cost grows with the index
  B-trees and which land in whichever unit reads first once the buffer is full);
* ``work_per_patient``: what ``on_patient`` asked of the store per Patient (``current``,
  ``find``, ``put`` calls), how many candidates it scored and how many stored bodies it had to
  extract features from: machine-independent, so the growth with the population shows even
  when the CPU figures are noisy (3.8-4.0 candidates scored per Patient at 100,000 persons
  against 0.9 at 1,000, before ``rules.prune``);
* ``unit_ms_on`` / ``unit_ms_off``: the whole process's CPU per Patient over the measured loop
  with reconciliation on and off (so the commit of the extra records counts too).

Before the measured Patients the store is filled with ``--population`` persons of
:class:`bench.mpi_population.Population`: a source Patient and its golden record (composed by
:func:`~fhir_hub.mpi.service.compose`, blocking keys as tags) each, in big units, without link
records or AuditEvents (matching never reads them). The incoming Patients are facility copies
(90 % of persons in the population, faults injected, :meth:`Population.incoming`), so most
auto-link to a golden record, as re-visits do. The best (least) of ``--rounds`` is kept. The
set-up's objects are frozen out of the garbage collector (:func:`_freeze_setup`), as a server
would not hold them.
Writes ``bench/results/mpi_write.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import gc
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
from fhir_hub.mpi import rules  # noqa: E402
from fhir_hub.mpi.service import Reconciler, _stored_features, compose  # noqa: E402
from fhir_hub.rest.write import new_id  # noqa: E402
from fhir_hub.search.extract import Indexer  # noqa: E402
from fhir_hub.storage.port import Tx  # noqa: E402
from fhir_hub.storage.sqlite import store as sqlite_store  # noqa: E402
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
            sid, gid = _source_id(i), f"gold{i}"
            body = {**body, "id": sid}
            tx.put("Patient", sid, body, "POST", fresh=True)
            tx.put("Patient", gid, compose(gid, [(sid, body)]), "POST", fresh=True)
    return run


def _source_id(i: int) -> str:
    """Population source ``i``'s id: shaped as the server's time-ordered ids (``rest.write.
    new_id``) at time zero, so that it sorts before the ids of the Patients measured, as a record
    written earlier does on the server (which decides whether an automatic link can derive the
    golden record from the stored one, ``service._compose_added``)."""
    return f"00000000-0000-7000-8000-{i:012d}"


async def fill(store: SQLiteStore, pop: Population, size: int) -> float:
    """``size`` persons as source + golden Patients; CPU seconds of the process it took."""
    cpu0 = time.process_time()
    for start in range(0, size, FILL_UNIT):
        await store.transact(_fill_unit(pop, start, min(size, start + FILL_UNIT)))
        if start and start % 20_000 == 0:
            log(f"  filled {start:,} persons")
    return time.process_time() - cpu0


class HeldInserts:
    """The writer thread's CPU inside the SQLite store's insert of held index rows
    (``_Tx.write_held``) while :class:`Timed` runs ``on_patient``: that batch holds every unit's
    rows since the last one (the store inserts them when a read needs the tables and the buffer
    is over its cap), so it is the store's cost, reported apart from reconciliation's own."""

    def __init__(self) -> None:
        self.inside = False
        self.cpu = 0.0
        self.calls = 0
        self._real = sqlite_store._Tx.write_held

    def __enter__(self) -> HeldInserts:
        counter, real = self, self._real

        def write_held(tx: Any) -> None:
            if not counter.inside:
                real(tx)
                return
            t0 = time.thread_time()
            real(tx)
            counter.cpu += time.thread_time() - t0
            counter.calls += 1
        sqlite_store._Tx.write_held = write_held  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        sqlite_store._Tx.write_held = self._real  # type: ignore[method-assign]


class CountingTx:
    """The unit's :class:`~fhir_hub.storage.port.Tx` with the calls ``on_patient`` makes counted:
    work that does not depend on the machine's load, so that whether the match cost is flat with
    the population can be seen apart from noisy CPU figures."""

    _COUNTED = frozenset({"current", "vread", "put", "delete", "find"})

    def __init__(self, tx: Tx, counts: collections.Counter[str]) -> None:
        self._tx = tx
        self._counts = counts
        self.ts = tx.ts

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._tx, name)
        if name not in self._COUNTED:
            return attr
        counts = self._counts

        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return attr(*args, **kwargs)
        self.__dict__[name] = counted  # the next call of it in this unit skips __getattr__
        return counted


class Timed:
    """``Reconciler.on_patient`` with the calling thread's CPU time added up, its store calls and
    scored candidates counted, and optionally profiled (``cProfile`` enabled around the call
    only, on the writer thread that makes it)."""

    def __init__(self, reconciler: Reconciler, profile: cProfile.Profile | None = None,
                 held: HeldInserts | None = None) -> None:
        self.reconciler = reconciler
        self.held = held
        self.cpu = 0.0
        self.calls = 0
        self.profile = profile
        self.counts: collections.Counter[str] = collections.Counter()

    def __call__(self, tx: Tx, sid: str, resource: dict[str, Any]) -> None:
        if self.profile is not None:
            self.profile.enable()
        if self.held is not None:
            self.held.inside = True
        misses = _stored_features.cache_info().misses
        t0 = time.thread_time()
        self.reconciler.on_patient(CountingTx(tx, self.counts), sid, resource)  # type: ignore[arg-type]
        self.cpu += time.thread_time() - t0
        self.counts["extracted"] += _stored_features.cache_info().misses - misses
        if self.held is not None:
            self.held.inside = False
        if self.profile is not None:
            self.profile.disable()
        self.calls += 1


def count_decisions(counts: collections.Counter[str]) -> Callable[[], None]:
    """Count :func:`fhir_hub.mpi.rules.decide` calls (candidates scored) into ``counts``; returns
    the undo."""
    real = rules.decide

    def decide(*args: Any, **kwargs: Any) -> Any:
        counts["scored"] += 1
        return real(*args, **kwargs)
    rules.decide = decide  # type: ignore[assignment]

    def undo() -> None:
        rules.decide = real  # type: ignore[assignment]
    return undo


def _write_unit(sid: str, resource: dict[str, Any], hook: Timed | None) -> Callable[[Tx], None]:
    def run(tx: Tx) -> None:
        tx.put("Patient", sid, resource, "POST", fresh=True)
        if hook is not None:
            hook(tx, sid, resource)
    return run


async def ingest(store: SQLiteStore, patients: list[dict[str, Any]], hook: Timed | None) -> float:
    """Write ``patients`` one unit each under server-assigned ids, ``IN_FLIGHT`` at a time;
    process CPU seconds, with the insert of the index rows the store still holds at the end (so
    each loop pays for its own rows, not the next loop for the rows of this one)."""
    await store.transact(_insert_held)
    cpu0 = time.process_time()
    for start in range(0, len(patients), IN_FLIGHT):
        await asyncio.gather(*(store.transact(_write_unit(new_id(), p, hook))
                               for k, p in enumerate(patients[start:start + IN_FLIGHT])))
    await store.transact(_insert_held)
    return time.process_time() - cpu0


def _insert_held(tx: Any) -> None:
    tx.write_held()


async def filled(tmp: Path, pop: Population, size: int, keep: Path | None) -> tuple[Path, float]:
    """A database file holding ``size`` persons, and the CPU seconds its fill took (0 when a
    copy of the one kept in ``keep`` from an earlier run is used: filling 100,000 persons takes
    minutes, and every run measures on the same population then)."""
    db = tmp / f"mpi-write-{size}.db"
    kept = None if keep is None else keep / f"mpi-write-{size}-seed{pop.seed}-ids2.db"
    if kept is not None and kept.exists():
        _copy_db(kept, db)
        return db, 0.0
    store = open_store(db)
    await store.open()
    try:
        cpu = await fill(store, pop, size)
    finally:
        await store.close()
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        _copy_db(db, kept)
    return db, cpu


def _copy_db(src: Path, dst: Path) -> None:
    """A closed SQLite file with its write-ahead log, if one was left."""
    for suffix in ("", "-wal"):
        part = src.with_name(src.name + suffix)
        target = dst.with_name(dst.name + suffix)
        target.unlink(missing_ok=True)
        if part.exists():
            shutil.copyfile(part, target)


async def one_size(tmp: Path, size: int, n: int, rounds: int, profile: Path | None = None,
                   keep: Path | None = None) -> dict[str, Any]:
    pop = Population(max(size, 1))
    incoming = [dict(p) for p, _truth, _faults in pop.incoming(n * rounds)]
    for p in incoming:
        p.pop("id", None)
    db, fill_cpu = await filled(tmp, pop, size, keep)
    store = open_store(db)
    await store.open()
    frozen = _freeze_setup()
    try:
        log(f"population {size:,}: filled in {fill_cpu:.1f} CPU-s ({frozen:,} objects of the set-up frozen)")
        on: list[float] = []
        off: list[float] = []
        mpi: list[float] = []
        own: list[float] = []
        work: list[dict[str, float]] = []
        held_calls: list[int] = []
        for r in range(rounds):
            batch = incoming[r * n:(r + 1) * n]
            off.append(await ingest(store, batch, None) / n)
            prof = cProfile.Profile() if profile is not None and r == rounds - 1 else None
            with HeldInserts() as held:
                hook = Timed(Reconciler(), prof, held)
                undo = count_decisions(hook.counts)
                try:
                    on.append(await ingest(store, batch, hook) / n)
                finally:
                    undo()
            work.append({k: round(v / max(hook.calls, 1), 2) for k, v in sorted(hook.counts.items())})
            if prof is not None and profile is not None:
                profile.mkdir(parents=True, exist_ok=True)
                prof.dump_stats(str(profile / f"mpi-write-{size}.prof"))
            mpi.append(hook.cpu / max(hook.calls, 1))
            own.append((hook.cpu - held.cpu) / max(hook.calls, 1))
            held_calls.append(held.calls)
            log(f"population {size:,} round {r + 1}: on_patient {1000 * mpi[-1]:.3f} ms ({1000 * own[-1]:.3f} "
                f"without {held_calls[-1]} held-row inserts; per Patient {work[-1]}), unit on "
                f"{1000 * on[-1]:.3f} ms, off {1000 * off[-1]:.3f} ms per Patient (CPU)")
    finally:
        await store.close()
        gc.unfreeze()
    return {"population": size, "patients": n, "rounds": rounds, "fill_cpu_s": round(fill_cpu, 1),
            "mpi_ms": round(1000 * min(mpi), 3), "mpi_own_ms": round(1000 * min(own), 3),
            "all_mpi_own_ms": [round(1000 * x, 3) for x in own], "held_inserts": held_calls,
            "work_per_patient": work, "unit_ms_on": round(1000 * min(on), 3),
            "unit_ms_off": round(1000 * min(off), 3),
            "extra_ms": round(1000 * (min(on) - min(off)), 3),
            "all_mpi_ms": [round(1000 * x, 3) for x in mpi]}


def _freeze_setup() -> int:
    """Move every object alive now (the population's generator, the incoming Patients, their
    copies) out of the collector's reach, and return how many: a server holds none of them, and
    at 10,000 persons they made each full collection walk ~280,000 objects inside ``on_patient``
    (a quarter of its CPU). Undone by :func:`gc.unfreeze` at the end of the size."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--population", type=int, nargs="+", default=[1000, 10_000, 100_000])
    p.add_argument("--patients", type=int, default=1000, help="incoming Patients per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS / "mpi_write.json")
    p.add_argument("--keep", type=Path, default=None, metavar="DIR",
                   help="keep each filled population's database in DIR and start from a copy of it next time")
    p.add_argument("--profile", type=Path, default=None, metavar="DIR",
                   help="cProfile on_patient in the last round into DIR/mpi-write-<size>.prof (its CPU "
                        "figure then includes the profiler's overhead)")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="fhirhub-mpi-write-"))
    try:
        sizes = [asyncio.run(one_size(tmp, size, args.patients, args.rounds, args.profile, args.keep)) for size in args.population]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"commit": git_commit(), "cpus": os.cpu_count(), "sizes": sizes}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for s in sizes:
        print(f"population {s['population']:>9,}: on_patient {s['mpi_ms']:.3f} ms CPU per Patient "
              f"({s['mpi_own_ms']:.3f} without the held-row inserts it triggered); unit with it "
              f"{s['unit_ms_on']:.3f} ms, without {s['unit_ms_off']:.3f} ms (+{s['extra_ms']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
