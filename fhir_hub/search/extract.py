"""Search index values of a resource, for every SearchParameter of its type.

Runs on every write, so each (resource type, parameter) is compiled once into a plan: the
expression's routes (``search/expressions.py``) with a value converter (``search/convert.py``)
picked for the FHIR type at the end of each route. The plan is grouped by the resource's top-level JSON key, so a write
only pays for the elements the resource has. An expression outside the compiled subset falls
back to fhirpathpy (compiled once); a parameter neither can index is listed by
:func:`unsupported`, so the REST layer refuses it with a 400 instead of matching nothing.

Rows (:data:`IndexRow`, duplicates removed within a resource):

========================================================  ============================================
``("string", p, normalised, exact, None)``                 string parameters; HumanName and Address
                                                           give one row per part
``("string", p + ":text", normalised, exact, None)``       token ``:text``: CodeableConcept.text,
                                                           Coding.display, Identifier.type.text
``("token", p, system, code, None)``                       system ``""`` when absent
``("token", p + ":of-type", "tsys|tcode", value, None)``   Identifier, per type coding
``("token", p + ":identifier", system, value, None)``      reference parameters, Reference.identifier
``("date", p, low, high, None)``                           inclusive µs; open Period ends are
                                                           :data:`DATE_MIN` / :data:`DATE_MAX`
``("number", p, value, None, None)``
``("quantity", p, system, code, value)``                   plus ``p:canonical`` rows in canonical UCUM units
``("reference", p, target, None, None)``                   ``Type/id``, or an absolute URL as written
                                                           (and its ``Type/id``), or a canonical
``("uri", p, value, None, None)``
========================================================  ============================================

Composite parameters give no rows: the matcher asks :func:`component_rows` for the rows of each
element (each ``Observation.component``...) per component. ``_id`` gives none either (the store
answers it from its primary key).

Unsupported on R4 core (the exact set is a test in ``tests/search/test_extract.py``):

* ``_text``, ``_content`` and ``_query``: no expression;
* Location ``near``: a ``special`` parameter (a distance, not an index value);
* Bundle ``composition`` and ``message``: ``Bundle.entry[0].resource`` is a resource, not a
  reference; only chaining into it would mean something;
* DocumentReference ``relationship``: the R4 definition pairs each component with the other's
  expression (the reference component reads ``relatesTo.code``, the token one ``relatesTo.target``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from fhir_hub import definitions
from fhir_hub.search import expressions, parameters
from fhir_hub.search.convert import (
    DATE_MAX,
    DATE_MIN,
    PARTS,
    Emit,
    IndexRow,
    Out,
    converter,
    infer_type,
    parts_converter,
    reference_targets,
)
from fhir_hub.search.parameters import SearchParam

__all__ = ["DATE_MAX", "DATE_MIN", "IndexRow", "Indexer", "component_rows", "index_rows", "reference_targets",
           "unsupported"]

log = logging.getLogger(__name__)


# --- fallback: fhirpathpy ---------------------------------------------------------------------

def convert_nodes(param: SearchParam, nodes: Iterable[Any], out: Out) -> None:
    """Rows of fhirpathpy results (``returnRawData`` nodes, or plain values): the node's own
    type when fhirpathpy kept it, else the value's shape."""
    for node in nodes:
        fhir_type: str | None = None
        if isinstance(node, ResourceNode):
            path, node = node.path, node.data
            if path and "." not in path and path in _known_types():
                fhir_type = path
        if fhir_type is None:
            fhir_type = infer_type(node)
        emit = converter((param.code,), param.type, fhir_type) if fhir_type else None
        if emit is not None:
            emit(node, out)


@cache
def _known_types() -> frozenset[str]:
    return definitions.type_names() | frozenset(definitions.primitive_types())


def _resolve(refs: list[Any]) -> list[Any]:
    """``resolve()`` for fhirpathpy: a stub resource of the reference's type, enough for ``is``."""
    found = []
    for ref in refs:
        rtype = expressions.reference_type(ref)
        if rtype is not None:
            found.append(ResourceNode.create_node({"resourceType": rtype}))
    return found


FHIRPATH_OPTIONS = {"returnRawData": True, "userInvocationTable": {"resolve": {"fn": _resolve}}}


_ABSTRACT_ROOT = re.compile(r"(?<![\w.`])(?:Domain)?Resource\.")


