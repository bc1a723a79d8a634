"""Build the Vietnamese code lists into FHIR R4 CodeSystem, ValueSet and ConceptMap resources shipped in the package.

Why: the CSVs in ``../shared/vn/code-lists`` are the reviewed source (with their verified /
secondary / unverified status in ``../shared/vn/README.md``), but the server must not depend on
that folder at run time. This script turns them, once, at development time, into one compact JSON
file per resource under ``fhir_hub/terminology/data/``; the files are committed, and a test checks
that they still match a rebuild.

Usage::

    python tools/build_terminology.py [--shared PATH_TO_SHARED] [--out OUTPUT_DIR]

Every resource records where it came from in the same two places: ``description`` ends with
"Source: ``code-lists/<file>``; status: <status>" and ``meta.tag`` carries the status as a code
of :data:`STATUS_TAG`. Extra CSV columns become CodeSystem ``property`` values (type ``string``).
Each CodeSystem gets an "all codes" ValueSet (named by its ``valueSet``), the source and target of
the ConceptMaps; ICD-10 gets an is-a hierarchy from its codes (:func:`icd10_parent`).
Text is NFC-normalised. Output is deterministic (sorted keys, CSV row order).
"""

from __future__ import annotations

import argparse
import csv
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = REPO_ROOT / "fhir_hub" / "terminology" / "data"
CORE = "http://fhir.ehealth.gov.vn/core"
#: Tag system for the status word of ``shared/vn/README.md`` (verified | secondary | unverified).
STATUS_TAG = "urn:fhir-hub:source-status"
DATE = "2026-12-02"


@dataclass(frozen=True)
class CodeList:
    """How one CSV becomes one CodeSystem: which columns are code and display, which are properties."""

    id: str
    csv: str
    title: str
    status: str  # from shared/vn/README.md
    code: str
    display: str
    properties: tuple[str, ...] = ()
    #: Column holding an English display, added as a designation (language ``en``).
    english: str | None = None
    content: str = "complete"
    version: str | None = None
    note: str = ""
    #: When set, the IG already defines this URL (reused as is).
    url: str | None = None
    #: The "all codes" ValueSet's URL, when the default (CodeSystem -> ValueSet in the CodeSystem's
    #: URL) is taken by an IG ValueSet with other content.
    valueset_url: str | None = None
    #: Derive an is-a hierarchy (a ``parent`` property) from the codes, as :func:`icd10_parent` does.
    icd_hierarchy: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def canonical(self) -> str:
        return self.url or f"{CORE}/CodeSystem/{self.id}"

    @property
    def valueset(self) -> str:
        return self.valueset_url or self.canonical.replace("/CodeSystem/", "/ValueSet/")


