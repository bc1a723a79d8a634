"""Transaction ingest with patient reconciliation off and on, on the demo bundles.

    python bench/mpi_ingest.py [--patients 200] [--clients 4] [--rounds 2]

Each round starts fhir-hub on a fresh SQLite file, once with ``FHIR_HUB_MPI=off`` and once with
``on`` (the order alternates between rounds), posts 20 warm-up bundles, then the same generated
outpatient bundles with ``bench/run.py``'s :func:`ingest` (``--clients`` at a time; the wall time
ends when the last bundle is findable). With reconciliation on, every Patient entry is matched
inside its transaction and gets a golden record and a link record. Prints resources/s of each run,
the best of each mode and the ratio on/off, and writes ``bench/results/mpi_ingest.json``.

Besides wall time, each run records the server's own CPU time over the measured ingest
(``utime + stime`` of the process from ``/proc``), which the machine's other work disturbs much
less than wall time, and the same per thread (the writer, the event loop, the parse workers'
manager threads, the parse worker processes together). ``--profile`` runs ``py-spy`` on the server during each measured ingest and
reports the share of samples inside reconciliation (``Reconciler.on_patient``), so the MPI's
cost per Patient is ``share × sampled CPU / Patients``. ``--gc`` adds, per thread, the CPU the
server spent in garbage collections over the measured ingest, by generation (a
``sitecustomize`` on the server's path registers a ``gc.callbacks`` hook): collections run in
whichever thread allocates, so their cost shows up in threads that have nothing to do with what
made the heap large (reconciliation once made the thread that unpickles the parser processes'
answers spend +1.4 ms per Patient, all of it in full collections walking the terminology
catalogue it had loaded).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench import data  # noqa: E402
from bench.harness import PY_SPY, RESULTS, PySpy, child_env, fhir_hub_proc, free_port, summarize_speedscope  # noqa: E402
from bench.run import git_commit, ingest, log  # noqa: E402

#: The frame whose inclusive share is reconciliation's cost on the write path.
MPI_FRAME = "Reconciler.on_patient"


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process and its live children (the bundle parse workers)
    have used so far, all threads."""
    total = 0
    for p in (pid, *_children(pid)):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def thread_names(pid: int) -> dict[int, str]:
    """The server's Python thread names by OS thread id (Python 3.11 does not name OS threads),
    from one ``py-spy dump`` (a pause of a few milliseconds); empty when py-spy is not there."""
    try:
        out = subprocess.run([PY_SPY, "dump", "--pid", str(pid), "--json"], capture_output=True, timeout=30,
                             check=False).stdout
        return {int(t["os_thread_id"]): str(t.get("thread_name") or t["os_thread_id"])
                for t in orjson.loads(out or b"[]") if t.get("os_thread_id")}
    except (OSError, subprocess.SubprocessError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return {}


def thread_cpu_s(pid: int, names: dict[int, str]) -> dict[str, float]:
    """CPU seconds so far of each of the server's threads by Python name (``fhir-hub-writer``,
    ``MainThread`` the event loop, ``other`` the threads ``names`` does not know), its live
    children summed as ``children``: where reconciliation's extra CPU goes, without a sampler's
    wall-clock bias on a loaded machine (py-spy counts a runnable thread waiting for a core)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = names.get(int(task.name), "other")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    children = 0.0
    for child in _children(pid):
        try:
            fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children += (int(fields[11]) + int(fields[12])) / tick
    out["children"] = children
    return out


def _spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per-thread CPU between two :func:`thread_cpu_s` readings (a child that exited is lost)."""
    return {k: round(v - before.get(k, 0.0), 3) for k, v in sorted(after.items()) if v - before.get(k, 0.0) > 0}


#: The server's ``sitecustomize`` with ``--gc``: per thread, CPU seconds in collections of each
#: generation and their count, written to ``$FHIR_HUB_BENCH_GC/<pid>.json`` after every collection
#: of generation 1 or 2 (and read before and after the measured ingest).
_GC_HOOK = """
import gc, json, os, threading, time
_out = os.path.join(os.environ["FHIR_HUB_BENCH_GC"], f"{os.getpid()}.json")
_stats, _start = {}, {}
def _hook(phase, info):
    name = threading.current_thread().name
    if phase == "start":
        _start[name] = time.thread_time()
        return
    gen = info["generation"]
    row = _stats.setdefault(name, {"cpu_s": [0.0, 0.0, 0.0], "count": [0, 0, 0]})
    row["cpu_s"][gen] += time.thread_time() - _start.get(name, time.thread_time())
    row["count"][gen] += 1
    if gen:
        with open(_out + ".tmp", "w") as f:
            json.dump(_stats, f)
        os.replace(_out + ".tmp", _out)
gc.callbacks.append(_hook)
"""


def _gc_read(folder: Path, pid: int) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = orjson.loads((folder / f"{pid}.json").read_bytes())
        return loaded
    except (OSError, orjson.JSONDecodeError):
        return {}


def _gc_spent(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Per thread, GC CPU seconds and counts by generation between two readings."""
    out: dict[str, Any] = {}
    for name, row in sorted(after.items()):
        was = before.get(name, {"cpu_s": [0.0] * 3, "count": [0] * 3})
        cpu = [round(a - b, 3) for a, b in zip(row["cpu_s"], was["cpu_s"], strict=True)]
        count = [a - b for a, b in zip(row["count"], was["count"], strict=True)]
        if any(count):
            out[name] = {"cpu_s": cpu, "count": count, "total_s": round(sum(cpu), 3)}
    return out


def mpi_share(profile: Path) -> dict[str, Any]:
    """Share of a py-spy profile's samples with reconciliation on the stack, and its top frames."""
    summary = summarize_speedscope(profile, top=40)
    share = sum(f["pct"] for f in summary["inclusive"] if f["frame"].startswith(MPI_FRAME + " "))
    return {"samples": summary["samples"], "sampled_s": summary.get("sampled_s"), "mpi_pct": share,
            "inclusive": summary["inclusive"][:25], "self": summary["self"][:15]}


def one_run(tmp: Path, mode: str, bundles: list[dict[str, Any]], bodies: list[bytes],
            warm: list[dict[str, Any]], clients: int, profile: Path | None = None,
            gc_dir: Path | None = None) -> dict[str, Any]:
    db = tmp / f"hub-{mode}.db"
    for leftover in tmp.glob(f"hub-{mode}.db*"):
        leftover.unlink()
    proc = fhir_hub_proc(free_port(), db, tmp / f"fhir-hub-{mode}.log")
    proc.env = child_env(FHIR_HUB_MPI=mode)
    if gc_dir is not None:
        proc.env["PYTHONPATH"] += os.pathsep + str(gc_dir)
        proc.env["FHIR_HUB_BENCH_GC"] = str(gc_dir)
    proc.start()
    try:
        ingest(proc, warm, [orjson.dumps(b) for b in warm], clients)
        spy = PySpy(proc.pid, profile) if profile is not None else None
        if spy is not None:
            spy.__enter__()
        try:
            names = thread_names(proc.pid)
            gc0 = _gc_read(gc_dir, proc.pid) if gc_dir is not None else {}
            cpu0, threads0 = cpu_s(proc.pid), thread_cpu_s(proc.pid, names)
            out = ingest(proc, bundles, bodies, clients)
            cpu, threads = cpu_s(proc.pid) - cpu0, _spent(threads0, thread_cpu_s(proc.pid, names))
            gc_spent = _gc_spent(gc0, _gc_read(gc_dir, proc.pid)) if gc_dir is not None else None
        finally:
            if spy is not None:
                spy.__exit__(None, None, None)
    finally:
        proc.stop()
    out.pop("_patients", None)
    result = {k: out[k] for k in ("resources", "resources_ok", "seconds", "resources_per_s", "statuses", "errors",
                                  "steal_pct")}
    result["server_cpu_s"] = round(cpu, 3)
    result["thread_cpu_s"] = threads
    result["resources_per_cpu_s"] = round(out["resources_ok"] / cpu, 1) if cpu else 0.0
    if gc_spent is not None:
        result["gc"] = gc_spent
    if spy is not None:
        result["profile"] = mpi_share(profile) if spy.error is None and profile is not None else {"error": spy.error}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--patients", type=int, default=200)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS / "mpi_ingest.json")
    p.add_argument("--profile", type=Path, default=None, metavar="DIR",
                   help="py-spy on the server into DIR; share of reconciliation")
    p.add_argument("--gc", action="store_true", help="record the server's garbage-collection CPU per thread")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="fhirhub-mpi-ingest-"))
    gc_dir: Path | None = None
    if args.gc:
        gc_dir = tmp / "gc"
        gc_dir.mkdir()
        (gc_dir / "sitecustomize.py").write_text(_GC_HOOK)
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    try:
        bundles, source = data.patient_bundles(args.patients, seed=1)
        warm, _ = data.patient_bundles(20, seed=3)
        bodies = [orjson.dumps(b) for b in bundles]
        n_patients = sum(e["resource"]["resourceType"] == "Patient" for b in bundles for e in b["entry"])
        log(f"{len(bundles)} bundles, {sum(len(b['entry']) for b in bundles)} resources, {n_patients} Patients "
            f"({source})")
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for i in range(args.rounds):
            for mode in (("off", "on") if i % 2 == 0 else ("on", "off")):
                prof = args.profile / f"mpi-ingest-{mode}-{i}.speedscope.json" if args.profile else None
                r = one_run(tmp, mode, bundles, bodies, warm, args.clients, prof, gc_dir)
                runs[mode].append(r)
                extra = f", MPI {r['profile'].get('mpi_pct')} % of samples" if "profile" in r else ""
                if "gc" in r:
                    extra += ", GC " + ", ".join(f"{t} {g['total_s']} s {g['count']}" for t, g in r["gc"].items())
                log(f"round {i + 1} mpi={mode}: {r['resources_per_s']} resources/s, server CPU "
                    f"{r['server_cpu_s']} s ({r['resources_per_cpu_s']} resources/CPU-s){extra}, threads "
                    f"{r['thread_cpu_s']}, "
                    f"statuses {r['statuses']}")
        best = {m: max(r["resources_per_s"] for r in rs) for m, rs in runs.items()}
        best_cpu = {m: min(r["server_cpu_s"] for r in rs) for m, rs in runs.items()}
        by_thread = {m: {t: min(r["thread_cpu_s"].get(t, 0.0) for r in rs)
                         for t in sorted({t for r in rs for t in r["thread_cpu_s"]})} for m, rs in runs.items()}
        ratio = round(best["on"] / best["off"], 3) if best["off"] else None
        per_patient_ms = round(1000 * (best_cpu["on"] - best_cpu["off"]) / n_patients, 3) if n_patients else None
        result = {"commit": git_commit(), "patients": args.patients, "patient_resources": n_patients,
                  "clients": args.clients, "runs": runs, "best_resources_per_s": best, "ratio_on_off": ratio,
                  "best_server_cpu_s": best_cpu,
                  "cpu_ratio_on_off": round(best_cpu["on"] / best_cpu["off"], 3) if best_cpu["off"] else None,
                  "extra_cpu_ms_per_patient": per_patient_ms, "least_thread_cpu_s": by_thread}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"ingest, reconciliation off: {best['off']:.0f} resources/s")
        print(f"ingest, reconciliation on:  {best['on']:.0f} resources/s")
        print(f"ratio on/off: {ratio}")
        print(f"server CPU, off {best_cpu['off']:.2f} s, on {best_cpu['on']:.2f} s (least of each): "
              f"{per_patient_ms} ms more per Patient")
        for t in sorted(set(by_thread["off"]) | set(by_thread["on"])):
            off, on = by_thread["off"].get(t, 0.0), by_thread["on"].get(t, 0.0)
            print(f"  {t:<16} off {off:6.2f} s, on {on:6.2f} s (least of each): "
                  f"{1000 * (on - off) / max(n_patients, 1):+.2f} ms per Patient")
        if args.gc:
            for mode, rs in runs.items():
                for t in sorted({t for r in rs for t in r.get("gc", {})}):
                    least = min(r.get("gc", {}).get(t, {}).get("total_s", 0.0) for r in rs)
                    print(f"  GC {mode:<3} {t:<16} {least:6.3f} s (least of the runs)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