def _rooted(expression: str, rtype: str) -> str:
    """``Resource.meta`` as ``Patient.meta``: fhirpathpy takes a leading type name for the
    resource's own type only, not for one of its base types."""
    parts = expression.split("'")
    parts[::2] = [_ABSTRACT_ROOT.sub(rtype + ".", p) for p in parts[::2]]  # outside string literals
    return "'".join(parts)


@cache
def fhirpath(expression: str, rtype: str) -> Callable[[dict[str, Any]], list[Any]]:
    """``expression`` compiled by fhirpathpy for ``rtype`` resources, with the R4 model and
    :func:`_resolve`."""
    fn = fhirpathpy.compile(_rooted(expression, rtype), model=models["r4"], options=FHIRPATH_OPTIONS)
    return lambda resource: fn(resource, {})


# --- plans ------------------------------------------------------------------------------------

#: JSON key → ((selector below that key, or ``None`` for the value itself; converter), ...).
ByKey = dict[str, tuple[tuple[expressions.Selector | None, Emit], ...]]


@dataclass(frozen=True, slots=True)
class Plan:
    #: By the resource's top-level JSON keys.
    by_key: ByKey
    #: Whole-resource extractions: idioms and fhirpathpy fallbacks.
    whole: tuple[Callable[[dict[str, Any], Out], None], ...]
    #: Parameters not indexed (see :func:`unsupported`).
    unsupported: frozenset[str]
    #: Parameters extracted by fhirpathpy, tens of µs each per write (none of R4 core).
    slow: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class _Spec:
    """One route of one parameter, ready to be merged with the routes reaching the same values."""

    key: str
    rest: tuple[expressions.Step, ...]
    param_type: str
    leaf: str
    code: str
    #: For string parameters on HumanName/Address: the parts this parameter wants.
    parts: tuple[str, ...] = ()


def _specs(param: SearchParam, rtype: str, expression: str | None = None) -> list[_Spec]:
    """The routes of ``param`` (or of ``expression`` converted as ``param``) from a ``rtype``
    value that give rows; raises if none does."""
    out: list[_Spec] = []
    for route in expressions.routes(param.expression if expression is None else expression, rtype):
        if converter((param.code,), param.type, route.type) is None:
            continue  # e.g. Procedure.performedAge under a date parameter
        first = route.steps[0] if route.steps else None
        if not isinstance(first, expressions.Key):
            raise expressions.NotSupported("an expression that does not start with an element")
        steps, leaf = route.steps, route.type
        parts: tuple[str, ...] = ()
        if param.type == "string":
            last = steps[-1]
            if leaf in PARTS:
                parts = PARTS[leaf]
            elif route.parent in PARTS and isinstance(last, expressions.Key) and last.name in PARTS[route.parent]:
                # name.family is the family part of each name: one pass over the names serves it
                steps, leaf, parts = steps[:-1], route.parent, (last.name,)
        out.append(_Spec(first.name, steps[1:], param.type, leaf, param.code, parts))
    if not out:
        raise expressions.NotIndexable(f"{param.code}: no indexable values on {rtype}")
    return out


def _idiom(param: SearchParam, rtype: str) -> Callable[[dict[str, Any], Out], None] | None:
    """Extraction by one of the whole-resource idioms of ``expressions.special``, if one fits."""
    try:
        idiom = expressions.special(param.expression, rtype)
    except (expressions.NotSupported, expressions.NotIndexable):
        return None
    emit = converter((param.code,), param.type, "boolean")
    if idiom is None or emit is None:
        return None
    return lambda resource, out: emit(idiom(resource), out)


def _fallback(param: SearchParam, rtype: str) -> Callable[[dict[str, Any], Out], None]:
    """Extraction by fhirpathpy; raises if it cannot compile the expression.

    fhirpathpy's parser recovers from syntax errors silently and fails at evaluation, so the
    expression is tried once on an empty resource here, at compile time, rather than on each write.
    """
    evaluate = fhirpath(param.expression, rtype)
    evaluate({"resourceType": rtype})

    def fallback(resource: dict[str, Any], out: Out) -> None:
        try:
            nodes = evaluate(resource)
        except Exception as exc:  # a bad value must not fail the write; the value is just not indexed
            log.debug("%s on %s: %s", param.code, rtype, exc)
            return
        convert_nodes(param, nodes, out)
    return fallback


