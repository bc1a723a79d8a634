"""The ``patch`` interaction's two body formats, applied as pure functions.

FHIR R4 lets a client PATCH a resource with either a JSON Patch document or a
FHIRPath Patch ``Parameters`` resource (https://hl7.org/fhir/R4/http.html#patch).
The HTTP layer picks the function from the request (``application/json-patch+json``
→ :func:`apply_json_patch`; a ``Parameters`` body → :func:`apply_fhirpath_patch`),
then validates and stores what comes back. Nothing here touches storage or
validates FHIR: keeping patching pure makes it testable without a server and lets
the caller run its ordinary update path (validation, versioning, preconditions) on
the outcome.

Specs followed:

* JSON Patch, RFC 6902: https://www.rfc-editor.org/rfc/rfc6902
* JSON Pointer, RFC 6901: https://www.rfc-editor.org/rfc/rfc6901
* FHIRPath Patch: https://hl7.org/fhir/R4/fhirpatch.html

Error split, for both formats: a patch body that is malformed in itself → 400
(``invalid``); a well-formed patch that cannot be applied to *this* resource (missing
path, failed ``test``, ambiguous FHIRPath, index out of range, an attempt to change
``resourceType`` or ``id``) → 422 (``processing`` / ``business-rule``). Diagnostics
always name the 0-based operation index.

The input resource is never mutated: each function works on a deep copy.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from fhirpathpy import evaluate
from fhirpathpy.models import models as _fhirpath_models

from fhir_hub.errors import FhirError, invalid, unprocessable

__all__ = [
    "RepeatingFn",
    "apply_fhirpath_patch",
    "apply_json_patch",
    "default_is_repeating",
]

#: Answers "is this element 0..*?" for a model path such as ``Patient.telecom``
#: (or a bare element name when the model path is unknown). ``None`` = don't know,
#: fall back to :func:`default_is_repeating`.
RepeatingFn = Callable[[str], bool | None]

_IDENTITY_KEYS = ("resourceType", "id")


# --------------------------------------------------------------------------- shared


def _clone(value: Any) -> Any:
    """Deep copy of JSON data. orjson's round trip is several times faster than
    :func:`copy.deepcopy`; fall back to it for what orjson refuses (huge ints)."""
    try:
        return orjson.loads(orjson.dumps(value))
    except TypeError:  # orjson.JSONEncodeError subclasses TypeError
        return copy.deepcopy(value)


def _show(value: Any, limit: int = 80) -> str:
    """Short JSON rendering of a value for diagnostics."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _guard_identity(original: dict[str, Any], doc: Any, label: str, *expression: str) -> None:
    """R4 http.html#patch: a patch updates *this* resource, so it may not turn the
    document into something else or re-point it at another ``resourceType``/``id``
    (the server would otherwise store it under the wrong identity)."""
    if not isinstance(doc, dict):
        raise unprocessable(f"{label}: the result is no longer a JSON object (a resource)", *expression)
    for key in _IDENTITY_KEYS:
        if doc.get(key) != original.get(key):
            raise unprocessable(
                f"{label}: a patch must not change '{key}' "
                f"(was {_show(original.get(key))}, would become {_show(doc.get(key))})",
                *expression,
                code="business-rule",
            )


# ======================================================================= JSON Patch

_JSON_OPS: dict[str, tuple[str, ...]] = {
    # op -> members it requires besides "op" and "path" (RFC 6902 §4.1-§4.6)
    "add": ("value",),
    "remove": (),
    "replace": ("value",),
    "move": ("from",),
    "copy": ("from",),
    "test": ("value",),
}
_BAD_TILDE = re.compile(r"~(?![01])")
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class _JsonOp:
    index: int
    op: str
    path: str
    tokens: tuple[str, ...]
    source: str | None = None  # the "from" member
    source_tokens: tuple[str, ...] = ()
    value: Any = None

    @property
    def label(self) -> str:
        return f"JSON Patch operation {self.index} ({self.op})"


def apply_json_patch(resource: dict[str, Any], operations: object) -> dict[str, Any]:
    """Apply an RFC 6902 JSON Patch document to ``resource`` and return a new dict.

    The whole document is checked for syntax first (RFC 6902 §3-§4 members, RFC 6901
    §3 pointer grammar) so a malformed patch is a 400 no matter how far application
    would have got; operations then apply in order and the first failure aborts all
    of them (RFC 6902 §5). Array indices follow RFC 6901 §4 (no leading zeros, ``-``
    = past the end, only meaningful for ``add``).

    Raises :class:`~fhir_hub.errors.FhirError`: 400 for a malformed document, 422 when
    a path does not exist, a ``test`` fails (§4.6), or the result would change
    ``resourceType``/``id``.
    """
    ops = _parse_json_patch(operations)
    doc: Any = _clone(resource)
    for op in ops:
        doc = _apply_json_op(doc, op)
        _guard_identity(resource, doc, op.label)
    return doc


