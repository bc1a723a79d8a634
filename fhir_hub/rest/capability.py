"""The CapabilityStatement at ``/metadata``, generated from what is implemented (capabilitystatement.html).

It claims only what the handlers do: every interaction listed here has a test; search lists
the parameters the index evaluates (core, and custom ones once registered).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_hub import FHIR_VERSION, __version__, definitions
from fhir_hub.rest.templates import CAPABILITY as TEMPLATE_CHECK
from fhir_hub.rest.terminology import CAPABILITY_OPERATIONS
from fhir_hub.rest.validate import DEFINITION as VALIDATE
from fhir_hub.search import extract, parameters

#: IPS's ``$summary`` (``rest/summary.py``: ``Patient/[id]/$summary`` and ``Patient/$summary?identifier=``).
SUMMARY = "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"
_TYPE_INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance", "history-type",
                      "create", "search-type"]


@cache
def _resources() -> list[dict[str, Any]]:
    out = []
    for rtype in sorted(definitions.resource_types()):
        params = [{"name": "_id", "type": "token"}]
        skipped = extract.unsupported(rtype)
        params += [{"name": sp.code, "type": sp.type, "definition": sp.url}
                   for sp in sorted(parameters.params_for(rtype).values(), key=lambda p: p.code)
                   if sp.code not in skipped and sp.code != "_id"]
        references = sorted(sp.code for sp in parameters.params_for(rtype).values()
                            if sp.type == "reference" and sp.code not in skipped)
        entry: dict[str, Any] = {
            "type": rtype,
            "interaction": [{"code": c} for c in _TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
            "conditionalDelete": "multiple",
            "referencePolicy": ["literal", "local", "enforced"],
            "searchInclude": ["*"] + [f"{rtype}:{code}" for code in references],
            "searchParam": params,
        }
        if rtype == "Patient":
            entry["operation"] = [{"name": "everything",
                                   "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
                                  {"name": "summary", "definition": SUMMARY}]
        if rtype in CAPABILITY_OPERATIONS:
            entry["operation"] = CAPABILITY_OPERATIONS[rtype]
        if rtype == "Encounter":
            entry["operation"] = [TEMPLATE_CHECK]
        out.append(entry)
    return out


parameters.on_change(_resources.cache_clear)  # custom SearchParameters are listed once registered


def capability_statement(base_url: str, released: str, security: dict[str, Any] | None = None) -> dict[str, Any]:
    """``security``: the ``rest.security`` element when authorization is on (``fhir_hub.auth``)."""
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": released,
        "publisher": "fhir-hub",
        "kind": "instance",
        "software": {"name": "fhir-hub", "version": __version__},
        "implementation": {"description": "fhir-hub FHIR R4 server", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "resource": _resources(),
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"},
                            {"code": "search-system"}],
            "operation": [{"name": "validate", "definition": VALIDATE}],
        }],
    }
    if security is not None:
        statement["rest"][0]["security"] = security
    return statement