@cache
def plan(rtype: str) -> Plan:
    """The compiled extraction of every parameter of ``rtype`` (until the registry changes)."""
    specs: list[_Spec] = []
    whole: list[Callable[[dict[str, Any], Out], None]] = []
    bad: set[str] = set()
    slow: set[str] = set()
    union = aliases(rtype)
    for code, param in parameters.params_for(rtype).items():
        if code == "_id" or code in union:
            continue
        if param.type == "composite":
            try:
                _composite(rtype, code)
            except (expressions.NotSupported, expressions.NotIndexable):
                bad.add(code)
            continue
        if not param.expression or param.type == "special":
            bad.add(code)
            continue
        try:
            specs.extend(_specs(param, rtype))
            continue
        except expressions.NotIndexable:
            bad.add(code)
            continue
        except expressions.NotSupported:
            pass
        idiom = _idiom(param, rtype)
        if idiom is not None:
            whole.append(idiom)
            continue
        try:
            whole.append(_fallback(param, rtype))
            slow.add(code)
        except Exception:  # fhirpathpy cannot compile it either
            bad.add(code)
    return Plan(_merge(specs), tuple(whole), frozenset(bad), frozenset(slow))


def _merge(specs: list[_Spec]) -> ByKey:
    """One converter per distinct (route, type) however many parameters share it, and one walk
    per shared path: many routes that differ only in their last key (the ``value[x]``
    alternatives of an extension) walk their common path once and then dispatch on each
    element's keys, like the top level does."""
    groups: dict[tuple[str, tuple[expressions.Step, ...], str, str], list[_Spec]] = {}
    for spec in specs:
        groups.setdefault((spec.key, spec.rest, spec.param_type, spec.leaf), []).append(spec)
    leaves: list[tuple[str, tuple[expressions.Step, ...], Emit]] = []
    for (key, rest, param_type, leaf), group in groups.items():
        codes = tuple(dict.fromkeys(s.code for s in group))
        if group[0].parts:
            emit = parts_converter(tuple((part, (s.code,)) for s in group for part in s.parts))
        else:
            found = converter(codes, param_type, leaf)
            assert found is not None  # checked per route by _specs
            emit = found
        leaves.append((key, rest, emit))
    return _trie(leaves)


#: Below this many routes sharing a path, walking each is cheaper than a dispatch on every key.
_DISPATCH_FROM = 4


def _trie(leaves: list[tuple[str, tuple[expressions.Step, ...], Emit]]) -> ByKey:
    """``{key: ((selector below key, converter), ...)}``, shared paths walked once."""
    shared: dict[tuple[str, tuple[expressions.Step, ...]], list[tuple[str, Emit]]] = {}
    for key, rest, emit in leaves:
        if rest and isinstance(rest[-1], expressions.Key):
            shared.setdefault((key, rest[:-1]), []).append((rest[-1].name, emit))
    by_key: dict[str, list[tuple[expressions.Selector | None, Emit]]] = {}
    for key, rest, emit in leaves:
        prefix = rest[:-1]
        if rest and isinstance(rest[-1], expressions.Key) and len(shared.get((key, prefix), ())) >= _DISPATCH_FROM:
            continue  # served by the dispatcher below
        by_key.setdefault(key, []).append((expressions.selector(rest) if rest else None, emit))
    for (key, prefix), ends in shared.items():
        if len(ends) >= _DISPATCH_FROM:
            sub = _trie([(name, (), emit) for name, emit in ends])
            by_key.setdefault(key, []).append((expressions.selector(prefix) if prefix else None, _dispatch(sub)))
    return {k: tuple(v) for k, v in by_key.items()}


def _dispatch(sub: ByKey) -> Emit:
    def dispatch(value: Any, out: Out) -> None:
        for node in (value if value.__class__ is list else (value,)):
            if node.__class__ is dict:
                _run(sub, node, out)
    return dispatch


