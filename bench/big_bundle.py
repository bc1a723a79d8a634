"""One big transaction: a ~50 MB Bundle of Observations posted to a fresh fhir-hub.

    python bench/big_bundle.py [--mb 50] [--no-profile]

Reports the wall time and status of the POST, and the server's peak resident memory (VmHWM
from /proc/PID/status, and VmRSS polled every 20 ms during the request) against 6× the bundle's
size. Writes bench/results/big_bundle.json, big_bundle.md and profile-big-bundle.speedscope.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import shutil
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

from bench import data  # noqa: E402
from bench.harness import (  # noqa: E402
    RESULTS,
    PySpy,
    RssSampler,
    fhir_hub_proc,
    free_port,
    http_get,
    loadavg,
    rel,
    summarize_speedscope,
)

MB = 1024 * 1024


def build(target_bytes: int, seed: int = 7) -> tuple[bytes, int]:
    """A transaction of one Patient, a few Encounters and as many Observations as reach ``target_bytes``."""
    rng = random.Random(seed)
    p_url = data._urn(rng)
    entries = [data._entry(p_url, data.fallback_patient(rng, 1))]
    encounters = []
    for _ in range(20):
        day = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        e_url = data._urn(rng)
        encounters.append((e_url, day))
        entries.append(data._entry(e_url, data._encounter(rng, p_url, day)))
    per_entry = len(orjson.dumps(data._entry(data._urn(rng), data._observation(rng, p_url, *encounters[0])))) + 1
    n_obs = max(1, (target_bytes - len(orjson.dumps(entries))) // per_entry)
    for k in range(n_obs):
        e_url, day = encounters[k % len(encounters)]
        entries.append(data._entry(data._urn(rng), data._observation(rng, p_url, e_url, day)))
    body = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return body, len(entries)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=50.0, help="bundle size in MiB (default 50)")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the answer")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    body, n_entries = build(int(args.mb * MB))
    build_s = time.perf_counter() - t0
    print(f"bundle: {len(body) / MB:.1f} MiB, {n_entries} entries (built in {build_s:.1f} s)", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="fhirhub-big-"))
    hub = fhir_hub_proc(free_port(), tmp / "hub.db", tmp / "fhir-hub.log")
    r: dict[str, Any] = {"started": dt.datetime.now().isoformat(timespec="seconds"), "loadavg_start": loadavg(),
                         "bundle_bytes": len(body), "entries": n_entries}
    profile_path = args.results / "profile-big-bundle.speedscope.json"
    try:
        hub.start()
        time.sleep(1.0)
        r.update(startup_ms=round(hub.startup_ms or 0, 1), rss_kb_rest=hub.rss_kb(), vmhwm_kb_rest=hub.hwm_kb())
        spy = PySpy(hub.pid, profile_path) if not args.no_profile else None
        if spy:
            spy.__enter__()
        try:
            with RssSampler(hub.pid) as rss:
                t1 = time.perf_counter()
                try:
                    resp = httpx.post(f"http://127.0.0.1:{hub.port}/fhir", content=body,
                                      headers={"Content-Type": "application/fhir+json"}, timeout=args.timeout)
                    status, content = resp.status_code, resp.content
                except httpx.HTTPError as exc:
                    status, content = -1, repr(exc).encode()
                r["seconds"] = round(time.perf_counter() - t1, 3)
        finally:
            if spy:
                spy.__exit__(None, None, None)
        r.update(status=status, response_bytes=len(content), peak_rss_kb_polled=rss.peak_kb,
                 peak_rss_anon_kb_polled=rss.peak_anon_kb, vmhwm_kb_after=hub.hwm_kb(), rss_kb_after=hub.rss_kb(),
                 mem_kb_after=hub.mem_kb(), server_alive=hub.alive())
        if status != 200:
            r["response_head"] = content[:1500].decode(errors="replace")
        else:
            reply = orjson.loads(content)
            r["response_entries"] = len(reply.get("entry", []))
            loc = reply["entry"][-1]["response"]["location"]
            r["last_entry_read_status"] = http_get(hub.port, f"/fhir/{loc.split('/_history')[0]}")[0]
            r["resources_per_s"] = round(n_entries / r["seconds"], 1)
        if spy:
            r["profile"] = {"file": rel(profile_path) if profile_path.exists() else None,
                            "error": spy.error}
            if profile_path.exists():
                r["profile"]["summary"] = summarize_speedscope(profile_path)
        r["server_log_tail"] = hub.log_tail(20)
    finally:
        r["exit_code"] = hub.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    peak_kb = max(r.get("peak_rss_kb_polled") or 0, r.get("vmhwm_kb_after") or 0)
    limit_kb = 6 * len(body) / 1024
    r.update(peak_kb=peak_kb, six_x_bundle_kb=round(limit_kb), peak_over_bundle=round(peak_kb * 1024 / len(body), 2),
             peak_growth_over_bundle=round((peak_kb - (r.get("rss_kb_rest") or 0)) * 1024 / len(body), 2),
             within_6x=peak_kb <= limit_kb, loadavg_end=loadavg())
    (args.results / "big_bundle.json").write_text(json.dumps(r, indent=2, ensure_ascii=False) + "\n")
    md = [
        f"# fhir-hub big bundle — {r['started']}", "",
        "| figure | value |", "|---|---:|",
        f"| bundle size | {len(body) / MB:.1f} MiB ({len(body):,} B) |",
        f"| entries | {n_entries:,} |",
        f"| status | {r.get('status')} |",
        f"| time to answer (s) | {r.get('seconds')} |",
        f"| resources/s | {r.get('resources_per_s', '–')} |",
        f"| RSS at rest before (MB) | {(r.get('rss_kb_rest') or 0) / 1024:.1f} |",
        f"| peak RSS, max(VmHWM, polled VmRSS) (MB) | {peak_kb / 1024:.1f} |",
        f"| peak RssAnon, polled (MB) | {(r.get('peak_rss_anon_kb_polled') or 0) / 1024:.1f} |",
        f"| 6 × bundle size (MB) | {limit_kb / 1024:.1f} |",
        f"| peak / bundle size | {r['peak_over_bundle']}× |",
        f"| (peak − rest) / bundle size | {r['peak_growth_over_bundle']}× |",
        f"| within 6× | {'yes' if r['within_6x'] else 'NO'} |",
        f"| RSS after (MB) | {(r.get('rss_kb_after') or 0) / 1024:.1f} |",
    ]
    if r.get("response_head"):
        md += ["", "Response head:", "", "```", r["response_head"][:1000], "```"]
    prof = r.get("profile", {})
    if prof.get("summary"):
        md += ["", f"Profile `{prof['file']}` ({prof['summary']['samples']} samples; {prof['summary']['threads']}):",
               "", "| self % | frame |", "|---:|---|"]
        md += [f"| {f['pct']} | `{f['frame']}` |" for f in prof["summary"]["self"][:12]]
    (args.results / "big_bundle.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0 if r.get("status") == 200 and r["within_6x"] else 1


if __name__ == "__main__":
    sys.exit(main())
