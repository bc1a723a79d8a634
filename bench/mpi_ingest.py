"""Transaction ingest with patient reconciliation off and on, on the demo bundles.

    python bench/mpi_ingest.py [--patients 200] [--clients 4] [--rounds 2]

Each round starts fhir-hub on a fresh SQLite file, once with ``FHIR_HUB_MPI=off`` and once with
``on`` (the order alternates between rounds), posts 20 warm-up bundles, then the same generated
outpatient bundles with ``bench/run.py``'s :func:`ingest` (``--clients`` at a time; the wall time
ends when the last bundle is findable). With reconciliation on, every Patient entry is matched
inside its transaction and gets a golden record and a link record. Prints resources/s of each run,
the best of each mode and the ratio on/off, and writes ``bench/results/mpi_ingest.json``.
"""

from __future__ import annotations

import argparse
import json
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
from bench.harness import RESULTS, child_env, fhir_hub_proc, free_port  # noqa: E402
from bench.run import git_commit, ingest, log  # noqa: E402


def one_run(tmp: Path, mode: str, bundles: list[dict[str, Any]], bodies: list[bytes],
            warm: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    db = tmp / f"hub-{mode}.db"
    for leftover in tmp.glob(f"hub-{mode}.db*"):
        leftover.unlink()
    proc = fhir_hub_proc(free_port(), db, tmp / f"fhir-hub-{mode}.log")
    proc.env = child_env(FHIR_HUB_MPI=mode)
    proc.start()
    try:
        ingest(proc, warm, [orjson.dumps(b) for b in warm], clients)
        out = ingest(proc, bundles, bodies, clients)
    finally:
        proc.stop()
    out.pop("_patients", None)
    return {k: out[k] for k in ("resources", "resources_ok", "seconds", "resources_per_s", "statuses", "errors")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--patients", type=int, default=200)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS / "mpi_ingest.json")
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="fhirhub-mpi-ingest-"))
    try:
        bundles, source = data.patient_bundles(args.patients, seed=1)
        warm, _ = data.patient_bundles(20, seed=3)
        bodies = [orjson.dumps(b) for b in bundles]
        log(f"{len(bundles)} bundles, {sum(len(b['entry']) for b in bundles)} resources ({source})")
        runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for i in range(args.rounds):
            for mode in (("off", "on") if i % 2 == 0 else ("on", "off")):
                r = one_run(tmp, mode, bundles, bodies, warm, args.clients)
                runs[mode].append(r)
                log(f"round {i + 1} mpi={mode}: {r['resources_per_s']} resources/s, statuses {r['statuses']}")
        best = {m: max(r["resources_per_s"] for r in rs) for m, rs in runs.items()}
        ratio = round(best["on"] / best["off"], 3) if best["off"] else None
        result = {"commit": git_commit(), "patients": args.patients, "clients": args.clients, "runs": runs,
                  "best_resources_per_s": best, "ratio_on_off": ratio}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"ingest, reconciliation off: {best['off']:.0f} resources/s")
        print(f"ingest, reconciliation on:  {best['on']:.0f} resources/s")
        print(f"ratio on/off: {ratio}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
