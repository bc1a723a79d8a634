"""The FHIRPath subset of SearchParameter expressions, compiled to plain Python selectors.

Index extraction runs on every write, and a general FHIRPath engine costs tens of µs per
expression; nearly every R4 expression is a dotted path with a few idioms, which this module
compiles, once, into *routes*: the JSON keys to follow from the resource, filters on the way,
and the FHIR type of the values at the end (so the caller picks the value converter at compile
time instead of guessing from each value's shape). Understood:

* dotted paths, choice elements expanded from the R4 model (``Observation.effective`` is
  ``effectiveDateTime``, ``effectivePeriod``...), members of another type dropped
  (``Patient.name | Person.name`` on a Patient), ``Resource.``/``DomainResource.`` roots, and
  paths relative to the resource (``name | alias``);
* ``|`` unions and parentheses;
* ``X as T``, ``X.as(T)``, ``X.ofType(T)``: the alternatives of type ``T`` (or a subtype).
  Strict FHIRPath makes ``as`` an error on a collection of several items; here it filters each
  item, as ``ofType`` does, which is what ``Observation.component.value as Quantity`` means;
* ``where(resolve() is T)``: references whose target type is ``T``, read from the reference
  itself (``Type/id``, or an absolute URL ending so), or, for a reference with no ``reference``
  to resolve (only an ``identifier``), from ``Reference.type``;
* ``where(path = 'literal')`` (a string or boolean), ``extension('url')``, ``[n]``, ``first()``;
* ``X.exists() and X != false`` (Patient ``deceased``), through :func:`special`.

Anything else raises :class:`NotSupported`, so the caller can fall back to a full engine;
:class:`NotIndexable` means the expression was understood and cannot name values (an element
that the model does not have).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir_hub import definitions

__all__ = ["NotIndexable", "NotSupported", "Route", "reference_type", "routes", "selector", "special"]


class NotSupported(Exception):
    """The expression is outside the subset this module compiles."""


class NotIndexable(Exception):
    """The expression is understood, and names nothing that could be indexed."""


#: FHIR types derived from another (StructureDefinition.baseDefinition), for ``as``/``ofType``.
_PARENT = {
    "code": "string", "id": "string", "markdown": "string",
    "url": "uri", "canonical": "uri", "oid": "uri", "uuid": "uri",
    "positiveInt": "integer", "unsignedInt": "integer",
    "Age": "Quantity", "Count": "Quantity", "Distance": "Quantity", "Duration": "Quantity",
    "MoneyQuantity": "Quantity", "SimpleQuantity": "Quantity",
}
#: FHIRPath system types, as the FHIR types they stand for.
_SYSTEM = {"String": "string", "Boolean": "boolean", "Integer": "integer", "Decimal": "decimal",
           "Date": "date", "DateTime": "dateTime", "Time": "time", "Quantity": "Quantity"}


@dataclass(frozen=True, slots=True)
class Key:
    name: str


@dataclass(frozen=True, slots=True)
class WhereEq:
    """Keep the items that have ``literal`` somewhere at ``path``."""

    path: tuple[str, ...]
    literal: str | bool


@dataclass(frozen=True, slots=True)
class RefIs:
    """Keep the references whose target is a ``type`` resource."""

    type: str


@dataclass(frozen=True, slots=True)
class Index:
    n: int


Step = Key | WhereEq | RefIs | Index


@dataclass(frozen=True, slots=True)
class Route:
    """One way from the resource to values of one FHIR type."""

    steps: tuple[Step, ...]
    #: FHIR type of the values reached: ``"HumanName"``, ``"dateTime"``, ``"Patient.contact"``...
    type: str
    #: When the last step is a :class:`Key`: the type it was taken from (``HumanName`` for
    #: ``name.family``); else ``""``.
    parent: str = ""


# --- tokens ---------------------------------------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+)|(?P<id>[A-Za-z_][A-Za-z0-9_]*|`[^`]*`)
                      |(?P<op>!=|[.()\[\]|=,]))""", re.X)


def _tokens(expression: str) -> list[str]:
    out: list[str] = []
    pos = 0
    text = expression.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise NotSupported(f"cannot read {text[pos:]!r}")
        tok = m.group(m.lastgroup or "op")
        out.append(tok[1:-1] if tok.startswith("`") else tok)
        pos = m.end()
    return out


def _literal(tok: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), tok[1:-1])


# --- model ----------------------------------------------------------------------------------

def _is_a(actual: str, wanted: str) -> bool:
    wanted = _SYSTEM.get(wanted, wanted)
    while actual:
        if actual == wanted:
            return True
        actual = _PARENT.get(actual, "")
    return False


def _model(type_name: str) -> dict[str, dict[str, Any]]:
    if type_name == "Resource" or definitions.type_kind(type_name) == "primitive":
        # A contained resource has no static type; a primitive has no elements worth a path.
        raise NotSupported(f"path below {type_name}")
    return definitions.type_model(type_name)


