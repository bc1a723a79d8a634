"""An AuditEvent per FHIR access under a token (``FHIR_HUB_AUDIT=access``), shaped after IHE
Basic Audit Log Patterns (BALP) "RESTful activity", so who saw which patient's data can be
searched in standard FHIR.

Each event says: the interaction (``subtype``, from the RESTful interaction codes) and its
action (``R`` read, ``E`` search or operation, ``C`` ``U`` ``D`` writes), when, the outcome
(``0`` success, ``4`` refused or bad request, ``8`` server failure, with the HTTP status), the
client (``agent`` with the client_id) and the patient of a patient's token (``agent`` and
``entity`` role 1) or the patient the path names, the resource read, the query (``entity.query``,
the query string as sent: search values, never headers) and the token's ``jti`` as
``agent.policy`` (BALP's place for the token id; never the token). Requests without a valid
token are recorded too, with no agent but the network address.

The events are buffered and written by :class:`Auditor` in batches (one unit of work each,
about every half second), not in the unit of work of the access: a write's own AuditEvent is not
yet in the write's transaction (README: not built). The server writes them with ``Tx.put``; the
API cannot (``enforce.py`` refuses AuditEvent writes with auth on), and only stewards read them.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fhir_hub.rest.write import new_id

log = logging.getLogger("fhir_hub.audit")

AUDIT_TAG = {"system": "urn:fhir-hub:audit", "code": "access"}
# The codings the search index reads (AuditEvent type, entity-type, entity-role) carry system and
# code only: a display adds a ``:text`` row per coding to the index, 5 of an event's 22 rows, and
# about a quarter of the CPU of writing one (R4 and BALP leave Coding.display optional; the codes
# are those of the named code systems, whose displays are "Restful Operation", "Person", "System
# Object", "Patient", "Domain Resource" and "Query"). Shared by every event: nothing changes them.
_REST = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"}
_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_PERSON = {"system": _ENTITY_TYPE, "code": "1"}
_OBJECT = {"system": _ENTITY_TYPE, "code": "2"}
_PATIENT_ROLE = {"system": _ROLE, "code": "1"}
_RESOURCE_ROLE = {"system": _ROLE, "code": "4"}
_QUERY_ROLE = {"system": _ROLE, "code": "24"}
_SOURCE = {"observer": {"display": "fhir-hub"},
           "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                     "display": "Application Server"}]}
#: Events buffered before a write is started at once rather than at the next tick.
BATCH = 500
#: Seconds between writes of the buffer.
INTERVAL = 0.5


def interaction(method: str, seg: Sequence[str]) -> tuple[str, str]:
    """``(restful-interaction code, AuditEvent.action)`` of a request by its method and path."""
    n = len(seg)
    if method in ("GET", "HEAD"):
        if n == 2 and seg[1][:1] not in ("_", "$"):
            return "read", "R"
        if n == 4 and seg[2] == "_history":
            return "vread", "R"
        if seg and seg[-1] == "_history":
            return ("history-instance" if n == 3 else "history-type" if n == 2 else "history-system"), "R"
        if seg and seg[-1][:1] == "$":
            return "operation", "E"
        return ("search-system" if n == 0 else "search-type"), "E"
    if method == "POST":
        if n == 0:
            return "transaction", "E"
        if seg[-1] == "_search":
            return "search-type", "E"
        if seg[-1][:1] == "$":
            return "operation", "E"
        return "create", "C"
    if method == "DELETE":
        return "delete", "D"
    return ("patch" if method == "PATCH" else "update"), "U"


def _outcome(status: int) -> str:
    return "0" if status < 400 else "4" if status < 500 else "8"


def _patient_of(seg: Sequence[str]) -> str | None:
    return seg[1] if len(seg) >= 2 and seg[0] == "Patient" and seg[1][:1] not in ("_", "$") else None


def access_event(*, method: str, seg: Sequence[str], raw_query: str, status: int, recorded: str,
                 client_id: str | None, jti: str | None, patient: str | None, address: str | None) -> dict[str, Any]:
    """The AuditEvent of one access (pure). ``patient`` is the patient of a patient's token;
    ``client_id`` and ``jti`` are ``None`` when no valid token came with the request."""
    code, action = interaction(method, seg)
    agents: list[dict[str, Any]] = []
    network = {"address": address, "type": "2"} if address else None
    if client_id is not None:
        agent: dict[str, Any] = {"type": {"coding": [{"system": _DCM, "code": "110150", "display": "Application"}]},
                                 "who": {"identifier": {"system": "urn:fhir-hub:client", "value": client_id}},
                                 "requestor": patient is None, "policy": [jti] if jti else []}
        if network:
            agent["network"] = network
        agents.append(agent)
    if patient is not None:
        agents.append({"type": {"coding": [{"system": _DCM, "code": "110153", "display": "Source Role ID"}]},
                       "who": {"reference": f"Patient/{patient}"}, "requestor": True,
                       "policy": [jti] if jti else []})
    if not agents:
        agents.append({"who": {"display": "no valid token"}, "requestor": True,
                       **({"network": network} if network else {})})
    entities: list[dict[str, Any]] = []
    subject = patient or _patient_of(seg)
    if subject is not None:
        entities.append({"what": {"reference": f"Patient/{subject}"}, "type": _PERSON, "role": _PATIENT_ROLE})
    if len(seg) >= 2 and seg[1][:1] not in ("_", "$") and not (seg[0] == "Patient" and seg[1] == subject):
        entities.append({"what": {"reference": f"{seg[0]}/{seg[1]}"}, "type": _OBJECT, "role": _RESOURCE_ROLE})
    if raw_query:
        entities.append({"type": _OBJECT, "role": _QUERY_ROLE, "query": base64.b64encode(raw_query.encode()).decode()})
    event: dict[str, Any] = {
        "resourceType": "AuditEvent", "meta": {"tag": [AUDIT_TAG]}, "type": _REST,
        "subtype": [{"system": _INTERACTION, "code": code}], "action": action, "recorded": recorded,
        "outcome": _outcome(status), "outcomeDesc": f"HTTP {status} {method} /{'/'.join(seg)}",
        "agent": agents, "source": _SOURCE}
    if entities:
        event["entity"] = entities
    return event


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Auditor:
    """Buffers access events and writes them in batches through the store's writer."""

    def __init__(self, store: Any, batch: int = BATCH, interval: float = INTERVAL):
        self.store = store
        self.batch = batch
        self.interval = interval
        self._pending: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None

    def record(self, event: dict[str, Any]) -> None:
        self._pending.append(event)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        while self._pending:
            if len(self._pending) < self.batch:
                await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:  # logged by flush; the next events start a new drain
                return

    async def flush(self) -> None:
        """Write what is buffered now (a failure is logged with the count lost, then raised)."""
        events, self._pending = self._pending, []
        if not events:
            return

        def write(tx: Any) -> None:
            for event in events:
                rid = new_id()
                tx.put("AuditEvent", rid, {**event, "id": rid}, "POST", fresh=True)

        try:
            await self.store.transact(write)
        except Exception:
            log.exception("%d access AuditEvents could not be written", len(events))
            raise

    async def close(self) -> None:
        """Write everything still buffered (at shutdown, before the store closes)."""
        self.interval = 0
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()


__all__ = ["AUDIT_TAG", "Auditor", "access_event", "interaction", "now"]
