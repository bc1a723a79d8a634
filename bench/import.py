"""Claims-XML import throughput: HOSO/s and resources/s of the mapping alone (no server), against a
floor measured in the same run on the same file.

Input: a synthetic GIAMDINHHS envelope of ``--hoso`` visits (default 1,002), made by copying the
six HOSO of the shared synthetic samples (``shared/vn/bhyt-xml/sample-synthetic/decoded``) with a
new MA_LK, MA_BN and card number each, re-encoded as base64 like a real export.

* **mapping** — :func:`fhir_hub.mapping.map_file` on the file: decode, every spec rule, the
  Binary with the original bytes, the Provenance, structural validation of every resource;
* **floor** — the least any importer does with the same bytes: a defusedxml parse of the
  envelope, base64-decoding each NOIDUNGFILE and a defusedxml parse of each inner table;
* **C-parse floor** — the same with each inner table parsed by expat's C parser from its UTF-8
  text, as the mapping now does for a table without a DOCTYPE (defusedxml's parser is
  ElementTree's pure-Python one): the least *this* importer does.

* **end to end** (``--e2e``) — ``fhir-hub import-claims FILE --base URL`` (4 bundles in flight)
  into a fhir-hub server on an empty SQLite store started for the run: map, post, validate,
  index and commit; resources/s = resources of the posted bundles ÷ wall time of the command,
  with the CPU seconds of the command and of the server;
* **server alone** (with ``--e2e``) — the same bundles, mapped and serialised beforehand, POSTed
  by the benches' lean client on 4 kept-alive connections into another fresh server: its ingest
  with next to no client, the ceiling of the end-to-end figure on the same machine at the same
  moment.

The mapping is timed in CPU seconds of this process (``time.process_time``: the machine is
shared, wall time counts the others' work) and in wall seconds; best of ``--repeat`` each, and
the median of the CPU runs, with the load average before the first run and after the last (CPU
time too grows on a busy 2-core machine: shared caches, the other workers' switches).

``notes`` in an existing ``import.json`` (figures before a change, the remaining profile) are
kept when the file is rewritten.

``python bench/import.py [--hoso N] [--repeat R] [--generated] [--out PATH]`` prints both and
writes ``bench/results/import.json`` (or PATH; best of R runs each).  ``--generated`` maps a file
of the synthetic-envelope generator instead (:mod:`fhir_hub.mapping.generate`, seed 0: varied
visits, all fields of the QĐ 3176 dictionary, about 44 resources per HOSO).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import defusedxml.ElementTree as SafeET  # noqa: E402
import orjson  # noqa: E402

from fhir_hub.cli.validate import default_jobs  # noqa: E402
from fhir_hub.mapping import map_file  # noqa: E402
from fhir_hub.mapping.generate import generate  # noqa: E402
from fhir_hub.mapping.parallel import ClaimsMapper  # noqa: E402

DECODED = ROOT.parent / "shared" / "vn" / "bhyt-xml" / "sample-synthetic" / "decoded"


def _templates() -> list[tuple[str, dict[str, bytes]]]:
    out = []
    for folder in sorted(DECODED.glob("*/HOSO*")):
        ma_lk = folder.name.split("_", 1)[1]
        out.append((ma_lk, {p.stem: p.read_bytes() for p in sorted(folder.glob("XML*.xml"))}))
    if not out:
        raise SystemExit(f"no decoded samples under {DECODED}")
    return out


def make_envelope(n: int) -> bytes:
    """``n`` HOSO, synthetic: the sample visits with fresh keys (MA_LK, MA_BN, card number)."""
    templates = _templates()
    parts = []
    for i in range(n):
        ma_lk, tables = templates[i % len(templates)]
        new_lk = f"{ma_lk}.B{i:06d}"
        files = []
        for kind, data in tables.items():
            data = data.replace(ma_lk.encode(), new_lk.encode())
            data = data.replace(b"<MA_BN>BN", f"<MA_BN>B{i:06d}".encode())
            files.append(f"<FILEHOSO><LOAIHOSO>{kind}</LOAIHOSO><NOIDUNGFILE>"
                         f"{base64.b64encode(data).decode()}</NOIDUNGFILE></FILEHOSO>")
        parts.append(f"<HOSO>{''.join(files)}</HOSO>")
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<GIAMDINHHS><THONGTINDONVI><MACSKCB>00999</MACSKCB>'
            f"</THONGTINDONVI><THONGTINHOSO><NGAYLAP>20250701</NGAYLAP><SOLUONGHOSO>{n}</SOLUONGHOSO>"
            f"<DANHSACHHOSO>{''.join(parts)}</DANHSACHHOSO></THONGTINHOSO><CHUKYDONVI></CHUKYDONVI>"
            f"</GIAMDINHHS>").encode()


def floor(data: bytes) -> int:
    root = SafeET.fromstring(data, forbid_dtd=True)
    tables = 0
    for content in root.iter("NOIDUNGFILE"):
        SafeET.fromstring(base64.b64decode(content.text or ""), forbid_dtd=True)
        tables += 1
    return tables


def floor_c(data: bytes) -> int:
    root = SafeET.fromstring(data, forbid_dtd=True)
    tables = 0
    for content in root.iter("NOIDUNGFILE"):
        ET.fromstring(base64.b64decode(content.text or "").decode("utf-8"))
        tables += 1
    return tables


def _server_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live server and its live children (its bundle parse
    workers: rest/parsers.py), from /proc."""
    total = 0.0
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    for p in (pid, *children):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone since
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@contextmanager
def _fresh_server(tmp: Path, name: str) -> Iterator[tuple[Any, str]]:
    """A fhir-hub on a new SQLite file, with default settings whatever the caller's shell exports
    (an inherited FHIR_HUB_REQUIRE_PROFILE, _MPI, _AUTH or _RATE_LIMIT changes what it accepts);
    yields (process, base URL) and, on the way out, leaves its log in ``tmp/<name>.log``."""
    from bench.harness import child_env, fhir_hub_proc, free_port

    port = free_port()
    hub = fhir_hub_proc(port, tmp / f"{name}.db", tmp / f"{name}.log")
    hub.env = {k: v for k, v in child_env().items() if not k.startswith("FHIR_HUB_")}
    hub.start()
    try:
        yield hub, f"http://127.0.0.1:{port}/fhir"
    finally:
        hub.stop()


