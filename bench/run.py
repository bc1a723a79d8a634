"""The one bench entry point: fhir-hub's hot paths against floors measured in the same run.

    python bench/run.py [--duration 10] [--connections 16] [--quick]

Order of a run (all on 127.0.0.1, in a temp dir removed at the end):

1. bundles from ``fhir_hub.sample.generator.patient_bundles`` (fallback: bench/data.py), serialized once;
2. raw ingest floor (bench/floors.py) over those bytes;
3. fhir-hub started (start-up ms until /health answers, RSS at rest);
4. ingest: 4 concurrent clients post the same bundles as transactions (resources/s, peak RSS);
   then a smaller ingest of other bundles under py-spy, for the profile;
5. bare Starlette and FastAPI floors serving the same Patients by id (wrk, random ids);
6. fhir-hub read, vread, conditional read (304) and create (wrk), each followed by a profiled run;
7. RSS after the bench, then a restart on the populated store (start-up ms again);
8. bench/results/latest.json, latest.md, profile-<path>.speedscope.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402

from bench import data, floors  # noqa: E402
from bench.harness import (  # noqa: E402
    RESULTS,
    Proc,
    PySpy,
    RssSampler,
    command,
    cpu_ticks,
    fhir_hub_proc,
    floor_proc,
    free_port,
    get_once,
    http_get,
    loadavg,
    post_bodies,
    post_script,
    random_get_script,
    rel,
    steal_pct,
    summarize_speedscope,
    wrk,
)

FHIR = "application/fhir+json"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- ingest ------------------------------------------------------------------------------------


async def _post_all(port: int, bodies: list[bytes], clients: int) -> dict[str, Any]:
    headers = {"Content-Type": FHIR, "Accept": FHIR}
    t0 = time.perf_counter()
    responses = await post_bodies(port, "/fhir", bodies, clients, headers)
    posted = time.perf_counter() - t0
    # the writer may still hold index rows of the last bundles; a search waits for them, so
    # the wall time ends when everything posted is findable, not only acknowledged
    await get_once(port, "/fhir/Patient?identifier=urn:bench%7Cnone&_summary=count", {"Accept": FHIR})
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "posted_seconds": posted, "responses": responses}


def ingest(proc: Proc, bundles: list[dict[str, Any]], bodies: list[bytes], clients: int) -> dict[str, Any]:
    """Post every bundle (``clients`` at a time); resources/s counts entries of bundles answered 200."""
    hwm_before, ticks = proc.hwm_kb(), cpu_ticks()
    with RssSampler(proc.pid) as rss:
        out = asyncio.run(_post_all(proc.port, bodies, clients))
    stolen = steal_pct(ticks)
    statuses: dict[str, int] = {}
    errors: list[str] = []
    ok_resources = 0
    patients: list[tuple[dict[str, Any], str]] = []
    for bundle, resp in zip(bundles, out["responses"], strict=True):
        status, body = resp if resp is not None else (-2, b"not sent")
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status != 200:
            if len(errors) < 3:
                errors.append(f"{status}: {body[:600].decode(errors='replace')}")
            continue
        ok_resources += len(bundle["entry"])
        reply = orjson.loads(body)
        for entry, answer in zip(bundle["entry"], reply.get("entry", []), strict=False):
            if entry["resource"]["resourceType"] == "Patient":
                loc = answer.get("response", {}).get("location", "")
                parts = loc.split("/")
                if len(parts) >= 2 and parts[0] == "Patient":
                    patients.append((entry["resource"], parts[1]))
    total = sum(len(b["entry"]) for b in bundles)
    return {
        "clients": clients, "bundles": len(bundles), "resources": total, "resources_ok": ok_resources,
        "seconds": round(out["seconds"], 3), "seconds_until_answered": round(out["posted_seconds"], 3),
        "resources_per_s": round(ok_resources / out["seconds"], 1) if out["seconds"] else 0.0,
        "statuses": statuses, "errors": errors, "steal_pct": stolen,
        "peak_rss_kb_polled": rss.peak_kb, "peak_rss_anon_kb_polled": rss.peak_anon_kb, "rss_samples": rss.samples,
        "vmhwm_kb_before": hwm_before, "vmhwm_kb_after": proc.hwm_kb(), "rss_kb_after": proc.rss_kb(),
        "_patients": patients,
    }


# --- wrk paths ---------------------------------------------------------------------------------


def _without_bundle_refs(node: Any) -> Any:
    """A bundle's Patient posted alone: drop what points at other entries (``urn:uuid:`` references)."""
    if isinstance(node, dict):
        return {k: _without_bundle_refs(v) for k, v in node.items()
                if not (isinstance(v, dict) and str(v.get("reference", "")).startswith("urn:uuid:"))}
    if isinstance(node, list):
        return [_without_bundle_refs(v) for v in node]
    return node


