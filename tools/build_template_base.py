"""Copy the R4 StructureDefinitions the outpatient templates derive from into ``fhir_hub/profiles/base/``.

Why: ``fhir-hub profiles build`` runs from the installed package, where the 75 MB of R4 definitions
are not. Most template profiles derive from the shipped VN Core profiles (whose snapshots are
complete), but an Observation that is neither a vital sign nor a lab result (an exam finding, a
score, a history) derives from R4 Observation itself, so its snapshot is shipped too. The copy is
R4's own resource with the element ``mapping``s and the narrative dropped (they are not used to
derive or validate, and are two thirds of the size). A test checks the shipped file matches a rebuild.

Usage::

    python tools/build_template_base.py [--shared PATH_TO_SHARED] [--out OUTPUT_DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

OUT_DIR = Path(__file__).resolve().parents[1] / "fhir_hub" / "profiles" / "base"
TYPES = ("Observation",)


def compact(sd: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in sd.items() if k not in ("text", "mapping", "differential")}
    out["snapshot"] = {"element": [{k: v for k, v in e.items() if k != "mapping"} for e in sd["snapshot"]["element"]]}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared",
                        help="folder holding fhir-r4/definitions (default: beside the repo)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default: fhir_hub/profiles/base)")
    args = parser.parse_args(argv)
    source = args.shared / "fhir-r4" / "definitions" / "profiles-resources.json"
    if not source.is_file():
        print(f"{source} not found", file=sys.stderr)
        return 2
    found = {e["resource"]["id"]: e["resource"] for e in orjson.loads(source.read_bytes())["entry"]
             if e["resource"]["resourceType"] == "StructureDefinition" and e["resource"]["id"] in TYPES}
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name in TYPES:
        raw = orjson.dumps(compact(found[name]), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"
        (out / f"StructureDefinition-{name}.json").write_bytes(raw)
        print(f"StructureDefinition-{name}.json {len(raw):>9,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
