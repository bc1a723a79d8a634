"""Token index extraction and token criteria parsing: the first slice of search.

Conditional interactions (``If-None-Exist``, conditional update/delete, conditional references in
transactions) and token searches need ``param=[system|]code`` lookups. Index values are extracted
with paths compiled once per (resource type, parameter) from the official SearchParameter
expressions; expressions that are not plain dotted paths (``where``, ``as``, ``ofType``,
``resolve``) are not indexed yet — the search issue brings FHIRPath for those, and such a
parameter is refused with a clear 400 until then rather than matching nothing silently.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir_hub import definitions
from fhir_hub.errors import FhirError, error
from fhir_hub.storage.port import TokenMatch

_SIMPLE = re.compile(r"^[A-Za-z]+(\.[A-Za-z]+)+$")


@dataclass(frozen=True, slots=True)
class TokenParam:
    code: str
    #: Each path is the list of element names below the resource, e.g. ``("identifier",)``.
    paths: tuple[tuple[str, ...], ...]


@cache
def token_params(rtype: str) -> dict[str, TokenParam]:
    """The token parameters of ``rtype`` whose expression this module can evaluate."""
    found: dict[str, TokenParam] = {}
    for sp in definitions.search_parameters():
        if sp.get("type") != "token" or rtype not in sp.get("base", ()):
            continue
        paths = _paths(sp.get("expression") or "", rtype)
        if paths:
            found[sp["code"]] = TokenParam(sp["code"], paths)
    return found


def _paths(expression: str, rtype: str) -> tuple[tuple[str, ...], ...]:
    out: list[tuple[str, ...]] = []
    for member in expression.split("|"):
        member = member.strip()
        if not member.startswith(rtype + "."):
            continue
        if not _SIMPLE.match(member):
            return ()  # one member we cannot evaluate: refuse the parameter rather than half-index it
        out.append(tuple(member.split(".")[1:]))
    return tuple(out)


def _values(resource: dict[str, Any], path: tuple[str, ...]) -> list[Any]:
    """Values at a dotted path, lists flattened at every step (FHIRPath's collection semantics)."""
    nodes: list[Any] = [resource]
    for name in path:
        found: list[Any] = []
        for node in nodes:
            if node.__class__ is dict:
                child = node.get(name)
                if child is None:
                    continue
                if child.__class__ is list:
                    found.extend(child)
                else:
                    found.append(child)
        if not found:
            return found
        nodes = found
    return nodes


def _tokens(value: Any, out: set[tuple[str, str]]) -> None:
    """Add the (system, code) pairs of a value of any token-able type; system ``""`` when absent."""
    cls = value.__class__
    if cls is str:
        out.add(("", value))
    elif cls is bool:
        out.add(("", "true" if value else "false"))
    elif cls is dict:
        codings = value.get("coding")
        if codings.__class__ is list:  # CodeableConcept
            for coding in codings:
                if coding.__class__ is dict and coding.get("code").__class__ is str:
                    out.add((coding.get("system") or "", coding["code"]))
        elif value.get("code").__class__ is str:  # Coding
            out.add((value.get("system") or "", value["code"]))
        elif value.get("value").__class__ is str:  # Identifier, ContactPoint
            out.add((value.get("system") or "", value["value"]))


@cache
def _plan(rtype: str) -> tuple[tuple[str, tuple[tuple[str, ...], ...]], ...]:
    return tuple((p.code, p.paths) for p in token_params(rtype).values())


class TokenIndexer:
    """The :class:`fhir_hub.storage.port.Indexer` for token parameters."""

    def rows(self, rtype: str, resource: dict[str, Any]) -> list[tuple[str, str, str | None, str]]:
        rows: list[tuple[str, str, str | None, str]] = []
        for code, paths in _plan(rtype):
            pairs: set[tuple[str, str]] = set()
            for path in paths:
                for value in _values(resource, path):
                    _tokens(value, pairs)
            rows.extend(("token", code, system, value) for system, value in pairs)
        return rows


def parse_criteria(rtype: str, query: Sequence[tuple[str, str]], where: str) -> list[TokenMatch]:
    """Token criteria from query parameters; anything else is a clear 400 naming the parameter."""
    if not query:
        raise FhirError(400, error("invalid", f"{where}: search criteria are empty"))
    params = token_params(rtype)
    out: list[TokenMatch] = []
    for name, raw in query:
        if name in ("_format", "_pretty"):
            continue
        if name != "_id" and name not in params:
            raise FhirError(400, error(
                "not-supported",
                f"{where}: search parameter {name!r} is not supported on {rtype} (yet: only token "
                "parameters with simple paths and _id are)", name))
        values: list[tuple[str | None, str]] = []
        for item in _split_or(raw):
            if name == "_id":
                values.append((None, item))
            elif "|" in item:
                system, code = item.split("|", 1)
                values.append((system, code))
            else:
                values.append((None, item))
        if not values or any(not code and not system for system, code in values):
            raise FhirError(400, error("invalid", f"{where}: empty value for search parameter {name!r}", name))
        out.append(TokenMatch(name, tuple(values)))
    return out


def _split_or(raw: str) -> list[str]:
    """Split on commas not escaped with a backslash, then unescape (search.html#escaping)."""
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            cur.append(raw[i + 1])
            i += 2
            continue
        if ch == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts
