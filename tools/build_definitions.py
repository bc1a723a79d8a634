"""Compile the official FHIR R4 (4.0.1) definitions into the compact JSON shipped in the package.

Why: the official bundles are ~75 MB and slow to parse; the server only needs the element
model (for structural validation and ``_summary``), the SearchParameters and the compartment
definitions.  This script distils them once, at development time, into a few small files under
``fhir_hub/definitions/r4/`` that are committed and loaded at start-up in milliseconds.

Usage::

    python tools/build_definitions.py [--shared PATH_TO_SHARED] [--out OUTPUT_DIR]

``--shared`` defaults to the ``shared`` folder beside the repository root (the folder holding
``fhir-r4/definitions``).  The output is deterministic (sorted keys), so re-running it on the
same input gives byte-identical files.

Output files (orjson, no indentation):

``types.json``
    ``{"version", "resourceTypes": [...], "primitives": {name: {"json", "regex"}},
    "types": {name: {"kind", "elements": {jsonName: element}}}, "valueSets": {url: [codes]}}``

    ``kind`` is ``resource`` | ``abstract-resource`` | ``complex-type`` | ``backbone`` |
    ``constraint`` (SimpleQuantity, MoneyQuantity).  Backbone elements are flattened under their
    path (``Patient.contact``), and an element whose children are defined inline or which uses
    ``contentReference`` has that path as its ``type`` (``Questionnaire.item.item`` ->
    ``Questionnaire.item``).  An element is ``{"type", "min", "max" (int or "*"), "summary"}``
    plus, only when relevant: ``"modifier": true``, ``"choice": "value"`` (the ``value[x]``
    group a concrete ``valueQuantity`` belongs to), ``"binding": url`` (required binding whose
    codes are enumerable, see ``valueSets``), ``"attr": true`` (an XML attribute such as
    ``Element.id``: no ``_name`` sibling allowed in JSON), ``"targets": [...]`` (Reference target
    resource types).  Choice elements are expanded into their concrete JSON names.

``search-parameters.json``
    list of ``{"id", "url", "code", "base": [], "type", "target": [], "modifier": [],
    "comparator": [], "component": [{"definition", "expression"}]}`` plus, when present,
    ``"expression"``, ``"xpathUsage"``, ``"multipleOr"``, ``"multipleAnd"``, ``"chain"``.

``compartments.json``
    ``{compartmentCode: {resourceType: [paramCode, ...]}}`` (resource types with no params omitted).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

import orjson

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
REGEX_EXT = "http://hl7.org/fhir/StructureDefinition/regex"
SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
# Constraint profiles on datatypes that the core resources use as element types.  They are
# compiled as their own types so that e.g. ``SimpleQuantity.comparator`` is rejected.
DATATYPE_CONSTRAINTS = ("SimpleQuantity", "MoneyQuantity")
COMPARTMENTS = ("patient", "encounter", "practitioner", "relatedPerson", "device")
# XML Schema's ``\s`` is exactly these four characters (not Python's Unicode whitespace).
XML_WS = " \t\n\r"

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = REPO_ROOT / "fhir_hub" / "definitions" / "r4"


# --------------------------------------------------------------------------- helpers


def load_bundle(path: Path) -> list[dict[str, Any]]:
    """Resources of a definition Bundle, in file order."""
    bundle = orjson.loads(path.read_bytes())
    return [entry["resource"] for entry in bundle.get("entry", [])]


def xsd_regex_to_python(rx: str) -> str:
    """Translate an XML Schema regex (FHIR's dialect) into an equivalent Python ``re`` pattern.

    Why: in XML Schema ``\\s`` means only space/tab/CR/LF, while Python's ``\\s`` (and ``\\S``)
    are Unicode-aware.  Used as-is, FHIR's own patterns would reject U+00A0 in strings and codes,
    which the spec does not intend.  The result is meant for ``re.fullmatch`` (FHIR patterns are
    implicitly anchored).
    """
    ws_class = "[ \\t\\n\\r]"
    not_ws_class = "[^ \\t\\n\\r]"
    out: list[str] = []
    i = 0
    n = len(rx)
    while i < n:
        c = rx[i]
        if c == "\\" and i + 1 < n:
            nxt = rx[i + 1]
            if nxt == "s":
                out.append(ws_class)
            elif nxt == "S":
                out.append(not_ws_class)
            else:
                out.append(rx[i : i + 2])
            i += 2
            continue
        if c == "[":
            j = i + 1
            negated = j < n and rx[j] == "^"
            if negated:
                j += 1
            items: list[str] = []  # raw class items (Python syntax)
            literal_chars: set[str] = set()
            has_big_s = False
            while j < n and rx[j] != "]":
                if rx[j] == "\\" and j + 1 < n:
                    esc = rx[j + 1]
                    if esc == "s":
                        items.append("\\t\\n\\r ")
                        literal_chars.update(XML_WS)
                    elif esc == "S":
                        has_big_s = True
                    else:
                        items.append(rx[j : j + 2])
                        literal_chars.add({"t": "\t", "n": "\n", "r": "\r"}.get(esc, esc))
                    j += 2
                else:
                    items.append(rx[j])
                    literal_chars.add(rx[j])
                    j += 1
            if j >= n:
                raise ValueError(f"unterminated character class in {rx!r}")
            if has_big_s:
                if negated:
                    raise ValueError(f"negated class with \\S not supported: {rx!r}")
                # [...\S] == everything except the XML whitespace not otherwise listed
                missing = [w for w in XML_WS if w not in literal_chars]
                if not missing:
                    out.append("(?s:.)")
                else:
                    esc_missing = "".join({"\t": "\\t", "\n": "\\n", "\r": "\\r"}.get(w, w) for w in missing)
                    out.append(f"[^{esc_missing}]")
            else:
                out.append("[" + ("^" if negated else "") + "".join(items) + "]")
            i = j + 1
            continue
        out.append(c)
        i += 1
    result = "".join(out)
    re.compile(result)
    return result


def ext_value(exts: list[dict[str, Any]] | None, url: str) -> Any:
    for ext in exts or ():
        if ext.get("url") == url:
            for key, val in ext.items():
                if key.startswith("value"):
                    return val
    return None


def cap(code: str) -> str:
    return code[:1].upper() + code[1:]


# --------------------------------------------------------------------------- value sets


class Terminology:
    """Enumerates the codes of value sets from the definition bundles, where that is possible.

    Why: only a required binding whose full code list is known can be checked offline; value sets
    with filters, external code systems (UCUM, BCP-13, ISO 4217...) or incomplete code systems are
    reported as not enumerable (``None``) and the binding is then simply not checked.
    """

    def __init__(self, resources: list[dict[str, Any]]):
        self.value_sets: dict[str, dict[str, Any]] = {}
        self.code_systems: dict[str, dict[str, Any]] = {}
        for res in resources:
            if res["resourceType"] == "ValueSet":
                self.value_sets.setdefault(res["url"], res)
            elif res["resourceType"] == "CodeSystem":
                self.code_systems.setdefault(res["url"], res)
        self._cache: dict[str, frozenset[str] | None] = {}

    def codes(self, url: str) -> frozenset[str] | None:
        url = url.split("|", 1)[0]
        if url not in self._cache:
            self._cache[url] = None  # guards against include cycles
            self._cache[url] = self._enumerate(url)
        return self._cache[url]

    def _system_codes(self, system: str) -> set[str] | None:
        cs = self.code_systems.get(system)
        if cs is None or cs.get("content") != "complete":
            return None
        found: set[str] = set()

        def walk(concepts: list[dict[str, Any]]) -> None:
            for concept in concepts:
                found.add(concept["code"])
                walk(concept.get("concept", []))

        walk(cs.get("concept", []))
        return found or None

    def _component(self, inc: dict[str, Any]) -> set[str] | None:
        if inc.get("filter"):
            return None
        result: set[str] | None = None
        if "system" in inc:
            if "concept" in inc:
                result = {c["code"] for c in inc["concept"]}
            else:
                result = self._system_codes(inc["system"])
                if result is None:
                    return None
        for vs_url in inc.get("valueSet", []):
            sub = self.codes(vs_url)
            if sub is None:
                return None
            result = set(sub) if result is None else result & sub
        return result

    def _enumerate(self, url: str) -> frozenset[str] | None:
        vs = self.value_sets.get(url)
        if vs is None or "compose" not in vs:
            return None
        codes: set[str] = set()
        for inc in vs["compose"].get("include", []):
            part = self._component(inc)
            if part is None:
                return None
            codes |= part
        for exc in vs["compose"].get("exclude", []):
            part = self._component(exc)
            if part is None:
                return None
            codes -= part
        return frozenset(codes) if codes else None


# --------------------------------------------------------------------------- element model


def primitive_info(sd: dict[str, Any]) -> dict[str, Any]:
    """JSON representation and (Python) regex of a primitive type, from its StructureDefinition."""
    name = sd["type"]
    regex: str | None = None
    for el in sd["snapshot"]["element"]:
        if el["path"] == f"{name}.value":
            for t in el.get("type", []):
                regex = ext_value(t.get("extension"), REGEX_EXT)
    if name == "boolean":
        json_type = "boolean"
    elif name in ("integer", "positiveInt", "unsignedInt"):
        json_type = "integer"
    elif name == "decimal":
        json_type = "number"
    else:
        json_type = "string"
    info: dict[str, Any] = {"json": json_type}
    if regex is not None:
        info["regex"] = xsd_regex_to_python(regex)
    return info


def element_type_code(t: dict[str, Any]) -> str:
    """FHIR type code of one ``ElementDefinition.type``, mapping FHIRPath system types back."""
    code: str = t["code"]
    if code.startswith("http://hl7.org/fhirpath/System."):
        fhir_type = ext_value(t.get("extension"), FHIR_TYPE_EXT)
        return str(fhir_type) if fhir_type else "string"
    for profile in t.get("profile", []):
        tail: str = profile.rsplit("/", 1)[-1]
        if profile.startswith(SD_PREFIX) and tail in DATATYPE_CONSTRAINTS:
            return tail
    return code


def compile_sd(sd: dict[str, Any], type_name: str, kind: str, term: Terminology) -> dict[str, dict[str, Any]]:
    """Flatten one StructureDefinition snapshot into ``{typeName: {"kind", "elements"}}``.

    The root type gets ``type_name``; every element with inline children (a BackboneElement or an
    ``Element`` such as ``Timing.repeat``) becomes its own type named by its path.
    """
    elements = [el for el in sd["snapshot"]["element"] if "sliceName" not in el]
    root_path = elements[0]["path"]
    parents = {el["path"].rsplit(".", 1)[0] for el in elements if "." in el["path"]}
    out: dict[str, dict[str, Any]] = {type_name: {"kind": kind, "elements": {}}}

    def type_key(path: str) -> str:
        return type_name if path == root_path else path

    for el in elements[1:]:
        path: str = el["path"]
        parent, name = path.rsplit(".", 1)
        if el["max"] == "0":
            continue  # removed by a constraint profile (SimpleQuantity.comparator)
        container = out.setdefault(type_key(parent), {"kind": "backbone", "elements": {}})["elements"]
        base: dict[str, Any] = {
            "min": el["min"],
            "max": "*" if el["max"] == "*" else int(el["max"]),
            "summary": bool(el.get("isSummary", False)),
        }
        if el.get("isModifier"):
            base["modifier"] = True
        if "xmlAttr" in el.get("representation", ()):
            base["attr"] = True
        binding = el.get("binding")
        required_vs: str | None = None
        if binding and binding.get("strength") == "required" and binding.get("valueSet"):
            if term.codes(binding["valueSet"]) is not None:
                required_vs = binding["valueSet"].split("|", 1)[0]

        if "contentReference" in el:
            container[name] = {"type": type_key(el["contentReference"].lstrip("#")), **base}
            continue
        if path in parents:
            out.setdefault(path, {"kind": "backbone", "elements": {}})
            container[name] = {"type": path, **base}
            continue

        types = el.get("type", [])
        is_choice = name.endswith("[x]")
        if not is_choice and len(types) != 1:
            raise ValueError(f"{path}: expected exactly one type, got {types}")
        stem = name[:-3] if is_choice else name
        for t in types:
            code = element_type_code(t)
            if kind in ("resource", "abstract-resource") and path == f"{root_path}.id":
                code = "id"  # Resource.id is an ``id``, though the snapshot says System.String
            entry: dict[str, Any] = {"type": code, **base}
            if is_choice:
                entry["choice"] = stem
            if required_vs is not None and code == "code":
                entry["binding"] = required_vs
            if code == "Reference":
                targets = sorted(
                    {p.rsplit("/", 1)[-1] for p in t.get("targetProfile", []) if p.startswith(SD_PREFIX)}
                )
                if targets and targets != ["Resource"]:
                    entry["targets"] = targets
            # the JSON name uses the base type code (doseQuantity), even for SimpleQuantity
            container[stem + cap(t["code"]) if is_choice else name] = entry
    return out


def build_types(defs: Path) -> dict[str, Any]:
    type_sds = [
        r for r in load_bundle(defs / "profiles-types.json") if r["resourceType"] == "StructureDefinition"
    ]
    res_sds = [
        r for r in load_bundle(defs / "profiles-resources.json") if r["resourceType"] == "StructureDefinition"
    ]
    term = Terminology(load_bundle(defs / "valuesets.json") + load_bundle(defs / "v3-codesystems.json"))

    primitives: dict[str, Any] = {}
    types: dict[str, Any] = {}
    resource_types: list[str] = []
    for sd in type_sds:
        if sd["kind"] == "primitive-type":
            primitives[sd["type"]] = primitive_info(sd)
        elif sd.get("derivation") == "constraint":
            if sd["id"] in DATATYPE_CONSTRAINTS:
                types.update(compile_sd(sd, sd["id"], "constraint", term))
        else:
            types.update(compile_sd(sd, sd["type"], "complex-type", term))
    for sd in res_sds:
        if sd["kind"] != "resource" or sd.get("derivation") == "constraint":
            continue
        kind = "abstract-resource" if sd.get("abstract") else "resource"
        if kind == "resource":
            resource_types.append(sd["type"])
        types.update(compile_sd(sd, sd["type"], kind, term))

    # Sanity: every referenced type must be defined (or be a primitive, or "Resource").
    for tname, tdef in types.items():
        for ename, edef in tdef["elements"].items():
            ref = edef["type"]
            if ref not in types and ref not in primitives:
                raise ValueError(f"{tname}.{ename}: unknown type {ref}")

    used_vs = sorted({e["binding"] for t in types.values() for e in t["elements"].values() if "binding" in e})
    value_sets = {url: sorted(term.codes(url) or ()) for url in used_vs}
    return {
        "version": "4.0.1",
        "resourceTypes": sorted(resource_types),
        "primitives": primitives,
        "types": types,
        "valueSets": value_sets,
    }


# --------------------------------------------------------------------------- search & compartments


def build_search_parameters(defs: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for sp in load_bundle(defs / "search-parameters.json"):
        if sp["resourceType"] != "SearchParameter":
            continue
        item: dict[str, Any] = {
            "id": sp["id"],
            "url": sp["url"],
            "code": sp["code"],
            "base": list(sp.get("base", [])),
            "type": sp["type"],
            "target": list(sp.get("target", [])),
            "modifier": list(sp.get("modifier", [])),
            "comparator": list(sp.get("comparator", [])),
            "component": [
                {"definition": c["definition"], "expression": c["expression"]}
                for c in sp.get("component", [])
            ],
        }
        for key in ("expression", "xpathUsage", "multipleOr", "multipleAnd", "chain"):
            if key in sp:
                item[key] = sp[key]
        out.append(item)
    return out


def build_compartments(defs: Path) -> dict[str, dict[str, list[str]]]:
    out: dict[str, dict[str, list[str]]] = {}
    for name in COMPARTMENTS:
        cd = orjson.loads((defs / f"CompartmentDefinition-{name}.json").read_bytes())
        out[cd["code"]] = {r["code"]: list(r["param"]) for r in cd.get("resource", []) if r.get("param")}
    return out


# --------------------------------------------------------------------------- main


def write(path: Path, data: Any) -> int:
    raw = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    path.write_bytes(raw)
    return len(raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared",
        help="folder holding fhir-r4/definitions (default: the 'shared' folder beside the repo)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=OUT_DIR,
        help="output folder (default: fhir_hub/definitions/r4 in this repository)",
    )
    args = parser.parse_args(argv)
    defs = args.shared / "fhir-r4" / "definitions"
    if not defs.is_dir():
        print(f"definitions not found: {defs}", file=sys.stderr)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    sizes = {
        "types.json": write(out / "types.json", build_types(defs)),
        "search-parameters.json": write(out / "search-parameters.json", build_search_parameters(defs)),
        "compartments.json": write(out / "compartments.json", build_compartments(defs)),
    }
    for name, size in sizes.items():
        print(f"{name:24} {size:>10,} bytes")
    print(f"{'total':24} {sum(sizes.values()):>10,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