def _parse_json_patch(operations: object) -> list[_JsonOp]:
    if not isinstance(operations, list):
        raise invalid(
            f"A JSON Patch document must be a JSON array of operations (RFC 6902 §3), "
            f"got {type(operations).__name__}"
        )
    out: list[_JsonOp] = []
    for i, raw in enumerate(operations):
        where = f"JSON Patch operation {i}"
        if not isinstance(raw, dict):
            raise invalid(f"{where}: must be a JSON object, got {_show(raw)}")
        op = raw.get("op")
        if "op" not in raw:
            raise invalid(f"{where}: missing member 'op'")
        if not isinstance(op, str) or op not in _JSON_OPS:
            raise invalid(f"{where}: unknown op {_show(op)} (expected one of {', '.join(_JSON_OPS)})")
        where = f"{where} ({op})"
        if "path" not in raw:
            raise invalid(f"{where}: missing member 'path'")
        path = raw["path"]
        if not isinstance(path, str):
            raise invalid(f"{where}: member 'path' must be a string, got {_show(path)}")
        tokens = _parse_pointer(path, where, "path")
        needed = _JSON_OPS[op]
        for member in needed:
            if member not in raw:
                raise invalid(f"{where}: missing member '{member}'")
        if "from" in needed:
            source = raw["from"]
            if not isinstance(source, str):
                raise invalid(f"{where}: member 'from' must be a string, got {_show(source)}")
            source_tokens = _parse_pointer(source, where, "from")
            if (
                op == "move"
                and len(tokens) > len(source_tokens)
                and tokens[: len(source_tokens)] == source_tokens
            ):
                raise invalid(f"{where}: cannot move '{source}' into its own child '{path}' (RFC 6902 §4.4)")
            out.append(_JsonOp(i, op, path, tokens, source, source_tokens))
        else:
            out.append(_JsonOp(i, op, path, tokens, value=raw.get("value")))
    return out


def _parse_pointer(pointer: str, where: str, member: str) -> tuple[str, ...]:
    """RFC 6901 §3-§4: ``""`` is the whole document, otherwise ``/``-separated
    reference tokens where ``~1`` means ``/`` and ``~0`` means ``~`` (decoded in
    that order so ``~01`` is the literal ``~1``)."""
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise invalid(
            f"{where}: {member} '{pointer}' is not a JSON Pointer: it must be empty or start with '/'"
        )
    tokens = pointer[1:].split("/")
    for token in tokens:
        if _BAD_TILDE.search(token):
            raise invalid(
                f"{where}: {member} '{pointer}' has a '~' not followed by '0' or '1' (RFC 6901 §3 escaping)"
            )
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in tokens)


def _pointer(tokens: tuple[str, ...]) -> str:
    return "".join("/" + t.replace("~", "~0").replace("/", "~1") for t in tokens)


def _missing(op: _JsonOp, member: str, pointer: str, detail: str) -> FhirError:
    return unprocessable(f"{op.label}: {member} '{pointer}' does not exist: {detail}")


def _array_index(token: str) -> int | None:
    return int(token) if _ARRAY_INDEX.fullmatch(token) else None


def _resolve(doc: Any, tokens: tuple[str, ...], op: _JsonOp, member: str, pointer: str) -> Any:
    """The value ``tokens`` point at, or a 422 naming the first token that fails."""
    current = doc
    for depth, token in enumerate(tokens):
        here = _pointer(tokens[:depth]) or "the document root"
        if isinstance(current, dict):
            if token not in current:
                raise _missing(op, member, pointer, f"no member '{token}' in {here}")
            current = current[token]
        elif isinstance(current, list):
            i = _array_index(token)
            if i is None:
                raise _missing(op, member, pointer, f"'{token}' is not an array index for {here}")
            if i >= len(current):
                raise _missing(
                    op, member, pointer, f"index {i} is out of range for {here} ({len(current)} items)"
                )
            current = current[i]
        else:
            raise _missing(
                op, member, pointer, f"{here} is a {type(current).__name__}, not an object or array"
            )
    return current


def _json_add(doc: Any, tokens: tuple[str, ...], value: Any, op: _JsonOp) -> Any:
    """RFC 6902 §4.1: set an object member (replacing it if present) or insert into
    an array (``-`` appends; index == length is allowed)."""
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1], op, "path", op.path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            i = _array_index(last)
            if i is None or i > len(parent):
                detail = (
                    f"'{last}' is not an array index"
                    if i is None
                    else f"index {i} is past the end of the array ({len(parent)} items; use '-' to append)"
                )
                raise _missing(op, "path", op.path, detail)
            parent.insert(i, value)
    else:
        raise _missing(op, "path", op.path, f"parent is a {type(parent).__name__}, not an object or array")
    return doc


def _json_remove(doc: Any, tokens: tuple[str, ...], op: _JsonOp, member: str, pointer: str) -> Any:
    """RFC 6902 §4.2: the target must exist; returns the removed value."""
    if not tokens:
        raise unprocessable(f"{op.label}: cannot remove the whole resource")
    _resolve(doc, tokens, op, member, pointer)  # existence check with a precise message
    parent = _resolve(doc, tokens[:-1], op, member, pointer)
    last = tokens[-1]
    if isinstance(parent, dict):
        return parent.pop(last)
    return parent.pop(int(last))


def _apply_json_op(doc: Any, op: _JsonOp) -> Any:
    if op.op == "add":
        return _json_add(doc, op.tokens, _clone(op.value), op)
    if op.op == "remove":
        _json_remove(doc, op.tokens, op, "path", op.path)
        return doc
    if op.op == "replace":  # §4.3: remove + add, but the target must exist
        if not op.tokens:
            return _clone(op.value)
        _resolve(doc, op.tokens, op, "path", op.path)
        parent = _resolve(doc, op.tokens[:-1], op, "path", op.path)
        key: Any = op.tokens[-1] if isinstance(parent, dict) else int(op.tokens[-1])
        parent[key] = _clone(op.value)
        return doc
    if op.op == "move":  # §4.4
        if op.source_tokens == op.tokens:
            _resolve(doc, op.tokens, op, "from", op.path)
            return doc
        value = _json_remove(doc, op.source_tokens, op, "from", op.source or "")
        return _json_add(doc, op.tokens, value, op)
    if op.op == "copy":  # §4.5
        value = _clone(_resolve(doc, op.source_tokens, op, "from", op.source or ""))
        return _json_add(doc, op.tokens, value, op)
    # test, §4.6
    actual = _resolve(doc, op.tokens, op, "path", op.path)
    if not _json_equal(actual, op.value):
        raise unprocessable(
            f"{op.label}: test failed at path '{op.path}': found {_show(actual)}, expected {_show(op.value)}"
        )
    return doc