CODE_LISTS: tuple[CodeList, ...] = (
    CodeList("vn-icd10", "icd10_vn_catalogue.csv", "ICD-10 (Vietnamese edition, BHYT catalogue)",
             "secondary", "code", "name_vi", english="name_en", version="QD4469-2020", icd_hierarchy=True,
             note="Codes as in the catalogue, with their dagger (†) or asterisk (*) mark. Matches the "
                  "QĐ 4469/QĐ-BYT (2020) era catalogue; not checked against QĐ 4469 itself; superseded from "
                  "01/07/2026 by TT 06/2026/TT-BYT (not available)."),
    CodeList("vn-core-race", "ethnic_groups.csv", "Dân tộc (ethnic groups, QĐ 121-TCTK/PPCĐ)", "verified",
             "code", "name_vi", ("other_names_vi", "in_official_54", "code_qd1019_2008_if_known"),
             url=f"{CORE}/CodeSystem/vn-core-race",
             note="URL of the draft VN Core IG's CodeSystem (same 56 codes: 01–54, 55 Người nước ngoài, "
                  "99 Không rõ)."),
    CodeList("vn-core-occupation", "occupations_qd34_2020_level2.csv",
             "Nghề nghiệp (occupations, QĐ 34/2020/QĐ-TTg, level 2)", "secondary", "code", "name_vi",
             content="fragment", url=f"{CORE}/CodeSystem/vn-core-occupation",
             valueset_url=f"{CORE}/ValueSet/vn-core-occupation-level2",
             note="URL of the draft VN Core IG's occupation CodeSystem (content not-present there). Only "
                  "level 2 (2 digits) is known; the 5-digit codes XML1 carries are not. 00 is the HIS's own row."),
    CodeList("vn-province-2025", "provinces_2025.csv", "Tỉnh/thành phố từ 01/07/2025 (34 provinces)", "verified",
             "province_code", "province_name",
             ("division_type", "phone_area_code", "merged_from_province_codes_pre2025"), version="2025-07-01"),
    CodeList("vn-province-pre2025", "provinces_pre2025.csv", "Tỉnh/thành phố trước 01/07/2025 (63 provinces)",
             "verified", "province_code", "province_name",
             ("division_type", "cccd_birth_registration_prefix", "iso_3166_2", "province_code_2025"),
             version="2025-01-04"),
    CodeList("vn-ward-2025", "wards_2025.csv", "Xã/phường/đặc khu từ 01/07/2025 (3,321 communes)", "verified",
             "ward_code", "ward_name", ("division_type", "province_code"), version="2025-07-01"),
    CodeList("vn-ward-pre2025", "wards_pre2025.csv", "Xã/phường/thị trấn trước 01/07/2025 (communes)", "verified",
             "ward_code", "ward_name", ("division_type", "district_code", "province_code"),
             version="2025-01-04"),
    CodeList("vn-bhyt-object-code", "bhyt_beneficiary_codes.csv",
             "Mã đối tượng thẻ BHYT (card object code, characters 1–2)", "unverified", "object_code",
             "description_vi", ("payer_group", "payer_group_vi", "typical_benefit_level"),
             note="QĐ 1351/QĐ-BHXH text not read; codes and levels agree in two public implementations."),
    CodeList("vn-bhyt-benefit-level", "bhyt_benefit_levels.csv", "Mức hưởng BHYT (card character 3)",
             "unverified", "benefit_digit", "meaning_vi", ("fund_pays", "object_codes")),
    CodeList("vn-qd130-ma-loai-kcb", "qd130_ma_loai_kcb.csv", "MA_LOAI_KCB (visit type, QĐ 130)", "secondary",
             "code", "meaning_vi", ("qd4210_equivalent",), english="meaning_en",
             note="The list is Phụ lục 1 of QĐ 824/QĐ-BYT (2023), not read."),
    CodeList("vn-qd130-ket-qua-dtri", "qd130_ket_qua_dtri.csv", "KET_QUA_DTRI (treatment result, QĐ 130)",
             "verified", "code", "meaning_vi", ("since",), english="meaning_en"),
    CodeList("vn-qd130-ma-loai-rv", "qd130_ma_loai_rv.csv", "MA_LOAI_RV (discharge type, QĐ 130)", "verified",
             "code", "meaning_vi", ("qd4210_tinh_trang_rv_equivalent",), english="meaning_en"),
)


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text.strip())


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return [{k: nfc(v or "") for k, v in row.items()} for row in csv.DictReader(fh)]


def _provenance(csv_name: str, status: str, note: str) -> tuple[str, dict[str, Any]]:
    text = (note + " " if note else "") + f"Source: shared/vn/code-lists/{csv_name}; status: {status}."
    meta = {"tag": [{"system": STATUS_TAG, "code": status, "display": f"source {status} (shared/vn/README.md)"}]}
    return text, meta


#: ICD-10 marks: dagger (aetiology) and asterisk (manifestation) codes of the dual classification.
ICD_MARKS = ("†", "*")