def _member(partial: list[Route], name: str) -> list[Route]:
    out: list[Route] = []
    for route in partial:
        model = _model(route.type)
        element = model.get(name)
        if element is not None:
            out.append(Route((*route.steps, Key(name)), element["type"], route.type))
            continue
        alternatives = [(key, el["type"]) for key, el in model.items() if el.get("choice") == name]
        if not alternatives:
            raise NotIndexable(f"{route.type} has no element {name!r}")
        out.extend(Route((*route.steps, Key(key)), t, route.type) for key, t in alternatives)
    return out


def _as(partial: list[Route], type_name: str) -> list[Route]:
    """Routes whose type is ``type_name`` or derives from it. A route's type is exact (a choice
    alternative's JSON name says its type; a plain element has its declared type), except for
    a contained resource, whose type only the value tells."""
    kept: list[Route] = []
    for route in partial:
        if route.type == "Resource":
            raise NotSupported(f"Resource as {type_name} needs the value's own type")
        if _is_a(route.type, type_name):
            kept.append(route)
    return kept


def _is_type_name(name: str) -> bool:
    return name in ("Resource", "DomainResource") or definitions.is_resource_type(name)


# --- parser ---------------------------------------------------------------------------------

class _Parser:
    """Recursive descent over the subset; every rule returns the routes reached so far."""

    def __init__(self, expression: str, rtype: str):
        self.toks = _tokens(expression)
        self.pos = 0
        self.rtype = rtype

    def peek(self) -> str | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expected is not None and tok != expected):
            raise NotSupported(f"expected {expected or 'more'} at {' '.join(self.toks[self.pos:])!r}")
        self.pos += 1
        return tok

    def parse(self) -> list[Route]:
        found = self.union()
        if self.peek() is not None:
            raise NotSupported(f"cannot compile {' '.join(self.toks[self.pos:])!r}")
        return found

    def union(self) -> list[Route]:
        found = self.type_expr()
        while self.peek() == "|":
            self.take()
            found = found + self.type_expr()
        return found

    def type_expr(self) -> list[Route]:
        found = self.postfix()
        while self.peek() == "as":
            self.take()
            found = _as(found, self.type_name())
        return found

    def type_name(self) -> str:
        name = self.take()
        while self.peek() == ".":
            self.take()
            name = self.take()  # FHIR.Quantity, System.String: the namespace does not matter here
        return name

    def postfix(self) -> list[Route]:
        found = self.primary()
        while True:
            tok = self.peek()
            if tok == ".":
                self.take()
                found = self.invocation(found)
            elif tok == "[":
                self.take()
                n = self.take()
                self.take("]")
                found = self.index(found, int(n) if n.isdigit() else _fail(n))
            else:
                return found

    def primary(self) -> list[Route]:
        tok = self.peek()
        if tok == "(":
            self.take()
            found = self.union()
            self.take(")")
            return found
        if tok is not None and _is_type_name(tok):
            self.take()
            if tok == self.rtype or tok == "Resource" or tok == "DomainResource":
                return [Route((), self.rtype)]
            return []  # a member for another resource type
        return self.invocation([Route((), self.rtype)])

    def invocation(self, partial: list[Route]) -> list[Route]:
        name = self.take()
        if not (name[0].isalpha() or name[0] == "_"):
            raise NotSupported(f"unexpected {name!r}")
        if self.peek() != "(":
            return _member(partial, name)
        self.take("(")
        if name in ("as", "ofType"):
            type_name = self.type_name()
            self.take(")")
            return _as(partial, type_name)
        if name == "where":
            step = self.condition(partial)
            self.take(")")
            return [Route((*r.steps, step), r.type) for r in partial]
        if name == "extension":
            url = self.take()
            self.take(")")
            if not url.startswith("'"):
                raise NotSupported("extension() takes a string")
            return [Route((*r.steps, WhereEq(("url",), _literal(url))), r.type) for r in _member(partial, "extension")]
        if name == "first":
            self.take(")")
            return self.index(partial, 0)
        raise NotSupported(f"function {name}()")

    def index(self, partial: list[Route], n: int) -> list[Route]:
        if len(partial) != 1:
            raise NotSupported("an index over several element paths")
        return [Route((*partial[0].steps, Index(n)), partial[0].type)]

    def condition(self, partial: list[Route]) -> Step:
        """``resolve() is T`` or ``path = literal``."""
        if self.peek() == "resolve":
            self.take()
            self.take("(")
            self.take(")")
            self.take("is")
            if any(not _is_a(r.type, "Reference") for r in partial):
                raise NotSupported("resolve() on something that is not a Reference")
            return RefIs(self.type_name())
        path = [self.take()]
        while self.peek() == ".":
            self.take()
            path.append(self.take())
        for r in partial:  # the path must exist, and name JSON keys (no choice stem such as value)
            probe = [Route((), r.type)]
            for name in path:
                probe = _member(probe, name)
                if any(p.steps[-1] != Key(name) for p in probe):
                    raise NotSupported(f"where() on the choice element {name}[x]")
        self.take("=")
        lit = self.take()
        value: str | bool
        if lit.startswith("'"):
            value = _literal(lit)
        elif lit in ("true", "false"):
            value = lit == "true"
        else:
            raise NotSupported(f"where() compares with {lit!r}")
        return WhereEq(tuple(path), value)


