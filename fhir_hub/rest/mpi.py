"""Patient reconciliation over HTTP: ``Patient/$match`` and the stewardship operations.

* ``POST [base]/Patient/$match`` (patient-operation-match.html): a ``Parameters`` with
  ``resource`` (a Patient), ``onlyCertainMatches`` and ``count``; answers a searchset Bundle of
  golden records, each with ``search.score`` and the ``match-grade`` extension.
* ``GET [base]/$mpi-review[?_count=N]``: the open review items (``Basic``, searchset).
* ``POST [base]/Patient/$mpi-link`` (``source``, ``golden``), ``$mpi-unlink`` (``source``
  [, ``golden``: reject that review]), ``$mpi-merge`` (``from``, ``into``), ``$mpi-unmerge``
  (``from``), ``$mpi-explain`` (``patient``): a ``Parameters`` in (``actor`` optional), a
  ``Parameters`` out. Each runs as one unit on the writer (``fhir_hub/mpi/service.py``).

All of them need ``FHIR_HUB_MPI=on``; otherwise they answer 404.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from fhir_hub.errors import FhirError, error
from fhir_hub.mpi import service
from fhir_hub.rest.wire import CONTENT_TYPE_HEADER, Request, Response, dumps, parse_json, require_json_body
from fhir_hub.storage.port import Tx

MATCH_GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"
OPERATIONS = ("$match", "$mpi-link", "$mpi-unlink", "$mpi-merge", "$mpi-unmerge", "$mpi-explain")
DEFAULT_ACTOR = "steward (API)"


def _require_on(hub: Any) -> None:
    if not hub.settings.mpi:
        raise FhirError(404, error("not-supported", "patient reconciliation is off (set FHIR_HUB_MPI=on)"))


def _parameters(req: Request) -> dict[str, Any]:
    require_json_body(req)
    body = parse_json(req.body)
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FhirError(400, error("invalid", "the operation expects a Parameters resource", "resourceType"))
    return body


def _param(params: dict[str, Any], name: str) -> dict[str, Any] | None:
    for p in params.get("parameter") or ():
        if isinstance(p, dict) and p.get("name") == name:
            return p
    return None


def _patient_id(params: dict[str, Any], name: str, required: bool = True) -> str | None:
    """A ``Patient/id`` reference, string or bare id in parameter ``name``."""
    p = _param(params, name)
    if p is None:
        if required:
            raise FhirError(400, error("required", f"parameter {name!r} is required", f"Parameters.parameter[{name}]"))
        return None
    value = p.get("valueReference", {}).get("reference") if "valueReference" in p else p.get("valueString")
    if not isinstance(value, str) or not value:
        raise FhirError(400, error("invalid", f"parameter {name!r} must be a Patient reference or id"))
    return value.split("/", 1)[1] if value.startswith("Patient/") else value


def _need(params: dict[str, Any], name: str) -> str:
    found = _patient_id(params, name)
    assert found is not None
    return found


def _value(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"name": name, "valueBoolean": value}
    if isinstance(value, int | float):
        return {"name": name, "valueDecimal": value}
    if isinstance(value, dict):
        return {"name": name, "part": [p for k, v in value.items() for p in _values(k, v)]}
    return {"name": name, "valueString": str(value)}


def _values(name: str, value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [p for v in value for p in _values(name, v)]
    return [_value(name, value)]


def as_parameters(result: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [p for k, v in result.items() for p in _values(k, v)]}


def _json(payload: dict[str, Any], req: Request) -> Response:
    return Response(200, dumps(payload, req.param("_pretty") == "true"), [CONTENT_TYPE_HEADER])


async def handle_review(hub: Any, req: Request) -> Response:
    _require_on(hub)
    raw = req.param("_count") or "50"
    if not raw.isdigit():
        raise FhirError(400, error("invalid", f"_count {raw!r} is not a number", "_count"))
    count = min(int(raw), hub.settings.max_count)
    items = await hub.store.transact(lambda tx: service.reviews(tx, count))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(items),
                              "entry": [{"fullUrl": f"{req.base_url}/Basic/{b['id']}", "resource": b,
                                         "search": {"mode": "match"}} for b in items]}
    return _json(bundle, req)


def _match(hub: Any, req: Request, params: dict[str, Any]) -> Callable[[Tx], Any]:
    p = _param(params, "resource")
    patient = p.get("resource") if p else None
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
        raise FhirError(400, error("required", "parameter 'resource' must hold a Patient", "Parameters.parameter"))
    only = _param(params, "onlyCertainMatches")
    only_certain = bool(only.get("valueBoolean")) if only else False
    count_p = _param(params, "count")
    count = count_p.get("valueInteger") if count_p else None
    if count is not None and (not isinstance(count, int) or count < 1):
        raise FhirError(400, error("invalid", "parameter 'count' must be a positive integer"))

    def run(tx: Tx) -> dict[str, Any]:
        scored = [s for s in service.candidates(tx, patient) if s.grade != "certainly-not"]
        if only_certain:
            scored = [s for s in scored if s.grade == "certain"]
        scored = scored[: count or 10]
        entries = []
        for s in scored:
            v = tx.current("Patient", s.golden)
            if v is None or v.body is None:
                continue
            entries.append({"fullUrl": f"{req.base_url}/Patient/{s.golden}", "resource": orjson.loads(v.body),
                            "search": {"extension": [{"url": MATCH_GRADE, "valueCode": s.grade}],
                                       "mode": "match", "score": s.score}})
        return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}

    return run


async def handle(hub: Any, req: Request, name: str) -> Response:
    """``POST Patient/<name>`` for one of :data:`OPERATIONS`."""
    _require_on(hub)
    params = _parameters(req)
    actor_p = _param(params, "actor")
    actor = str(actor_p.get("valueString")) if actor_p and actor_p.get("valueString") else DEFAULT_ACTOR
    run: Callable[[Tx], Any]
    if name == "$match":
        return _json(await hub.store.transact(_match(hub, req, params)), req)
    if name == "$mpi-link":
        source, golden = _need(params, "source"), _need(params, "golden")
        run = lambda tx: service.link(tx, source, golden, actor)  # noqa: E731
    elif name == "$mpi-unlink":
        source, maybe = _need(params, "source"), _patient_id(params, "golden", required=False)
        run = lambda tx: service.unlink(tx, source, maybe, actor)  # noqa: E731
    elif name == "$mpi-merge":
        src, into = _need(params, "from"), _need(params, "into")
        run = lambda tx: service.merge(tx, src, into, actor)  # noqa: E731
    elif name == "$mpi-unmerge":
        src = _need(params, "from")
        run = lambda tx: service.unmerge(tx, src, actor)  # noqa: E731
    else:
        patient = _need(params, "patient")
        run = lambda tx: service.explain(tx, patient)  # noqa: E731
    return _json(as_parameters(await hub.store.transact(run)), req)