def probe(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET",
          body: bytes | None = None) -> dict[str, Any]:
    """One request before the load, so the status and size under measurement are known."""
    if method == "GET":
        status, hdrs, content = http_get(port, path, headers)
    else:
        r = httpx.request(method, f"http://127.0.0.1:{port}{path}", content=body,
                          headers={"Content-Type": FHIR, **(headers or {})}, timeout=30)
        status, hdrs, content = r.status_code, dict(r.headers), r.content
    return {"status": status, "body_bytes": len(content), "content_type": hdrs.get("content-type"),
            "etag": hdrs.get("etag"), **({"body_head": content[:300].decode(errors="replace")}
                                          if status >= 400 else {})}


def measure(name: str, url: str, script: Path, args: argparse.Namespace,
            proc: Proc | None = None, profile_to: Path | None = None) -> dict[str, Any]:
    log(f"{name}: warm-up {args.warmup}s")
    warm = wrk(url, script, args.warmup, args.connections, args.threads)
    log(f"{name}: measure {args.duration}s")
    res = wrk(url, script, args.duration, args.connections, args.threads)
    res["warmup_req_s"] = warm.get("req_s")
    log(f"{name}: {res.get('req_s')} req/s p50 {res.get('p50_ms')} ms p99 {res.get('p99_ms')} ms "
        f"non-2xx/3xx {res.get('non_2xx_3xx')} socket errors {res.get('socket_errors')}")
    if proc is not None and profile_to is not None and not args.no_profile:
        res["profile"] = profile_run(name, proc, profile_to, lambda: wrk(url, script, args.profile_seconds,
                                                                          args.connections, args.threads))
    return res


def profile_run(name: str, proc: Proc, out: Path, load: Any) -> dict[str, Any]:
    """Run ``load`` again with py-spy attached to the server; the figures above stay unprofiled."""
    log(f"{name}: profiled run (py-spy --pid {proc.pid})")
    with PySpy(proc.pid, out) as spy:
        loaded = load()
    info: dict[str, Any] = {"tool": "py-spy record --format speedscope --nonblocking --rate 250",
                            "file": rel(out) if out.exists() else None}
    if isinstance(loaded, dict) and "req_s" in loaded:
        info["req_s_under_profiler"] = loaded.get("req_s")
    elif isinstance(loaded, dict) and "resources_per_s" in loaded:
        info["resources_per_s_under_profiler"] = loaded.get("resources_per_s")
    if spy.error:
        info["error"] = spy.error
        log(f"{name}: {spy.error}")
    if out.exists():
        try:
            info["summary"] = summarize_speedscope(out)
        except (ValueError, KeyError) as exc:
            info["summary_error"] = repr(exc)
    return info


def pyinstrument_fallback(name: str, db: Path, tmp: Path, out: Path, load: Any) -> dict[str, Any]:
    """When py-spy cannot attach: a second fhir-hub on the same store run under pyinstrument."""
    port = free_port()
    text_out = out.with_suffix(".txt")
    cmd = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(text_out), "-m", "fhir_hub", "serve",
           "--host", "127.0.0.1", "--port", str(port), "--db", str(db)]
    proc = Proc("fhir-hub (pyinstrument)", cmd, port, tmp / "pyinstrument.log").start()
    try:
        loaded = load(port)
    finally:
        proc.stop()
    return {"tool": "pyinstrument (py-spy could not attach)", "file": rel(text_out)
            if text_out.exists() else None, "req_s_under_profiler": loaded.get("req_s")}


# --- report ------------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def fmt(v: Any, nd: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def mb_split(mem: dict[str, int] | None) -> str:
    """``anon X + file Y MB``: heap vs file-backed pages (SQLite's mmap of the db counts as file)."""
    if not mem:
        return "–"
    return f"anon {mem.get('RssAnon', 0) / 1024:.1f} + file {mem.get('RssFile', 0) / 1024:.1f} MB"