def _json_equal(a: Any, b: Any) -> bool:
    """RFC 6902 §4.6 equality: same JSON type and value; numbers compare by value,
    objects ignore member order. (Python's ``True == 1`` must not leak through.)"""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# =================================================================== FHIRPath Patch
#
# Model data: fhirpathpy ships the R4 element → type map and the choice ([x])
# element list. We use it to know (a) that ``Observation.value`` is stored as
# ``valueQuantity``/``valueString``..., (b) the datatype of an element so nested
# look-ups continue under e.g. ``HumanName``, and (c) the base type handed to
# fhirpathpy when it evaluates a ``where(...)`` criterion.

_MODEL: dict[str, Any] = _fhirpath_models["r4"]
_PATH2TYPE: dict[str, str] = _MODEL["path2Type"]
_CHOICES: dict[str, list[str]] = _MODEL["choiceTypePaths"]
_ELSEWHERE: dict[str, str] = _MODEL["pathsDefinedElsewhere"]
_TYPE2PARENT: dict[str, str] = _MODEL["type2Parent"]
_BACKBONES: frozenset[str] = frozenset(
    key.rsplit(".", n)[0] for key in (*_PATH2TYPE, *_CHOICES) for n in range(1, key.count("."))
)
_TYPE_SUFFIXES: frozenset[str] = frozenset(
    {t[:1].upper() + t[1:] for t in _TYPE2PARENT} | {t for types in _CHOICES.values() for t in types}
)
_RESOURCE_BASES = ("Resource", "DomainResource")

_OP_TYPES: dict[str, tuple[str, ...]] = {
    # type -> required parts besides type and path (fhirpatch.html, "Operations" table)
    "add": ("name", "value"),
    "insert": ("value", "index"),
    "delete": (),
    "replace": ("value",),
    "move": ("source", "destination"),
}
_PART_NAMES = ("type", "path", "name", "value", "index", "source", "destination")

# Default cardinality knowledge (fhirpathpy's model has types, not cardinalities).
# Used only when an element is absent and something must be created: is the new
# element a list? An explicit ``is_repeating`` callback wins over this table.
_REPEATING_NAMES = frozenset(
    "extension modifierExtension contained identifier telecom given prefix suffix line coding profile "
    "security tag category note contact communication generalPractitioner photo link qualification "
    "basedOn partOf reasonCode reasonReference interpretation referenceRange hasMember derivedFrom "
    "component performer entry parameter part issue participant diagnosis dosageInstruction "
    "instantiatesCanonical instantiatesUri jurisdiction useContext keyword topic supportingInfo "
    "supportingInformation result presentedForm conclusionCode evidence stage item answer enableWhen "
    "answerOption initial concept designation property include exclude filter contains "
    "relatedArtifact section attester endpoint availableTime notAvailable statusHistory classHistory "
    "episodeOfCare account specialty serviceType insurance careTeam goal activity addresses member "
    "characteristic reaction manifestation protocolApplied element mapping alias author target detail "
    "adjudication".split()
)
_SINGLE_PATHS = frozenset(
    "Reference.identifier Location.address Bundle.identifier Composition.identifier "
    "QuestionnaireResponse.identifier MedicationRequest.performer Observation.bodySite "
    "CarePlan.author CarePlan.activity.detail".split()
)
_SINGLE_SUFFIXES = (".contact.name", ".contact.address")


def default_is_repeating(element: str) -> bool:
    """Best-effort "is this element 0..*" for a model path such as ``Patient.name``.

    fhirpathpy's model carries no cardinality, so this is a table of element names
    that repeat wherever they occur in R4, plus the known single-valued exceptions
    (``Reference.identifier``, ``Patient.contact.name``, ``Location.address``...).
    ``name``/``address`` repeat only when typed ``HumanName``/``Address``. Callers
    with StructureDefinitions should pass ``is_repeating`` instead.
    """
    if element in _SINGLE_PATHS or element.endswith(_SINGLE_SUFFIXES):
        return False
    name = element.rsplit(".", 1)[-1]
    if name in ("name", "address"):
        if "." not in element:
            return True
        return _PATH2TYPE.get(element) == ("HumanName" if name == "name" else "Address")
    return name in _REPEATING_NAMES


# ------------------------------------------------------------------ path parsing


class _PathSyntaxError(ValueError):
    """A FHIRPath Patch path outside the supported subset (→ 400)."""


@dataclass(frozen=True, slots=True)
class _Step:
    kind: str  # child | index | where | first | last | tail | skip | take | ofType | extension
    name: str = ""
    arg: Any = None


@dataclass(frozen=True, slots=True)
class _Path:
    text: str
    type_name: str | None  # the leading resource type, e.g. "Patient"
    steps: tuple[_Step, ...]


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INDEXER = re.compile(r"\[\s*([0-9]+)\s*\]")
_STRING_LITERAL = re.compile(r"'((?:[^'\\]|\\.)*)'")
_TYPE_SPECIFIER = re.compile(r"(?:(?:FHIR|System)\.)?([A-Za-z_][A-Za-z0-9_]*)")
_SUPPORTED_FUNCTIONS = "where(), first(), last(), tail(), skip(n), take(n), ofType(T), extension('url')"


