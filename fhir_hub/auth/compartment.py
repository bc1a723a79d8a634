"""Compartment membership decided from a resource's stored bytes, for reads by id.

A resource of type ``T`` is in ``Patient/p``'s compartment when one of the reference parameters
the R4 Patient CompartmentDefinition names for ``T`` (those the registry knows) has ``Patient/p``
as a value: exactly what the compartment search (``rest/search.py``) asks the index. Here the
values come from the body the read has already fetched, extracted by the same compiled routes
the indexer uses (``search/extract.py``) but for those parameters only, so a read needs no
second query. A parameter outside the compiled subset makes the type fall back to the whole
extraction (still the indexer's rows, filtered to the parameters).

Before parsing, the bytes are searched for ``Patient/p``: a stored body is the server's own JSON
serialisation, so a body without that text cannot hold such a reference (relative, absolute or
versioned). The search only refuses; a grant always comes from the parsed references.

A stored version never changes, so its decision is kept (:func:`admits_version`, at most
:data:`DECIDED_MAX`, the oldest dropped first), keyed by everything that names the version
(type, id, version id, change-order position and commit time: a position alone may be reused
after the newest rows are removed) and the patient; a registry change drops them all.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import orjson

from fhir_hub import definitions
from fhir_hub.search import expressions, extract, parameters
from fhir_hub.search.convert import Out
from fhir_hub.storage.port import StoredVersion

__all__ = ["DECIDED_MAX", "Membership", "admits_version", "membership"]

#: Membership decisions kept, by version and patient.
DECIDED_MAX = 50_000


class Membership:
    """How to tell whether a resource of ``rtype`` is in a ``ctype`` compartment."""

    __slots__ = ("by_key", "params", "rtype")

    def __init__(self, rtype: str, ctype: str):
        self.rtype = rtype
        self.params = frozenset(p for p in definitions.compartments().get(ctype, {}).get(rtype, [])
                                if parameters.lookup(rtype, p) is not None)
        specs = []
        by_key: extract.ByKey | None
        try:
            for code in sorted(self.params):
                param = parameters.lookup(rtype, code)
                assert param is not None
                try:
                    specs.extend(extract._specs(param, rtype))
                except expressions.NotIndexable:
                    continue  # no values on this type: the index has none either
            by_key = extract._merge(specs)
        except expressions.NotSupported:
            by_key = None  # outside the compiled subset: the whole extraction, as the indexer runs it
        self.by_key = by_key

    def holds(self, resource: dict[str, Any], target: str, suffix: str) -> bool:
        """Whether one of the membership parameters of ``resource`` references ``target``
        (``Type/id``; ``suffix`` is ``/Type/id``, for an absolute URL)."""
        if self.by_key is not None:
            out: Out = {}
            extract._run(self.by_key, resource, out)
            rows: Any = out
        else:
            rows = extract.index_rows(self.rtype, resource)
        params = self.params
        for row in rows:
            if row[0] == "reference" and row[1] in params and (row[2] == target or row[2].endswith(suffix)):
                return True
        return False

    def admits(self, body: bytes, target: str, needle: bytes, suffix: str) -> bool:
        """Whether the stored ``body`` is in the compartment of ``target`` (``needle`` its UTF-8 bytes)."""
        if not self.params:
            return False
        if body.__class__ is bytes and needle not in body:
            return False  # cannot reference it (see the module's note); a match is still parsed below
        resource = orjson.loads(body)
        return isinstance(resource, dict) and self.holds(resource, target, suffix)


_compiled: dict[tuple[str, str], Membership] = {}
_decided: OrderedDict[tuple[Any, ...], bool] = OrderedDict()


def membership(rtype: str, ctype: str) -> Membership:
    """The compiled membership of ``rtype`` in ``ctype`` compartments (until the registry changes)."""
    found = _compiled.get((rtype, ctype))
    if found is None:
        found = _compiled[(rtype, ctype)] = Membership(rtype, ctype)
    return found


def admits_version(v: StoredVersion, ctype: str, target: str, needle: bytes, suffix: str) -> bool:
    """Whether the stored version ``v`` (not a delete) is in the compartment of ``target``
    (``ctype/id``), decided once per version (see the module's note)."""
    key = (v.rtype, v.rid, v.vid, v.seq, v.ts, target)
    found = _decided.get(key)
    if found is None:
        assert v.body is not None
        found = membership(v.rtype, ctype).admits(v.body, target, needle, suffix)
        _decided[key] = found
        if len(_decided) > DECIDED_MAX:
            _decided.popitem(last=False)
    return found


def _forget() -> None:
    _compiled.clear()
    _decided.clear()


parameters.on_change(_forget)
