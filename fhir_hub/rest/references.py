"""Finding, rewriting and checking the references inside a resource (references.html).

A transaction rewrites ``urn:uuid:`` and conditional references before it writes; every write
checks that relative literal references point at a live resource (referential integrity, as
HAPI and Blaze enforce by default).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from fhir_hub import definitions
from fhir_hub.errors import FhirError, error
from fhir_hub.storage.port import PreparedBody, Tx

#: ``Type/id`` or ``Type/id/_history/vid`` (relative literal reference).
_RELATIVE = re.compile(r"^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/([A-Za-z0-9\-.]{1,64}))?$")


def iter_reference_holders(node: Any, path: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every dict with a string ``reference`` key, with its FHIRPath location.

    Contained resources are walked too: their references are part of the resource.
    """
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str):
            yield node, path
        for key, value in node.items():
            if key == "reference" or not isinstance(value, (dict, list)):
                continue
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if isinstance(item, (dict, list)):
                        yield from iter_reference_holders(item, f"{path}.{key}[{i}]")
            else:
                yield from iter_reference_holders(value, f"{path}.{key}")


def reference_holders(node: Any) -> list[dict[str, Any]]:
    """Every dict with a string ``reference`` key, without locations: the fast path of writes.

    Locations cost a string per node; :func:`path_of` finds one when an error needs it.
    """
    out: list[dict[str, Any]] = []
    stack = [node]
    pop, push = stack.pop, stack.append
    while stack:
        n = pop()
        if n.__class__ is dict:
            if n.get("reference").__class__ is str:
                out.append(n)
            for v in n.values():
                c = v.__class__
                if c is dict or c is list:
                    push(v)
        else:
            for v in n:
                c = v.__class__
                if c is dict or c is list:
                    push(v)
    return out


def path_of(root: Any, holder: dict[str, Any], where: str) -> str:
    """FHIRPath location of ``holder``'s ``reference`` inside ``root``."""
    for candidate, path in iter_reference_holders(root, where):
        if candidate is holder:
            return f"{path}.reference"
    return where


def parse_relative(ref: str) -> tuple[str, str, str | None] | None:
    """``(type, id, vid)`` of a relative literal reference to a known resource type, else ``None``."""
    m = _RELATIVE.match(ref)
    if m is None or not definitions.is_resource_type(m.group(1)):
        return None
    return m.group(1), m.group(2), m.group(3)


def strip_base(ref: str, base_url: str) -> str:
    """An absolute reference to this server becomes relative; others are left alone."""
    prefix = base_url + "/"
    return ref[len(prefix):] if ref.startswith(prefix) else ref


def _broken(ref: str, problem: tuple[str, str], path: str) -> FhirError:
    code, text = problem
    return FhirError(400 if code == "invalid" else 409, error(code, f"reference {ref!r}: {text}", path))


def _prepared_path(prepared: PreparedBody, ref: str, where: str) -> str:
    """Where ``ref`` sits in a prepared body (its first holder of that reference), for an error."""
    resource = orjson.loads(prepared.at(""))
    holder = next((h for h in reference_holders(resource) if h["reference"] == ref), None)
    return where if holder is None else path_of(resource, holder, where)


class ReferenceChecker:
    """Checks that relative references resolve to live resources inside one write transaction.

    Lookups are cached for the unit of work: a bundle's 60 Observations naming one Patient cost
    one query. A resource written in the same unit is registered with :meth:`known`.
    """

    #: Called with ``(tx, id, resource)`` after a Patient is written in this unit of work: patient
    #: reconciliation (``fhir_hub/mpi/service.py``) when ``FHIR_HUB_MPI`` is on, else ``None``.
    on_patient: Callable[[Tx, str, dict[str, Any]], None] | None = None

    def __init__(self, tx: Tx, base_url: str):
        self._tx = tx
        self._base = base_url
        #: ``Type/id`` strings known to be live in this unit of work.
        self._live: set[str] = set()

    def known(self, rtype: str, rid: str) -> None:
        self._live.add(f"{rtype}/{rid}")

    def check(self, resource: dict[str, Any] | PreparedBody, where: str,
              holders: list[dict[str, Any]] | None = None) -> None:
        """Raise a 409 for the first reference that does not resolve; ``holders`` may be reused."""
        if isinstance(resource, PreparedBody):
            for ref in resource.refs:
                if ref not in self._live and not ref.startswith("#") and (problem := self._problem(ref)) is not None:
                    raise _broken(ref, problem, _prepared_path(resource, ref, where))
            return
        for holder in reference_holders(resource) if holders is None else holders:
            held: str = holder["reference"]
            if held not in self._live and not held.startswith("#") and (problem := self._problem(held)) is not None:
                raise _broken(held, problem, path_of(resource, holder, where))

    def _problem(self, ref: str) -> tuple[str, str] | None:
        rel = strip_base(ref, self._base)
        if rel.startswith("urn:uuid:") or rel.startswith("urn:oid:"):
            return "invalid", "does not resolve to any entry of this bundle"
        parsed = parse_relative(rel)
        if parsed is None:
            return None  # absolute, logical or unknown-type reference: not ours to check
        rtype, rid, vid = parsed
        if vid is not None:
            if not vid.isdigit() or self._tx.vread(rtype, rid, int(vid)) is None:
                return "not-found", "no such version"
            return None
        cur = self._tx.current(rtype, rid)
        if cur is None or cur.deleted:
            return "not-found", "the target is deleted" if cur is not None else "the target does not exist"
        self._live.add(f"{rtype}/{rid}")
        return None