def _parse_path(text: str) -> _Path:
    """Parse the FHIRPath subset used to *locate* elements for patching.

    Grammar: ``[ResourceType '.'] step ('.' step | '[' n ']')*`` where a step is an
    element name (plain or backtick-quoted) or one of the functions in
    ``_SUPPORTED_FUNCTIONS``. ``where`` criteria are kept as text and handed to
    fhirpathpy, so they may be any boolean FHIRPath expression. ``resolve()`` is not
    supported on purpose: fhirpatch.html forbids patching other resources.
    """
    s = text
    i, n = 0, len(s)
    steps: list[_Step] = []
    expect_name = True
    while True:
        while i < n and s[i].isspace():
            i += 1
        if i >= n:
            if expect_name:
                raise _PathSyntaxError("ends where an element name was expected")
            break
        if expect_name:
            if s[i] == "`":
                end = s.find("`", i + 1)
                if end < 0:
                    raise _PathSyntaxError(f"unterminated `quoted` name at position {i}")
                ident, i = s[i + 1 : end], end + 1
            else:
                m = _IDENT.match(s, i)
                if not m:
                    raise _PathSyntaxError(f"expected an element name at position {i}, found {s[i]!r}")
                ident, i = m.group(), m.end()
            j = i
            while j < n and s[j].isspace():
                j += 1
            if j < n and s[j] == "(":
                args, i = _read_args(s, j)
                steps.append(_function(ident, args))
            else:
                steps.append(_Step("child", ident))
            expect_name = False
            continue
        if s[i] == ".":
            expect_name = True
            i += 1
        elif s[i] == "[":
            m = _INDEXER.match(s, i)
            if not m:
                raise _PathSyntaxError(f"indexer at position {i} must be a non-negative integer, like [0]")
            steps.append(_Step("index", arg=int(m.group(1))))
            i = m.end()
        else:
            raise _PathSyntaxError(
                f"unexpected {s[i]!r} at position {i} (operators are only allowed inside where())"
            )
    type_name = None
    if steps[0].kind == "child" and steps[0].name[:1].isupper():
        type_name = steps[0].name
        steps = steps[1:]
    return _Path(text, type_name, tuple(steps))


def _read_args(s: str, start: int) -> tuple[str, int]:
    """Text between the ``(`` at ``start`` and its matching ``)``, skipping over
    string literals and quoted names; returns (inner text, index after ``)``)."""
    depth, i, n = 0, start, len(s)
    while i < n:
        c = s[i]
        if c in "'`\"":
            i += 1
            while i < n and s[i] != c:
                i += 2 if s[i] == "\\" else 1
            if i >= n:
                raise _PathSyntaxError(f"unterminated string starting before position {i}")
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return s[start + 1 : i].strip(), i + 1
        i += 1
    raise _PathSyntaxError(f"unbalanced '(' at position {start}")


def _function(name: str, args: str) -> _Step:
    if name == "where":
        if not args:
            raise _PathSyntaxError("where() needs a criterion, e.g. where(use = 'official')")
        return _Step("where", arg=args)
    if name in ("first", "last", "tail"):
        if args:
            raise _PathSyntaxError(f"{name}() takes no arguments")
        return _Step(name)
    if name in ("skip", "take"):
        if not args.isdigit():
            raise _PathSyntaxError(f"{name}() needs a non-negative integer literal")
        return _Step(name, arg=int(args))
    if name == "ofType":
        m = _TYPE_SPECIFIER.fullmatch(args)
        if not m:
            raise _PathSyntaxError(f"ofType() needs a type name, got {args!r}")
        return _Step("ofType", arg=m.group(1))
    if name == "extension":
        m = _STRING_LITERAL.fullmatch(args)
        if not m:
            raise _PathSyntaxError("extension() needs the extension url as a string literal")
        return _Step("extension", arg=re.sub(r"\\(.)", r"\1", m.group(1)))
    raise _PathSyntaxError(f"function {name}() is not supported here (supported: {_SUPPORTED_FUNCTIONS})")


# ------------------------------------------------------------------ the walker


@dataclass(slots=True)
class _Node:
    """One element found by a path, with where it lives so it can be changed.

    ``parent[key]`` holds it (``parent[key][index]`` when the property is a list);
    ``elem`` is its model path (``Observation.valueQuantity``) and ``tp`` the path
    its children are looked up under (``Quantity``); ``choice`` is set when it was
    reached through a choice name (``value`` → ``valueQuantity``).
    """

    value: Any
    parent: dict[str, Any] | None = None
    key: str | None = None
    index: int | None = None
    parent_tp: str | None = None
    elem: str | None = None
    tp: str | None = None
    choice: tuple[str, tuple[str, ...]] | None = None


def _element_path(tp: str | None, key: str) -> str | None:
    """Model path of child ``key`` under type path ``tp``, following
    ``pathsDefinedElsewhere`` (``Questionnaire.item.item`` → ``Questionnaire.item``)
    and inheritance (``SimpleQuantity.value`` → ``Quantity.value``)."""
    if tp is None:
        return None
    base: str | None = tp
    while base:
        p = f"{base}.{key}"
        p = _ELSEWHERE.get(p, p)
        if p in _PATH2TYPE or p in _CHOICES or p in _BACKBONES:
            return p
        base = "BackboneElement" if "." in base else _TYPE2PARENT.get(base)
    return None


def _type_of(elem: str | None, value: Any) -> str | None:
    """Type path that an element's children are looked up under."""
    if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
        return value["resourceType"]
    if elem is None:
        return None
    t = _PATH2TYPE.get(elem)
    if t is None or t in ("BackboneElement", "Element"):
        return elem if elem in _BACKBONES else None
    return None if t in _RESOURCE_BASES else t


def _type_name(node: _Node) -> str | None:
    """FHIR type name of a node, for ``ofType``."""
    if node.choice is not None and node.key is not None:
        return node.key[len(node.choice[0]) :]
    if node.tp is None:
        return None
    if "." in node.tp:
        return "System.String" if node.tp.startswith("System.") else "BackboneElement"
    return node.tp


def _children(node: _Node, name: str) -> list[_Node]:
    value = node.value
    if not isinstance(value, dict):
        return []
    choice: tuple[str, tuple[str, ...]] | None = None
    if name in value:
        keys = [name]
    else:
        allowed = _CHOICES.get(_element_path(node.tp, name) or "")
        if allowed:
            keys = [name + t for t in allowed if name + t in value]
            choice = (name, tuple(allowed))
        else:  # unknown model path: recognise value[x]-style keys by their type suffix
            keys = [k for k in value if k.startswith(name) and k[len(name) :] in _TYPE_SUFFIXES]
            choice = (name, ()) if keys else None
    out: list[_Node] = []
    for key in keys:
        elem = _element_path(node.tp, key)
        raw = value[key]
        items = list(enumerate(raw)) if isinstance(raw, list) else [(None, raw)]
        for idx, item in items:
            if item is None:  # a null placeholder in a primitive array
                continue
            out.append(_Node(item, value, key, idx, node.tp, elem, _type_of(elem, item), choice))
    return out


def _matches(node: _Node, criterion: str, root: dict[str, Any]) -> bool:
    """Evaluate a ``where`` criterion with fhirpathpy, typed by the node's model
    path so choice names (``value = 'x'`` on an Extension) resolve."""
    base = node.tp if node.tp and not node.tp.startswith("System.") else None
    expression: str | dict[str, str] = {"base": base, "expression": criterion} if base else criterion
    try:
        result = evaluate(node.value, expression, {"resource": root, "rootResource": root}, _MODEL)
    except Exception as exc:  # fhirpathpy raises bare Exceptions for parse errors
        raise _PathSyntaxError(f"cannot evaluate where({criterion}): {exc}") from exc
    return result == [True]


def _select(path: _Path, root: dict[str, Any]) -> list[_Node]:
    """Evaluate ``path`` against the working copy, keeping locations."""
    rt = root.get("resourceType")
    if path.type_name is not None and path.type_name not in (rt, *_RESOURCE_BASES):
        return []  # FHIRPath: a type name that isn't the context's type selects nothing
    nodes = [_Node(root, elem=rt, tp=rt)]
    for step in path.steps:
        nodes = _step(nodes, step, root)
    return nodes


def _step(nodes: list[_Node], step: _Step, root: dict[str, Any]) -> list[_Node]:
    kind = step.kind
    if kind == "child":
        return [child for node in nodes for child in _children(node, step.name)]
    if kind == "index":
        return nodes[step.arg : step.arg + 1]
    if kind == "where":
        return [node for node in nodes if _matches(node, step.arg, root)]
    if kind == "first":
        return nodes[:1]
    if kind == "last":
        return nodes[-1:]
    if kind == "tail":
        return nodes[1:]
    if kind == "skip":
        return nodes[step.arg :]
    if kind == "take":
        return nodes[: step.arg]
    if kind == "ofType":
        wanted = step.arg.lower()
        return [node for node in nodes if (_type_name(node) or "").lower() in (wanted, f"system.{wanted}")]
    # extension('url') == extension.where(url = 'url')
    return [
        ext
        for node in nodes
        for ext in _children(node, "extension")
        if isinstance(ext.value, dict) and ext.value.get("url") == step.arg
    ]


# -------------------------------------------------------- Parameters parsing


@dataclass(slots=True)
class _Value:
    """A ``value`` part: a typed ``value[x]`` (``suffix`` = its type), a resource,
    or nested parts naming the children of a complex value. Nested parts are built
    only once the target element is known, since that decides choice names and
    list-ness."""

    json: Any = None
    suffix: str | None = None
    ext: Any = None  # the primitive's ``_value[x]`` sibling (id/extensions), if any
    parts: list[tuple[str, _Value]] | None = None


@dataclass(slots=True)
class _FpOp:
    index: int
    type: str
    path: _Path
    name: str | None = None
    value: _Value | None = None
    position: int | None = None  # the "index" part
    source: int | None = None
    destination: int | None = None
    label: str = field(default="")


def _value_keys(part: dict[str, Any]) -> list[str]:
    return [k for k in part if k.startswith("value") and k[5:6].isupper()]


