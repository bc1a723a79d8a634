"""The outpatient record templates: the registry data stewards edit, loaded and checked.

The registry is the folder ``fhir_hub/profiles/templates/`` (shipped in the wheel): ``items.yaml``
names every item code once (its Vietnamese and English name, value type, UCUM unit, Observation
category), and each other ``<code>.yaml`` is one template (code, titles, the TT 32/2023/TT-BYT form
it derives from if any, the template it ``extends``, its sections and their items with
``required``). See the folder's README for the format and for which templates come from a form.

Item codes: a LOINC code (``http://loinc.org``, written ``NNNN-N``) must be in the shipped LOINC
fragment (R4's codes) or carry its LOINC display as ``en`` in ``items.yaml``; any other code belongs
to :data:`ITEM_SYSTEM`, the CodeSystem of template items this project defines (its concepts are the
``vn:`` entries of ``items.yaml``).

:func:`load` reads and checks the whole registry and raises :class:`RegistryError` naming the file
and the item on the first problem: a YAML error, a missing or unknown key, a duplicate template
code or item, an item code neither catalogue knows, an unknown UCUM unit, an unknown ValueSet, an
``extends`` that names no template or makes a cycle.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from fhir_hub import profiles, terminology
from fhir_hub.search import ucum

__all__ = ["ITEM_SYSTEM", "LOINC", "TEMPLATE_SYSTEM", "Component", "Item", "Registry", "RegistryError", "Section",
           "Template", "load", "registry"]

CORE = "http://fhir.ehealth.gov.vn/core"
LOINC = "http://loinc.org"
#: Codes of the template items that have no LOINC code (defined by fhir-hub, from ``items.yaml``).
ITEM_SYSTEM = f"{CORE}/CodeSystem/vn-outpatient-item"
#: Codes of the templates themselves (the Encounter ``type`` a template profile requires).
TEMPLATE_SYSTEM = f"{CORE}/CodeSystem/vn-outpatient-template"

#: Value types an item may have: the Observation ``value[x]`` it takes, or ``Condition`` for a
#: diagnosis (a Condition with an ICD-10 VN code for the encounter).
TYPES = ("Quantity", "integer", "string", "boolean", "CodeableConcept", "dateTime", "Condition")
#: R4's observation-category codes an item may be filed under.
CATEGORIES = ("vital-signs", "laboratory", "exam", "survey", "social-history", "imaging", "procedure", "therapy",
              "activity")
#: UCUM units accepted beyond ``fhir_hub.search.ucum``'s table (which is a subset of UCUM).
EXTRA_UNITS = frozenset({"/mL", "[IU]/mL", "L/min", "dB", "[diop]", "U/L", "m[IU]/L"})
_LOINC_CODE = re.compile(r"^[0-9]{1,7}-[0-9]$")
_SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_FORM = re.compile(r"^[0-9]{2}/BV-[0-9]{2}$")
_ANNOTATION = re.compile(r"\{[^{}]*\}")


class RegistryError(ValueError):
    """A problem in the registry, with the file (and item) it is in."""

    def __init__(self, file: str, message: str, item: str | None = None):
        self.file, self.item = file, item
        super().__init__(f"{file}: {'item ' + repr(item) + ': ' if item else ''}{message}")


@dataclass(frozen=True, slots=True)
class Component:
    system: str
    code: str
    vi: str
    en: str
    unit: str


@dataclass(frozen=True, slots=True)
class Item:
    """One item of a template: the Observation (or Condition) that records it."""

    system: str
    code: str
    vi: str
    en: str
    type: str
    unit: str | None = None
    category: str | None = None
    value_set: str | None = None
    components: tuple[Component, ...] = ()
    required: bool = False

    @property
    def link_id(self) -> str:
        """The Questionnaire ``linkId`` and the item's key in a template check: its code."""
        return self.code

    @property
    def slug(self) -> str:
        return f"loinc-{self.code}" if self.system == LOINC else self.code


@dataclass(frozen=True, slots=True)
class Section:
    id: str
    vi: str
    en: str
    items: tuple[Item, ...]


