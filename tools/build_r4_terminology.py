"""Build R4's own CodeSystems and ValueSets into the terminology catalogue shipped in the package.

Why: bindings in R4 and in the VN profiles name R4 core value sets (``administrative-gender``,
``observation-status``, the v3 and v2 tables), and ``$lookup``/``$expand``/``$validate-code``
must answer for them as for the VN lists, without ``../shared`` at run time. This script reads the
official definition bundles once, at development time, and writes compact arrays under
``fhir_hub/terminology/data/r4/``; the files are committed and a test checks they match a rebuild.

What changes on the way: narrative (``text``) and concept ``definition`` texts are left out (size),
and nested concepts (``concept.concept``) are flattened into one list whose children carry a
``parent`` property, the shape the catalogue indexes (``hierarchyMeaning`` says what it means).
Output is deterministic (sorted by URL, sorted keys).

Usage::

    python tools/build_r4_terminology.py [--shared PATH_TO_SHARED] [--out OUTPUT_DIR]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = REPO_ROOT / "fhir_hub" / "terminology" / "data" / "r4"
#: The official bundles read, in order: a URL met again later is kept from the first.
SOURCES = ("valuesets.json", "v3-codesystems.json", "v2-tables.json")
_DROP = ("text",)


def _flatten(concepts: list[dict[str, Any]], parent: str | None = None) -> Iterator[dict[str, Any]]:
    for concept in concepts:
        flat = {k: v for k, v in concept.items() if k not in ("concept", "definition")}
        if parent is not None:
            props = [p for p in flat.get("property", ()) if p.get("code") != "parent"]
            flat["property"] = [*props, {"code": "parent", "valueCode": parent}]
        yield flat
        yield from _flatten(concept.get("concept", ()), concept["code"])


def code_system(resource: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in resource.items() if k not in _DROP}
    concepts = resource.get("concept", [])
    if any("concept" in c for c in concepts):
        out["concept"] = list(_flatten(concepts))
        declared = [p for p in out.get("property", ()) if p.get("code") != "parent"]
        out["property"] = [*declared, {"code": "parent", "uri": "http://hl7.org/fhir/concept-properties#parent",
                                       "type": "code", "description": "The concept this one is nested under"}]
        out.setdefault("hierarchyMeaning", "is-a")
    elif concepts:
        out["concept"] = [{k: v for k, v in c.items() if k != "definition"} for c in concepts]
    return out


def value_set(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in _DROP and k != "expansion"}


def build(definitions: Path) -> dict[str, bytes]:
    """File name -> JSON bytes: ``codesystems.json`` and ``valuesets.json``, arrays sorted by URL."""
    systems: dict[str, dict[str, Any]] = {}
    sets: dict[str, dict[str, Any]] = {}
    for name in SOURCES:
        bundle = orjson.loads((definitions / name).read_bytes())
        for entry in bundle.get("entry", []):
            res = entry["resource"]
            if res["resourceType"] == "CodeSystem" and res.get("url") and res.get("content") == "complete":
                systems.setdefault(res["url"], code_system(res))
            elif res["resourceType"] == "ValueSet" and res.get("url"):
                sets.setdefault(res["url"], value_set(res))
    dump = orjson.OPT_SORT_KEYS
    return {"codesystems.json": orjson.dumps([systems[u] for u in sorted(systems)], option=dump),
            "valuesets.json": orjson.dumps([sets[u] for u in sorted(sets)], option=dump)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    files = build(args.shared / "fhir-r4" / "definitions")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.out / name).write_bytes(data)
        print(f"{name}: {len(data):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