def _parse_value(part: dict[str, Any], where: str, label: str) -> _Value:
    keys = _value_keys(part)
    kinds = len(keys) + ("resource" in part) + ("part" in part)
    if kinds == 0:
        raise invalid(
            f"{label}: part 'value' has no value (give a value[x], a resource, or nested parts)", where
        )
    if kinds > 1:
        raise invalid(f"{label}: part 'value' must have exactly one of value[x], resource, or part", where)
    if keys:
        key = keys[0]
        return _Value(part[key], key[5:], part.get("_" + key))
    if "resource" in part:
        resource = part["resource"]
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise invalid(f"{label}: part 'value' has a resource without a resourceType", where)
        return _Value(resource, None)
    subparts = part["part"]
    if not isinstance(subparts, list) or not subparts:
        raise invalid(f"{label}: nested 'part' of a value must be a non-empty array", where)
    built: list[tuple[str, _Value]] = []
    for j, sub in enumerate(subparts):
        sub_where = f"{where}.part[{j}]"
        if not isinstance(sub, dict) or not isinstance(sub.get("name"), str) or not sub["name"]:
            raise invalid(
                f"{label}: nested part {j} of the value needs a 'name' (the element it sets)", sub_where
            )
        built.append((sub["name"], _parse_value(sub, sub_where, label)))
    return _Value(parts=built)


def _scalar_part(part: dict[str, Any], where: str, label: str, pname: str, kind: type) -> Any:
    keys = _value_keys(part)
    value = part[keys[0]] if len(keys) == 1 else None
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise invalid(f"{label}: part '{pname}' needs a non-negative valueInteger", where)
    elif not isinstance(value, str) or not value.strip():
        raise invalid(
            f"{label}: part '{pname}' needs a non-empty string value (valueCode / valueString)", where
        )
    return value