def _fail(tok: str) -> int:
    raise NotSupported(f"index {tok!r}")


@cache
def routes(expression: str, rtype: str) -> tuple[Route, ...]:
    """The routes of ``expression`` evaluated on a ``rtype`` resource (empty: names nothing there).

    Raises :class:`NotSupported` or :class:`NotIndexable`.
    """
    return tuple(_Parser(expression, rtype).parse())


# --- evaluation -----------------------------------------------------------------------------

def reference_type(ref: Any) -> str | None:
    """The resource type a Reference points at, as ``resolve() is T`` sees it here."""
    if ref.__class__ is not dict:
        return None
    target = ref.get("reference")
    if target.__class__ is str:
        parts = target.split("/")
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        if len(parts) >= 2 and definitions.is_resource_type(parts[-2]):
            return parts[-2]
        return None
    kind = ref.get("type")
    return kind if kind.__class__ is str else None


Selector = Callable[[Any], list[Any]]


def _flat(value: Any) -> list[Any]:
    if value.__class__ is list:
        return [v for v in value if v is not None]
    return [] if value is None else [value]


def _values_at(node: Any, path: tuple[str, ...]) -> list[Any]:
    nodes = [node]
    for name in path:
        nodes = [c for n in nodes if n.__class__ is dict for c in _flat(n.get(name))]
    return nodes


def _step(step: Step) -> Callable[[list[Any]], list[Any]]:
    if isinstance(step, Key):
        name = step.name

        def key(nodes: list[Any]) -> list[Any]:
            out: list[Any] = []
            for n in nodes:
                if n.__class__ is dict:
                    child = n.get(name)
                    if child is not None:
                        if child.__class__ is list:
                            out.extend(c for c in child if c is not None)
                        else:
                            out.append(child)
            return out
        return key
    if isinstance(step, WhereEq):
        path, lit = step.path, step.literal
        cls = lit.__class__
        if len(path) == 1:
            field = path[0]

            def has(n: Any) -> bool:
                if n.__class__ is not dict:
                    return False
                v = n.get(field)
                if v.__class__ is list:
                    return any(x.__class__ is cls and x == lit for x in v)
                return v.__class__ is cls and v == lit
            return lambda nodes: [n for n in nodes if has(n)]
        return lambda nodes: [n for n in nodes if any(v.__class__ is cls and v == lit for v in _values_at(n, path))]
    if isinstance(step, RefIs):
        wanted = step.type
        return lambda nodes: [n for n in nodes if reference_type(n) == wanted]
    n = step.n
    return lambda nodes: nodes[n:n + 1]


def selector(steps: tuple[Step, ...]) -> Selector:
    """A function from a value (an item or a JSON list of items) to the values ``steps`` reach."""
    fns = [_step(s) for s in steps]
    if not fns:
        return _flat
    if len(fns) == 1:
        only = fns[0]
        return lambda value: only(_flat(value))

    def run(value: Any) -> list[Any]:
        nodes = _flat(value)
        for fn in fns:
            if not nodes:
                break
            nodes = fn(nodes)
        return nodes
    return run


_EXISTS_NOT_FALSE = re.compile(r"^\s*(\S+)\.exists\(\)\s+and\s+\1\s*!=\s*false\s*$")


def special(expression: str, rtype: str) -> Callable[[dict[str, Any]], list[Any]] | None:
    """A whole-resource function for the idioms that are not paths, or ``None``.

    ``X.exists() and X != false`` is true when ``X`` is there and is not the single value
    ``false``, and false otherwise (absent included), so ``deceased=false`` finds the living.
    """
    m = _EXISTS_NOT_FALSE.match(expression)
    if m is None:
        return None
    found = routes(m.group(1), rtype)
    selectors = [(r.steps[0].name, selector(r.steps[1:])) for r in found if r.steps and isinstance(r.steps[0], Key)]
    if len(selectors) != len(found):
        raise NotSupported(expression)

    def exists_not_false(resource: dict[str, Any]) -> list[Any]:
        values = [v for key, sel in selectors if key in resource for v in sel(resource[key])]
        return [bool(values) and not (len(values) == 1 and values[0] is False)]
    return exists_not_false
