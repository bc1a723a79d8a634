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
from collections.abc import Iterator, Sequence
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


def _walk(node: Any, path: tuple[str, ...], i: int = 0) -> Iterator[Any]:
    if i == len(path):
        if isinstance(node, list):
            yield from node
        else:
            yield node
        return
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, path, i)
        return
    if isinstance(node, dict):
        child = node.get(path[i])
        if child is not None:
            yield from _walk(child, path, i + 1)


def _tokens(value: Any) -> Iterator[tuple[str, str]]:
    """(system, code) pairs of a value of any token-able type; system ``""`` when absent."""
    if isinstance(value, str):
        yield "", value
    elif isinstance(value, bool):
        yield "", "true" if value else "false"
    elif isinstance(value, dict):
        codings = value.get("coding")
        if isinstance(codings, list):  # CodeableConcept
            for coding in codings:
                if isinstance(coding, dict) and isinstance(coding.get("code"), str):
                    yield coding.get("system") or "", coding["code"]
        elif isinstance(value.get("code"), str):  # Coding
            yield value.get("system") or "", value["code"]
        elif isinstance(value.get("value"), str):  # Identifier, ContactPoint
            yield value.get("system") or "", value["value"]


class TokenIndexer:
    """The :class:`fhir_hub.storage.port.Indexer` for token parameters."""

    def rows(self, rtype: str, resource: dict[str, Any]) -> list[tuple[str, str, str | None, str]]:
        rows: list[tuple[str, str, str | None, str]] = []
        for param in token_params(rtype).values():
            seen: set[tuple[str, str]] = set()
            for path in param.paths:
                for value in _walk(resource, path):
                    for pair in _tokens(value):
                        if pair not in seen:
                            seen.add(pair)
                            rows.append(("token", param.code, pair[0], pair[1]))
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
