"""Reads across a person's records (``FHIR_HUB_MPI=on``): which Patient ids hold one person's data.

A golden record is the person, so what is *about* it is what is about any of its sources:

* ``Patient/[golden]/$everything`` and the compartment search ``Patient/[golden]/Observation``
  cover the golden record and every source it links (``seealso``), plus golden records merged
  into it (``replaces``, for data that named them). A source's own ``$everything`` and
  compartment stay that source's.
* A reference search stays literal (``Observation?subject=Patient/[golden]`` finds what names the
  golden record) unless the client asks for the person with the ``:mpi`` modifier, as HAPI's
  MDM does with ``:mdm``: ``Observation?subject:mpi=Patient/[id]`` is
  ``subject=Patient/[golden],Patient/[source 1],...`` for a golden record or any of its sources.
  With reconciliation off the parser refuses ``:mpi`` as it refuses any unknown modifier.
* In a chain the modifier comes before the chained parameter:
  ``Observation?subject:mpi.identifier=http://fhir.ehealth.gov.vn/core/sid/national_id|<id>`` finds
  the Patients the chain ``identifier=...`` matches (golden records included, which carry every
  identifier of their sources), then every record of each of those persons, so a facility's copy
  linked by its BHYT card alone is covered too. At most :data:`MAX_CHAINED` Patients may match
  the chain (a 400 beyond: name the person more precisely); none is an empty result.

Everything here reads committed state (a search does not run on the writer).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import orjson

from fhir_hub.errors import FhirError, error
from fhir_hub.mpi.service import GOLDEN_ID, MATCH, Golden, decision_of, is_golden, link_id
from fhir_hub.search import parameters

MODIFIER = "mpi"
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
#: Patients a ``:mpi.`` chain may match (each is expanded to its person by a few reads).
MAX_CHAINED = 100
#: The reference value of a ``:mpi.`` chain that matched no Patient: nothing refers to it.
_NOBODY = "urn:fhir-hub:mpi:nobody"


async def _body(store: Any, rtype: str, rid: str) -> dict[str, Any] | None:
    v = await store.read(rtype, rid)
    if v is None or v.body is None:
        return None
    loaded: dict[str, Any] = orjson.loads(v.body)
    return loaded


def members(pid: str, body: dict[str, Any] | None) -> tuple[str, ...]:
    """``pid`` first, then, when ``body`` is a golden record, its sources and the golden
    records merged into it."""
    if body is None or not is_golden(body):
        return (pid,)
    golden = Golden.of(pid, body)
    return tuple(dict.fromkeys((pid, *golden.sources, *golden.merged)))


async def linked(store: Any, pid: str) -> tuple[str, ...]:
    """:func:`members` of ``Patient/pid`` as stored: a source (or a Patient outside
    reconciliation) is only itself."""
    return members(pid, await _body(store, "Patient", pid))


async def person(store: Any, pid: str) -> tuple[str, ...]:
    """The ids of the person ``Patient/pid`` belongs to: its golden record's :func:`members`
    (``pid`` being the golden record or one of its sources); ``(pid,)`` when it has none."""
    body = await _body(store, "Patient", pid)
    if body is None:
        return (pid,)
    if is_golden(body):
        return members(pid, body)
    record = await _body(store, "Basic", link_id(pid))
    if record is None or decision_of(record)["state"] != MATCH:
        return (pid,)
    gid = next((i.get("value") for i in record.get("identifier") or () if i.get("system") == GOLDEN_ID), None)
    if not isinstance(gid, str):
        return (pid,)
    found = members(gid, await _body(store, "Patient", gid))
    return found if pid in found else (pid,)


def _patient_id(raw: str, base_url: str, name: str) -> str:
    text = raw[len(base_url) + 1:] if base_url and raw.startswith(base_url + "/") else raw
    if text.startswith("Patient/"):
        text = text[len("Patient/"):]
    if not _ID.match(text):
        raise FhirError(400, error("invalid", f"{name} takes Patient references ({raw!r} is not one)", name))
    return text


async def expand_pairs(store: Any, types: Sequence[str], pairs: list[tuple[str, str]],
                       base_url: str) -> list[tuple[str, str]]:
    """``pairs`` with every ``<reference parameter>:mpi=<Patient refs>`` replaced by the plain
    parameter naming every record of each person; the other pairs as they are."""
    if not any(_asks(name) for name, _ in pairs):
        return pairs
    out: list[tuple[str, str]] = []
    for name, raw in pairs:
        code, _, modifier = name.partition(":")
        if not _asks(name):
            out.append((name, raw))
            continue
        for rtype in types:
            sp = parameters.lookup(rtype, code)
            if sp is None or sp.type != "reference" or (sp.targets and "Patient" not in sp.targets):
                raise FhirError(400, error("not-supported", f":{MODIFIER} applies to reference parameters that "
                                           f"can name a Patient; {rtype}.{code} is not one", name))
        refs: dict[str, None] = {}
        if modifier == MODIFIER:
            starts = [_patient_id(value, base_url, name) for value in raw.split(",")]
        else:
            starts = await _chained(store, modifier[len(MODIFIER) + 1:], raw, base_url, name)
        for pid in starts:
            for rid in await person(store, pid):
                refs[f"Patient/{rid}"] = None
        out.append((code, ",".join(refs) or _NOBODY))
    return out


def _asks(name: str) -> bool:
    modifier = name.partition(":")[2]
    return modifier == MODIFIER or modifier.startswith(MODIFIER + ".")


async def _chained(store: Any, chain: str, raw: str, base_url: str, name: str) -> list[str]:
    """The Patients ``chain=raw`` matches (``identifier=...``, or a deeper chain)."""
    from fhir_hub.search.parse import parse  # the parser, at the edge: this module is loaded only with MPI on

    if not chain:
        raise FhirError(400, error("invalid", f"{name}: a parameter of Patient must follow ':{MODIFIER}.'", name))
    q = parse(["Patient"], [(chain, raw)], base_url=base_url, strict=True, where=name)
    found = list(await store.find("Patient", q.criteria, MAX_CHAINED + 1, ids=q.ids))
    if len(found) > MAX_CHAINED:
        raise FhirError(400, error("too-costly", f"{name}={raw} matches more than {MAX_CHAINED} Patients: name the "
                                   "person more precisely (an identifier)", name))
    return found
