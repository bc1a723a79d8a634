"""Finding, rewriting and checking the references inside a resource (references.html).

A transaction rewrites ``urn:uuid:`` and conditional references before it writes; every write
checks that relative literal references point at a live resource (referential integrity, as
HAPI and Blaze enforce by default).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fhir_hub import definitions
from fhir_hub.errors import FhirError, error
from fhir_hub.storage.port import Tx

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


class ReferenceChecker:
    """Checks that relative references resolve to live resources inside one write transaction.

    Lookups are cached for the unit of work: a bundle's 60 Observations naming one Patient cost
    one query. A resource written in the same unit is registered with :meth:`known`.
    """

    def __init__(self, tx: Tx, base_url: str):
        self._tx = tx
        self._base = base_url
        self._live: set[tuple[str, str]] = set()

    def known(self, rtype: str, rid: str) -> None:
        self._live.add((rtype, rid))

    def forget(self, rtype: str, rid: str) -> None:
        self._live.discard((rtype, rid))

    def check(self, resource: dict[str, Any], where: str) -> None:
        for holder, path in iter_reference_holders(resource, where):
            ref: str = holder["reference"]
            if ref.startswith("#"):
                continue
            rel = strip_base(ref, self._base)
            if rel.startswith("urn:uuid:") or rel.startswith("urn:oid:"):
                raise FhirError(400, error("invalid", f"reference {ref!r} does not resolve to any entry of "
                                           "this bundle", f"{path}.reference"))
            parsed = parse_relative(rel)
            if parsed is None:
                continue  # absolute, logical or unknown-type reference: not ours to check
            rtype, rid, vid = parsed
            if (rtype, rid) in self._live and vid is None:
                continue
            if vid is not None:
                if not vid.isdigit() or self._tx.vread(rtype, rid, int(vid)) is None:
                    raise FhirError(409, error("not-found", f"reference {ref!r}: no such version",
                                               f"{path}.reference"))
                continue
            cur = self._tx.current(rtype, rid)
            if cur is None or cur.deleted:
                state = "is deleted" if cur is not None else "does not exist"
                raise FhirError(409, error("not-found", f"reference {ref!r}: the target {state}",
                                           f"{path}.reference"))
            self._live.add((rtype, rid))
