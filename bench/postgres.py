"""PostgreSQL store against the SQLite store, in the same run: transaction ingest and read by id,
with 1 and 2 server workers.

For each worker count (``--workers``, default ``1 2``) and each backend in turn (SQLite first, then
PostgreSQL): a fresh ``fhir-hub serve --workers N`` on an empty store, a warm-up ingest, the timed
ingest of the same transaction bundles (4 clients, ``bench/run.py``'s ingest), then wrk reading
random ingested Patients by id (warm-up run, then the measured run). PostgreSQL is a throwaway
cluster started here (``tests/pgcluster.py``) with its **durable defaults** (``fsync`` on,
synchronous commit), as SQLite runs with ``synchronous=FULL``; it runs on the same 2 cores as the
server and wrk, so with 2 workers three parties share two cores. Figures go to
``bench/results/postgres.json`` with the ratios PostgreSQL / SQLite per worker count.

    python bench/postgres.py                 # 300 patients (~30,000 resources), 5 s wrk runs
    python bench/postgres.py --quick         # 100 patients, 3 s runs
    python bench/postgres.py --workers 2     # one worker count only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench import data  # noqa: E402
from bench.harness import RESULTS, Proc, command, free_port, loadavg, random_get_script, wrk  # noqa: E402
from bench.run import git_commit, ingest, log  # noqa: E402
from tests.pgcluster import Cluster, find_bindir  # noqa: E402


def _serve(db: str, tmp: Path, name: str, workers: int) -> Proc:
    port = free_port()
    cmd = [sys.executable, "-m", "fhir_hub", "serve", "--host", "127.0.0.1", "--port", str(port), "--db", db,
           "--workers", str(workers)]
    return Proc(f"fhir-hub ({name})", cmd, port, tmp / f"{name}.log")


def _backend(name: str, db: str, tmp: Path, bundles: list[dict[str, Any]], bodies: list[bytes],
             args: argparse.Namespace, workers: int) -> dict[str, Any]:
    proc = _serve(db, tmp, name, workers)
    proc.start()
    try:
        out: dict[str, Any] = {"workers": workers, "startup_ms": round(proc.startup_ms or 0, 1)}
        warm, _ = data.patient_bundles(20, seed=3)
        ingest(proc, warm, [orjson.dumps(b) for b in warm], args.clients)
        ing = ingest(proc, bundles, bodies, args.clients)
        patients = ing.pop("_patients")
        out["ingest"] = {k: ing[k] for k in ("bundles", "resources", "resources_ok", "seconds", "resources_per_s",
                                             "statuses", "errors")}
        log(f"{name}: ingest {ing['resources_per_s']} resources/s ({ing['statuses']})")
        ids_file = tmp / f"{name}-ids.txt"
        ids_file.write_text("\n".join(rid for _p, rid in patients) + "\n")
        script = random_get_script(tmp / f"{name}-read.lua", ids_file, "/fhir/Patient/")
        url = f"http://127.0.0.1:{proc.port}"
        wrk(url, script, args.warmup, args.connections)
        read = wrk(url, script, args.duration, args.connections)
        out["read"] = {k: read.get(k) for k in ("req_s", "p50_ms", "p99_ms", "requests", "non_2xx_3xx",
                                                "socket_errors", "loadavg_before", "loadavg_after")}
        out["read"]["threads_connections"] = f"wrk -t2 -c{args.connections}, {args.duration:g} s after a {args.warmup:g} s warm-up"
        log(f"{name}: read by id {read.get('req_s')} req/s, p99 {read.get('p99_ms')} ms")
        out["rss_kb_after"] = proc.rss_kb()
        return out
    finally:
        proc.stop()


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds of each measured wrk run")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--clients", type=int, default=4, help="concurrent ingest clients")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="server worker counts to run")
    ap.add_argument("--quick", action="store_true", help="100 patients, 3 s runs")
    ap.add_argument("--out", type=Path, default=RESULTS / "postgres.json")
    args = ap.parse_args(argv)
    if args.quick:
        args.patients, args.duration, args.warmup = 100, 3.0, 1.0
    bindir = find_bindir()
    if bindir is None:
        print("PostgreSQL binaries not found (install Debian's postgresql package)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="fhirhub-bench-pg-"))
    cluster = Cluster(bindir, durable=True)
    result: dict[str, Any] = {"meta": {
        "command": command("postgres.py", list(argv if argv is not None else sys.argv[1:])),
        "started": dt.datetime.now().isoformat(timespec="seconds"), "commit": git_commit(),
        "python": platform.python_version(), "patients": args.patients, "connections": args.connections,
        "ingest_clients": args.clients, "duration_s": args.duration, "loadavg_start": loadavg(),
        "postgres_major": bindir.parent.name, "postgres_settings": "initdb defaults (fsync on, synchronous_commit on)",
        "sqlite_settings": "synchronous=FULL (fhir-hub default)",
    }}
    try:
        bundles, source = data.patient_bundles(args.patients, seed=1)
        bodies = [orjson.dumps(b) for b in bundles]
        result["meta"].update(bundle_source=source, bundles=len(bundles),
                              resources=sum(len(b["entry"]) for b in bundles))
        log(f"{len(bundles)} bundles, {result['meta']['resources']} resources")
        cluster.start()
        for n in args.workers:
            s = result[f"sqlite_w{n}"] = _backend(f"sqlite-w{n}", str(tmp / f"hub-w{n}.db"), tmp, bundles, bodies,
                                                  args, n)
            p = result[f"postgres_w{n}"] = _backend(f"postgres-w{n}", cluster.create_database(f"bench_w{n}"), tmp,
                                                    bundles, bodies, args, n)
            result[f"ratios_w{n}"] = {
                "ingest_resources_per_s_pg_over_sqlite": _ratio(p["ingest"]["resources_per_s"],
                                                                s["ingest"]["resources_per_s"]),
                "read_req_s_pg_over_sqlite": _ratio(p["read"]["req_s"], s["read"]["req_s"]),
                "read_p99_pg_over_sqlite": _ratio(p["read"]["p99_ms"], s["read"]["p99_ms"]),
            }
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    result["meta"]["loadavg_end"] = loadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{'':30}{'SQLite':>12}{'PostgreSQL':>12}{'PG/SQLite':>11}")
    for n in args.workers:
        s, p, r = result[f"sqlite_w{n}"], result[f"postgres_w{n}"], result[f"ratios_w{n}"]
        rows = [(f"ingest resources/s, {n} worker(s)", s["ingest"]["resources_per_s"], p["ingest"]["resources_per_s"],
                 r["ingest_resources_per_s_pg_over_sqlite"]),
                (f"read by id req/s, {n} worker(s)", s["read"]["req_s"], p["read"]["req_s"],
                 r["read_req_s_pg_over_sqlite"]),
                (f"read by id p99 ms, {n} worker(s)", s["read"]["p99_ms"], p["read"]["p99_ms"],
                 r["read_p99_pg_over_sqlite"])]
        for label, a, b, ratio in rows:
            print(f"{label:30}{a!s:>12}{b!s:>12}{ratio!s:>11}")
    print(f"\nwritten to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    runs = [result[f"{b}_w{n}"] for n in args.workers for b in ("sqlite", "postgres")]
    ok = all(x["ingest"]["statuses"].keys() == {"200"} and not x["read"]["non_2xx_3xx"] for x in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
