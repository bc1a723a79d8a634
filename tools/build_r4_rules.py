"""Distil the R4 (4.0.1) rules the core StructureDefinitions add to the element model: invariants and
core extension definitions, into ``fhir_hub/validation/data/``.

Why a separate, compiled file: the element model (``fhir_hub/definitions/r4/types.json``) carries
cardinality, types and required ``code`` bindings, enough for the structural pass on every write; the
core profile says more (``constraint`` on resources, backbone elements and datatypes; what each core
extension may hold and where it may be used). The official bundles are ~45 MB; what the validator needs
of them is a few hundred kB, committed and loaded once.

Usage::

    python tools/build_r4_rules.py [--shared PATH_TO_SHARED] [--out OUTPUT_DIR]

Output (orjson, sorted keys, deterministic):

``r4-invariants.json``
    ``{element path: [[key, severity, expression, human], ...]}``. The path is the element's path in
    its own definition (``Patient``, ``Patient.contact``, ``Quantity``, ``Narrative.div``,
    ``RiskAssessment.prediction.probability[x]``). A constraint is kept on the element where it is
    defined, and on a root also when inherited (``dom-2`` on every DomainResource, ``qty-3`` on
    ``Age``), never on the elements that merely use a type (``ext-1`` is on ``Extension`` only).
    ``severity`` is ``warning`` for a best-practice constraint (they are guidance, not rules).

``r4-bindings.json``
    ``{element path: [value set URL, [systems], [codes]]}``: the required bindings on CodeableConcept
    and Coding elements whose value set is enumerable from the definitions (``Condition.clinicalStatus``;
    ``ucum-units`` and LOINC answer lists are not, and are left out). The ``code`` bindings are already in
    the element model.

``r4-extensions.json``
    ``{url: {"context": [element path or type, ...], "value": [JSON keys allowed] | [],
    "modifier": bool}}`` for the core extensions (``value`` empty: a complex extension, no value).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = REPO_ROOT / "fhir_hub" / "validation" / "data"
SD = "http://hl7.org/fhir/StructureDefinition/"
BEST_PRACTICE = SD + "elementdefinition-bestpractice"
# Datatype profiles with constraints of their own, used as element types by the core resources.
DATATYPE_PROFILES = ("SimpleQuantity", "MoneyQuantity")


def load_bundle(path: Path) -> list[dict[str, Any]]:
    return [e["resource"] for e in orjson.loads(path.read_bytes()).get("entry", [])]


def _severity(c: dict[str, Any]) -> str:
    best = any(x.get("url") == BEST_PRACTICE and x.get("valueBoolean") for x in c.get("extension", ()))
    return "warning" if best or c.get("severity") == "warning" else "error"


def build_invariants(defs: Path) -> dict[str, list[list[str]]]:
    out: dict[str, list[list[str]]] = {}
    for name in ("profiles-resources.json", "profiles-types.json"):
        for sd in load_bundle(defs / name):
            if sd.get("resourceType") != "StructureDefinition":
                continue
            if sd.get("derivation") == "constraint" and sd["id"] not in DATATYPE_PROFILES:
                continue
            own = sd["id"]
            for i, e in enumerate(sd["snapshot"]["element"]):
                for c in e.get("constraint", ()):
                    source = str(c.get("source") or SD + own).rsplit("/", 1)[-1]
                    if source != own and i > 0:
                        continue  # a type's own rule, kept on the type itself
                    if source == "Element" and own != "Element":
                        continue  # ele-1 is the Element root's rule
                    if not c.get("expression"):
                        continue
                    path = own + e["path"][len(sd["type"]):] if i else own
                    out.setdefault(path, []).append([c["key"], _severity(c), c["expression"], c.get("human", "")])
    return out


def build_extensions(defs: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for sd in load_bundle(defs / "extension-definitions.json"):
        if sd.get("resourceType") != "StructureDefinition" or sd.get("type") != "Extension":
            continue
        value: list[str] = []
        modifier = False
        for e in sd["snapshot"]["element"]:
            if e["id"] == "Extension.value[x]" and e.get("max") != "0":
                value = sorted("value" + t["code"][0].upper() + t["code"][1:] for t in e.get("type", ()))
            if e["id"] == "Extension":
                modifier = bool(e.get("isModifier"))
        out[sd["url"]] = {
            "context": sorted({c["expression"] for c in sd.get("context", ()) if c.get("type") == "element"}),
            "value": value,
            "modifier": modifier,
        }
    return out


def build_bindings(defs: Path) -> dict[str, list[Any]]:
    sys.path.insert(0, str(Path(__file__).parent))
    from build_definitions import Terminology

    terms = [r for name in ("valuesets.json", "v3-codesystems.json", "v2-tables.json") for r in load_bundle(defs / name)]
    terminology = Terminology(terms)
    out: dict[str, list[Any]] = {}
    for name in ("profiles-resources.json", "profiles-types.json"):
        for sd in load_bundle(defs / name):
            if sd.get("resourceType") != "StructureDefinition" or sd.get("derivation") == "constraint":
                continue
            for e in sd["snapshot"]["element"]:
                b = e.get("binding") or {}
                codes = [t["code"] for t in e.get("type", ())]
                if b.get("strength") != "required" or not e["path"].startswith(sd["type"]) or not (
                        set(codes) & {"CodeableConcept", "Coding"}):
                    continue
                url = b["valueSet"].split("|", 1)[0]
                found = terminology.codes(url)
                if found is None:
                    continue
                vs = terminology.value_sets[url]
                systems = sorted({i["system"] for i in vs["compose"].get("include", ()) if "system" in i})
                out[e["path"]] = [url, systems, sorted(found)]
    return out


def write(path: Path, data: Any) -> int:
    blob = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    path.write_bytes(blob)
    return len(blob)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared",
                        help="folder holding fhir-r4/definitions (default: 'shared' beside the repo)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    args = parser.parse_args(argv)
    defs = args.shared / "fhir-r4" / "definitions"
    if not defs.is_dir():
        print(f"definitions not found: {defs}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in (("r4-invariants.json", build_invariants(defs)), ("r4-extensions.json", build_extensions(defs)),
                       ("r4-bindings.json", build_bindings(defs))):
        print(f"{name:22} {write(args.out / name, data):>9,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