@dataclass(frozen=True, slots=True)
class Template:
    code: str
    vi: str
    en: str
    form: str | None
    extends: str | None
    description: str
    sections: tuple[Section, ...]
    file: str

    def items(self) -> Iterator[Item]:
        for s in self.sections:
            yield from s.items

    def required(self) -> list[Item]:
        return [i for i in self.items() if i.required]


@dataclass(frozen=True)
class Registry:
    templates: dict[str, Template]
    #: every catalogue entry by ``(system, code)``, whether a template uses it or not
    catalogue: dict[tuple[str, str], Item]
    #: LOINC codes used that are not in the shipped LOINC fragment (code -> display)
    loinc_outside_fragment: dict[str, str] = field(default_factory=dict)

    def template(self, code: str) -> Template | None:
        return self.templates.get(code)

    def used_items(self) -> list[Item]:
        """Distinct items (by system and code) used by any template, in catalogue order."""
        used = {(i.system, i.code) for t in self.templates.values() for i in t.items()}
        return [i for key, i in self.catalogue.items() if key in used]


# --------------------------------------------------------------------------- checks


def unit_known(unit: str) -> bool:
    """A UCUM code the loader accepts: in ``fhir_hub.search.ucum``'s table, one of :data:`EXTRA_UNITS`,
    ``Cel``/``[degF]``, or a unit with ``{annotations}`` (``{score}``, ``{copies}/mL``) whose rest is."""
    if unit in EXTRA_UNITS or unit in ("Cel", "[degF]", "K", "1"):
        return True
    if ucum.canonical(1.0, unit) is not None:
        return True
    bare = _ANNOTATION.sub("", unit)
    if bare != unit:
        return bare in ("", "1") or (bare.startswith("/") and unit_known(bare)) or unit_known(bare)
    return False


def _value_set_known(url: str) -> bool:
    return terminology.value_set(url) is not None or profiles.value_set(url) is not None


def _keys(doc: dict[str, Any], file: str, allowed: set[str], required: set[str], item: str | None = None) -> None:
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise RegistryError(file, f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})", item)
    missing = sorted(required - set(doc))
    if missing:
        raise RegistryError(file, f"missing key {missing[0]!r}", item)


def _title(doc: Any, file: str, where: str, item: str | None = None) -> tuple[str, str]:
    if not isinstance(doc, dict) or not isinstance(doc.get("vi"), str) or not isinstance(doc.get("en"), str):
        raise RegistryError(file, f"{where} must have 'vi' and 'en' strings", item)
    _keys(doc, file, {"vi", "en"}, {"vi", "en"}, item)
    return doc["vi"].strip(), doc["en"].strip()


