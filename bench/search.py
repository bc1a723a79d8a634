"""Search at scale: issue 3's targets on ≥ 1,000 patients and ≥ 1,000,000 resources.

Builds (or reuses, ``--db``) a store by posting generated transaction bundles to a real server
(4 clients: the ingest figure *with full indexing*), then times each hot query sequentially
(latency, not throughput: the targets are p50/p75) over random patients. The floor printed next to
them is a read by id on the same server in the same run: the least a search could cost through
the whole stack.

    python bench/search.py --patients 1400 --encounters 50      # ~1M resources, builds ~/tmp
    python bench/search.py --db /tmp/hub-1m.db --reuse           # query an existing store
    python bench/search.py --patients 50 --encounters 5 --quick  # smoke (tests run this)
    python bench/search.py --postgres                            # the same on a throwaway PostgreSQL

With ``--postgres`` the store is a database of a PostgreSQL cluster started for the run
(``tests/pgcluster.py``, initdb defaults: fsync and synchronous commit on) and the results go to
``search-postgres.json``; compare them with ``search.json`` of a SQLite run on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.harness import Proc, fhir_hub_proc, free_port, loadavg  # noqa: E402
from fhir_hub.sample.generator import patient_bundles  # noqa: E402

FHIR = "application/fhir+json"
NID = "http://fhir.ehealth.gov.vn/core/sid/national_id"
RESULTS = ROOT / "bench" / "results"


def log(msg: str) -> None:
    print(f"[search {time.strftime('%H:%M:%S')}] {msg}", flush=True)


async def _post(port: int, bodies: list[bytes], clients: int) -> tuple[float, list[int], list[bytes]]:
    url = f"http://127.0.0.1:{port}/fhir"
    statuses = [0] * len(bodies)
    replies: list[bytes] = [b""] * len(bodies)
    it = iter(enumerate(bodies))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=600, limits=limits, headers={"Content-Type": FHIR}) as client:
        async def worker() -> None:
            for i, body in it:
                r = await client.post(url, content=body)
                statuses[i] = r.status_code
                replies[i] = r.content if r.status_code != 200 else b""
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - t0, statuses, replies


def build(port: int, patients: int, encounters: int, heavy: int, clients: int) -> dict[str, Any]:
    """Post ``patients`` bundles (plus one heavy patient); resources/s over the whole ingest."""
    total_s = 0.0
    resources = 0
    failed = 0
    chunk = 200
    gen = patient_bundles(patients, seed=7, encounters=encounters)
    done = 0
    while done < patients:
        bundles = [next(gen) for _ in range(min(chunk, patients - done))]
        bodies = [orjson.dumps(b) for b in bundles]
        seconds, statuses, replies = asyncio.run(_post(port, bodies, clients))
        total_s += seconds
        for b, s, reply in zip(bundles, statuses, replies, strict=True):
            if s == 200:
                resources += len(b["entry"])
            else:
                failed += 1
                if failed <= 3:
                    log(f"bundle failed {s}: {reply[:300]!r}")
        done += len(bundles)
        log(f"{done}/{patients} patients, {resources} resources, {resources / total_s:.0f} res/s")
    heavy_bundle = next(patient_bundles(1, seed=99, encounters=heavy))
    seconds, statuses, _ = asyncio.run(_post(port, [orjson.dumps(heavy_bundle)], 1))
    return {"resources": resources, "seconds": round(total_s, 1), "failed_bundles": failed,
            "resources_per_s": round(resources / total_s, 1) if total_s else 0.0,
            "heavy_patient_resources": len(heavy_bundle["entry"]), "heavy_status": statuses[0],
            "heavy_identifier": _nid(heavy_bundle)}


def _nid(bundle: dict[str, Any]) -> str:
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] == "Patient":
            for ident in r.get("identifier", []):
                if ident.get("system") == NID:
                    return str(ident["value"])
    raise ValueError("no national id")


def timed(client: httpx.Client, urls: list[str]) -> dict[str, Any]:
    times: list[float] = []
    sizes: list[int] = []
    for url in urls:
        t0 = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{url} answered {r.status_code}: {r.text[:300]}")
        body = r.json()
        sizes.append(body.get("total", len(body.get("entry", []))))
    times.sort()
    q = statistics.quantiles(times, n=100) if len(times) >= 2 else times * 99
    return {"n": len(times), "p50_ms": round(statistics.median(times), 2), "p75_ms": round(q[74], 2),
            "p99_ms": round(q[98], 2), "mean_result": round(statistics.mean(sizes), 1)}


def queries(port: int, n: int, heavy_nid: str) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}/fhir"
    rng = random.Random(5)
    with httpx.Client(base_url=base, timeout=120, headers={"Accept": FHIR}) as c:
        count = c.get("/Patient?_summary=count").json()["total"]
        total = sum(c.get(f"/{t}?_summary=count").json()["total"]
                    for t in ("Patient", "Encounter", "Observation", "Condition", "Organization"))
        sample = [e["resource"] for e in c.get("/Patient?_count=1000").json().get("entry", [])]
        pats = rng.sample(sample, min(n, len(sample)))
        nids = [next(i["value"] for i in p["identifier"] if i["system"] == NID) for p in pats]
        pids = [p["id"] for p in pats]
        obs = c.get(f"/Observation?subject=Patient/{pids[0]}&_count=1").json()["entry"][0]["resource"]
        code = obs["code"]["coding"][0]
        heavy = c.get(f"/Patient?identifier={NID}|{heavy_nid}").json()["entry"][0]["resource"]["id"]
        c.get("/metadata")
        out: dict[str, Any] = {"patients": count, "resources": total, "load_before": loadavg()}
        out["floor_read_by_id"] = timed(c, [f"/Patient/{p}" for p in pids])
        out["patient_by_identifier"] = timed(c, [f"/Patient?identifier={NID}|{v}" for v in nids])
        out["obs_subject_code_date"] = timed(c, [
            f"/Observation?subject=Patient/{p}&code={code['system']}|{code['code']}&date=ge2020-01-01" for p in pids])
        big = c.get("/Observation?category=vital-signs&_summary=count").json()["total"]
        out["count_token"] = {**timed(c, ["/Observation?category=vital-signs&_summary=count"] * max(5, n // 10)),
                              "matches": big}
        out["everything_heavy"] = timed(c, [f"/Patient/{heavy}/$everything?_count=1000"] * max(5, n // 5))
        out["revinclude_100"] = timed(c, [f"/Encounter?subject=Patient/{heavy}&_count=10"
                                          "&_revinclude=Observation:encounter" for _ in range(max(5, n // 5))])
        out["load_after"] = loadavg()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=1400)
    ap.add_argument("--encounters", type=int, default=50)
    ap.add_argument("--heavy", type=int, default=70, help="visits of the one heavy patient (~14 resources each)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--db", type=Path)
    ap.add_argument("--reuse", action="store_true", help="query an existing --db without ingesting")
    ap.add_argument("--quick", action="store_true", help="no result file (smoke runs)")
    ap.add_argument("--postgres", action="store_true", help="a PostgreSQL store (a cluster started for the run)")
    args = ap.parse_args(argv)
    cluster = None
    with tempfile.TemporaryDirectory(prefix="fhir-hub-search-") as tmp:
        db = args.db or Path(tmp) / "hub.db"
        target: Any = db
        if args.postgres:
            from tests.pgcluster import Cluster, find_bindir

            bindir = find_bindir()
            if bindir is None:
                print("PostgreSQL binaries not found (install Debian's postgresql package)", file=sys.stderr)
                return 2
            cluster = Cluster(bindir, durable=True).start()
            target = cluster.create_database("search")
        port = free_port()
        proc: Proc | None = None
        try:
            proc = fhir_hub_proc(port, target, Path(tmp) / "server.log").start()
            result: dict[str, Any] = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "args": vars(args) | {
                "db": str(args.db) if args.db else None}, "backend": "postgresql" if args.postgres else "sqlite"}
            if args.reuse:
                heavy_nid = (db.parent / (db.name + ".heavy")).read_text().strip()
            else:
                result["ingest_full_indexing"] = build(port, args.patients, args.encounters, args.heavy, args.clients)
                heavy_nid = result["ingest_full_indexing"]["heavy_identifier"]
                (db.parent / (db.name + ".heavy")).write_text(heavy_nid)
                log(f"ingest: {result['ingest_full_indexing']}")
            result["queries"] = queries(port, args.queries, heavy_nid)
            result["rss_kb"] = proc.rss_kb()
        finally:
            if proc is not None:
                proc.stop()
            if cluster is not None:
                cluster.stop()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        name = "search-postgres.json" if args.postgres else "search.json"
        (RESULTS / name).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