def _r4_provenance(note: str) -> tuple[str, dict[str, Any]]:
    """Provenance of what comes from the official R4 package (verified: it is the standard)."""
    text = f"{note} Source: shared/fhir-r4 (definitions, examples); status: verified."
    return text, {"tag": [{"system": STATUS_TAG, "code": "verified", "display": "source verified (FHIR R4 4.0.1)"}]}


def icd10_parent(code: str, codes: set[str]) -> str | None:
    """The nearest shorter code in ``codes`` that ``code`` refines (``E11.9`` -> ``E11``, ``M01.00*``
    -> ``M01.0*``, ``A17.0†`` -> ``A17``), or ``None`` for a three-character category.

    Why derived: the catalogue is flat, but an ICD-10 code is by construction a subdivision of the
    code it extends. The unmarked code is preferred (``A17`` over ``A17†``: the category itself),
    then one with the same mark, then the other mark. Chapters and blocks are not in the
    catalogue, so the categories are the roots.
    """
    mark = code[-1] if code.endswith(ICD_MARKS) else ""
    stem = code.rstrip("".join(ICD_MARKS))
    while "." in stem:
        stem = stem[:-1].rstrip(".")
        for candidate in (stem, stem + mark, *(stem + m for m in ICD_MARKS)):
            if candidate in codes and candidate != code:
                return candidate
    return None


def code_system(spec: CodeList, rows: Iterable[dict[str, str]]) -> dict[str, Any]:
    """One CodeSystem; a code repeated with the same content (ICD-10 ``J13``) is kept once."""
    rows = list(rows)
    codes = {row[spec.code] for row in rows}
    concepts: list[dict[str, Any]] = []
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        code = row[spec.code]
        if not code:
            continue
        concept: dict[str, Any] = {"code": code, "display": row[spec.display]}
        if spec.english and row.get(spec.english):
            concept["designation"] = [{"language": "en", "value": row[spec.english]}]
        props: list[dict[str, Any]] = [{"code": p, "valueString": row[p]} for p in spec.properties if row.get(p)]
        parent = icd10_parent(code, codes) if spec.icd_hierarchy else None
        if parent is not None:
            props.append({"code": "parent", "valueCode": parent})
        if props:
            concept["property"] = props
        if code in seen:
            if seen[code] != concept:
                raise SystemExit(f"{spec.csv}: code {code} appears twice with different content")
            continue
        seen[code] = concept
        concepts.append(concept)
    description, meta = _provenance(spec.csv, spec.status, spec.note)
    cs: dict[str, Any] = {
        "resourceType": "CodeSystem", "id": spec.id, "meta": meta, "url": spec.canonical,
        "name": "".join(part.capitalize() for part in spec.id.replace("-", " ").split()),
        "title": spec.title, "status": "active" if spec.status == "verified" else "draft",
        "experimental": False, "date": DATE, "publisher": "fhir-hub", "description": description,
        "caseSensitive": True, "valueSet": spec.valueset, "content": spec.content, "count": len(concepts),
        "concept": concepts,
    }
    if spec.version:
        cs["version"] = spec.version
    declared = [{"code": p, "type": "string"} for p in spec.properties]
    if spec.icd_hierarchy:
        cs["hierarchyMeaning"] = "is-a"
        declared.append({"code": "parent", "uri": "http://hl7.org/fhir/concept-properties#parent", "type": "code",
                         "description": "The code this one subdivides (derived from the code itself)"})
    if declared:
        cs["property"] = declared
    return cs


def value_set(spec: CodeList, cs: dict[str, Any]) -> dict[str, Any]:
    """The "all codes" ValueSet of one CodeSystem (the one its ``valueSet`` names): every code, no filter."""
    note = "All codes of " + cs["url"] + "."
    if spec.valueset_url:
        note += " Not the IG's ValueSet named after the CodeSystem: that one includes other code systems too."
    description, meta = _provenance(spec.csv, spec.status, note)
    vs: dict[str, Any] = {
        "resourceType": "ValueSet", "id": spec.valueset.rsplit("/", 1)[1], "meta": meta, "url": spec.valueset,
        "name": cs["name"], "title": cs["title"], "status": cs["status"], "experimental": False, "date": DATE,
        "publisher": "fhir-hub", "description": description, "immutable": False,
        "compose": {"include": [{"system": cs["url"]}]},
    }
    if spec.version:
        vs["version"] = spec.version
        vs["compose"]["include"][0]["version"] = spec.version
    return vs