@cache
def aliases(rtype: str) -> dict[str, tuple[str, ...]]:
    """Parameters that are the union of other parameters of ``rtype``, with those members.

    ``combo-code`` is ``Observation.code | Observation.component.code``: exactly ``code`` and
    ``component-code`` together. Such a parameter is not indexed on its own — a search on it
    is a search on any of its members (``search/parse.py`` rewrites it) — which spares a quarter
    of an Observation's index rows. Detected from the compiled routes, so it holds for custom
    parameters too: a parameter is an alias when other parameters of the same type, each
    selecting a proper subset of its routes, together select all of them.
    """
    compiled: dict[str, frozenset[Any]] = {}
    kinds: dict[str, str] = {}
    for code, sp in parameters.params_for(rtype).items():
        if code.startswith("_") or sp.type in ("composite", "special") or not sp.expression:
            continue
        try:
            found = frozenset(expressions.routes(sp.expression, rtype))
        except (expressions.NotSupported, expressions.NotIndexable):
            continue
        if found:
            compiled[code] = found
            kinds[code] = sp.type
    out: dict[str, tuple[str, ...]] = {}
    for code, whole in compiled.items():
        parts = [c for c, r in compiled.items() if c != code and kinds[c] == kinds[code] and r < whole]
        if len(parts) > 1 and frozenset().union(*(compiled[c] for c in parts)) == whole:
            out[code] = tuple(sorted(parts))
    # a member that is itself an alias is not indexed either: such a union stays indexed itself
    return {code: members for code, members in out.items() if not any(m in out for m in members)}


def _forget() -> None:
    plan.cache_clear()
    _composite.cache_clear()
    aliases.cache_clear()


parameters.on_change(_forget)


def unsupported(rtype: str) -> frozenset[str]:
    """Codes of ``rtype``'s parameters that are not indexed, so a search on them must be refused."""
    return plan(rtype).unsupported


def _run(by_key: ByKey, node: Mapping[str, Any], out: Out) -> None:
    for key, value in node.items():
        entries = by_key.get(key)
        if entries is not None:
            for sel, emit in entries:
                emit(value if sel is None else sel(value), out)


def index_rows(rtype: str, resource: dict[str, Any]) -> list[IndexRow]:
    """Every index row of ``resource`` (of type ``rtype``)."""
    p = plan(rtype)
    out: Out = {}
    _run(p.by_key, resource, out)
    for extract in p.whole:
        extract(resource, out)
    return list(out)


# --- composites -----------------------------------------------------------------------------

_RESOURCE_VAR = "%resource."


@cache
def _composite(rtype: str, code: str) -> tuple[tuple[expressions.Selector, tuple[tuple[bool, ByKey], ...]], ...]:
    """Per element route of a composite: its selector from the resource, and per component
    whether it is read from the resource (``%resource.``) and its compiled extraction."""
    param = parameters.params_for(rtype)[code]
    found = []
    for route in expressions.routes(param.expression, rtype):
        components = []
        for url, expression in param.components:
            of = parameters.by_url(url)
            if of is None or of.type in ("composite", "special"):
                raise expressions.NotIndexable(f"{code}: component {url}")
            on_resource = expression.startswith(_RESOURCE_VAR)
            if on_resource:
                expression = expression[len(_RESOURCE_VAR):]
            components.append((on_resource, _merge(_specs(of, rtype if on_resource else route.type, expression))))
        found.append((expressions.selector(route.steps), tuple(components)))
    if not found:
        raise expressions.NotIndexable(f"{code}: no elements on {rtype}")
    return tuple(found)


def component_rows(rtype: str, code: str, resource: Mapping[str, Any]) -> list[list[list[IndexRow]]]:
    """The ``search/matcher.py`` hook for composites: per element the composite's expression
    selects (each ``Observation.component``, or the Observation itself), per component in the
    SearchParameter's order, the rows of that component's expression on that element, made as
    the component's own parameter makes them (so their ``param`` is that parameter's code).
    ``[]`` for a composite that :func:`unsupported` lists, or an unknown one."""
    try:
        compiled = _composite(rtype, code)
    except (KeyError, expressions.NotSupported, expressions.NotIndexable):
        return []
    elements: list[list[list[IndexRow]]] = []
    for select, components in compiled:
        for node in select(resource):
            if node.__class__ is not dict:
                continue
            per: list[list[IndexRow]] = []
            for on_resource, by_key in components:
                out: Out = {}
                _run(by_key, resource if on_resource else node, out)
                per.append(list(out))
            elements.append(per)
    return elements


class Indexer:
    """The :class:`fhir_hub.storage.port.Indexer` for all search parameters."""

    def rows(self, rtype: str, resource: dict[str, Any]) -> list[IndexRow]:
        return index_rows(rtype, resource)