def _parse_parameters(parameters: object) -> list[_FpOp]:
    """Check a FHIRPath Patch ``Parameters`` body (fhirpatch.html, "encoding" and
    the fhirpath-patch profile) before touching the resource, so a malformed body is
    always a 400 that points at the offending ``parameter``/``part``."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        got = parameters.get("resourceType") if isinstance(parameters, dict) else type(parameters).__name__
        raise invalid(f"A FHIRPath Patch body must be a Parameters resource, got {_show(got)}")
    params = parameters.get("parameter", [])
    if not isinstance(params, list):
        raise invalid("FHIRPath Patch: Parameters.parameter must be an array", "Parameters.parameter")
    ops: list[_FpOp] = []
    for i, param in enumerate(params):
        where = f"Parameters.parameter[{i}]"
        label = f"FHIRPath Patch operation {i}"
        if not isinstance(param, dict):
            raise invalid(f"{label}: must be an object", where)
        if param.get("name") != "operation":
            raise invalid(
                f"{label}: parameter is named {_show(param.get('name'))}; every FHIRPath Patch parameter "
                f"must be named 'operation'",
                f"{where}.name",
            )
        parts = param.get("part")
        if not isinstance(parts, list) or not parts:
            raise invalid(f"{label}: needs its parts (type, path, ...) in 'part'", where)
        found: dict[str, tuple[str, dict[str, Any]]] = {}
        for j, part in enumerate(parts):
            part_where = f"{where}.part[{j}]"
            pname = part.get("name") if isinstance(part, dict) else None
            if pname not in _PART_NAMES:
                raise invalid(
                    f"{label}: part {j} has unknown name {_show(pname)} (expected one of {', '.join(_PART_NAMES)})",
                    part_where,
                )
            if pname in found:
                raise invalid(f"{label}: part '{pname}' is given more than once", part_where)
            assert isinstance(part, dict) and isinstance(pname, str)
            found[pname] = (part_where, part)

        for required in ("type", "path"):
            if required not in found:
                raise invalid(f"{label}: missing part '{required}'", where)
        op_type = _scalar_part(found["type"][1], found["type"][0], label, "type", str)
        if op_type not in _OP_TYPES:
            raise invalid(
                f"{label}: unknown type {_show(op_type)} (expected one of {', '.join(_OP_TYPES)})",
                found["type"][0],
            )
        label = f"{label} ({op_type})"
        for required in _OP_TYPES[op_type]:
            if required not in found:
                raise invalid(f"{label}: missing part '{required}'", where)
        path_where, path_part = found["path"]
        text = _scalar_part(path_part, path_where, label, "path", str)
        try:
            path = _parse_path(text)
        except _PathSyntaxError as exc:
            raise invalid(f"{label}: path '{text}' {exc}", path_where) from exc
        if op_type in ("insert", "move") and (not path.steps or path.steps[-1].kind != "child"):
            raise invalid(
                f"{label}: path '{text}' must end with the name of the list to change, e.g. Patient.name",
                path_where,
            )
        op = _FpOp(i, op_type, path, label=label)
        if "name" in _OP_TYPES[op_type]:
            op.name = _scalar_part(found["name"][1], found["name"][0], label, "name", str)
            if not _IDENT.fullmatch(op.name):
                raise invalid(
                    f"{label}: part 'name' {_show(op.name)} is not an element name", found["name"][0]
                )
        if "value" in _OP_TYPES[op_type]:
            op.value = _parse_value(found["value"][1], found["value"][0], label)
        for attr, pname in (("position", "index"), ("source", "source"), ("destination", "destination")):
            if pname in _OP_TYPES[op_type]:
                setattr(op, attr, _scalar_part(found[pname][1], found[pname][0], label, pname, int))
        ops.append(op)
    return ops


# ----------------------------------------------------------- applying operations


def apply_fhirpath_patch(
    resource: dict[str, Any],
    parameters: object,
    *,
    is_repeating: RepeatingFn | None = None,
) -> dict[str, Any]:
    """Apply a FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html) and return a new dict.

    ``parameters`` is a ``Parameters`` resource whose ``operation`` parameters are
    applied in order; the first failure aborts the patch. Semantics per the spec's
    operations table:

    * ``add`` — path selects one element; ``name`` is appended to it (a list grows,
      an absent element is created; a single-valued element that exists is an error).
    * ``insert`` — path names a list; ``value`` goes in at ``index`` (0..len).
    * ``delete`` — removes the one element the path selects; nothing matched is fine.
    * ``replace`` — path selects one element; its value is replaced.
    * ``move`` — path names a list; the item at ``source`` moves to ``destination``.

    Choice elements: ``Observation.value`` finds ``valueQuantity`` etc.; adding or
    replacing with ``valueString`` stores ``valueString``. Complex values given as
    nested parts become objects. ``is_repeating`` tells whether a newly created
    element is a list (see :func:`default_is_repeating`, the fallback).

    Raises :class:`~fhir_hub.errors.FhirError`: 400 for a malformed ``Parameters`` or
    a path outside the supported FHIRPath subset, 422 when an operation cannot be
    applied (no/too many matches, index out of range, existing single value, attempt
    to change ``resourceType``/``id``).
    """
    ops = _parse_parameters(parameters)
    doc: dict[str, Any] = _clone(resource)
    patcher = _Patcher(doc, is_repeating)
    for op in ops:
        try:
            patcher.apply(op)
        except _PathSyntaxError as exc:
            raise invalid(
                f"{op.label}: path '{op.path.text}': {exc}", f"Parameters.parameter[{op.index}]"
            ) from exc
        _guard_identity(resource, doc, op.label, op.path.text)
    return doc


class _Patcher:
    """Applies parsed operations to one working copy."""

    def __init__(self, doc: dict[str, Any], is_repeating: RepeatingFn | None) -> None:
        self.doc = doc
        self._is_repeating = is_repeating

    def repeats(self, elem: str | None, key: str) -> bool:
        path = elem or key
        if self._is_repeating is not None:
            answer = self._is_repeating(path)
            if answer is not None:
                return answer
        return default_is_repeating(path)

    def apply(self, op: _FpOp) -> None:
        getattr(self, "_" + op.type)(op)

    # -- helpers

    def _one(self, nodes: list[_Node], op: _FpOp, what: str = "element") -> _Node:
        """fhirpatch.html: "The FHIRPath statement must return a single element"."""
        if len(nodes) != 1:
            found = "no element" if not nodes else f"{len(nodes)} elements"
            hint = "" if not nodes else " (narrow it with [n], first() or where(...))"
            raise unprocessable(
                f"{op.label}: path '{op.path.text}' matched {found}; {op.type} needs exactly one {what}{hint}",
                op.path.text,
            )
        return nodes[0]

    def _list_owner(self, op: _FpOp) -> tuple[_Node, str, list[Any] | None]:
        """For insert/move: the single element owning the named list, the list's key,
        and the list (``None`` when absent). Splitting off the last name lets an
        insert create a list that does not exist yet."""
        last = op.path.steps[-1]
        owners = _select(_Path(op.path.text, op.path.type_name, op.path.steps[:-1]), self.doc)
        owner = self._one(owners, op, "element owning the list")
        if not isinstance(owner.value, dict):
            raise unprocessable(f"{op.label}: '{op.path.text}' is inside a primitive value", op.path.text)
        current = owner.value.get(last.name)
        if current is not None and not isinstance(current, list):
            raise unprocessable(f"{op.label}: '{op.path.text}' is a single value, not a list", op.path.text)
        return owner, last.name, current

    def _build(self, value: _Value, elem: str | None, op: _FpOp) -> Any:
        """JSON for a ``value`` part targeting model path ``elem``."""
        if value.parts is None:
            return _clone(value.json)
        tp = _type_of(elem, None)
        out: dict[str, Any] = {}
        for name, sub in value.parts:
            key, child_elem = self._child_key(tp, name, sub, op)
            built = self._build(sub, child_elem, op)
            if key in out:
                if not isinstance(out[key], list):
                    out[key] = [out[key]]
                    if "_" + key in out:
                        out["_" + key] = [out["_" + key]]
                _insert_ext(out, key, len(out[key]), sub.ext, len(out[key]))
                out[key].append(built)
            elif self.repeats(child_elem, key):
                _insert_ext(out, key, 0, sub.ext, 0)
                out[key] = [built]
            else:
                out[key] = built
                if sub.ext is not None:
                    out["_" + key] = _clone(sub.ext)
        return out

    def _child_key(self, tp: str | None, name: str, value: _Value, op: _FpOp) -> tuple[str, str | None]:
        """JSON key and model path for child ``name`` of a ``tp`` element: for a
        choice element (``value[x]``) the key is name + the value's type."""
        elem = _element_path(tp, name)
        allowed = _CHOICES.get(elem or "")
        if not allowed:
            return name, elem
        if value.suffix is None:
            raise unprocessable(
                f"{op.label}: '{name}' is a choice element ({name}[x]); give the value as a typed "
                f"value[x] (e.g. value{allowed[0]}) so its type is known",
                op.path.text,
            )
        if value.suffix not in allowed:
            raise unprocessable(
                f"{op.label}: {name}[x] does not allow type {value.suffix} (allowed: {', '.join(allowed)})",
                op.path.text,
            )
        key = name + value.suffix
        return key, _element_path(tp, key)

    # -- the five operation types

    def _add(self, op: _FpOp) -> None:
        assert op.name is not None and op.value is not None
        target = self._one(_select(op.path, self.doc), op)
        container = target.value
        if not isinstance(container, dict):
            raise unprocessable(
                f"{op.label}: '{op.path.text}' selects a primitive value; add needs an element that can have "
                f"children",
                op.path.text,
            )
        key, elem = self._child_key(target.tp, op.name, op.value, op)
        base_elem = _element_path(target.tp, op.name)
        allowed = _CHOICES.get(base_elem or "", [])
        taken = [k for k in (op.name + t for t in allowed) if k in container and k != key]
        built = self._build(op.value, elem, op)
        current = container.get(key)
        if taken or (current is not None and not isinstance(current, list)):
            raise unprocessable(
                f"{op.label}: '{op.path.text}' already has '{(taken or [key])[0]}', which is single-valued; "
                f"use replace",
                op.path.text,
            )
        if isinstance(current, list):
            _insert_ext(container, key, len(current), op.value.ext, len(current))
            current.append(built)
        elif self.repeats(elem, key):
            _insert_ext(container, key, 0, op.value.ext, 0)
            container[key] = [built]
        else:
            container[key] = built
            if op.value.ext is not None:
                container["_" + key] = _clone(op.value.ext)

    def _insert(self, op: _FpOp) -> None:
        assert op.value is not None and op.position is not None
        owner, key, current = self._list_owner(op)
        items = current if current is not None else []
        if op.position > len(items):
            raise unprocessable(
                f"{op.label}: index {op.position} is out of range for '{op.path.text}', which has "
                f"{len(items)} item(s) (insert allows 0..{len(items)})",
                op.path.text,
            )
        built = self._build(op.value, _element_path(owner.tp, key), op)
        _insert_ext(owner.value, key, op.position, op.value.ext, len(items))
        items.insert(op.position, built)
        owner.value[key] = items

    def _delete(self, op: _FpOp) -> None:
        nodes = _select(op.path, self.doc)
        if not nodes:
            return  # fhirpatch.html: "Path of the element to delete (if found)"
        node = self._one(nodes, op)
        if node.parent is None or node.key is None:
            raise unprocessable(f"{op.label}: cannot delete the resource itself", op.path.text)
        parent, key = node.parent, node.key
        if node.index is None:
            del parent[key]
            parent.pop("_" + key, None)
            return
        items = parent[key]
        del items[node.index]
        ext = parent.get("_" + key)
        if isinstance(ext, list) and node.index < len(ext):
            del ext[node.index]
            _tidy_ext(parent, key)
        if not items:
            del parent[key]
            parent.pop("_" + key, None)

    def _replace(self, op: _FpOp) -> None:
        assert op.value is not None
        node = self._one(_select(op.path, self.doc), op)
        if node.parent is None or node.key is None:
            raise unprocessable(f"{op.label}: cannot replace the resource itself", op.path.text)
        parent, key = node.parent, node.key
        new_key = key
        if node.choice is not None and op.value.suffix is not None:
            base, allowed = node.choice
            if allowed and op.value.suffix not in allowed:
                raise unprocessable(
                    f"{op.label}: {base}[x] does not allow type {op.value.suffix} (allowed: {', '.join(allowed)})",
                    op.path.text,
                )
            new_key = base + op.value.suffix
        built = self._build(op.value, _element_path(node.parent_tp, new_key), op)
        if node.index is not None:
            parent[key][node.index] = built
            if op.value.ext is not None:
                _set_ext(parent, key, node.index, op.value.ext, len(parent[key]))
            return
        if new_key != key:  # valueQuantity -> valueString: rename in place, keeping key order
            entries = [(new_key if k == key else k, v) for k, v in parent.items() if k != "_" + key]
            parent.clear()
            parent.update(entries)
        parent[new_key] = built
        if op.value.ext is not None:
            parent["_" + new_key] = _clone(op.value.ext)

    def _move(self, op: _FpOp) -> None:
        assert op.source is not None and op.destination is not None
        owner, key, items = self._list_owner(op)
        size = len(items or [])
        for pname, position in (("source", op.source), ("destination", op.destination)):
            if position >= size:
                raise unprocessable(
                    f"{op.label}: {pname} index {position} is out of range for '{op.path.text}', which has "
                    f"{size} item(s)",
                    op.path.text,
                )
        assert items is not None
        items.insert(op.destination, items.pop(op.source))
        ext = owner.value.get("_" + key)
        if isinstance(ext, list):
            ext = (ext + [None] * size)[:size]
            ext.insert(op.destination, ext.pop(op.source))
            owner.value["_" + key] = ext


# FHIR JSON keeps a primitive's id/extensions in a parallel ``_name`` property,
# aligned index-for-index with a primitive array (R4 json.html#primitive). These
# helpers keep it aligned when list items are inserted, replaced or removed.


def _insert_ext(container: dict[str, Any], key: str, index: int, ext: Any, size: int) -> None:
    """Make room at ``index`` in ``_key`` (list of ``size`` items before the insert)."""
    ext_key = "_" + key
    current = container.get(ext_key)
    if ext is None and not isinstance(current, list):
        return
    aligned = ((current if isinstance(current, list) else []) + [None] * size)[:size]
    aligned.insert(index, _clone(ext) if ext is not None else None)
    container[ext_key] = aligned
    _tidy_ext(container, key)


def _set_ext(container: dict[str, Any], key: str, index: int, ext: Any, size: int) -> None:
    current = container.get("_" + key)
    aligned = ((current if isinstance(current, list) else []) + [None] * size)[:size]
    aligned[index] = _clone(ext)
    container["_" + key] = aligned


def _tidy_ext(container: dict[str, Any], key: str) -> None:
    current = container.get("_" + key)
    if isinstance(current, list) and all(e is None for e in current):
        del container["_" + key]
