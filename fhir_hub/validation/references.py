"""What a Reference points at: the type a literal reference names, and the resource it resolves to when
the target travels with the reference (a contained resource, or an entry of the same Bundle).

Why only those: a validator that fetched targets from the store or the network would make a write
depend on other data and on latency; R4 asks a validator to check the target's type or profile
"where the target is resolvable", and these two are always resolvable offline.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EMPTY", "Scope", "bundle_index", "contained_scope", "literal_type", "resolve"]

# What a resource's references can resolve to: its container's contained resources by id and the
# enclosing Bundle's entries by fullUrl (absolute) and by ``Type/id`` (relative to the Bundle's base).
Scope = tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]

EMPTY: Scope = ({}, {})


def literal_type(ref: str) -> str | None:
    """The resource type a literal reference names (``Patient/1``, ``http://x/fhir/Patient/1/_history/2``),
    or ``None`` for a local (``#``), ``urn:`` or unparseable one."""
    if ref.startswith(("#", "urn:")):
        return None
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        return parts[-4]
    return parts[-2] if len(parts) >= 2 and parts[-2] else None


def contained_scope(root: dict[str, Any], bundle: dict[str, dict[str, Any]]) -> Scope:
    """The scope of a resource ``root`` (its contained resources) within ``bundle``'s entries."""
    contained = {c["id"]: c for c in root.get("contained") or () if isinstance(c, dict) and isinstance(c.get("id"), str)}
    return contained, bundle


def bundle_index(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A Bundle's entries by fullUrl and by the ``Type/id`` that ends it (or the resource's own)."""
    out: dict[str, dict[str, Any]] = {}
    for entry in bundle.get("entry") or ():
        res = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(res, dict):
            continue
        full = entry.get("fullUrl")
        if isinstance(full, str):
            out[full] = res
        rtype, rid = res.get("resourceType"), res.get("id")
        if isinstance(rtype, str) and isinstance(rid, str):
            out.setdefault(f"{rtype}/{rid}", res)
    return out


def resolve(ref: str, scope: Scope) -> dict[str, Any] | None:
    """The resource ``ref`` points at, when it is in ``scope``; else ``None``."""
    contained, bundle = scope
    if ref.startswith("#"):
        return contained.get(ref[1:])
    found = bundle.get(ref)
    if found is None and "/_history/" in ref:
        found = bundle.get(ref.split("/_history/", 1)[0])
    if found is None and not ref.startswith("urn:"):
        parts = ref.split("/")
        if len(parts) >= 2:
            found = bundle.get("/".join(parts[-2:]))
    return found
