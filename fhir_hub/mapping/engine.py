"""A small engine for declarative mapping specs: records of named text fields → FHIR resources.

A spec (``fhir_hub/mappings/<format>/<table>.yaml``) is data only::

    table: XML2
    root: CHITIEU_CHITIET_THUOC       # the inner XML's root element
    records: DSACH_CHI_TIET_THUOC/CHI_TIET_THUOC   # path below it; absent: the root is the record
    codes: {gender: {"1": male, "2": female}}    # code tables: source code → JSON value
    resources:
      - name: medication              # rule name: other rules refer to its resources by it
        type: Medication
        request: put_by_identifier    # a named function of ``functions.REQUESTS``
        when: MA_THUOC                # only for records where the field is not empty
        elements:
          - {path: identifier[+], field: $line, template: {system: "sys:claim_line", value: $}}
          - {path: code.text, field: TEN_THUOC}
          - {path: form.text, field: DANG_BAO_CHE}

Element rules: ``path`` (dotted keys; ``[n]`` an index, ``[+]`` a new array item, ``[=]`` the
last one; ``.`` alone the resource itself) and one source: ``field`` / ``fields`` (input text),
``value`` (a constant) or ``ref`` (a Reference to another rule's resource).  Then optionally
``convert`` (a function of ``functions.CONVERTERS``), ``codes`` (a code table), ``template``
(a JSON object in which the string ``$`` is the value), ``merge: true`` (merge a dict into
the object at ``path``), ``when`` and ``required``.  In constants and templates, a string
``sys:<name>`` is the URL of that name in :mod:`.systems` and ``ref:<rule>`` a Reference.
``$id`` is a stable id of the resource (rule name + facility/MA_LK/table/STT), ``$visit`` is
facility/MA_LK and ``$facility`` the facility code.  ``each: true`` applies the rule to every item
of a list value (``convert: split_list``).  A ``required`` element that cannot be had is a problem; with ``incomplete: drop`` on the
resource rule it also leaves the whole resource out (references to it are removed), with a problem saying so.

``args`` are constants passed to ``convert`` after the field values.

A table spec may ``extends: <format>``: it takes that format's table of the same name (rules,
code tables) and reads it from another ``root`` with fields renamed (``rename: {OLD: NEW}``), so
an older layout (QĐ 4210) reuses every rule and function; ``echoes: {XML1: [fields]}`` names fields
that copy another table's (checked by the adapter, not mapped twice).

Resource rules may ``repeat`` over ``;``-lists (one resource per item, the listed fields zipped
by position), be grouped (``group_by: FIELD``: one resource per distinct value) and ``collect``
references to another rule's resources (those of the group, or all of them).

Nothing here branches on content except through the named functions, so every choice a mapping
makes is either a table in the spec or a tested function.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import orjson
import yaml

from fhir_hub.mapping import functions, systems, v2_functions
from fhir_hub.mapping.functions import REQUESTS, BadValue, Remark

#: Every function a spec may name: the claims ones, and those of HL7 v2 and CSV inputs.
CONVERTERS = {**functions.CONVERTERS, **v2_functions.CONVERTERS}

__all__ = ["Built", "Problem", "ResourceRule", "Spec", "SpecError", "TableSpec", "instantiate", "load_spec",
           "unmapped"]

#: uuid5 namespace of every fullUrl the engine makes: the same input gives the same bundle.
NAMESPACE = uuid.UUID("6f1c2a8e-4b7d-5e21-9a3c-0d8b7e5f4a10")
_NONE: frozenset[str] = frozenset()
_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+|\+|=)\])?$")
#: libyaml's safe loader when PyYAML has it (the same documents as ``yaml.safe_load``, parsed in
#: C: the specs took 0.35 s of every ``import-claims`` start, 0.05 s so).
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class SpecError(ValueError):
    """A spec that cannot be used: unknown function, code table, rule or malformed path."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in an input record; rendered as an OperationOutcome issue."""

    severity: str  # fatal | error | warning | information
    code: str  # issue-type: value, required, invalid, structure, not-supported, informational
    reason: str
    table: str | None = None
    field: str | None = None
    value: str | None = None
    line: str | None = None  # STT of the record, when the table has several


# -- paths ------------------------------------------------------------------------------------

Path = tuple[tuple[str, str | None], ...]
#: A constant or template of a spec, compiled (:func:`_compile`): (context, table, record, ``$``) → value.
Resolver = Callable[["_Context", str, int, Any], Any]
#: One element rule applied (:func:`_apply`): (resource, record, table spec, context, record index,
#: STT) → False when a value was needed and could not be had.
Applier = Callable[[dict[str, Any], Mapping[str, str], "TableSpec", "_Context", int, "str | None"], bool]
#: ``set_path`` for one path, made once (:func:`_setter`): (target, value) → None.
Setter = Callable[[dict[str, Any], Any], None]


def parse_path(text: str) -> Path:
    if text == ".":
        return ()
    out: list[tuple[str, str | None]] = []
    for part in text.split("."):
        m = _SEGMENT.match(part)
        if not m:
            raise SpecError(f"bad path segment {part!r} in {text!r}")
        out.append((m.group(1), m.group(2)))
    return tuple(out)


