"""Fast structural validation of FHIR R4 JSON resources (as parsed by orjson).

Why a hand-written walker instead of JSON Schema or a generic profile validator: this runs on
the ingest hot path, for every resource written, so it must cost tens of microseconds.  The
element model of every type (from ``fhir_hub.definitions``) is compiled once into plain tuples
and dicts, and the resource dict is walked in a single pass.

What is checked (each problem is an ``Issue`` with severity ``error``):

* ``resourceType`` present and a known concrete type (``structure``), recursively for
  ``contained``, ``Bundle.entry.resource``, ``Parameters.parameter.resource`` and every other
  element of type ``Resource``;
* unknown elements (``structure``), including a stray ``_name`` sibling;
* JSON arrays exactly where max > 1, and single values where max = 1 (``structure``);
* ``null``, ``{}`` and ``[]`` (FHIR JSON forbids empty values, ``structure``); a ``null`` inside
  a primitive array is allowed only when the ``_name`` array carries something at that index,
  and the two arrays must have the same length;
* minimum cardinality (``required``); for a choice element ``value[x]`` it applies to the group;
* at most one alternative of a choice element (``structure``);
* primitive values: the JSON type, then the StructureDefinition regex (translated so that, as in
  XML Schema, only space/tab/CR/LF count as whitespace: U+00A0 is fine), integer ranges, real
  calendar dates, non-empty strings that are not only whitespace, ``xhtml`` starting with
  ``<div`` (``value``);
* required bindings whose codes are enumerable, on ``code`` elements (``code-invalid``).

Not checked here: invariants (``constraint.expression``, e.g. ``dom-2``, ``obs-6``), Reference
targets, extension definitions and the CodeableConcept bindings of the core profile (:mod:`.core`
checks those), profiles in ``meta.profile`` (:mod:`.profile`), non-required bindings.

Issue expressions are FHIRPath, rooted at the resource type, with an index on every repeating
element and ``ofType()`` for choice elements, e.g. ``Patient.name[0].given[1]``,
``Observation.value.ofType(Quantity).code``, ``Bundle.entry[2].resource.id``.  A ``_name``
sibling shares the path of its primitive (FHIRPath merges them).  An unknown key is reported as
``<parent>.<key>``.  When the resource type itself is missing or unknown the root is
``Resource``.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from functools import cache
from typing import Any

from fhir_hub import definitions
from fhir_hub.errors import Issue

__all__ = ["validate", "validate_type", "warm_up"]

# Returns None when the value is fine, else a diagnostic.
Checker = Callable[[Any], "str | None"]

_PRIM = 0
_COMPLEX = 1
_RESOURCE = 2
_TEXT = 3  # string / markdown: checked inline, the commonest primitive

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1
_XML_WS = " \t\n\r"


class _Type:
    """A compiled element model.

    ``elements`` maps a JSON key to a spec tuple
    ``(kind, many, arg, binding, choice, seg, ext_ok, limits)``:

    * ``kind``: _PRIM / _TEXT (string, markdown) / _COMPLEX / _RESOURCE; ``arg`` is the
      primitive checker, the child ``_Type``, or None;
    * ``many``: max > 1 (a JSON array is expected);
    * ``binding``: frozenset of allowed codes, or None;
    * ``choice``: the ``[x]`` stem or None; ``seg``: the FHIRPath step (``value.ofType(Quantity)``);
    * ``ext_ok``: whether a ``_name`` sibling is allowed; ``limits``: (min, max) for the rare
      arrays with min > 1 or a numeric max, else None.
    """

    __slots__ = ("name", "elements", "required", "required_choices", "is_resource")

    def __init__(self, name: str, is_resource: bool) -> None:
        self.name = name
        self.is_resource = is_resource
        self.elements: dict[str, tuple[Any, ...]] = {}
        # (jsonName, "_jsonName" or None, seg) for elements with min >= 1
        self.required: tuple[tuple[str, str | None, str], ...] = ()
        # choice stems with min >= 1
        self.required_choices: tuple[str, ...] = ()


# --------------------------------------------------------------------------- primitive checkers


def _jtype(v: Any) -> str:
    if v is None:
        return "null"
    if v is True or v is False:
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _valid_calendar_date(v: str) -> bool:
    """The regexes allow 2021-02-31; FHIR requires real dates."""
    if len(v) < 10 or v[8:10] <= "28":  # the regex already bounds month and day
        return True
    try:
        _dt.date(int(v[0:4]), int(v[5:7]), int(v[8:10]))
    except ValueError:
        return False
    return True


def _string_checker(type_name: str, pattern: str | None, calendar: bool = False) -> Checker:
    fullmatch = re.compile(pattern).fullmatch if pattern else None

    def check(v: Any) -> str | None:
        if type(v) is not str:
            return f"Expected a JSON string for {type_name}, found {_jtype(v)}"
        if not v:
            return f"Empty string is not a valid {type_name}"
        if fullmatch is not None and fullmatch(v) is None:
            return f"Invalid {type_name} value {_show(v)}"
        if calendar and not _valid_calendar_date(v):
            return f"Invalid {type_name} value {_show(v)}: not a calendar date"
        return None

    return check


def _check_text(v: Any) -> str | None:
    """string and markdown: any characters, but not empty nor only whitespace."""
    if type(v) is not str:
        return f"Expected a JSON string, found {_jtype(v)}"
    if not v or v.isspace():
        return "String must not be empty or only whitespace"
    return None


def _check_base64(v: Any) -> str | None:
    """Equivalent to the R4 regex, without its exponential backtracking on bad input."""
    if type(v) is not str:
        return f"Expected a JSON string for base64Binary, found {_jtype(v)}"
    compact = v
    for ws in _XML_WS:
        if ws in compact:
            compact = compact.replace(ws, "")
    if not compact or len(compact) % 4 or _B64_CHARS(compact) is None:
        return "Invalid base64Binary value"
    return None


_B64_CHARS = re.compile(r"[A-Za-z0-9+/=]+").fullmatch


def _check_xhtml(v: Any) -> str | None:
    if type(v) is not str:
        return f"Expected a JSON string for xhtml, found {_jtype(v)}"
    if not v.lstrip(_XML_WS).startswith("<div"):
        return "Narrative xhtml must be a <div> element"
    return None


def _check_boolean(v: Any) -> str | None:
    if v is True or v is False:
        return None
    return f"Expected a JSON boolean, found {_jtype(v)} {_show(v)}"


def _int_checker(type_name: str, low: int) -> Checker:
    def check(v: Any) -> str | None:
        if type(v) is not int:
            return f"Expected a JSON integer for {type_name}, found {_jtype(v)} {_show(v)}"
        if v < low or v > _INT32_MAX:
            return f"{type_name} value {v} out of range [{low}, {_INT32_MAX}]"
        return None

    return check


def _check_decimal(v: Any) -> str | None:
    t = type(v)
    if t is float or t is int:
        return None
    return f"Expected a JSON number for decimal, found {_jtype(v)} {_show(v)}"


@cache
def _checkers() -> dict[str, Checker]:
    """One checker per primitive type, built from the compiled definitions."""
    out: dict[str, Checker] = {}
    for name, info in definitions.primitive_types().items():
        rx = info.get("regex")
        if name in ("string", "markdown"):
            out[name] = _check_text
        elif name == "base64Binary":
            out[name] = _check_base64
        elif name == "xhtml":
            out[name] = _check_xhtml
        elif name == "boolean":
            out[name] = _check_boolean
        elif name == "integer":
            out[name] = _int_checker(name, _INT32_MIN)
        elif name == "positiveInt":
            out[name] = _int_checker(name, 1)
        elif name == "unsignedInt":
            out[name] = _int_checker(name, 0)
        elif name == "decimal":
            out[name] = _check_decimal
        else:
            out[name] = _string_checker(name, rx, calendar=name in ("date", "dateTime", "instant"))
    return out


# --------------------------------------------------------------------------- compilation


@cache
def _registry() -> dict[str, _Type]:
    """Compile every element model at once.

    Built whole (rather than lazily per type) so that a concurrent caller can never observe a
    half-filled type; it takes a few tens of milliseconds, once per process.
    """
    checkers = _checkers()
    prims = definitions.primitive_types()
    names = definitions.type_names()
    registry = {
        name: _Type(name, definitions.type_kind(name) in ("resource", "abstract-resource")) for name in names
    }
    for name, t in registry.items():
        required: list[tuple[str, str | None, str]] = []
        required_choices: set[str] = set()
        for key, el in definitions.type_model(name).items():
            tcode: str = el["type"]
            choice: str | None = el.get("choice")
            seg = key
            if choice:
                # FHIRPath type name: the primitive code, or the complex type as spelt in the JSON
                # name (doseQuantity -> Quantity, though the element is a SimpleQuantity)
                seg = f"{choice}.ofType({tcode if tcode in prims else key[len(choice) :]})"
            maxv = el["max"]
            many = maxv == "*" or maxv > 1
            limits = None
            if many and (el["min"] > 1 or maxv != "*"):
                limits = (el["min"], None if maxv == "*" else maxv)
            binding = None
            arg: Any
            if tcode in prims:
                kind, arg = (_TEXT if tcode in ("string", "markdown") else _PRIM), checkers[tcode]
                ext_ok = tcode != "xhtml" and not (el.get("attr") and key == "id")
                if "binding" in el:
                    binding = definitions.value_set_codes(el["binding"])
            elif tcode == "Resource":
                kind, arg, ext_ok = _RESOURCE, None, False
            else:
                kind, arg, ext_ok = _COMPLEX, registry[tcode], False
            t.elements[key] = (kind, many, arg, binding, choice, seg, ext_ok, limits)
            if el["min"] >= 1:
                if choice:
                    required_choices.add(choice)
                else:
                    required.append((key, "_" + key if ext_ok else None, seg))
        t.required = tuple(required)
        t.required_choices = tuple(sorted(required_choices))
    return registry


@cache
def _resource_registry() -> dict[str, _Type]:
    registry = _registry()
    return {name: registry[name] for name in definitions.resource_types()}


def warm_up() -> None:
    """Load and compile the definitions now (call at server start, off the request path)."""
    _resource_registry()


# --------------------------------------------------------------------------- walking
#
# Paths are built lazily: a child's path is the tuple (parent, seg) or (parent, seg, index) and
# is rendered to a FHIRPath string only when an issue is reported.  Formatting a string for
# every nested object would be a sizeable share of the total cost of a valid resource.

_Path = Any  # str | tuple[_Path, str] | tuple[_Path, str, int]


def _render(path: _Path) -> str:
    parts: list[str] = []
    while type(path) is tuple:
        parts.append(f".{path[1]}[{path[2]}]" if len(path) == 3 else "." + path[1])
        path = path[0]
    parts.append(path)
    parts.reverse()
    return "".join(parts)


def _issue(
    out: list[Issue], code: str, msg: str, path: _Path, seg: str | None = None, index: int = -1
) -> None:
    if seg is not None:
        path = (path, seg) if index < 0 else (path, seg, index)
    out.append(Issue("error", code, msg, (_render(path),)))


def _bad_value(value: Any, out: list[Issue], path: _Path, seg: str | None = None, index: int = -1) -> None:
    """A complex element or resource that is not a non-empty JSON object."""
    if value is None:
        msg = "null is not allowed"
    elif type(value) is dict:
        msg = "Empty object is not allowed"
    elif type(value) is list:
        msg = "Expected a single JSON object, found an array"
    else:
        msg = f"Expected a JSON object, found {_jtype(value)}"
    _issue(out, "structure", msg, path, seg, index)


def _bad_primitive(
    value: Any,
    arg: Checker,
    binding: frozenset[str] | None,
    out: list[Issue],
    path: _Path,
    seg: str,
    index: int = -1,
) -> None:
    """Report why a primitive value failed the fast path (wrong JSON type, format or code)."""
    if type(value) is list:
        _issue(out, "structure", "Expected a single value, found an array", path, seg, index)
        return
    if type(value) is dict:
        _issue(out, "structure", "Expected a primitive value, found an object", path, seg, index)
        return
    msg = arg(value)
    if msg is not None:
        _issue(out, "value", msg, path, seg, index)
    elif binding is not None and value not in binding:
        _issue(out, "code-invalid", f"Code {_show(value)} is not in the required value set", path, seg, index)


def _walk_resource(value: Any, out: list[Issue], path: _Path) -> None:
    if type(value) is not dict or not value:
        _bad_value(value, out, path)
        return
    rt = value.get("resourceType")
    t = _resource_registry().get(rt) if type(rt) is str else None
    if t is None:
        msg = "Missing resourceType" if rt is None else f"Unknown resourceType {_show(rt)}"
        _issue(out, "structure", msg, path)
        return
    _walk(t, value, path, out)


def _walk_ext(
    t: _Type, obj: dict[str, Any], key: str, value: Any, path: _Path, out: list[Issue]
) -> str | None:
    """A ``_name`` key: id/extensions of the primitive ``name``.  Returns the choice stem, if any."""
    name = key[1:]
    spec = t.elements.get(name)
    if spec is None or not spec[6]:
        _issue(out, "structure", f"Unknown element '{key}'", path, key)
        return None
    many: bool = spec[1]
    stem: str | None = spec[4]
    seg: str = spec[5]
    element_type = _registry()["Element"]
    if many:
        if type(value) is not list:
            _issue(out, "structure", f"'{key}' must be a JSON array", path, seg)
            return stem
        if not value:
            _issue(out, "structure", "Empty array is not allowed", path, seg)
            return stem
        prim = obj.get(name)
        if type(prim) is list and len(prim) != len(value):
            _issue(out, "structure", f"'{key}' and '{name}' must have the same number of items", path, seg)
        for i, item in enumerate(value):
            if item is None:
                # both null at i is reported once, by the primitive side
                if type(prim) is not list or i >= len(prim):
                    _issue(out, "structure", "null is not allowed", path, seg, i)
            elif type(item) is dict and item:
                _walk(element_type, item, (path, seg, i), out)
            else:
                _bad_value(item, out, path, seg, i)
    elif type(value) is dict and value:
        _walk(element_type, value, (path, seg), out)
    else:
        _bad_value(value, out, path, seg)
    return stem


def _walk(t: _Type, obj: dict[str, Any], path: _Path, out: list[Issue]) -> None:
    """Check one JSON object (``obj`` is known to be a non-empty dict) against type ``t``."""
    elements = t.elements
    choices: dict[str, str] | None = None
    for key, value in obj.items():
        spec = elements.get(key)
        if spec is None:
            if key[:1] == "_":
                stem = _walk_ext(t, obj, key, value, path, out)
                if stem is None:
                    continue
                key = key[1:]  # a choice is the same alternative whether value or extension
                if choices is None:
                    choices = {stem: key}
                elif choices.setdefault(stem, key) != key:
                    _issue(out, "structure", f"Only one of {stem}[x] is allowed", path, stem)
            elif key != "resourceType" or not t.is_resource:
                _issue(out, "structure", f"Unknown element '{key}'", path, key)
            continue
        kind, many, arg, binding, choice, seg, ext_ok, limits = spec
        if choice is not None:
            if choices is None:
                choices = {choice: key}
            elif choices.setdefault(choice, key) != key:
                _issue(out, "structure", f"Only one of {choice}[x] is allowed", path, choice)
        if value is None:
            _issue(out, "structure", "null is not allowed", path, seg)
        elif not many:
            if kind == _TEXT:
                if type(value) is not str or not value or value.isspace():
                    _bad_primitive(value, arg, None, out, path, seg)
            elif kind == _PRIM:
                if binding is not None:
                    if type(value) is not str or value not in binding:
                        _bad_primitive(value, arg, binding, out, path, seg)
                elif arg(value) is not None:
                    _bad_primitive(value, arg, None, out, path, seg)
            elif type(value) is dict and value:
                if kind == _COMPLEX:
                    _walk(arg, value, (path, seg), out)
                else:
                    _walk_resource(value, out, (path, seg))
            else:
                _bad_value(value, out, path, seg)
        elif type(value) is not list:
            _issue(out, "structure", f"'{key}' must be a JSON array", path, seg)
        elif not value:
            _issue(out, "structure", "Empty array is not allowed", path, seg)
        else:
            if limits is not None:
                low, high = limits
                if len(value) < low or (high is not None and len(value) > high):
                    _issue(out, "structure", f"'{key}' has {len(value)} items", path, seg)
            if kind == _COMPLEX:
                i = 0
                for item in value:
                    if type(item) is dict and item:
                        _walk(arg, item, (path, seg, i), out)
                    else:
                        _bad_value(item, out, path, seg, i)
                    i += 1
            elif kind == _RESOURCE:
                for i, item in enumerate(value):
                    _walk_resource(item, out, (path, seg, i))
            else:
                i = 0
                for item in value:
                    if item is None:
                        ext = obj.get("_" + key) if ext_ok else None
                        if type(ext) is not list or i >= len(ext) or ext[i] is None:
                            _issue(out, "structure", "null is not allowed", path, seg, i)
                    elif kind == _TEXT:
                        if type(item) is not str or not item or item.isspace():
                            _bad_primitive(item, arg, None, out, path, seg, i)
                    elif binding is not None:
                        if type(item) is not str or item not in binding:
                            _bad_primitive(item, arg, binding, out, path, seg, i)
                    elif arg(item) is not None:
                        _bad_primitive(item, arg, None, out, path, seg, i)
                    i += 1

    if t.required:
        for name, uname, seg in t.required:
            if name not in obj and (uname is None or uname not in obj):
                _issue(out, "required", f"Missing required element '{name}'", path, seg)
    if t.required_choices:
        for stem in t.required_choices:
            if choices is None or stem not in choices:
                _issue(out, "required", f"Missing required element '{stem}[x]'", path, stem)


# --------------------------------------------------------------------------- public API


def validate(resource: Any) -> list[Issue]:
    """Structural errors of one resource (an orjson-parsed dict); empty list when valid.

    Contained and nested resources (Bundle entries, Parameters) are checked too.  Never raises
    for bad input: a non-object or absurdly deep nesting is itself reported as an issue.
    """
    out: list[Issue] = []
    if type(resource) is not dict or not resource:
        _bad_value(resource, out, "Resource")
        return out
    rt = resource.get("resourceType")
    t = _resource_registry().get(rt) if type(rt) is str else None
    if t is None:
        msg = "Missing resourceType" if rt is None else f"Unknown resourceType {_show(rt)}"
        return [Issue("error", "structure", msg, ("Resource",))]
    root: str = t.name
    try:
        _walk(t, resource, root, out)
    except RecursionError:
        out.append(Issue("error", "structure", "Content is nested too deeply", (root,)))
    return out


def validate_type(value: Any, type_name: str, path: str | None = None) -> list[Issue]:
    """Structural errors of a datatype or backbone value (e.g. a ``HumanName`` dict), or of a
    primitive (``"date"``).  ``path`` is the FHIRPath prefix for issues (default: the type name).
    Raises ``KeyError`` for an unknown type."""
    out: list[Issue] = []
    where = path or type_name
    checkers = _checkers()
    if type_name in checkers:
        msg = checkers[type_name](value)
        if msg is not None:
            out.append(Issue("error", "value", msg, (where,)))
        return out
    t = _registry()[type_name]
    if type(value) is not dict or not value:
        _bad_value(value, out, where)
        return out
    try:
        _walk(t, value, where, out)
    except RecursionError:
        out.append(Issue("error", "structure", "Content is nested too deeply", (where,)))
    return out
