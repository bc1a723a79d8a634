"""``POST [base]/$reindex`` and ``POST [base]/[type]/$reindex``: index rows rewritten from the bodies.

After a custom SearchParameter is created, changed or deleted, the resources stored before it
still carry the index rows of the old parameter set; this rewrites them with today's
(``Tx.reindex``). Synchronous: the answer comes when every resource was done, as a
``Parameters`` resource with the count per type. It works in batches of :data:`BATCH` resources
per writer unit, so other writes get the writer between batches instead of waiting for the
whole store. Not an R4 operation (there is none); the name is HAPI's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fhir_hub import definitions
from fhir_hub.errors import FhirError, error
from fhir_hub.rest.wire import CONTENT_TYPE_HEADER, Request, Response, dumps, parse_json
from fhir_hub.rest.write import check_type
from fhir_hub.storage.port import Store, Tx

#: Resources per writer unit.
BATCH = 500


def _batch(rtype: str, ids: Sequence[str]) -> Callable[[Tx], int]:
    return lambda tx: sum(tx.reindex(rtype, rid) for rid in ids)


async def reindex(store: Store, types: Sequence[str],
                  progress: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Reindex every live resource of ``types``; how many per type. ``progress(type, n)`` is
    called after each batch of ``n``.

    Resources are taken in id order after a keyset cursor: one created meanwhile is indexed by
    its own write, one deleted meanwhile is skipped.
    """
    counts: dict[str, int] = {}
    for rtype in types:
        done = 0
        after = None
        while ids := await store.find(rtype, [], BATCH, after):
            done += await store.transact(_batch(rtype, ids))
            after = ids[-1]
            if progress is not None:
                progress(rtype, len(ids))
        counts[rtype] = done
    return counts


def _check_body(req: Request) -> None:
    if not req.body.strip():
        return
    body = parse_json(req.body, "$reindex Parameters")
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters" or body.get("parameter"):
        raise FhirError(400, error("not-supported", "$reindex takes no parameters (an empty body or an empty "
                                   "Parameters resource)"))


def parameters_resource(counts: dict[str, int]) -> dict[str, Any]:
    """The answer: the total, then ``reindexed`` (type, count) for each type that had resources."""
    out: list[dict[str, Any]] = [{"name": "total", "valueInteger": sum(counts.values())}]
    out += [{"name": "reindexed", "part": [{"name": "type", "valueCode": rtype}, {"name": "count", "valueInteger": n}]}
            for rtype, n in counts.items() if n or len(counts) == 1]
    return {"resourceType": "Parameters", "parameter": out}


async def handle_reindex(hub: Any, req: Request, rtype: str | None) -> Response:
    if rtype is not None:
        check_type(rtype)
    _check_body(req)
    await hub.search_parameters.catch_up()  # what other processes defined counts too
    types = [rtype] if rtype is not None else sorted(definitions.resource_types())
    counts = await reindex(hub.store, types)
    return Response(200, dumps(parameters_resource(counts), req.param("_pretty") == "true"), [CONTENT_TYPE_HEADER])