def _child(node: dict[str, Any], key: str, idx: str | None) -> dict[str, Any]:
    if idx is None:
        nxt = node.setdefault(key, {})
        if not isinstance(nxt, dict):
            raise SpecError(f"{key} is not an object")
        return nxt
    arr = node.setdefault(key, [])
    if idx == "+" or (idx == "=" and not arr):
        arr.append({})
    elif idx not in ("+", "="):
        while len(arr) <= int(idx):
            arr.append({})
    item = arr[-1] if idx in ("+", "=") else arr[int(idx)]
    if not isinstance(item, dict):
        raise SpecError(f"{key}[{idx}] is not an object")
    return item


def set_path(target: dict[str, Any], path: Path, value: Any, merge: bool = False) -> None:
    """Put ``value`` at ``path`` in ``target`` (see the module docstring for the syntax)."""
    if not path:
        if not isinstance(value, dict):
            raise SpecError("only an object can be merged into the resource")
        target.update(value)
        return
    node = target
    for key, idx in path[:-1]:
        node = _child(node, key, idx)
    key, idx = path[-1]
    if merge:
        _child(node, key, idx).update(value)
    elif idx is None:
        node[key] = value
    else:
        arr = node.setdefault(key, [])
        if idx == "+" or (idx == "=" and not arr):
            arr.append(value)
        elif idx == "=":
            arr[-1] = value
        else:
            while len(arr) <= int(idx):
                arr.append({})
            arr[int(idx)] = value



def _setter(path: Path, merge: bool) -> Setter:
    """:func:`set_path` for one path, with the commonest shapes (``key``, ``key[+]``,
    ``key.key``, ``key.key[+]``) as direct dict operations; the others call :func:`set_path`."""
    if not merge and len(path) == 1:
        key, idx = path[0]
        if idx is None:
            def put(target: dict[str, Any], value: Any) -> None:
                target[key] = value
            return put
        if idx == "+":
            def append(target: dict[str, Any], value: Any) -> None:
                target.setdefault(key, []).append(value)
            return append
    if not merge and len(path) == 2 and path[0][1] is None and path[1][1] in (None, "+"):
        (parent, _), (key, idx) = path

        def node(target: dict[str, Any]) -> dict[str, Any]:
            nxt = target.setdefault(parent, {})
            if not isinstance(nxt, dict):
                raise SpecError(f"{parent} is not an object")
            return nxt
        if idx is None:
            def put2(target: dict[str, Any], value: Any) -> None:
                node(target)[key] = value
            return put2

        def append2(target: dict[str, Any], value: Any) -> None:
            node(target).setdefault(key, []).append(value)
        return append2

    def general(target: dict[str, Any], value: Any) -> None:
        set_path(target, path, value, merge)
    return general


# -- specs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Condition:
    """``when``: the field is not empty, and (with ``in``) its value is one of ``values``; or, with
    ``empty: true``, the field is empty.  A list of them must all hold."""

    field: str
    values: frozenset[str] | None = None
    empty: bool = False

    def holds(self, record: Mapping[str, str]) -> bool:
        v = record.get(self.field, "")
        if self.empty:
            return not v
        return bool(v) and (self.values is None or v in self.values)


def _holds(conditions: tuple[Condition, ...], record: Mapping[str, str]) -> bool:
    """Every condition holds (:meth:`Condition.holds`, inlined: asked for every rule and record)."""
    for c in conditions:
        v = record.get(c.field, "")
        if c.empty:
            if v:
                return False
        elif not v or (c.values is not None and v not in c.values):
            return False
    return True


@dataclass(frozen=True, slots=True)
class ElementRule:
    path: Path
    fields: tuple[str, ...] = ()
    value: Any = None
    ref: str | None = None
    convert: str | None = None
    codes: str | None = None
    template: Any = None
    merge: bool = False
    when: tuple[Condition, ...] = ()
    required: bool = False
    each: bool = False
    #: Constants passed to ``convert`` after the field values (``labelled`` gets its label so).
    args: tuple[Any, ...] = ()
    #: Made once from the above (see :func:`_compile`): ``value`` and ``template`` as resolvers,
    #: ``convert`` as the function itself.
    _value: Resolver = field(init=False, repr=False, compare=False)
    _template: Resolver | None = field(init=False, repr=False, compare=False)
    _convert: Callable[..., Any] | None = field(init=False, repr=False, compare=False)
    #: The field whose emptiness makes the rule a no-op (an optional element reading fields):
    #: checked before calling :func:`_apply`, most fields of a line being empty.
    _optional: str | None = field(init=False, repr=False, compare=False)

    #: :func:`_apply` for this rule, made once (:func:`_applier`): the branches on the rule's
    #: own attributes taken at load, not for each of the ~380 elements a HOSO applies.
    _run: Applier = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_optional", self.fields[0] if self.fields and not self.required else None)
        object.__setattr__(self, "_value", _compile(self.value))
        object.__setattr__(self, "_template", None if self.template is None else _compile(self.template))
        object.__setattr__(self, "_convert", None if self.convert is None else CONVERTERS.get(self.convert))
        object.__setattr__(self, "_run", _applier(self))


@dataclass(frozen=True, slots=True)
class Collect:
    rule: str
    path: Path
    also: tuple[ElementRule, ...] = ()


