"""SMART scopes, v1 and v2 (SMART App Launch 2.2, scopes-and-launch-context.html): pure parsing.

A resource scope is ``<context>/<type>.<permissions>[?<query>]``:

* context ``patient`` (the patient in context), ``user`` or ``system``;
* type a resource type or ``*``;
* permissions v2 ``c r u d s`` in that order, each at most once (``rs``, ``cruds``), or v1
  ``read`` (= ``rs``), ``write`` (= ``cud``), ``*`` (= ``cruds``);
* v2 only: a query restricting the scope to resources that match it
  (``patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs``).

Everything else (``launch/patient``, ``offline_access``, ``openid``…) is kept as a plain string.
Nothing here knows about HTTP, tokens or the store.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

CONTEXTS = ("patient", "user", "system")
PERMISSIONS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_TYPE = re.compile(r"^(\*|[A-Z][A-Za-z]{0,63})$")


class ScopeError(ValueError):
    """A string that starts like a resource scope but is not one."""


@dataclass(frozen=True, slots=True)
class ResourceScope:
    context: str
    #: A resource type, or ``*``.
    rtype: str
    #: Subset of ``cruds``, in that order.
    permissions: str
    #: The v2 query restriction as ordered pairs (empty: none).
    query: tuple[tuple[str, str], ...] = ()
    #: 1 for ``read``/``write``/``*``, 2 for ``cruds`` letters.
    version: int = 2

    def grants(self, rtype: str, permission: str) -> bool:
        return permission in self.permissions and self.rtype in ("*", rtype)

    def covers(self, other: ResourceScope) -> bool:
        """Whether this scope (e.g. a client's registration) allows everything ``other`` asks for."""
        return (self.context == other.context and self.rtype in ("*", other.rtype)
                and set(other.permissions) <= set(self.permissions)
                and (not self.query or self.query == other.query))

    def __str__(self) -> str:
        perms = next((k for k, v in _V1.items() if v == self.permissions), self.permissions) \
            if self.version == 1 else self.permissions
        text = f"{self.context}/{self.rtype}.{perms}"
        if self.query:
            text += "?" + "&".join(f"{k}={v}" for k, v in self.query)
        return text


def parse_scope(text: str) -> ResourceScope | str:
    """One scope: a :class:`ResourceScope`, or the string itself when it is not a resource scope.

    Raises :class:`ScopeError` for a resource scope with a bad type, permissions or query.
    """
    context, slash, rest = text.partition("/")
    if not slash or context not in CONTEXTS:
        return text
    body, q, query = rest.partition("?")
    rtype, dot, perms = body.rpartition(".")
    if not dot or not _TYPE.match(rtype):
        raise ScopeError(f"{text!r}: expected {context}/<type or *>.<permissions>")
    version = 2
    if perms in _V1:
        if q:
            raise ScopeError(f"{text!r}: a query restriction needs v2 permissions (c r u d s)")
        perms, version = _V1[perms], 1
    elif not perms or any(p not in PERMISSIONS for p in perms) or \
            list(perms) != sorted(set(perms), key=PERMISSIONS.index):
        raise ScopeError(f"{text!r}: permissions are c, r, u, d, s in that order, each at most once")
    pairs: tuple[tuple[str, str], ...] = ()
    if q:
        if not query:
            raise ScopeError(f"{text!r}: empty query restriction")
        pairs = tuple(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
        if not pairs or any(not k or not v for k, v in pairs):
            raise ScopeError(f"{text!r}: the query restriction must be name=value pairs")
    return ResourceScope(context, rtype, perms, pairs, version)


@dataclass(frozen=True, slots=True)
class Scopes:
    """A parsed scope string: resource scopes, and the other scopes as a set."""

    resources: tuple[ResourceScope, ...]
    other: frozenset[str]

    def of(self, context: str) -> tuple[ResourceScope, ...]:
        return tuple(s for s in self.resources if s.context == context)

    def matching(self, context: str, rtype: str, permission: str) -> list[ResourceScope]:
        return [s for s in self.resources if s.context == context and s.grants(rtype, permission)]

    def restrictions(self, context: str, rtype: str, permission: str) -> list[tuple[tuple[str, str], ...]] | None:
        """How the scopes restrict ``permission`` on ``rtype``: ``None`` when one grants it without a
        query, else the queries of those that grant it (any one may match; empty: not granted)."""
        out = []
        for s in self.matching(context, rtype, permission):
            if not s.query:
                return None
            out.append(s.query)
        return out

    def allows(self, context: str, rtype: str, permission: str) -> bool:
        return bool(self.matching(context, rtype, permission))

    def wildcard(self, context: str, permissions: str) -> bool:
        """Some unrestricted ``*`` scope of ``context`` grants every one of ``permissions``."""
        return all(any(s.rtype == "*" and not s.query and p in s.permissions for s in self.of(context))
                   for p in permissions)

    def __str__(self) -> str:
        return " ".join([*(str(s) for s in self.resources), *sorted(self.other)])


def parse_scopes(text: str) -> Scopes:
    """A space-separated scope string (RFC 6749 §3.3). Raises :class:`ScopeError` on a bad one."""
    resources: list[ResourceScope] = []
    other: set[str] = set()
    for part in text.split():
        parsed = parse_scope(part)
        if isinstance(parsed, ResourceScope):
            if parsed not in resources:
                resources.append(parsed)
        else:
            other.add(parsed)
    return Scopes(tuple(resources), frozenset(other))


def narrow(requested: Scopes, allowed: Iterable[ResourceScope | str], contexts: Iterable[str]) -> Scopes:
    """The requested scopes a client may have: resource scopes of ``contexts`` that one of
    ``allowed`` covers, and the other scopes listed in ``allowed`` verbatim."""
    allowed = list(allowed)
    ctx = set(contexts)
    plain = {a for a in allowed if isinstance(a, str)}
    keep = tuple(r for r in requested.resources if r.context in ctx and any(
        isinstance(a, ResourceScope) and a.covers(r) for a in allowed))
    return Scopes(keep, frozenset(requested.other & plain))


__all__ = ["CONTEXTS", "ResourceScope", "ScopeError", "Scopes", "narrow", "parse_scope", "parse_scopes"]