def _read_yaml(entry: Traversable, name: str) -> Any:
    try:
        return yaml.safe_load(entry.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RegistryError(name, f"not valid YAML: {exc}") from None


# --------------------------------------------------------------------------- the catalogue (items.yaml)

_ENTRY_KEYS = {"vi", "en", "type", "unit", "category", "valueSet", "components"}


def _catalogue_entry(system: str, code: str, doc: Any, file: str,
                     fragment: dict[str, str]) -> tuple[Item, str | None]:
    """The item, and the LOINC display when the code is outside the shipped fragment."""
    if not isinstance(doc, dict):
        raise RegistryError(file, "must be a mapping (vi, en, type, unit, category…)", code)
    _keys(doc, file, _ENTRY_KEYS, {"vi", "type"}, code)
    outside = None
    if system == LOINC:
        if not _LOINC_CODE.match(code):
            raise RegistryError(file, "is not a LOINC code (NNNN-N)", code)
        en = doc.get("en") or fragment.get(code)
        if code not in fragment:
            if not doc.get("en"):
                raise RegistryError(file, "LOINC code unknown to the terminology (not in the shipped LOINC "
                                    "fragment); give its LOINC display as 'en' only if you are sure of it", code)
            outside = str(doc["en"])
    else:
        if not _SLUG.match(code):
            raise RegistryError(file, "an item code is lower-case words joined by '-'", code)
        en = doc.get("en")
        if not en:
            raise RegistryError(file, "missing key 'en'", code)
    kind = doc["type"]
    if kind not in TYPES:
        raise RegistryError(file, f"unknown type {kind!r} (one of {', '.join(TYPES)})", code)
    unit = doc.get("unit")
    components: list[Component] = []
    for raw in doc.get("components") or ():
        if not isinstance(raw, dict):
            raise RegistryError(file, "a component is a mapping (code, vi, en, unit)", code)
        _keys(raw, file, {"code", "vi", "en", "unit"}, {"code", "vi", "unit"}, code)
        ccode = str(raw["code"])
        if ccode not in fragment and not raw.get("en"):
            raise RegistryError(file, f"component {ccode}: LOINC code unknown to the terminology", code)
        if not unit_known(str(raw["unit"])):
            raise RegistryError(file, f"component {ccode}: unknown UCUM unit {raw['unit']!r}", code)
        components.append(Component(LOINC, ccode, str(raw["vi"]), str(raw.get("en") or fragment[ccode]),
                                    str(raw["unit"])))
    if kind == "Quantity" and not unit and not components:
        raise RegistryError(file, "a Quantity item needs a UCUM 'unit'", code)
    if unit is not None and kind != "Quantity":
        raise RegistryError(file, f"a {kind} item has no unit", code)
    if unit is not None and not unit_known(str(unit)):
        raise RegistryError(file, f"unknown UCUM unit {unit!r}", code)
    category = doc.get("category")
    if kind == "Condition":
        if category is not None:
            raise RegistryError(file, "a Condition item has no Observation category", code)
    elif category is not None and category not in CATEGORIES:
        raise RegistryError(file, f"unknown category {category!r} (one of {', '.join(CATEGORIES)})", code)
    value_set = doc.get("valueSet")
    if value_set is not None:
        if kind not in ("CodeableConcept", "Condition"):
            raise RegistryError(file, "only a CodeableConcept or Condition item has a valueSet", code)
        if not _value_set_known(str(value_set)):
            raise RegistryError(file, f"unknown ValueSet {value_set!r}", code)
    return Item(system, code, str(doc["vi"]), str(en), kind, str(unit) if unit is not None else None,
                category, value_set, tuple(components)), outside


def _catalogue(folder: Traversable) -> tuple[dict[tuple[str, str], Item], dict[str, str]]:
    name = "items.yaml"
    entry = folder / name
    if not entry.is_file():
        raise RegistryError(name, "not found: the registry needs its item catalogue")
    doc = _read_yaml(entry, name)
    if not isinstance(doc, dict):
        raise RegistryError(name, "must be a mapping with 'loinc' and 'vn'")
    _keys(doc, name, {"loinc", "vn"}, set())
    loinc_cs = terminology.code_system(LOINC)
    fragment = {c: str(v.get("display", "")) for c, v in loinc_cs.concepts.items()} if loinc_cs else {}
    out: dict[tuple[str, str], Item] = {}
    outside: dict[str, str] = {}
    for system, key in ((LOINC, "loinc"), (ITEM_SYSTEM, "vn")):
        for code, raw in (doc.get(key) or {}).items():
            item, display = _catalogue_entry(system, str(code), raw, name, fragment)
            out[(system, str(code))] = item
            if display is not None:
                outside[str(code)] = display
    return out, outside


# --------------------------------------------------------------------------- templates


def _resolve(code: str, catalogue: dict[tuple[str, str], Item], file: str, item: str | None = None) -> Item:
    system = LOINC if _LOINC_CODE.match(code) else ITEM_SYSTEM
    found = catalogue.get((system, code))
    if found is None:
        where = "the LOINC entries" if system == LOINC else f"the 'vn' entries ({ITEM_SYSTEM})"
        raise RegistryError(file, f"item code unknown to the terminology: not in items.yaml ({where})", item or code)
    return found


def _raw_template(doc: Any, file: str, stem: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise RegistryError(file, "a template is a mapping (code, title, sections…)")
    _keys(doc, file, {"code", "title", "form", "extends", "description", "sections"}, {"code", "title"})
    code = doc["code"]
    if not isinstance(code, str) or not _SLUG.match(code):
        raise RegistryError(file, f"template code {code!r} must be lower-case words joined by '-'")
    if code != stem:
        raise RegistryError(file, f"the file of template {code!r} must be named {code}.yaml")
    form = doc.get("form")
    if form is not None and (not isinstance(form, str) or not _FORM.match(form)):
        raise RegistryError(file, f"form {form!r} is not a record form number like '15/BV-01'")
    if not doc.get("sections") and not doc.get("extends"):
        raise RegistryError(file, "a template without 'extends' needs 'sections'")
    return doc


def _build_template(code: str, raws: dict[str, tuple[str, dict[str, Any]]],
                    catalogue: dict[tuple[str, str], Item], done: dict[str, Template], path: tuple[str, ...]) -> Template:
    if code in done:
        return done[code]
    file, doc = raws[code]
    parent = doc.get("extends")
    sections: list[tuple[str, str, str, list[Item]]] = []
    if parent is not None:
        if parent not in raws:
            raise RegistryError(file, f"extends {parent!r}, which is no template of the registry")
        if parent in path:
            raise RegistryError(file, f"extends {parent!r}, which extends it back ({' -> '.join((*path, parent))})")
        base = _build_template(parent, raws, catalogue, done, (*path, parent))
        sections = [(s.id, s.vi, s.en, list(s.items)) for s in base.sections]
    vi, en = _title(doc["title"], file, "title")
    seen: dict[str, str] = {i.code: s[0] for s in sections for i in s[3]}
    inherited = set(seen)
    own: set[str] = set()
    for n, raw in enumerate(doc.get("sections") or ()):
        if not isinstance(raw, dict):
            raise RegistryError(file, f"section {n + 1} must be a mapping (id, title, items)")
        _keys(raw, file, {"id", "title", "items"}, {"id"})
        sid = str(raw["id"])
        existing = next((s for s in sections if s[0] == sid), None)
        if existing is None:
            if "title" not in raw:
                raise RegistryError(file, f"new section {sid!r} needs a 'title'")
            svi, sen = _title(raw["title"], file, f"section {sid!r} title")
            existing = (sid, svi, sen, [])
            sections.append(existing)
        for item_raw in raw.get("items") or ():
            if not isinstance(item_raw, dict) or "code" not in item_raw:
                raise RegistryError(file, f"section {sid!r}: an item is a mapping with 'code' (and 'required')")
            icode = str(item_raw["code"])
            _keys(item_raw, file, {"code", "required"}, {"code"}, icode)
            required = item_raw.get("required", False)
            if not isinstance(required, bool):
                raise RegistryError(file, "'required' is true or false", icode)
            item = _resolve(icode, catalogue, file, icode)
            if icode in own:
                raise RegistryError(file, "duplicate item (listed twice in this template)", icode)
            own.add(icode)
            if icode in inherited:  # restating an inherited item changes only whether it is required
                for s in sections:
                    s[3][:] = [_with_required(i, required) if i.code == icode else i for i in s[3]]
                continue
            seen[icode] = sid
            existing[3].append(_with_required(item, required))
    template = Template(code, vi, en, doc.get("form"), parent, str(doc.get("description") or "").strip(),
                        tuple(Section(s[0], s[1], s[2], tuple(s[3])) for s in sections), file)
    done[code] = template
    return template


def _with_required(item: Item, required: bool) -> Item:
    return Item(item.system, item.code, item.vi, item.en, item.type, item.unit, item.category, item.value_set,
                item.components, required)


def load(folder: Path | Traversable | None = None) -> Registry:
    """Read and check the registry in ``folder`` (default: the shipped ``profiles/templates``)."""
    root: Traversable = folder if folder is not None else resources.files("fhir_hub.profiles") / "templates"
    catalogue, outside = _catalogue(root)
    raws: dict[str, tuple[str, dict[str, Any]]] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        name = entry.name
        if not name.endswith((".yaml", ".yml")) or name == "items.yaml":
            continue
        doc = _raw_template(_read_yaml(entry, name), name, name.rsplit(".", 1)[0])
        if doc["code"] in raws:
            raise RegistryError(name, f"duplicate template code {doc['code']!r} (also in {raws[doc['code']][0]})")
        raws[doc["code"]] = (name, doc)
    if not raws:
        raise RegistryError(str(root), "no template files (*.yaml)")
    done: dict[str, Template] = {}
    for code in raws:
        _build_template(code, raws, catalogue, done, (code,))
    return Registry({c: done[c] for c in raws}, catalogue, outside)


@cache
def registry() -> Registry:
    """The shipped registry, loaded once."""
    return load()