@dataclass(frozen=True, slots=True)
class ResourceRule:
    name: str
    type: str
    request: str
    elements: tuple[ElementRule, ...]
    when: tuple[Condition, ...] = ()
    repeat: tuple[str, ...] = ()
    group_by: str | None = None
    collect: tuple[Collect, ...] = ()
    #: ``incomplete: drop``: leave the resource out when a ``required`` element cannot be had
    #: (a weight without a value is no Observation); otherwise it stays, and the problem is reported.
    drop_incomplete: bool = False
    #: (``_optional``, ``_run``) of each element, made once: what :func:`instantiate` reads for
    #: every element of every resource (two attribute reads each, instead of per record).
    _steps: tuple[tuple[str | None, Applier], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_steps", tuple((e._optional, e._run) for e in self.elements))


@dataclass(frozen=True, slots=True)
class TableSpec:
    table: str
    root: str
    records: tuple[str, ...]
    rules: tuple[ResourceRule, ...]
    codes: Mapping[str, Mapping[str, Any]]
    #: Fields deliberately not mapped (read for keys only, or reserved): not "unmapped".
    ignored: frozenset[str]
    #: Fields that repeat another table's (``{XML1: [HO_TEN, …]}``): not mapped again, but the
    #: adapter checks that they agree with the table they copy.
    echoes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Made once from the above (every HOSO asks): rule by name, and :meth:`used_fields`.
    _rules: Mapping[str, ResourceRule] = field(init=False, repr=False, compare=False)
    _used: frozenset[str] = field(init=False, repr=False, compare=False)
    #: The code tables' values as resolvers (a value may be a template, ``sys:`` and ``ref:``).
    _codes: Mapping[str, Mapping[str, Resolver]] = field(init=False, repr=False, compare=False)
    _rule_fields: Mapping[str, tuple[frozenset[str], tuple[tuple[tuple[Condition, ...], tuple[str, ...]], ...]]] = (
        field(init=False, repr=False, compare=False))
    _echo: Mapping[str, tuple[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_rule_fields", {
            r.name: (frozenset(f for e in r.elements if not e.when for f in e.fields),
                     tuple((e.when, e.fields) for e in r.elements if e.fields and e.when))
            for r in reversed(self.rules)})
        object.__setattr__(self, "_echo", {here: (source, there or here) for source, names in self.echoes.items()
                                           for here, _, there in (n.partition("=") for n in names)})
        object.__setattr__(self, "_codes", {name: {code: _compile(v) for code, v in table.items()}
                                            for name, table in self.codes.items()})
        rules: dict[str, ResourceRule] = {}
        for r in self.rules:
            rules.setdefault(r.name, r)
        object.__setattr__(self, "_rules", rules)
        object.__setattr__(self, "_used", self._used_fields())

    def rule(self, name: str) -> ResourceRule:
        """The (first) rule of that name."""
        return self._rules[name]

    def rule_fields(self, name: str) -> tuple[frozenset[str], tuple[tuple[tuple[Condition, ...], tuple[str, ...]], ...]]:
        """The fields the rule's elements read (:func:`unmapped`): those read whatever the record,
        and those of elements with a ``when``, with it."""
        return self._rule_fields[name]

    def echo_origin(self, name: str) -> tuple[str, str] | None:
        """(table, field) that the field ``name`` copies (``echoes``), or None."""
        return self._echo.get(name)

    def used_fields(self) -> frozenset[str]:
        """Every field a rule reads, plus the ignored and echoed ones: the others are "unmapped"."""
        return self._used

    def _used_fields(self) -> frozenset[str]:
        used: set[str] = set(self.ignored)
        for names in self.echoes.values():
            used.update(n.partition("=")[0] for n in names)
        for rule in self.rules:
            used.update(rule.repeat)
            if rule.group_by:
                used.add(rule.group_by)
            used.update(c.field for c in rule.when)
            for el in rule.elements:
                used.update(el.fields)
                used.update(c.field for c in el.when)
        return frozenset(used)


@dataclass(frozen=True, slots=True)
class Spec:
    """The tables of one format, in mapping order."""

    format: str
    tables: Mapping[str, TableSpec]


def _conditions(raw: Any) -> tuple[Condition, ...]:
    if raw is None:
        return ()
    if isinstance(raw, list):
        return tuple(c for item in raw for c in _conditions(item))
    if isinstance(raw, str):
        return (Condition(raw),)
    values = frozenset(str(v) for v in raw["in"]) if "in" in raw else None
    return (Condition(str(raw["field"]), values, bool(raw.get("empty", False))),)


def _element(raw: Mapping[str, Any], codes: Mapping[str, Any], where: str) -> ElementRule:
    fields = tuple(raw.get("fields") or ([raw["field"]] if "field" in raw else []))
    sources = sum(1 for present in (fields, "value" in raw, "ref" in raw) if present)
    if sources != 1:
        raise SpecError(f"{where}: an element needs exactly one of field(s), value, ref: {dict(raw)}")
    convert = raw.get("convert")
    if convert is not None and convert not in CONVERTERS:
        raise SpecError(f"{where}: unknown function {convert!r}")
    table = raw.get("codes")
    if table is not None and table not in codes:
        raise SpecError(f"{where}: unknown code table {table!r}")
    return ElementRule(parse_path(str(raw["path"])), fields, raw.get("value"), raw.get("ref"), convert, table,
                       raw.get("template"), bool(raw.get("merge", False)), _conditions(raw.get("when")),
                       bool(raw.get("required", False)), bool(raw.get("each", False)), tuple(raw.get("args", ())))


def _table(doc: Mapping[str, Any], where: str) -> TableSpec:
    codes = {str(k): {str(c): v for c, v in table.items()} for k, table in (doc.get("codes") or {}).items()}
    rules: list[ResourceRule] = []
    for raw in doc.get("resources") or []:
        name = str(raw["name"])
        here = f"{where}: {name}"
        request = str(raw.get("request", "put_by_identifier"))
        if request not in REQUESTS:
            raise SpecError(f"{here}: unknown request function {request!r}")
        collect = tuple(Collect(str(c["rule"]), parse_path(str(c["path"])),
                                tuple(_element(a, codes, here) for a in c.get("also", [])))
                        for c in raw.get("collect", []))
        rules.append(ResourceRule(name, str(raw["type"]), request,
                                  tuple(_element(e, codes, here) for e in raw.get("elements", [])),
                                  _conditions(raw.get("when")), tuple(raw.get("repeat", [])),
                                  raw.get("group_by"), collect, raw.get("incomplete") == "drop"))
    records = tuple(p for p in str(doc.get("records") or "").split("/") if p)
    echoes = {str(t): tuple(str(f) for f in names) for t, names in (doc.get("echoes") or {}).items()}
    return TableSpec(str(doc["table"]), str(doc["root"]), records, tuple(rules), codes,
                     frozenset(doc.get("ignore", [])), echoes)


def _renamed(base: TableSpec, doc: Mapping[str, Any], where: str) -> TableSpec:
    """``extends: <format>``: the same-named table of another format's spec, read from another root
    and with its fields renamed (``rename: {OLD_NAME: NAME_IN_BASE}``), code tables overridden by
    the ones given, ``ignore`` added to.  An older layout reuses every rule and function so."""
    back = {str(new): str(old) for old, new in (doc.get("rename") or {}).items()}

    def f(name: str) -> str:
        return back.get(name, name)

    def cond(cs: tuple[Condition, ...]) -> tuple[Condition, ...]:
        return tuple(dataclasses.replace(c, field=f(c.field)) for c in cs)

    def el(e: ElementRule) -> ElementRule:
        return dataclasses.replace(e, fields=tuple(f(x) for x in e.fields), when=cond(e.when))

    rules = tuple(dataclasses.replace(
        r, elements=tuple(el(e) for e in r.elements), when=cond(r.when), repeat=tuple(f(x) for x in r.repeat),
        group_by=f(r.group_by) if r.group_by else None,
        collect=tuple(dataclasses.replace(c, also=tuple(el(a) for a in c.also)) for c in r.collect))
        for r in base.rules)
    codes = {**base.codes, **{str(k): {str(c): v for c, v in t.items()} for k, t in (doc.get("codes") or {}).items()}}
    for r in rules:
        for e in r.elements:
            if e.codes is not None and e.codes not in codes:
                raise SpecError(f"{where}: unknown code table {e.codes!r}")
    records = tuple(p for p in str(doc.get("records") or "").split("/") if p)
    ignored = frozenset(f(x) for x in base.ignored) | frozenset(doc.get("ignore", []))
    return TableSpec(base.table, str(doc.get("root", base.root)), records, rules, codes, ignored, {})


@cache
def load_spec(fmt: str) -> Spec:
    """Every ``*.yaml`` of ``fhir_hub/mappings/<fmt>/``, checked: unknown functions, code tables,
    rule names and malformed paths fail here, not halfway through a file."""
    folder = resources.files("fhir_hub") / "mappings" / fmt
    tables: dict[str, TableSpec] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            doc = yaml.load(entry.read_text(encoding="utf-8"), Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
            where = f"{fmt}/{entry.name}"
            if "extends" in doc:
                base = load_spec(str(doc["extends"])).tables.get(str(doc["table"]))
                if base is None:
                    raise SpecError(f"{where}: {doc['extends']} has no table {doc['table']}")
                spec = _renamed(base, doc, where)
            else:
                spec = _table(doc, where)
            tables[spec.table] = spec
    names = {r.name for t in tables.values() for r in t.rules}
    for t in tables.values():
        for r in t.rules:
            wanted = [e.ref for e in r.elements if e.ref] + [c.rule for c in r.collect]
            wanted += _template_refs([e.template for e in r.elements] + [e.value for e in r.elements])
            for ref in wanted:
                if ref not in names:
                    raise SpecError(f"{fmt}/{t.table}: {r.name} refers to unknown rule {ref!r}")
    order = sorted(tables, key=lambda name: int(re.sub(r"\D", "", name) or 0))
    return Spec(fmt, {name: tables[name] for name in order})


def _template_refs(values: Iterable[Any]) -> list[str]:
    out: list[str] = []
    for v in values:
        if isinstance(v, str) and v.startswith("ref:"):
            out.append(v[4:])
        elif isinstance(v, dict):
            out += _template_refs(v.values())
        elif isinstance(v, list):
            out += _template_refs(v)
    return out


# -- instantiating ----------------------------------------------------------------------------


@dataclass(slots=True)
class Built:
    """One resource made by a rule, for one record (or repeat item, or group)."""

    rule: str
    table: str
    key: str  # the record's line key, plus the repeat index or group value
    records: tuple[int, ...]  # indexes of the records it came from (a group has several)
    full_url: str
    resource: dict[str, Any]
    request_fn: str


@dataclass(slots=True)
class _Context:
    facility: str
    ma_lk: str
    #: ``facility/ma_lk``, the start of every line key and fullUrl name (made once, not per resource)
    visit: str = field(init=False)
    built: list[Built] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    #: (built, rule, table spec, record, STT): elements are applied once every resource exists,
    #: so a rule may refer to any other, earlier or later.
    pending: list[tuple[Built, ResourceRule, TableSpec, Mapping[str, str], str | None]] = field(default_factory=list)
    #: ``find``'s indexes over ``built`` (made on first use, dropped when ``built`` changes):
    #: (rule, table) → record index → its first resource, and rule → its resources in order.
    #: A visit has hundreds of resources; scanning them for every reference was most of the time.
    _same: dict[tuple[str, str], dict[int, Built]] | None = None
    _by_rule: dict[str, list[Built]] = field(default_factory=dict)
    #: fullUrls ``find`` handed out while the resource ``referrer`` was being filled, by id of
    #: that resource: only those can hold a reference to a dropped resource.
    referrer: Built | None = None
    refs: dict[int, set[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.visit = f"{self.facility}/{self.ma_lk}"

    def reindex(self) -> None:
        same: dict[tuple[str, str], dict[int, Built]] = {}
        by_rule: dict[str, list[Built]] = {}
        for b in self.built:
            recs = same.setdefault((b.rule, b.table), {})
            for r in b.records:
                recs.setdefault(r, b)
            by_rule.setdefault(b.rule, []).append(b)
        self._same, self._by_rule = same, by_rule

    def of_rule(self, rule: str) -> list[Built]:
        if self._same is None:
            self.reindex()
        return self._by_rule.get(rule, [])

    def find(self, rule: str, table: str, record: int) -> Built | None:
        """The resource of ``rule`` made from the same record; a rule of another table (the
        visit's Patient) only when it made exactly one.  Never another record's of the same table."""
        if self._same is None:
            self.reindex()
            assert self._same is not None
        recs = self._same.get((rule, table))
        if recs is not None:
            found = recs.get(record)
        else:
            everywhere = self._by_rule.get(rule)
            found = everywhere[0] if everywhere is not None and len(everywhere) == 1 else None
        if found is not None and self.referrer is not None:
            self.refs.setdefault(id(self.referrer), set()).add(found.full_url)
        return found


def _compile(value: Any) -> Resolver:
    """A spec's constant or template as a function of (context, table, record index, ``$`` item),
    made once per spec instead of walking the value for every record: ``$`` is the item,
    ``sys:<name>`` the system's URL, ``ref:<rule>`` a Reference to that rule's resource (or
    nothing); in an object, a key whose value comes out None is left out.  Every call makes
    new objects, since later rules may add to them (``[=]``, ``merge``)."""
    if isinstance(value, str):
        if value == "$":
            return _item
        if value.startswith("sys:"):
            name = value[4:]
            url = systems.BY_NAME.get(name)
            if url is None:
                def unknown(ctx: _Context, table: str, record: int, item: Any) -> Any:
                    raise SpecError(f"unknown system name {name!r}")
                return unknown
            return _constant(url)
        if value.startswith("ref:"):
            rule = value[4:]

            def ref(ctx: _Context, table: str, record: int, item: Any) -> Any:
                target = ctx.find(rule, table, record)
                return None if target is None else {"reference": target.full_url}
            return ref
        return _constant(value)
    if isinstance(value, dict | list) and _static(value):
        # nothing to resolve: the value made once, a fresh copy per call (orjson makes one
        # in C, twice as fast as walking it; a value orjson would not give back the same is walked)
        made = _compile_walk(value)(None, "", 0, None)  # type: ignore[arg-type]
        if isinstance(made, dict) and not any(isinstance(v, dict | list) for v in made.values()):
            return _Copy(made)
        try:
            dumped = orjson.dumps(made)
        except TypeError:
            dumped = b""
        if dumped and orjson.loads(dumped) == made and orjson.dumps(orjson.loads(dumped)) == dumped:
            return _Loads(dumped)
    return _compile_walk(value)


def _static(value: Any) -> bool:
    """Whether ``value`` holds no ``$``, ``ref:`` or unknown ``sys:`` (whose error is raised when used)."""
    if isinstance(value, str):
        if value.startswith("sys:"):
            return value[4:] in systems.BY_NAME
        return value != "$" and not value.startswith("ref:")
    if isinstance(value, dict):
        return all(_static(v) for v in value.values())
    if isinstance(value, list):
        return all(_static(v) for v in value)
    return True


class _Copy:
    __slots__ = ("made",)

    def __init__(self, made: dict[str, Any]) -> None:
        self.made = made

    def __call__(self, ctx: _Context, table: str, record: int, item: Any) -> Any:
        return self.made.copy()


class _Loads:
    __slots__ = ("dumped",)

    def __init__(self, dumped: bytes) -> None:
        self.dumped = dumped

    def __call__(self, ctx: _Context, table: str, record: int, item: Any) -> Any:
        return orjson.loads(self.dumped)


def _compile_walk(value: Any) -> Resolver:
    if isinstance(value, str):
        return _compile(value)
    if isinstance(value, dict):
        # the object's constant scalars copied in one go, in key order; the rest resolved per call
        base: dict[str, Any] = {}
        dynamic: list[tuple[str, Resolver]] = []
        for k, v in value.items():
            part = _compile(v)
            if isinstance(part, _Constant):
                if part.fixed is not None:
                    base[k] = part.fixed
            else:
                base[k] = None  # keeps the key's place
                dynamic.append((k, part))

        if len(dynamic) == 1 and dynamic[0][1] is _item:  # {system: …, value: $}: most templates
            slot = dynamic[0][0]

            def obj1(ctx: _Context, table: str, record: int, item: Any) -> Any:
                out = base.copy()
                if item is None:
                    del out[slot]
                else:
                    out[slot] = item
                return out
            return obj1

        def obj(ctx: _Context, table: str, record: int, item: Any) -> Any:
            out = base.copy()
            for k, part in dynamic:
                v = item if part is _item else part(ctx, table, record, item)
                if v is None:
                    del out[k]
                else:
                    out[k] = v
            return out
        return obj
    if isinstance(value, list):
        items = [_compile(v) for v in value]

        def array(ctx: _Context, table: str, record: int, item: Any) -> Any:
            return [p(ctx, table, record, item) for p in items]
        return array
    return _constant(value)


def _item(ctx: _Context, table: str, record: int, item: Any) -> Any:
    return item


class _Constant:
    """A scalar (str, number, bool, None): shared safely, nothing can change it."""

    __slots__ = ("fixed",)

    def __init__(self, fixed: Any) -> None:
        self.fixed = fixed

    def __call__(self, ctx: _Context, table: str, record: int, item: Any) -> Any:
        return self.fixed


def _constant(value: Any) -> Resolver:
    return _Constant(value)


def _apply(el: ElementRule, resource: dict[str, Any], record: Mapping[str, str], spec: TableSpec,
           ctx: _Context, index: int, line: str | None) -> bool:
    """Apply one element rule; False when a value was needed and could not be had."""
    return el._run(resource, record, spec, ctx, index, line)


def _applier(el: ElementRule) -> Applier:
    """:func:`_apply` of ``el``, its branches on the rule taken once: a reference, a constant, a
    field copied as it is (most elements), or a field through ``convert`` / ``codes`` /
    ``template`` / ``each``.  Each variant does what the general one does for such a rule."""
    when, required, put = el.when, el.required, _setter(el.path, el.merge)
    if el.ref is not None:
        rule = el.ref

        def ref(resource: dict[str, Any], record: Mapping[str, str], spec: TableSpec, ctx: _Context, index: int,
                line: str | None) -> bool:
            if when and not _holds(when, record):
                return True
            target = ctx.find(rule, spec.table, index)
            if target is not None:
                put(resource, {"reference": target.full_url})
                return True
            return not required
        return ref
    if not el.fields:
        resolve = el._value
        if isinstance(resolve, _Constant):
            fixed = resolve.fixed

            def constant(resource: dict[str, Any], record: Mapping[str, str], spec: TableSpec, ctx: _Context,
                         index: int, line: str | None) -> bool:
                if when and not _holds(when, record):
                    return True
                put(resource, fixed)
                return True
            return constant

        def value(resource: dict[str, Any], record: Mapping[str, str], spec: TableSpec, ctx: _Context, index: int,
                  line: str | None) -> bool:
            if when and not _holds(when, record):
                return True
            put(resource, resolve(ctx, spec.table, index, None))
            return True
        return value
    first_field, more = el.fields[0], el.fields[1:]

    def missing(spec: TableSpec, ctx: _Context, line: str | None) -> bool:
        if required:
            ctx.problems.append(Problem("error", "required", "required field is empty or missing", spec.table,
                                        first_field, None, line))
        return not required

    if el.convert is None and el.codes is None and el._template is None:
        each = el.each

        def plain(resource: dict[str, Any], record: Mapping[str, str], spec: TableSpec, ctx: _Context, index: int,
                  line: str | None) -> bool:
            if when and not _holds(when, record):
                return True
            first = record.get(first_field, "")
            if not first:
                return missing(spec, ctx, line)
            if each:  # a string's characters, as the general loop would take them
                for item in first:
                    put(resource, item)
            else:
                put(resource, first)
            return True
        return plain

    convert_name, args, each, codes, template = el.convert, el.args, el.each, el.codes, el._template
    if not each and codes is None and not more and not args:
        if convert_name is None and template is not None:
            def templated(resource: dict[str, Any], record: Mapping[str, str], spec: TableSpec, ctx: _Context,
                          index: int, line: str | None) -> bool:
                # ``converted`` for a field through a template alone: the text is no Remark
                if when and not _holds(when, record):
                    return True
                first = record.get(first_field, "")
                if not first:
                    return missing(spec, ctx, line)
                put(resource, template(ctx, spec.table, index, first))
                return True
            return templated
        if convert_name is not None and el._convert is not None:
            one = el._convert

            def converted_one(resource: dict[str, Any], record: Mapping[str, str], spec: TableSpec, ctx: _Context,
                              index: int, line: str | None) -> bool:
                # ``converted`` for one field through ``convert`` (and maybe a template): one item
                if when and not _holds(when, record):
                    return True
                first = record.get(first_field, "")
                if not first:
                    return missing(spec, ctx, line)
                try:
                    value = one(first)
                except BadValue as exc:
                    if exc.severity != "information":
                        ctx.problems.append(Problem(exc.severity, "value", exc.reason, spec.table, first_field,
                                                    first, line))
                    return not required
                if isinstance(value, Remark):
                    ctx.problems.append(Problem("warning", "code-invalid", value.reason, spec.table, first_field,
                                                first, line))
                    value = value.value
                put(resource, value if template is None else template(ctx, spec.table, index, value))
                return True
            return converted_one

    def converted(resource: dict[str, Any], record: Mapping[str, str], spec: TableSpec, ctx: _Context, index: int,
                  line: str | None) -> bool:
        if when and not _holds(when, record):
            return True
        first = record.get(first_field, "")
        if not first:
            return missing(spec, ctx, line)
        try:
            if convert_name is None:
                value: Any = first
            else:
                convert = el._convert or CONVERTERS[convert_name]
                value = convert(first, *[record.get(f, "") for f in more], *args) if more or args else convert(first)
        except BadValue as exc:
            if exc.severity != "information":
                ctx.problems.append(Problem(exc.severity, "value", exc.reason, spec.table, first_field, first, line))
            return not required
        ok = True
        for item in (value if each else (value,)):
            if isinstance(item, Remark):
                ctx.problems.append(Problem("warning", "code-invalid", item.reason, spec.table, first_field,
                                            first, line))
                item = item.value
            if codes is not None:
                code = spec._codes[codes].get(str(item))
                if code is None:
                    ctx.problems.append(Problem("error", "code-invalid", f"not a code of {codes} "
                                                f"({', '.join(spec.codes[codes])})", spec.table, first_field,
                                                first, line))
                    ok = False
                    continue
                item = code(ctx, spec.table, index, None)
            if template is not None:
                item = template(ctx, spec.table, index, item)
            put(resource, item)
        return ok or not required
    return converted


def _scrub(value: Any, dropped: set[str]) -> Any:
    """``value`` without the references to dropped resources (list items or keys holding one)."""
    if isinstance(value, dict):
        return {k: _scrub(v, dropped) for k, v in value.items()
                if not (isinstance(v, dict) and v.get("reference") in dropped)}
    if isinstance(value, list):
        return [_scrub(v, dropped) for v in value if not (isinstance(v, dict) and v.get("reference") in dropped)]
    return value


_NAMESPACE_BYTES = NAMESPACE.bytes
#: The 17th hex digit of a version-5 UUID by that of the digest: its byte's top two bits set to
#: ``10`` (the RFC 4122 variant), so 0-3 → 8-b, 4-7 → 8-b, …
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def uuid5(name: str) -> str:
    """``str(uuid.uuid5(NAMESPACE, name))`` without making a UUID object (one per resource): the
    digest's hex with the version nibble (13th digit) ``5`` and the variant bits set, as text
    (no bytearray round trip)."""
    x = hashlib.sha1(_NAMESPACE_BYTES + name.encode("utf-8")).hexdigest()
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{_VARIANT[x[16]]}{x[17:20]}-{x[20:32]}"


def _full_url(ctx: _Context, rule: str, key: str) -> str:
    return f"urn:uuid:{uuid5(f'{ctx.visit}/{rule}/{key}')}"


def _zip_repeat(rule: ResourceRule, record: Mapping[str, str], spec: TableSpec, ctx: _Context,
                line: str | None) -> list[dict[str, str]]:
    lists = {f: [p.strip() for p in record.get(f, "").split(";")] if record.get(f, "") else [] for f in rule.repeat}
    n = len(lists[rule.repeat[0]])
    for f, items in lists.items():
        if items and len(items) != n:
            ctx.problems.append(Problem("error", "value", f"{len(items)} ';'-separated items where "
                                        f"{rule.repeat[0]} has {n}: items are paired by position",
                                        spec.table, f, record.get(f, ""), line))
    return [{**record, **{f: (items[i] if i < len(items) else "") for f, items in lists.items()}}
            for i in range(n) if lists[rule.repeat[0]][i]]


def instantiate(spec: Spec, tables: Mapping[str, list[dict[str, str]]], facility: str, ma_lk: str
                ) -> tuple[list[Built], list[Problem]]:
    """Apply every table's rules to its records (``tables``: table → records as field → text)."""
    ctx = _Context(facility, ma_lk)
    for name, tspec in spec.tables.items():
        records = tables.get(name)
        if not records:
            continue
        for rule in tspec.rules:
            _instantiate_rule(rule, tspec, records, ctx)
    dropped: set[str] = set()
    ctx.reindex()
    problems = ctx.problems
    for built, rule, tspec, record, stt in ctx.pending:
        ctx.referrer = built
        why: Problem | None = None
        resource, index = built.resource, built.records[0]
        if not rule.drop_incomplete:  # the commonest rule: every element applied, nothing to decide after
            get = record.get
            for optional, run in rule._steps:
                if optional is None or get(optional):  # else what _apply would do: nothing
                    run(resource, record, tspec, ctx, index, stt)
            continue
        for el in rule.elements:  # every element is tried, so that every bad field of the record is reported
            if el._optional is not None and not record.get(el._optional):
                continue  # what _apply would do: nothing
            before = len(problems)
            if not el._run(resource, record, tspec, ctx, index, stt) and rule.drop_incomplete:
                if len(problems) == before and built.full_url not in dropped:
                    dropped.add(built.full_url)  # nothing there to map (no pulse in the note): no remark
                    break
                dropped.add(built.full_url)
                why = why or Problem("warning", "incomplete", f"no {rule.type} made from this record: a field it "
                                     "needs could not be mapped", tspec.table, el.fields[0] if el.fields else None,
                                     None, stt)
        if why is not None:
            ctx.problems.append(why)
    ctx.referrer = None
    if dropped:
        ctx.built = [b for b in ctx.built if b.full_url not in dropped]
        ctx.reindex()
        for b in ctx.built:  # only a resource that was given a dropped one's fullUrl can hold it
            if not ctx.refs.get(id(b), _NONE).isdisjoint(dropped):
                b.resource = _scrub(b.resource, dropped)
    for b in ctx.built:
        rule = spec.tables[b.table].rule(b.rule)
        for c in rule.collect:
            members = [x for x in ctx.of_rule(c.rule)
                       if rule.group_by is None or (x.table == b.table and not set(x.records).isdisjoint(b.records))]
            for m in members:
                set_path(b.resource, c.path, {"reference": m.full_url})
                for also in c.also:
                    _apply(also, b.resource, {}, spec.tables[b.table], ctx, b.records[0], None)
    # a field read by several rules (NGAY_RA: Encounter.period.end, Condition.recordedDate) is one problem
    return ctx.built, list(dict.fromkeys(ctx.problems))


def unmapped(spec: Spec, tables: Mapping[str, list[dict[str, str]]], built: Iterable[Built]) -> dict[str, list[str]]:
    """Table → the non-empty input fields whose value went into no resource, record by record:
    a field counts as mapped for a record only when a resource was made from that record by a
    rule with an element reading the field (and that element's ``when`` held), so a field that
    one kind of line maps (SO_LUONG of a service) and another does not (of a supply line with no
    resource) is listed for the latter.  Ignored fields are the adapter's (keys); an echoed field
    is mapped when the field it copies is.  An entry is ``FIELD`` when no record of the table maps
    it, ``FIELD (STT 3, 5)`` when only those records do not.  A record from which nothing was
    made has all its fields listed, its keys (``ignore``) too."""
    # (table, record index) → the fields read from it, with the table's ignored ones (a record
    # something was made from keeps its keys; one read by no rule has no entry)
    read: dict[tuple[str, int], set[str]] = {}
    for b in built:
        tspec = spec.tables[b.table]
        always, conditional = tspec.rule_fields(b.rule)
        records = tables.get(b.table) or []
        for i in b.records:
            if i < len(records):
                reads = read.get((b.table, i))
                if reads is None:
                    reads = read[(b.table, i)] = set(always).union(tspec.ignored)
                else:
                    reads |= always
                for when, names in conditional:
                    if _holds(when, records[i]):
                        reads.update(names)
    out: dict[str, list[str]] = {}
    for kind, records in tables.items():
        tspec = spec.tables[kind]
        echo = tspec._echo
        lost: dict[str, list[str]] = {}
        for i, rec in enumerate(records):
            used = read.get((kind, i))
            line: str | None = None  # the record's STT (or position), when it first loses a field
            # the fields no rule read (a set difference, in C: a record has tens of fields), then
            # those with a value; a record nothing was made from loses all, its keys too
            for name in rec if used is None else rec.keys() - used:
                if not rec[name] or name[0] == "$":
                    continue
                origin = echo.get(name) if echo else None
                if origin is not None and origin[0] in spec.tables and (
                        origin[1] in read.get((origin[0], 0), _NONE) or origin[1] in spec.tables[origin[0]].ignored):
                    continue
                if line is None:
                    line = rec.get("STT") or str(i + 1)
                lines = lost.get(name)
                if lines is None:
                    lost[name] = [line]
                else:
                    lines.append(line)
        if not lost:
            continue
        listed = [name if len(records) == 1 or len(lost_at) == len([1 for rec in records if rec.get(name)])
                  else f"{name} (STT {', '.join(lost_at)})" for name, lost_at in sorted(lost.items())]
        if listed:
            out[kind] = listed
    return out


def _line_key(tspec: TableSpec, record: Mapping[str, str], ctx: _Context, index: int) -> tuple[str, str | None]:
    stt = record.get("STT") or None
    return f"{ctx.visit}/{tspec.table}/{stt or index + 1}", stt


def _instantiate_rule(rule: ResourceRule, tspec: TableSpec, records: list[dict[str, str]], ctx: _Context) -> None:
    if rule.group_by is not None:
        groups: dict[str, list[int]] = {}
        for i, rec in enumerate(records):
            if _holds(rule.when, rec):
                value = rec.get(rule.group_by, "")
                if value:
                    groups.setdefault(value, []).append(i)
        for value, members in groups.items():
            first = members[0]
            key = f"{ctx.visit}/{tspec.table}/{rule.group_by}={value}"
            _build(rule, tspec, records[first], ctx, tuple(members), key, records[first].get("STT"))
        return
    for i, rec in enumerate(records):
        if rule.when and not _holds(rule.when, rec):
            continue
        key, stt = _line_key(tspec, rec, ctx, i)
        if rule.repeat:
            for n, item in enumerate(_zip_repeat(rule, rec, tspec, ctx, stt), 1):
                sub = f"{key}/{n}"
                _build(rule, tspec, item, ctx, (i,), sub, stt)
        else:
            _build(rule, tspec, rec, ctx, (i,), key, stt)


def _build(rule: ResourceRule, tspec: TableSpec, record: Mapping[str, str], ctx: _Context,
           members: tuple[int, ...], key: str, stt: str | None) -> None:
    resource: dict[str, Any] = {"resourceType": rule.type}
    # the one copy of the record a resource gets: its own keys added (``$line`` is the line key)
    record = {**record, "$line": key, "$id": f"{rule.name}/{key}", "$facility": ctx.facility,
              "$visit": ctx.visit}
    built = Built(rule.name, tspec.table, key, members, _full_url(ctx, rule.name, key), resource, rule.request)
    ctx.built.append(built)
    ctx._same = None
    ctx.pending.append((built, rule, tspec, record, stt))
