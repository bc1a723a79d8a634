"""HL7 v2 ADT^A40 (merge patient): the record named in MRG-1 is merged into the one in PID.

Why FHIR-natively and not a delete: the prior record keeps its history and everything that
points at it, but stops being current — R4 ``Patient.link`` ``replaced-by`` the surviving
record (named by its best identifier) and ``active = false``, as R4's "Patient linking" describes a merge.  The message's bundle
writes the surviving Patient as every ADT does (created unless one with its best identifier
exists) and a *conditional* FHIRPath PATCH of the prior one, found by the best identifier of
MRG-1 (personal ID, else BHYT card, else the facility's number), so the hub's id of either is
never needed.  A transaction is all or nothing: when the hub holds no prior record the PATCH
matches none and the server refuses the message (404), which the import reports.  The surviving
record is not changed when it exists already (no ``replaces`` link is added to it).

With reconciliation on (``FHIR_HUB_MPI=on``) the PATCH is also the MPI's merge: a source Patient
that newly says it is ``replaced-by`` another has its person (golden record) merged into the
survivor's (``fhir_hub.mpi.service.merge_replaced``), undone by ``$mpi-unmerge``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fhir_hub.mapping.engine import uuid5
from fhir_hub.mapping.functions import BadValue, Remark
from fhir_hub.mapping.v2_functions import v2_identifiers

__all__ = ["merge_entry"]

#: The identifier systems the prior record is found by, best first (as ``functions.patient_request``).
_KEYS_ORDER = ("national_id", "insurance_number", "patient-internal-id")


def _best(identifiers: list[dict[str, Any]]) -> dict[str, Any]:
    for key in _KEYS_ORDER:
        for ident in identifiers:
            if str(ident.get("system", "")).endswith(f"/sid/{key}"):
                return ident
    raise BadValue("no personal ID, BHYT card or patient number to find the record by")


def _literal(text: Any) -> str:
    """``text`` inside a FHIRPath string literal."""
    return str(text).replace("\\", "\\\\").replace("'", "\\'")


def _operation(kind: str, path: str, **more: Any) -> dict[str, Any]:
    parts = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    parts += [{"name": k, **v} if isinstance(v, dict) else {"name": k, "valueString": v} for k, v in more.items()]
    return {"name": "operation", "part": parts}


def merge_entry(prior: str, facility: str, survivor: dict[str, Any]) -> dict[str, Any]:
    """The transaction entry that retires the prior record (``prior``: MRG-1, CX repeating) in
    favour of ``survivor`` (the Patient made from PID).  The link names the survivor by its best
    identifier (a logical reference): the hub's transactions do not rewrite a ``urn:uuid:`` inside
    a PATCH's values, and a conditional reference there would be stored as text."""
    found = [i.value if isinstance(i, Remark) else i for i in v2_identifiers(prior, facility)]
    best = _best(found)
    kept = _best(survivor.get("identifier", []))
    patch = {"resourceType": "Parameters", "parameter": [
        _operation("delete", "Patient.active"),
        _operation("add", "Patient", name="active", value={"valueBoolean": False}),
        # the same merge again: its link replaced, not added twice
        _operation("delete", f"Patient.link.where(type = 'replaced-by' and other.identifier.system = "
                             f"'{kept['system']}' and other.identifier.value = '{_literal(kept['value'])}')"),
        _operation("add", "Patient", name="link", value={"part": [
            {"name": "other", "valueReference": {"identifier": {"system": kept["system"], "value": kept["value"]}}},
            {"name": "type", "valueCode": "replaced-by"}]}),
    ]}
    key = f"{best['system']}|{best['value']}"
    return {"fullUrl": f"urn:uuid:{uuid5(f'merge/{key}')}", "resource": patch,
            "request": {"method": "PATCH",
                        "url": f"Patient?identifier={best['system']}|{quote(str(best['value']), safe='')}"}}