def _group(source: str, target: str, elements: dict[str, list[dict[str, Any]]],
           displays: dict[str, str]) -> dict[str, Any]:
    return {"source": source, "target": target,
            "element": [{"code": code, "display": displays[code], "target": targets}
                        for code, targets in elements.items()]}


def ward_equivalence(note: str) -> str:
    """ConceptMap equivalence (target relative to source) from the NSO ``note_vi`` column.

    Why these: an old commune merged whole into a new one makes the target *wider*; one split
    between several new communes overlaps each of them (*inexact*); an unchanged or only renamed
    commune is *equal*.
    """
    low = note.lower()
    if "một phần" in low or "phần còn lại" in low:
        return "inexact"
    if low.startswith(("giữ nguyên", "đổi tên", "đổi loại hình")):
        return "equal"
    return "wider"


def province_map(rows: list[dict[str, str]]) -> dict[str, Any]:
    elements: dict[str, list[dict[str, Any]]] = {}
    displays: dict[str, str] = {}
    for row in rows:
        old, new = row["province_code_pre2025"], row["province_code_2025"]
        merged = sum(1 for r in rows if r["province_code_2025"] == new) > 1
        displays[old] = row["province_name_pre2025"]
        elements.setdefault(old, []).append(
            {"code": new, "display": row["province_name_2025"], "equivalence": "wider" if merged else "equal"})
    return _concept_map("vn-province-pre2025-to-2025", "Tỉnh trước 01/07/2025 → tỉnh từ 01/07/2025",
                        "province_mapping_pre2025_to_2025.csv", "verified",
                        _group(f"{CORE}/CodeSystem/vn-province-pre2025", f"{CORE}/CodeSystem/vn-province-2025",
                               elements, displays),
                        "Equivalence: equal when the province was not merged, wider when it was merged with others.")


def ward_map(rows: list[dict[str, str]]) -> dict[str, Any]:
    elements: dict[str, list[dict[str, Any]]] = {}
    displays: dict[str, str] = {}
    for row in rows:
        old = row["ward_code_pre2025"]
        if not old:  # island districts with no commune level: nothing to map from
            continue
        displays[old] = row["ward_name_pre2025"]
        target: dict[str, Any] = {"code": row["ward_code_2025"], "display": row["ward_name_2025"],
                                  "equivalence": ward_equivalence(row["note_vi"])}
        if row["note_vi"]:
            target["comment"] = row["note_vi"]
        elements.setdefault(old, []).append(target)
    return _concept_map("vn-ward-pre2025-to-2025", "Xã trước 01/07/2025 → xã từ 01/07/2025 (NSO conversion table)",
                        "ward_mapping_pre2025_to_2025.csv", "verified",
                        _group(f"{CORE}/CodeSystem/vn-ward-pre2025", f"{CORE}/CodeSystem/vn-ward-2025",
                               elements, displays),
                        "Equivalence from the NSO note: wider = merged whole, inexact = split between several "
                        "new communes, equal = unchanged or renamed; the note is kept as the comment.")


def _concept_map(cid: str, title: str, csv_name: str, status: str, group: dict[str, Any], note: str) -> dict[str, Any]:
    description, meta = _provenance(csv_name, status, note)
    return {"resourceType": "ConceptMap", "id": cid, "meta": meta, "url": f"{CORE}/ConceptMap/{cid}",
            "name": "".join(p.capitalize() for p in cid.replace("-", " ").split()), "title": title,
            "status": "active", "experimental": False, "date": DATE, "publisher": "fhir-hub",
            "description": description, "group": [group],
            # the source and target are the two code systems' "all codes" ValueSets
            "sourceCanonical": group["source"].replace("/CodeSystem/", "/ValueSet/"),
            "targetCanonical": group["target"].replace("/CodeSystem/", "/ValueSet/")}