def markdown(r: dict[str, Any]) -> str:
    m = r["meta"]
    lines = [
        f"# fhir-hub bench — {m['finished']}",
        "",
        f"`{m['command']}` · commit `{m['commit']}` · {m['cpus']} CPUs · Python {m['python']} · "
        f"wrk -t{m['threads']} -c{m['connections']} -d{m['duration_s']}s (warm-up {m['warmup_s']}s) · "
        f"bundles: {m['bundle_source']} · load avg at start {m['loadavg_start']}, end {m['loadavg_end']}",
        "",
        "## HTTP paths (wrk, random ids)",
        "",
        "| path | server | req/s | p50 ms | p99 ms | non-2xx/3xx | socket errors | probe status | body B | steal % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, p in r["paths"].items():
        if "req_s" not in p:
            lines.append(f"| {key} | {p.get('server', '')} | skipped: {p.get('skipped', '?')} | | | | | | | |")
            continue
        errs = sum(p.get("socket_errors", {}).values())
        lines.append(f"| {key} | {p['server']} | {fmt(p['req_s'], 0)} | {fmt(p['p50_ms'])} | {fmt(p['p99_ms'])} | "
                     f"{p['non_2xx_3xx']} | {errs} | {p['probe']['status']} | {p['probe']['body_bytes']} | "
                     f"{fmt(p.get('steal_pct'))} |")
    ing, floor = r["ingest"], r["ingest_floor"]
    lines += [
        "",
        "## Ingest",
        "",
        "| what | bundles | resources | seconds | resources/s | statuses | steal % |",
        "|---|---:|---:|---:|---:|---|---:|",
        f"| raw ingest floor (orjson + SQLite WAL FULL, 1 tx/bundle, 1 thread) | {floor['bundles']} | "
        f"{floor['resources']} | {fmt(floor['seconds'])} | {fmt(floor['resources_per_s'], 0)} | – | "
        f"{fmt(floor.get('steal_pct'))} |",
        f"| fhir-hub transaction, {ing['clients']} clients | {ing['bundles']} | {ing['resources_ok']} | "
        f"{fmt(ing['seconds'])} | {fmt(ing['resources_per_s'], 0)} | {ing['statuses']} | {fmt(ing.get('steal_pct'))} |",
        "",
        "## Ratios (same run)",
        "",
        "| ratio | value |",
        "|---|---:|",
    ]
    lines += [f"| {k} | {fmt(v, 3)} |" for k, v in r["ratios"].items()]
    s = r["server"]
    lines += [
        "",
        "## fhir-hub process",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| start-up until /health 200, empty store (ms) | {fmt(s['startup_ms_empty'], 0)} |",
        f"| start-up until /health 200, populated store (ms) | {fmt(s.get('startup_ms_populated'), 0)} |",
        f"| RSS at rest after start (MB) | {fmt(s['rss_kb_rest'] / 1024, 1)} ({mb_split(s.get('mem_kb_rest'))}) |",
        f"| peak RSS while ingesting (polled VmRSS, MB) | {fmt(ing['peak_rss_kb_polled'] / 1024, 1)} "
        f"(peak RssAnon {fmt(ing.get('peak_rss_anon_kb_polled', 0) / 1024, 1)}) |",
        f"| VmHWM after ingest (MB) | {fmt((ing['vmhwm_kb_after'] or 0) / 1024, 1)} |",
        f"| RSS after the bench (MB) | {fmt((s.get('rss_kb_after') or 0) / 1024, 1)} ({mb_split(s.get('mem_kb_after'))}) |",
        f"| VmHWM after the bench (MB) | {fmt((s.get('vmhwm_kb_after') or 0) / 1024, 1)} |",
        f"| RSS at rest after restart on populated store (MB) | {fmt((s.get('rss_kb_rest_populated') or 0) / 1024, 1)} "
        f"({mb_split(s.get('mem_kb_rest_populated'))}) |",
        f"| server log lines (warnings/errors) | {s.get('log_lines', 0)} |",
        "",
        "## Profiles (py-spy, separate run of each path; figures above are unprofiled)",
        "",
    ]
    for key, prof in r["profiles"].items():
        lines.append(f"### {key}: `{prof.get('file')}`"
                     + (f" — {fmt(prof.get('req_s_under_profiler'), 0)} req/s under the profiler"
                        if prof.get("req_s_under_profiler") else "")
                     + (f" — {fmt(prof.get('resources_per_s_under_profiler'), 0)} resources/s under the profiler"
                        if prof.get("resources_per_s_under_profiler") else ""))
        if prof.get("error"):
            lines.append(f"\n{prof['error']}\n")
        summ = prof.get("summary")
        if summ and summ["samples"]:
            lines += ["", f"{summ['samples']} samples; threads: {summ['threads']}", "",
                      "| self % | frame | | incl. % | frame |", "|---:|---|---|---:|---|"]
            for a, b in zip(summ["self"][:12], summ["inclusive"][:12], strict=False):
                lines.append(f"| {a['pct']} | `{a['frame']}` | | {b['pct']} | `{b['frame']}` |")
        lines.append("")
    return "\n".join(lines) + "\n"


def print_table(r: dict[str, Any]) -> None:
    print()
    print(f"{'path':<30}{'server':<12}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non2xx':>8}{'status':>8}")
    for key, p in r["paths"].items():
        if "req_s" not in p:
            print(f"{key:<30}{p.get('server', ''):<12} skipped: {p.get('skipped')}")
            continue
        print(f"{key:<30}{p['server']:<12}{fmt(p['req_s'], 0):>10}{fmt(p['p50_ms']):>10}{fmt(p['p99_ms']):>10}"
              f"{p['non_2xx_3xx']:>8}{p['probe']['status']:>8}")
    ing, floor = r["ingest"], r["ingest_floor"]
    print(f"\ningest  raw floor {fmt(floor['resources_per_s'], 0)} resources/s | fhir-hub "
          f"{fmt(ing['resources_per_s'], 0)} resources/s ({ing['clients']} clients, {ing['statuses']})")
    print("ratios  " + "  ".join(f"{k}={fmt(v, 3)}" for k, v in r["ratios"].items()))
    s = r["server"]
    print(f"server  start-up {fmt(s['startup_ms_empty'], 0)} ms (empty), {fmt(s.get('startup_ms_populated'), 0)} ms "
          f"(populated) | RSS rest {s['rss_kb_rest'] / 1024:.1f} MB, ingest peak "
          f"{ing['peak_rss_kb_polled'] / 1024:.1f} MB, after bench {(s.get('rss_kb_after') or 0) / 1024:.1f} MB "
          f"({mb_split(s.get('mem_kb_after'))})")


# --- main --------------------------------------------------------------------------------------


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return out + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=None, help="seconds per measured wrk run (default 10)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--quick", action="store_true", help="3 s runs, fewer patients, shorter profiles")
    ap.add_argument("--patients", type=int, default=None, help="patients ingested (default 3000, quick 2000)")
    ap.add_argument("--ingest-clients", type=int, default=4)
    ap.add_argument("--no-profile", action="store_true", help="skip the py-spy runs")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    args.patients = args.patients or (2000 if args.quick else 3000)
    args.warmup = 1.0 if args.quick else 2.0
    args.profile_seconds = 3.0 if args.quick else 5.0
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="fhirhub-bench-"))
    results_dir: Path = args.results
    results_dir.mkdir(parents=True, exist_ok=True)
    started: list[Proc] = []
    r: dict[str, Any] = {"paths": {}, "profiles": {}, "ratios": {}, "server": {}}
    r["meta"] = {
        "command": command(Path(sys.argv[0]).name if sys.argv else "run.py", sys.argv[1:]),
        "started": dt.datetime.now().isoformat(timespec="seconds"), "commit": git_commit(),
        "python": platform.python_version(), "cpus": __import__("os").cpu_count(),
        "duration_s": args.duration, "warmup_s": args.warmup, "connections": args.connections,
        "threads": args.threads, "patients": args.patients, "loadavg_start": loadavg(),
    }
    try:
        # 1. input
        log(f"generating bundles for {args.patients} patients")
        bundles, source = data.patient_bundles(args.patients, seed=1)
        bodies = [orjson.dumps(b) for b in bundles]
        sizes = [len(b["entry"]) for b in bundles]
        r["meta"].update(bundle_source=source, bundles=len(bundles), resources=sum(sizes),
                         entries_per_bundle_mean=round(statistics.mean(sizes), 1),
                         bundle_bytes_mean=round(statistics.mean(map(len, bodies))))
        log(f"{len(bundles)} bundles, {sum(sizes)} resources, from {source}")

        # 2. raw ingest floor
        ticks = cpu_ticks()
        r["ingest_floor"] = floors.raw_ingest(bodies, str(tmp / "floor-ingest.db"))
        r["ingest_floor"]["steal_pct"] = steal_pct(ticks)
        log(f"raw ingest floor: {r['ingest_floor']['resources_per_s']:.0f} resources/s")

        # 3. fhir-hub start
        hub_db = tmp / "hub.db"
        hub = fhir_hub_proc(free_port(), hub_db, tmp / "fhir-hub.log")
        started.append(hub)
        hub.start()
        time.sleep(1.0)
        r["server"].update(startup_ms_empty=round(hub.startup_ms or 0, 1), rss_kb_rest=hub.rss_kb(),
                           vmhwm_kb_rest=hub.hwm_kb(), mem_kb_rest=hub.mem_kb(), pid=hub.pid)
        r["server"]["metadata_probe"] = probe(hub.port, "/fhir/metadata")
        log(f"fhir-hub up in {hub.startup_ms:.0f} ms, RSS {r['server']['rss_kb_rest']} kB")

        # 4. ingest (after a warm-up of a few other bundles: first-use loading is not ingest)
        warm, _ = data.patient_bundles(20, seed=3)
        r["ingest_warmup"] = {k: v for k, v in ingest(hub, warm, [orjson.dumps(b) for b in warm],
                                                      args.ingest_clients).items() if k != "_patients"}
        log(f"ingest: {len(bundles)} bundles, {args.ingest_clients} clients")
        ing = ingest(hub, bundles, bodies, args.ingest_clients)
        patients = ing.pop("_patients")
        r["ingest"] = ing
        log(f"ingest: {ing['resources_per_s']} resources/s, statuses {ing['statuses']}")
        if not args.no_profile:
            extra, _ = data.patient_bundles(max(100, args.patients // 2), seed=2)
            extra_bodies = [orjson.dumps(b) for b in extra]
            r["profiles"]["ingest"] = profile_run(
                "ingest", hub, results_dir / "profile-ingest.speedscope.json",
                lambda: {k: v for k, v in ingest(hub, extra, extra_bodies, args.ingest_clients).items()
                         if k != "_patients"})

        # ids: fhir-hub's Patient ids; the floors serve the same Patients under the same ids
        if patients:
            resources = [p for p, _ in patients]
            ids = [i for _, i in patients]
        else:
            import uuid

            resources = [e["resource"] for b in bundles for e in b["entry"]
                         if e["resource"]["resourceType"] == "Patient"]
            ids = [str(uuid.uuid4()) for _ in resources]
        ids_file = tmp / "ids.txt"
        ids_file.write_text("\n".join(ids) + "\n")
        floor_db = tmp / "floor-read.db"
        rows = floors.patient_rows(resources, ids)
        r["meta"]["floor_rows"] = floors.make_patient_db(str(floor_db), rows)
        r["meta"]["floor_body_bytes_mean"] = round(statistics.mean(len(b) for _, b in rows))
        r["meta"]["read_ids"] = len(ids)

        # 5. floors
        for key, factory in (("read floor: Starlette", "starlette_factory"), ("read floor: FastAPI", "fastapi_factory")):
            name = key.split(": ")[1]
            fp = floor_proc(name, factory, free_port(), floor_db, tmp / f"{factory}.log")
            started.append(fp)
            fp.start()
            script = random_get_script(tmp / f"{factory}.lua", ids_file, "/Patient/")
            entry: dict[str, Any] = {"server": name, "probe": probe(fp.port, f"/Patient/{ids[0]}")}
            entry.update(measure(key, f"http://127.0.0.1:{fp.port}", script, args))
            entry["rss_kb"] = fp.rss_kb()
            r["paths"][key] = entry
            fp.stop()

        # 6. fhir-hub paths
        base = f"http://127.0.0.1:{hub.port}"
        create_body = next((dict(e["resource"]) for b in bundles for e in b["entry"]
                            if e["resource"]["resourceType"] == "Patient"), data.create_body())
        body_file = tmp / "create.json"
        body_file.write_bytes(orjson.dumps(_without_bundle_refs(create_body)))
        cases = [
            ("read", "/fhir/Patient/", "", {}, 200),
            ("vread", "/fhir/Patient/", "/_history/1", {}, 200),
            ("conditional read 304", "/fhir/Patient/", "", {"If-None-Match": 'W/"1"'}, 304),
        ]
        for key, prefix, suffix, headers, expect in cases:
            slug = key.split()[0] if key != "conditional read 304" else "cread304"
            entry = {"server": "fhir-hub", "probe": probe(hub.port, f"{prefix}{ids[0]}{suffix}", headers),
                     "expected_status": expect}
            if not patients:
                entry["skipped"] = "ingest stored no Patient (see ingest errors)"
                r["paths"][f"fhir-hub {key}"] = entry
                continue
            script = random_get_script(tmp / f"{slug}.lua", ids_file, prefix, suffix, headers)
            entry.update(measure(f"fhir-hub {key}", base, script, args, hub,
                                 results_dir / f"profile-{slug}.speedscope.json"))
            if "profile" in entry:
                r["profiles"][slug] = entry.pop("profile")
            r["paths"][f"fhir-hub {key}"] = entry
        # create last: it grows the store the reads ran on
        script = post_script(tmp / "create.lua", body_file)
        entry = {"server": "fhir-hub", "probe": probe(hub.port, "/fhir/Patient", method="POST",
                                                       body=body_file.read_bytes()), "expected_status": 201}
        entry.update(measure("fhir-hub create", f"{base}/fhir/Patient", script, args, hub,
                             results_dir / "profile-create.speedscope.json"))
        if "profile" in entry:
            r["profiles"]["create"] = entry.pop("profile")
        r["paths"]["fhir-hub create"] = entry

        # py-spy fallback: only if it could not attach at all
        read_prof = r["profiles"].get("read")
        if read_prof is not None and read_prof.get("file") is None and patients:
            script = random_get_script(tmp / "read-pyi.lua", ids_file, "/fhir/Patient/")
            r["profiles"]["read (pyinstrument)"] = pyinstrument_fallback(
                "read", hub_db, tmp, results_dir / "profile-read.pyinstrument",
                lambda port: wrk(f"http://127.0.0.1:{port}", script, args.profile_seconds, args.connections,
                                 args.threads))

        # 7. memory after, restart on the populated store
        time.sleep(1.0)
        r["server"].update(rss_kb_after=hub.rss_kb(), vmhwm_kb_after=hub.hwm_kb(), mem_kb_after=hub.mem_kb())
        log_text = (tmp / "fhir-hub.log").read_text(errors="replace")
        noisy = [ln for ln in log_text.splitlines() if ln.strip() and not ln.startswith("fhir-hub on ")]
        r["server"]["log_lines"] = len(noisy)
        r["server"]["log_tail"] = noisy[-20:]
        r["server"]["exit_code"] = hub.stop()
        again = fhir_hub_proc(free_port(), hub_db, tmp / "fhir-hub-restart.log")
        started.append(again)
        again.start()
        time.sleep(1.0)
        r["server"].update(startup_ms_populated=round(again.startup_ms or 0, 1), rss_kb_rest_populated=again.rss_kb(),
                           mem_kb_rest_populated=again.mem_kb())
        again.stop()
        r["server"]["db_bytes"] = sum(p.stat().st_size for p in tmp.glob("hub.db*"))
    finally:
        for p in started:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    # ratios
    get = lambda k: r["paths"].get(k, {}).get("req_s")  # noqa: E731
    r["ratios"] = {
        "fhir-hub read / Starlette floor": ratio(get("fhir-hub read"), get("read floor: Starlette")),
        "fhir-hub read / FastAPI floor": ratio(get("fhir-hub read"), get("read floor: FastAPI")),
        "fhir-hub vread / Starlette floor": ratio(get("fhir-hub vread"), get("read floor: Starlette")),
        "fhir-hub 304 / Starlette floor": ratio(get("fhir-hub conditional read 304"), get("read floor: Starlette")),
        "FastAPI floor / Starlette floor": ratio(get("read floor: FastAPI"), get("read floor: Starlette")),
        "fhir-hub ingest / raw ingest floor": ratio(r["ingest"]["resources_per_s"],
                                                    r["ingest_floor"]["resources_per_s"]),
    }
    r["meta"]["finished"] = dt.datetime.now().isoformat(timespec="seconds")
    r["meta"]["loadavg_end"] = loadavg()
    return r


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    r = run(args)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "latest.json").write_text(json.dumps(r, indent=2, ensure_ascii=False) + "\n")
    (args.results / "latest.md").write_text(markdown(r))
    print_table(r)
    print(f"\nwritten: {args.results / 'latest.json'}, {args.results / 'latest.md'}")
    bad = [k for k, p in r["paths"].items()
           if p.get("non_2xx_3xx") or p.get("probe", {}).get("status") != p.get("expected_status", 200)]
    if bad or set(r["ingest"]["statuses"]) != {"200"}:
        print(f"WARNING: unexpected statuses on {bad or ''} ingest {r['ingest']['statuses']}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
