"""``GET|POST Encounter/[id]/$template-check``: which required items of its outpatient template a visit records.

A fhir-hub operation (no R4 OperationDefinition exists for it; :data:`DEFINITION` names ours). It
reads the Encounter, the Observations and Conditions whose ``encounter`` is it, and the Conditions
its ``diagnosis`` names, and runs :func:`fhir_hub.profiles.template_check.check`. Input:
``template`` (a template code; default the one ``Encounter.type`` or ``meta.profile`` names), in
the query or, for POST, a ``Parameters`` body. Output: ``200`` with a ``Parameters`` resource —
``template``, ``complete``, a ``present`` per recorded item (its code, name, ``required`` and the
resources), a ``missing`` per required item not recorded, and ``outcome`` (an OperationOutcome with
an error naming each missing item, Vietnamese first with ``Accept-Language: vi``). ``404`` for an
unknown Encounter, ``400`` when no template applies or the code is unknown.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_hub.errors import FhirError, error, invalid
from fhir_hub.profiles import template_check
from fhir_hub.profiles.registry import registry
from fhir_hub.rest.validate import language, outcome
from fhir_hub.rest.wire import CONTENT_TYPE_HEADER, Request, Response, dumps, parse_json, pretty
from fhir_hub.rest.write import check_id
from fhir_hub.search.query import Clause, ReferenceValue

__all__ = ["CAPABILITY", "DEFINITION", "handle_template_check"]

DEFINITION = "http://fhir.ehealth.gov.vn/core/OperationDefinition/Encounter-template-check"
CAPABILITY = {"name": "template-check", "definition": DEFINITION}
#: Most Observations or Conditions of one encounter read.
_LIMIT = 10_000


def _template_param(req: Request) -> str | None:
    code = req.param("template")
    if req.method == "POST" and req.body:
        body = parse_json(req.body)
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise invalid("$template-check: the body must be a Parameters resource", "Parameters")
        for p in body.get("parameter") or ():
            if isinstance(p, dict) and p.get("name") == "template":
                value = p.get("valueCode", p.get("valueString"))
                if not isinstance(value, str):
                    raise invalid("$template-check: 'template' is a code", "Parameters.parameter")
                code = value
    return code


async def _linked(hub: Any, rtype: str, eid: str) -> list[tuple[str, dict[str, Any]]]:
    ids = await hub.store.find(rtype, [Clause("encounter", "reference", (ReferenceValue(f"Encounter/{eid}"),))],
                               _LIMIT)
    return [(f"{rtype}/{v.rid}", orjson.loads(v.body)) for v in await hub.store.read_many(rtype, ids)
            if v.body is not None]


async def handle_template_check(hub: Any, req: Request, eid: str) -> Response:
    check_id(eid)
    code = _template_param(req)
    stored = await hub.store.read("Encounter", eid)
    if stored is None or stored.body is None:
        raise FhirError(404, error("not-found", f"Encounter/{eid} is not known"))
    encounter = orjson.loads(stored.body)
    reg = registry()
    template = None
    if code is not None:
        template = reg.template(code)
        if template is None:
            raise invalid(f"$template-check: no outpatient template {code!r}", "template")
    pairs = await _linked(hub, "Observation", eid) + await _linked(hub, "Condition", eid)
    have = {ref for ref, _ in pairs}
    named = [r.split("/", 1)[1] for d in encounter.get("diagnosis") or () if isinstance(d, dict)
             and isinstance(d.get("condition"), dict) and isinstance(r := d["condition"].get("reference"), str)
             and r.startswith("Condition/") and r not in have]
    if named:
        pairs += [(f"Condition/{v.rid}", orjson.loads(v.body)) for v in await hub.store.read_many("Condition", named)
                  if v.body is not None]
    names = {f"Encounter/{eid}", f"{req.base_url}/Encounter/{eid}"}
    try:
        result = template_check.check(encounter, pairs, names, template, reg)
    except LookupError as exc:
        raise invalid(f"$template-check: {exc}; give one with 'template'", "template") from None
    lang = language(req)
    issues = template_check.issues(result)
    answer = template_check.parameters(result, outcome(issues, lang), lang)
    return Response(200, dumps(answer, pretty(req)), [CONTENT_TYPE_HEADER])