LOINC = "http://loinc.org"


def _loinc_codings(node: Any, found: dict[str, str]) -> None:
    """Collect LOINC ``code -> display`` from Codings and ValueSet ``compose.include`` concepts;
    the first display met wins, and a later one fills a code first met without."""
    if isinstance(node, dict):
        if node.get("system") == LOINC:
            pairs = [(node.get("code"), node.get("display"))]
            pairs += [(c.get("code"), c.get("display")) for c in node.get("concept", ()) if isinstance(c, dict)]
            for code, display in pairs:
                if isinstance(code, str) and code and (not found.get(code)):
                    found[code] = display if isinstance(display, str) else ""
        for value in node.values():
            _loinc_codings(value, found)
    elif isinstance(node, list):
        for item in node:
            _loinc_codings(item, found)


def loinc_fragment(r4_dir: Path) -> dict[str, Any]:
    """The LOINC codes R4 itself shows, as a ``fragment`` CodeSystem: the definitions first (their
    ValueSets carry LOINC's displays), then the official examples. Enough for ``$lookup`` and
    display checks on the codes vital signs, labs and the R4 examples use; any other LOINC code
    is "not in the fragment held", never "invalid"."""
    found: dict[str, str] = {}
    for folder in (r4_dir / "definitions", r4_dir / "examples"):
        for path in sorted(folder.glob("*.json")):
            if path.name != "fhir.schema.json":
                _loinc_codings(orjson.loads(path.read_bytes()), found)
    concepts = [{"code": code, "display": nfc(found[code])} for code in sorted(found) if found[code]]
    description, meta = _r4_provenance("The LOINC codes that the FHIR R4 definitions and official examples use, "
                                       "with the display they show (the definitions' first).")
    return {
        "resourceType": "CodeSystem", "id": "loinc-r4-fragment", "meta": meta, "url": LOINC, "name": "LoincR4Fragment",
        "title": "LOINC codes shown in FHIR R4 (fragment)", "status": "active", "experimental": False,
        "date": DATE, "publisher": "fhir-hub", "caseSensitive": True, "content": "fragment",
        "description": description,
        "copyright": "This material contains content from LOINC (http://loinc.org). LOINC is copyright Regenstrief "
                     "Institute, Inc. and the LOINC Committee, and is available at no cost under the license at "
                     "http://loinc.org/license.",
        "count": len(concepts), "concept": concepts,
    }


def build(code_lists_dir: Path, r4_dir: Path | None = None) -> dict[str, bytes]:
    """File name -> JSON bytes of every resource, from the CSVs in ``code_lists_dir`` (and the
    LOINC fragment from the R4 folder, by default beside it)."""
    r4_dir = r4_dir or code_lists_dir.parent.parent / "fhir-r4"
    resources = [code_system(spec, read_rows(code_lists_dir / spec.csv)) for spec in CODE_LISTS]
    resources += [value_set(spec, cs) for spec, cs in zip(CODE_LISTS, resources, strict=True)]
    resources.append(province_map(read_rows(code_lists_dir / "province_mapping_pre2025_to_2025.csv")))
    resources.append(ward_map(read_rows(code_lists_dir / "ward_mapping_pre2025_to_2025.csv")))
    resources.append(loinc_fragment(r4_dir))
    return {f"{r['resourceType']}-{r['id']}.json": orjson.dumps(r, option=orjson.OPT_SORT_KEYS) for r in resources}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    files = build(args.shared / "vn" / "code-lists")
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.json"):
        if old.name not in files:
            old.unlink()
    for name, data in files.items():
        (args.out / name).write_bytes(data)
        print(f"{name}: {len(data):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