def _post_all(base: str, bodies: list[bytes], concurrency: int) -> list[str]:
    """POST every body on ``concurrency`` kept-alive connections with the benches' lean client
    (:func:`bench.harness.post_bodies`); the answers that were not 2xx."""
    import asyncio
    from urllib.parse import urlsplit

    from bench.harness import post_bodies

    url = urlsplit(base)
    headers = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
    answers = asyncio.run(post_bodies(url.port or 80, url.path, bodies, concurrency, headers))
    return [f"bundle {i}: {status} {text[:300]!r}" for i, (status, text) in enumerate(answers)
            if not 200 <= status < 300]


def server_alone(bodies: list[bytes], resources: int, concurrency: int = 4) -> dict[str, object]:
    """The server's ingest alone: the same bundles, mapped and serialised beforehand, posted by
    the thinnest client (``concurrency`` kept-alive connections) into a fresh server."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fhir-hub-ingest-") as tmp, _fresh_server(Path(tmp), "alone") as (hub, base):
        cpu0, t0 = _server_cpu_s(hub.pid), time.perf_counter()
        bad = _post_all(base, bodies, concurrency)
        wall, server_cpu = time.perf_counter() - t0, _server_cpu_s(hub.pid) - cpu0
    if bad:
        raise SystemExit("server alone: bundles refused:\n" + "\n".join(bad[:20]))
    return {"seconds": round(wall, 3), "resources_per_s": round(resources / wall, 1),
            "hoso_per_s": round(len(bodies) / wall, 1), "server_cpu_s": round(server_cpu, 2),
            "what": f"the same bundles pre-serialised, POSTed by the lean client ({concurrency} kept-alive connections) "
                    "into a fresh fhir-hub on SQLite: the server's ingest with next to no client"}


def end_to_end(data: bytes, hoso: int, resources: int, mapping_s: float, jobs: int) -> dict[str, object]:
    """Import the file into a fresh server with the CLI; the mapping alone is the floor here."""
    import resource as rusage
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="fhir-hub-import-") as tmp:
        src = Path(tmp) / "claims.xml"
        src.write_bytes(data)
        with _fresh_server(Path(tmp), "hub") as (hub, base):
            cpu0, before = _server_cpu_s(hub.pid), rusage.getrusage(rusage.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "fhir_hub", "import-claims", str(src), "--base", base,
                                   "--jobs", str(jobs)],
                                  capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
            wall = time.perf_counter() - t0
            after = rusage.getrusage(rusage.RUSAGE_CHILDREN)
            server_cpu = _server_cpu_s(hub.pid) - cpu0
        log = (Path(tmp) / "hub.log").read_text(encoding="utf-8", errors="replace")
    if done.returncode != 0:
        # the CLI prints its errors before its warnings: the refusals are at the top, the counts at the end
        errors = [line for line in done.stdout.splitlines() if line.startswith(("[error]", "[fatal]"))]
        raise SystemExit(f"import-claims failed ({done.returncode}):\n" + "\n".join(errors[:20])
                         + f"\n{done.stdout[-2500:]}{done.stderr[-2000:]}\nserver log (tail):\n{log[-3000:]}\n"
                         f"tree: {_tree_state()}")
    client_cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    # exit 0: every mapped HOSO was posted and answered 2xx (a failed one exits 1)
    return {"seconds": round(wall, 3), "resources": resources, "resources_per_s": round(resources / wall, 1),
            "hoso_posted": hoso, "hoso_per_s": round(hoso / wall, 1),
            "ratio_to_mapping_time": round(wall / mapping_s, 1),
            "client_cpu_s": round(client_cpu, 2), "server_cpu_s": round(server_cpu, 2), "tree": _tree_state(),
            "jobs": jobs,
            "what": f"fhir-hub import-claims FILE --base URL --jobs {jobs} (4 in flight) into a fresh fhir-hub "
                    "on SQLite, validation on; the command's wall time including its start-up"}


def _tree_state() -> str:
    """The commit and the files changed since (the server runs the working tree as it is: a file
    another person is editing is what the bench's server imports)."""
    import subprocess

    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--short", "--untracked-files=no"],
                           capture_output=True, text=True)
    changed = [line[3:] for line in dirty.stdout.splitlines()]
    return f"{head.stdout.strip()}, {len(changed)} file(s) changed: {', '.join(changed[:20])}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hoso", type=int, default=1002)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--generated", action="store_true", help="map a generated file, not copies of the samples")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "import.json")
    ap.add_argument("--e2e", action="store_true", help="also import the file into a server (import-claims --base)")
    ap.add_argument("--jobs", type=int, default=0,
                    help="processes of the parallel mapping (ClaimsMapper) and of import-claims --jobs (0: one per core)")
    args = ap.parse_args()
    jobs = args.jobs or default_jobs()
    data = generate(args.hoso).data if args.generated else make_envelope(args.hoso)
    best_map = best_floor = best_c = float("inf")
    resources = mapped = 0
    runs: list[float] = []
    cpu_runs: list[float] = []
    jobs_runs: list[float] = []
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    mapper = ClaimsMapper(jobs)  # the workers are forked once, as import-claims does per command
    pool_start = time.perf_counter() - t0
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        result = map_file(data, "bench.xml", recorded="2026-01-01T00:00:00+07:00")
        runs.append(time.perf_counter() - t0)
        cpu_runs.append(time.process_time() - c0)
        best_map = min(best_map, runs[-1])
        mapped = sum(1 for h in result.hosos if h.bundle is not None)
        resources = sum(len(h.bundle["entry"]) for h in result.hosos if h.bundle is not None)
        del result
        t0 = time.perf_counter()
        result = mapper.map_file(data, "bench.xml", recorded="2026-01-01T00:00:00+07:00")
        jobs_runs.append(time.perf_counter() - t0)
        del result
        t0 = time.perf_counter()
        floor(data)
        best_floor = min(best_floor, time.perf_counter() - t0)
        t0 = time.perf_counter()
        floor_c(data)
        best_c = min(best_c, time.perf_counter() - t0)
    mapper.close()
    best_cpu = min(cpu_runs)
    best_jobs = min(jobs_runs)
    out = {
        "what": "claims XML mapping (fhir_hub.mapping.map_file), one GIAMDINHHS file, no server",
        "input": "generated (fhir_hub.mapping.generate, seed 0)" if args.generated else "copies of the shared samples",
        "hoso": args.hoso, "hoso_mapped": mapped, "resources": resources, "file_bytes": len(data),
        "resources_per_hoso": round(resources / max(mapped, 1), 1),
        "mapping": {"seconds": round(best_map, 3), "hoso_per_s": round(args.hoso / best_map, 1),
                    "resources_per_s": round(resources / best_map, 1), "runs_s": [round(r, 3) for r in runs],
                    "cpu_seconds": round(best_cpu, 3), "hoso_per_cpu_s": round(args.hoso / best_cpu, 1),
                    "resources_per_cpu_s": round(resources / best_cpu, 1),
                    "cpu_runs_s": [round(r, 3) for r in cpu_runs],
                    "hoso_per_cpu_s_median": round(args.hoso / statistics.median(cpu_runs), 1)},
        "mapping_parallel": {"jobs": jobs, "seconds": round(best_jobs, 3), "hoso_per_s": round(args.hoso / best_jobs, 1),
                             "resources_per_s": round(resources / best_jobs, 1),
                             "runs_s": [round(r, 3) for r in jobs_runs], "pool_start_s": round(pool_start, 3),
                             "what": f"ClaimsMapper({jobs}).map_file: the HOSO mapped by {jobs} worker processes "
                                     "(wall time; the workers were forked before the first run)"},
        "floor_xml_parse": {"seconds": round(best_floor, 3), "hoso_per_s": round(args.hoso / best_floor, 1)},
        "ratio_floor_to_mapping": round(best_map / best_floor, 1),
        "floor_c_parse": {"seconds": round(best_c, 3), "hoso_per_s": round(args.hoso / best_c, 1)},
        "ratio_c_floor_to_mapping": round(best_map / best_c, 1),
        "repeat": args.repeat, "python": platform.python_version(), "cpus": os.cpu_count(),
        "loadavg_before": load_before, "loadavg": os.getloadavg(),
    }
    if args.e2e:
        bodies = [orjson.dumps(h.bundle) for h in map_file(data, "bench.xml").hosos if h.bundle is not None]
        out["end_to_end"] = e = end_to_end(data, mapped, resources, best_map, jobs)
        out["server_alone"] = a = server_alone(bodies, resources)
        del bodies
        print(f"end to end (import-claims --base --jobs {jobs}, 4 in flight, server on SQLite): {e['resources_per_s']:,.0f} "
              f"resources/s, {e['hoso_per_s']:,.0f} HOSO/s; {e['ratio_to_mapping_time']}x the mapping's time; "
              f"CPU client {e['client_cpu_s']} s, server {e['server_cpu_s']} s")
        print(f"server alone (same bundles, pre-serialised, 4 connections): {a['resources_per_s']:,.0f} resources/s, "
              f"{a['hoso_per_s']:,.0f} HOSO/s; server CPU {a['server_cpu_s']} s")
    print(f"claims mapping: {out['mapping']['hoso_per_cpu_s']:,.0f} HOSO per CPU second "
          f"({out['mapping']['resources_per_cpu_s']:,.0f} resources; median of {args.repeat} "
          f"{out['mapping']['hoso_per_cpu_s_median']:,.0f}; load {load_before[0]:.1f} -> {os.getloadavg()[0]:.1f}); wall: {out['mapping']['hoso_per_s']:,.0f} HOSO/s, "
          f"{out['mapping']['resources_per_s']:,.0f} resources/s ({out['resources_per_hoso']} resources/HOSO, {mapped}/{args.hoso} HOSO mapped)")
    par = out["mapping_parallel"]
    print(f"claims mapping by {jobs} processes (wall, best of {args.repeat}): {par['hoso_per_s']:,.0f} HOSO/s, "
          f"{par['resources_per_s']:,.0f} resources/s; workers forked in {par['pool_start_s']} s")
    print(f"floor (XML parse of envelope + inner tables): {out['floor_xml_parse']['hoso_per_s']:,.0f} HOSO/s; "
          f"mapping is {out['ratio_floor_to_mapping']}x the floor's time")
    print(f"C-parse floor (inner tables by expat's C parser): {out['floor_c_parse']['hoso_per_s']:,.0f} HOSO/s; "
          f"mapping is {out['ratio_c_floor_to_mapping']}x its time")
    path: Path = args.out
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        notes = json.loads(path.read_text(encoding="utf-8")).get("notes")
        if notes is not None:
            out["notes"] = notes
    path.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
