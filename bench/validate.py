"""Validation throughput: ``fhir-hub validate`` over files (files/s, resources/s), and the validator layers
in one process (resources/s).

Usage: ``python bench/validate.py [--resources N] [--runs R] [--jobs J] [--out FILE] [--no-layers]``

**CLI** (the figure issue 4 targets: resources/s per core validating VN Patients and vital-sign
Observations against their profiles, start-up included). For each kind — the VN sample Patient
against VN Core Patient, the VN sample body-weight Observation against VN Core vital signs — N
copies (distinct ids) are written four ways: one ``.ndjson`` file (1 × N), files of 10 resources
(N/10 ndjson files), one resource per ``.json`` file (N × 1), and Bundles of 100 entries. Then
``python -m fhir_hub validate PATH --profile URL`` runs as a child process (stdout discarded) with
``--jobs 1`` and with ``--jobs J`` (default: the cores of this machine), each best of R runs: wall
time (``time.perf_counter``, start to exit) and CPU time (user + system of the child and its
workers, from ``getrusage(RUSAGE_CHILDREN)``). Reported: files/s and resources/s by wall time
(total), the same divided by the jobs (per core), and resources per CPU-second (per core, what a
loaded machine's wall clock hides). The same command on one file gives the start-up (wall and
CPU: imports, the compiled profile, the code lists it binds). The command then runs in this process
through typer's runner with ``--jobs 1``, warmed up (``in_process``): the time spent on the files
themselves. The kind with the lowest per-CPU-second rate names the limiting profile.

**Layers** (in process, best of three after a warm-up): per kind, the structural validator alone
(``structure.validate``), the profile layer alone (``profile.validate`` against the default VN
profile), both as the CLI runs them (``profile.validate_resource``), and fhirpathpy evaluating one
invariant (vs-2) for scale; kinds are the two above plus the claims mapping's output for the
synthetic GIAMDINHHS samples.

Results: printed, and written as JSON to ``--out`` (default ``bench/results/validate.json``).
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from bench.harness import RESULTS, child_env, loadavg  # noqa: E402
from fhir_hub import profiles  # noqa: E402
from tests.validation import vn_samples  # noqa: E402

BUNDLE_SIZE = 100
KINDS: dict[str, tuple[Callable[[], dict[str, Any]], str]] = {
    "Patient": (vn_samples.patient, profiles.PATIENT),
    "vital-sign Observation": (vn_samples.vital_sign, profiles.VITAL_SIGNS),
}


def _copies(make: Callable[[], dict[str, Any]], n: int) -> list[dict[str, Any]]:
    base = make()
    return [{**copy.deepcopy(base), "id": f"b{i}"} for i in range(n)]


def _write_layouts(folder: Path, items: list[dict[str, Any]]) -> dict[str, tuple[Path, int]]:
    """``{layout: (path, files)}``: one ndjson file, ndjson files of 10, a folder of single resources,
    Bundles of 100."""
    singles = folder / "files"
    singles.mkdir()
    for r in items:
        (singles / f"{r['id']}.json").write_bytes(orjson.dumps(r))
    ndjson = folder / "all.ndjson"
    ndjson.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in items))
    tens = folder / "tens"
    tens.mkdir()
    for start in range(0, len(items), 10):
        (tens / f"part-{start // 10:05d}.ndjson").write_bytes(b"".join(orjson.dumps(r) + b"\n"
                                                                     for r in items[start:start + 10]))
    bundles = folder / "bundles"
    bundles.mkdir()
    for start in range(0, len(items), BUNDLE_SIZE):
        part = items[start:start + BUNDLE_SIZE]
        doc = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in part]}
        (bundles / f"bundle-{start // BUNDLE_SIZE:05d}.json").write_bytes(orjson.dumps(doc))
    one = folder / "one.json"
    one.write_bytes(orjson.dumps(items[0]))
    return {"1 ndjson": (ndjson, 1), "ndjson of 10": (tens, (len(items) + 9) // 10),
            "json of 1": (singles, len(items)), "bundles": (bundles, (len(items) + BUNDLE_SIZE - 1) // BUNDLE_SIZE),
            "one": (one, 1)}


def _command(path: Path, profile: str, jobs: int = 1) -> list[str]:
    return ["validate", str(path), "--profile", profile, "--jobs", str(jobs)]


def _children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def _run_cli(path: Path, profile: str, runs: int, jobs: int = 1) -> tuple[float, float]:
    """Best wall time and best CPU time (the child and its workers) of ``fhir-hub validate PATH
    --profile URL --jobs J`` as a child process, start to exit."""
    cmd = [sys.executable, "-m", "fhir_hub", *_command(path, profile, jobs)]
    best, best_cpu = float("inf"), float("inf")
    for _ in range(runs):
        cpu = _children_cpu()
        t = time.perf_counter()
        done = subprocess.run(cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - t
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited with {done.returncode}: {done.stderr.decode()[-2000:]}")
        best, best_cpu = min(best, elapsed), min(best_cpu, _children_cpu() - cpu)
    return best, best_cpu


def _run_in_process(path: Path, profile: str, runs: int) -> float:
    """Best wall time of the same command's code (typer's runner, this process, ``--jobs 1``, warmed
    up): what the CLI spends on the files once its imports and registries are loaded."""
    from typer.testing import CliRunner

    from fhir_hub.cli.main import app

    runner = CliRunner()
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        result = runner.invoke(app, _command(path, profile))
        elapsed = time.perf_counter() - t
        if result.exit_code != 0:
            raise SystemExit(f"fhir-hub validate {path} exited with {result.exit_code}: {result.output[-2000:]}")
        best = min(best, elapsed)
    return best


def _effective_jobs(path: Path, jobs: int) -> int:
    """The processes ``--jobs J`` gives on ``path``: the CLI checks small inputs in one process."""
    from fhir_hub.cli.validate import _SMALL

    size = sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else path.stat().st_size
    return 1 if size <= _SMALL else jobs


def _row(files: int, n: int, jobs: int, wall: float, cpu: float) -> dict[str, Any]:
    return {"jobs": jobs, "files": files, "resources": n, "process_s": round(wall, 3), "cpu_s": round(cpu, 3),
            "files_per_s": round(files / wall, 1), "resources_per_s": round(n / wall),
            "resources_per_s_per_core": round(n / wall / jobs), "resources_per_cpu_s": round(n / cpu)}


def cli(n: int, runs: int, jobs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fhir-hub-bench-validate-") as tmp:
        for kind, (make, profile) in KINDS.items():
            folder = Path(tmp) / kind.replace(" ", "-")
            folder.mkdir()
            layouts = _write_layouts(folder, _copies(make, n))
            one = layouts.pop("one")[0]
            startup, startup_cpu = _run_cli(one, profile, runs)
            _run_in_process(one, profile, 1)  # warm-up: imports, the compiled profile, its code lists
            rows: dict[str, Any] = {}
            for layout, (path, files) in layouts.items():
                found = [_row(files, n, _effective_jobs(path, j), *_run_cli(path, profile, runs, j))
                         for j in dict.fromkeys((1, jobs))]
                inner = _run_in_process(path, profile, runs)
                rows[layout] = {"runs": found, "in_process_s": round(inner, 3),
                                "in_process_files_per_s": round(files / inner, 1),
                                "in_process_resources_per_s": round(n / inner)}
            out[kind] = {"profile": profile, "startup_s": round(startup, 3), "startup_cpu_s": round(startup_cpu, 3),
                         "layouts": rows}
    return out


def _rate(fn: Callable[[dict[str, Any]], Any], items: list[dict[str, Any]]) -> float:
    for r in items[:200]:
        fn(r)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for r in items:
            fn(r)
        best = min(best, time.perf_counter() - t)
    return len(items) / best


def layers(n: int) -> dict[str, dict[str, float]]:
    import fhirpathpy
    from fhirpathpy.models import models

    from fhir_hub.mapping import map_file
    from fhir_hub.validation import profile, structure

    mapped: list[dict[str, Any]] = []
    for path in sorted((ROOT.parent / "shared" / "vn" / "bhyt-xml" / "sample-synthetic").glob("GIAMDINHHS_*.xml")):
        for h in map_file(path.read_bytes(), path.name).hosos:
            if h.bundle is not None:
                mapped.extend(e["resource"] for e in h.bundle["entry"] if profiles.default_profiles(e["resource"]))
    kinds = {f"{k} (VN sample)": [make()] for k, (make, _url) in KINDS.items()}
    if mapped:
        kinds["claims-mapping resources"] = mapped
    default: dict[int, list[str]] = {}

    def profile_only(r: dict[str, Any]) -> None:
        urls = default.get(id(r))
        if urls is None:
            urls = default[id(r)] = profiles.default_profiles(r)
        for u in urls:
            profile.validate(r, u)

    vs2 = fhirpathpy.compile("(component.empty() and hasMember.empty()) implies (dataAbsentReason.exists() or "
                             "value.exists())", models["r4"])
    out: dict[str, dict[str, float]] = {}
    for kind, base in kinds.items():
        items = [copy.deepcopy(base[i % len(base)]) for i in range(n)]
        out[kind] = {"structural": _rate(structure.validate, items), "profile": _rate(profile_only, items),
                     "both": _rate(profile.validate_resource, items),
                     "fhirpathpy_one_invariant": _rate(lambda r: vs2(r, {}), items[: max(len(items) // 10, 1)])}
    return out


def main() -> None:
    from fhir_hub.cli.validate import default_jobs

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--resources", type=int, default=10000, help="resources of each kind")
    parser.add_argument("--runs", type=int, default=3, help="CLI runs per figure (the best is kept)")
    parser.add_argument("--jobs", type=int, default=default_jobs(), help="--jobs of the multi-core runs")
    parser.add_argument("--out", type=Path, default=RESULTS / "validate.json")
    parser.add_argument("--no-layers", action="store_true", help="only the CLI figures")
    args = parser.parse_args()
    result: dict[str, Any] = {"meta": {"resources": args.resources, "runs": args.runs, "bundle_size": BUNDLE_SIZE,
                                       "jobs": args.jobs, "cores": default_jobs(), "loadavg_start": loadavg()}}
    result["cli"] = cli(args.resources, args.runs, args.jobs)
    print(f"fhir-hub validate, {args.resources} resources of each kind, best of {args.runs}; wall and CPU time")
    print(f"{'kind':24} {'layout':12} {'files':>6} {'jobs':>4} {'wall s':>7} {'files/s':>9} {'res/s':>8} "
          f"{'res/s/core':>10} {'CPU s':>6} {'res/CPU-s':>9}   {'in-process res/s':>16}")
    for kind, row in result["cli"].items():
        for layout, f in row["layouts"].items():
            for r in f["runs"]:
                print(f"{kind:24} {layout:12} {r['files']:6} {r['jobs']:4} {r['process_s']:7.2f} "
                      f"{r['files_per_s']:9,.1f} {r['resources_per_s']:8,} {r['resources_per_s_per_core']:10,} "
                      f"{r['cpu_s']:6.2f} {r['resources_per_cpu_s']:9,}   {f['in_process_resources_per_s']:16,}")
        print(f"{'':24} start-up (one file) {row['startup_s']:.2f} s wall, {row['startup_cpu_s']:.2f} s CPU; "
              f"profile {row['profile']}")
    limit = min(result["cli"], key=lambda k: min(r["resources_per_cpu_s"] for f in result["cli"][k]["layouts"].values()
                                                 for r in f["runs"]))
    result["limiting_profile"] = result["cli"][limit]["profile"]
    print(f"limiting profile: {result['limiting_profile']} ({limit})")
    if not args.no_layers:
        result["layers"] = layers(args.resources)
        print(f"\n{'in process':40} {'structural':>12} {'profile':>12} {'both':>12} {'fhirpathpy 1 inv':>17}"
              "  (resources/s)")
        for kind, r in result["layers"].items():
            print(f"{kind:40} {r['structural']:12,.0f} {r['profile']:12,.0f} {r['both']:12,.0f} "
                  f"{r['fhirpathpy_one_invariant']:17,.0f}")
    result["meta"]["loadavg_end"] = loadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
