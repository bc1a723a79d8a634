"""Validation throughput: ``fhir-hub validate`` over files (files/s, resources/s), and the validator layers
in one process (resources/s).

Usage: ``python bench/validate.py [--resources N] [--runs R] [--out FILE] [--no-layers]``

**CLI** (the figure issue 4 targets: resources/s per core validating VN Patients and vital-sign
Observations against their profiles). For each kind — the VN sample Patient against VN Core Patient,
the VN sample body-weight Observation against VN Core vital signs — N copies (distinct ids) are
written three ways: one resource per ``.json`` file in a folder, one ``.ndjson`` file, and Bundles
of 100 entries; then ``python -m fhir_hub validate PATH --profile URL`` runs as a child process
(stdout discarded), best of R runs, timed with ``time.perf_counter`` from start to exit; the same
command on one file gives the start-up (imports, terminology and profile loading). The same command
then runs in this process through typer's runner, warmed up (``in_process``): the time the CLI
spends on the files themselves, which start-up noise on a busy machine does not swamp. The CLI is
one process on one core, so resources/s is per core; the kind with the lowest in-process
resources/s is named as the limiting profile.

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
    """``{layout: (path, files)}``: a folder of single resources, one ndjson file, Bundles of 100."""
    singles = folder / "files"
    singles.mkdir()
    for r in items:
        (singles / f"{r['id']}.json").write_bytes(orjson.dumps(r))
    ndjson = folder / "all.ndjson"
    ndjson.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in items))
    bundles = folder / "bundles"
    bundles.mkdir()
    for start in range(0, len(items), BUNDLE_SIZE):
        part = items[start:start + BUNDLE_SIZE]
        doc = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in part]}
        (bundles / f"bundle-{start // BUNDLE_SIZE:05d}.json").write_bytes(orjson.dumps(doc))
    one = folder / "one.json"
    one.write_bytes(orjson.dumps(items[0]))
    return {"files": (singles, len(items)), "ndjson": (ndjson, 1),
            "bundles": (bundles, (len(items) + BUNDLE_SIZE - 1) // BUNDLE_SIZE), "one": (one, 1)}


def _command(path: Path, profile: str) -> list[str]:
    return ["validate", str(path), "--profile", profile]


def _run_cli(path: Path, profile: str, runs: int) -> float:
    """Best wall time of ``fhir-hub validate PATH --profile URL`` as a child process, start to exit."""
    cmd = [sys.executable, "-m", "fhir_hub", *_command(path, profile)]
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        done = subprocess.run(cmd, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed = time.perf_counter() - t
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} exited with {done.returncode}: {done.stderr.decode()[-2000:]}")
        best = min(best, elapsed)
    return best


def _run_in_process(path: Path, profile: str, runs: int) -> float:
    """Best wall time of the same command's code (typer's runner, this process, warmed up): what the
    CLI spends on the files once its imports and registries are loaded."""
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


def cli(n: int, runs: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fhir-hub-bench-validate-") as tmp:
        for kind, (make, profile) in KINDS.items():
            folder = Path(tmp) / kind.replace(" ", "-")
            folder.mkdir()
            layouts = _write_layouts(folder, _copies(make, n))
            one = layouts.pop("one")[0]
            startup = _run_cli(one, profile, runs)
            _run_in_process(one, profile, 1)  # warm-up: imports, terminology, the compiled profile
            rows: dict[str, Any] = {}
            for layout, (path, files) in layouts.items():
                total = _run_cli(path, profile, runs)
                inner = _run_in_process(path, profile, runs)
                rows[layout] = {"files": files, "resources": n, "process_s": round(total, 3),
                                "files_per_s": round(files / total, 1), "resources_per_s": round(n / total),
                                "in_process_s": round(inner, 3), "in_process_files_per_s": round(files / inner, 1),
                                "in_process_resources_per_s": round(n / inner)}
            out[kind] = {"profile": profile, "startup_s": round(startup, 3), "layouts": rows}
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--resources", type=int, default=5000, help="resources of each kind")
    parser.add_argument("--runs", type=int, default=3, help="CLI runs per figure (the best is kept)")
    parser.add_argument("--out", type=Path, default=RESULTS / "validate.json")
    parser.add_argument("--no-layers", action="store_true", help="only the CLI figures")
    args = parser.parse_args()
    result: dict[str, Any] = {"meta": {"resources": args.resources, "runs": args.runs, "bundle_size": BUNDLE_SIZE,
                                       "loadavg_start": loadavg()}}
    result["cli"] = cli(args.resources, args.runs)
    print(f"fhir-hub validate, {args.resources} resources of each kind, best of {args.runs} (one process, one core)")
    print(f"{'kind':24} {'layout':8} {'files':>6} {'process s':>10} {'files/s':>9} {'res/s':>8}   "
          f"{'in-process s':>12} {'files/s':>9} {'res/s':>8}")
    for kind, row in result["cli"].items():
        for layout, f in row["layouts"].items():
            print(f"{kind:24} {layout:8} {f['files']:6} {f['process_s']:10.2f} {f['files_per_s']:9,.1f} "
                  f"{f['resources_per_s']:8,}   {f['in_process_s']:12.2f} {f['in_process_files_per_s']:9,.1f} "
                  f"{f['in_process_resources_per_s']:8,}")
        print(f"{'':24} start-up (one file) {row['startup_s']:.2f} s; profile {row['profile']}")
    limit = min(result["cli"], key=lambda k: min(f["in_process_resources_per_s"]
                                                 for f in result["cli"][k]["layouts"].values()))
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
