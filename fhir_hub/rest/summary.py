"""``Patient/[id]/$summary`` and ``Patient/$summary?identifier=``: the patient summary as an
IPS-shaped document Bundle.

A citizen's e-health book shows one page per person: what they suffer from, are allergic to and
take, then vaccinations, results, vital signs, procedures and visits, and what the Vietnamese
book adds (insurance cards, re-visit appointments, referrals). The document is built from the
patient's compartment (the R4 Patient CompartmentDefinition, as ``$everything`` uses it) and,
with reconciliation on, from every source record linked to the golden record, so an app needs
one request and no knowledge of how the hub stores a person.

Shape (IPS, ``http://hl7.org/fhir/uv/ips``): a ``document`` Bundle whose first entry is a
Composition of LOINC 60591-5; Problems, Allergies and Medications sections are always there,
with entries or an ``emptyReason`` and a narrative saying so; the other sections only when they
have entries. Titles and narratives are in Vietnamese (``Composition.language`` ``vi``), codes
keep their displays. The document is made on request and not stored.

Section choice is the pure function :func:`compose`; :func:`handle_summary` does the reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

import orjson

from fhir_hub import definitions
from fhir_hub.errors import FhirError, error
from fhir_hub.rest.wire import CONTENT_TYPE_HEADER, Request, Response, dumps
from fhir_hub.rest.write import check_id
from fhir_hub.search.parse import parse
from fhir_hub.search.query import Clause, ReferenceValue

LOINC = "http://loinc.org"
EMPTY_REASON = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
#: SNOMED CT "Patient referral": the category the QĐ 130 Bảng 13 mapping gives a referral paper.
REFERRAL = "3457005"
#: Parameters the instance operation accepts (IPS's ``profile`` is not supported; ``identifier``
#: is the type-level form's).
_ACCEPTED = frozenset({"_pretty", "_format"})
_GONE = frozenset({"entered-in-error"})

Resource = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Section:
    """One section of the summary: which resources go in it and how a line of it reads."""

    code: str
    display: str
    title: str
    types: tuple[str, ...]
    #: Always present (with an emptyReason when there is nothing).
    required: bool = False
    keep: Callable[[Resource], bool] = lambda r: True


def _status_ok(r: Resource) -> bool:
    if r.get("status") in _GONE:
        return False
    verification = _codes(r.get("verificationStatus"))
    return "entered-in-error" not in verification


def _codes(concept: Any) -> set[str]:
    if not isinstance(concept, dict):
        return set()
    return {str(c["code"]) for c in concept.get("coding") or () if isinstance(c, dict) and c.get("code")}


def _category(r: Resource) -> set[str]:
    found: set[str] = set()
    for concept in r.get("category") or ():
        found |= _codes(concept)
    return found


def _active_problem(r: Resource) -> bool:
    return _status_ok(r) and not (_codes(r.get("clinicalStatus")) & {"inactive", "resolved", "remission"})


def _past_problem(r: Resource) -> bool:
    return _status_ok(r) and bool(_codes(r.get("clinicalStatus")) & {"inactive", "resolved", "remission"})


def _vital(r: Resource) -> bool:
    return _status_ok(r) and "vital-signs" in _category(r)


def _result(r: Resource) -> bool:
    if not _status_ok(r):
        return False
    if r.get("resourceType") == "DiagnosticReport":
        return True
    cats = _category(r)
    return bool(cats & {"laboratory", "imaging", "procedure"}) or not cats


def _upcoming(r: Resource) -> bool:
    return r.get("status") in ("proposed", "pending", "booked", "arrived", "checked-in", "waitlist")


def _referral(r: Resource) -> bool:
    return _status_ok(r) and REFERRAL in _category(r) | _codes(r.get("code"))


def _coverage(r: Resource) -> bool:
    return r.get("status") not in ("cancelled", "entered-in-error")


SECTIONS: tuple[Section, ...] = (
    Section("11450-4", "Problem list - Reported", "Vấn đề sức khỏe", ("Condition",), True, _active_problem),
    Section("48765-2", "Allergies and adverse reactions Document", "Dị ứng và phản ứng có hại",
            ("AllergyIntolerance",), True, _status_ok),
    Section("10160-0", "History of Medication use Narrative", "Thuốc đang và đã dùng",
            ("MedicationStatement", "MedicationRequest"), True, _status_ok),
    Section("11369-6", "History of Immunization Narrative", "Tiêm chủng", ("Immunization",), keep=_status_ok),
    Section("30954-2", "Relevant diagnostic tests/laboratory data Narrative", "Kết quả xét nghiệm, cận lâm sàng",
            ("Observation", "DiagnosticReport"), keep=_result),
    Section("8716-3", "Vital signs", "Dấu hiệu sinh tồn", ("Observation",), keep=_vital),
    Section("47519-4", "History of Procedures Document", "Thủ thuật, phẫu thuật", ("Procedure",), keep=_status_ok),
    Section("11348-0", "History of Past illness Narrative", "Bệnh đã khỏi", ("Condition",), keep=_past_problem),
    Section("46240-8", "History of Hospitalizations+Outpatient visits Narrative", "Lần khám, điều trị",
            ("Encounter",), keep=_status_ok),
    Section("48768-6", "Payment sources Document", "Thẻ bảo hiểm y tế (BHYT)", ("Coverage",), keep=_coverage),
    Section("18776-5", "Plan of care note", "Lịch hẹn tái khám", ("Appointment",), keep=_upcoming),
    Section("42349-1", "Reason for referral (narrative)", "Giấy chuyển tuyến", ("ServiceRequest",),
            keep=_referral),
)

#: Types read from the compartment, in the order of the sections.
TYPES: tuple[str, ...] = tuple(dict.fromkeys(t for s in SECTIONS for t in s.types))

_DATE_PATHS: dict[str, tuple[str, ...]] = {
    "Condition": ("onsetDateTime", "recordedDate", "onsetPeriod.start"),
    "AllergyIntolerance": ("recordedDate", "onsetDateTime"),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod.start", "dateAsserted"),
    "MedicationRequest": ("authoredOn",),
    "Immunization": ("occurrenceDateTime", "recorded"),
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "Procedure": ("performedDateTime", "performedPeriod.start"),
    "Encounter": ("period.start",),
    "Coverage": ("period.end", "period.start"),
    "Appointment": ("start", "requestedPeriod.start"),
    "ServiceRequest": ("authoredOn", "occurrenceDateTime"),
}


def _path(r: Resource, path: str) -> Any:
    value: Any = r
    for part in path.split("."):
        if isinstance(value, list):
            value = value[0] if value else None
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def when(r: Resource) -> str:
    """The date a line of the summary shows and sorts by (most recent first), ``""`` if none."""
    for path in _DATE_PATHS.get(str(r.get("resourceType")), ()):
        value = _path(r, path)
        if isinstance(value, str):
            return value
    return ""


def concept_text(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    if isinstance(concept.get("text"), str):
        return str(concept["text"])
    for coding in concept.get("coding") or ():
        if isinstance(coding, dict) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding.get("code"))
    return ""


def _value(r: Resource) -> str:
    q = r.get("valueQuantity")
    if isinstance(q, dict) and "value" in q:
        return f"{q['value']} {q.get('unit') or q.get('code') or ''}".strip()
    if isinstance(r.get("valueString"), str):
        return str(r["valueString"])
    return concept_text(r.get("valueCodeableConcept"))


def what(r: Resource, medications: dict[str, Resource]) -> str:
    """What a line of the summary says about ``r``."""
    rtype = r.get("resourceType")
    if rtype in ("MedicationStatement", "MedicationRequest"):
        ref = _path(r, "medicationReference")
        if isinstance(ref, dict):
            med = medications.get(str(ref.get("reference", "")))
            return concept_text(med.get("code")) if med else str(ref.get("display") or ref.get("reference") or "")
        return concept_text(r.get("medicationCodeableConcept"))
    if rtype == "Immunization":
        return concept_text(r.get("vaccineCode"))
    if rtype == "Observation":
        value = _value(r)
        return concept_text(r.get("code")) + (f": {value}" if value else "")
    if rtype == "Encounter":
        return concept_text(_path(r, "type")) or concept_text(_path(r, "serviceType")) or \
            str(_path(r, "class.display") or _path(r, "class.code") or "")
    if rtype == "Coverage":
        number = r.get("subscriberId") or _path(r, "identifier.value") or ""
        return " ".join(x for x in (concept_text(r.get("type")), str(number)) if x)
    if rtype == "Appointment":
        return str(r.get("description") or concept_text(_path(r, "serviceType")) or concept_text(
            _path(r, "reasonCode")))
    if rtype == "ServiceRequest":
        to = _path(r, "performer")
        dest = (to.get("display") or _path(to, "identifier.value")) if isinstance(to, dict) else None
        return concept_text(r.get("code")) + (f" → {dest}" if dest else "")
    return concept_text(r.get("code"))


def _narrative(title: str, rows: list[tuple[str, str]]) -> dict[str, str]:
    if not rows:
        body = "<p>Không có thông tin.</p>"
    else:
        body = "<table><thead><tr><th>Nội dung</th><th>Ngày</th></tr></thead><tbody>" + "".join(
            f"<tr><td>{escape(text)}</td><td>{escape(date)}</td></tr>" for text, date in rows) + "</tbody></table>"
    return {"status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><h3>{escape(title)}</h3>{body}</div>'}


def _coding(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": display}]}


def compose(patient: Resource, resources: Iterable[Resource], medications: dict[str, Resource], base_url: str,
            now: str, document_id: str, author_id: str, extra_patients: Iterable[Resource] = ()) -> Resource:
    """The summary document of ``patient`` from the resources of its compartment (pure).

    ``medications`` are the Medication resources the medication lines name, by ``Medication/id``;
    ``extra_patients`` the linked source records of a golden record (their identifiers are the
    person's too). ``now`` is the document's instant, ``document_id`` and ``author_id`` uuids.
    """
    by_type: dict[str, list[Resource]] = {}
    for r in resources:
        by_type.setdefault(str(r.get("resourceType")), []).append(r)
    sections: list[Resource] = []
    included: dict[str, Resource] = {}
    for s in SECTIONS:
        members = sorted((r for t in s.types for r in by_type.get(t, ()) if s.keep(r)),
                         key=lambda r: (when(r), str(r.get("resourceType")), str(r.get("id"))), reverse=True)
        if not members and not s.required:
            continue
        section: Resource = {"title": s.title, "code": _coding(LOINC, s.code, s.display),
                             "text": _narrative(s.title, [(what(r, medications), when(r)) for r in members])}
        if members:
            section["entry"] = [{"reference": f"{r['resourceType']}/{r['id']}"} for r in members]
            for r in members:
                included[f"{r['resourceType']}/{r['id']}"] = r
        else:
            section["emptyReason"] = _coding(EMPTY_REASON, "unavailable", "Unavailable")
        sections.append(section)
    for r in list(included.values()):
        ref = _path(r, "medicationReference.reference")
        if isinstance(ref, str) and ref in medications:
            included[ref] = medications[ref]
    pid = patient["id"]
    name = _person_name(patient)
    composition: Resource = {
        "resourceType": "Composition", "id": document_id, "language": "vi", "status": "final",
        "type": _coding(LOINC, "60591-5", "Patient summary Document"),
        "subject": {"reference": f"Patient/{pid}", **({"display": name} if name else {})},
        "date": now, "author": [{"reference": f"urn:uuid:{author_id}"}],
        "title": "Tóm tắt hồ sơ sức khỏe" + (f" - {name}" if name else ""),
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>' + escape(
            "Tóm tắt hồ sơ sức khỏe" + (f" của {name}" if name else "")) + "</p>" + _identifiers_html(
            [patient, *extra_patients]) + "</div>"},
        "section": sections,
    }
    author: Resource = {"resourceType": "Device", "id": author_id,
                        "deviceName": [{"name": "fhir-hub", "type": "user-friendly-name"}]}
    entries = [{"fullUrl": f"urn:uuid:{document_id}", "resource": composition},
               {"fullUrl": f"{base_url}/Patient/{pid}", "resource": patient},
               *({"fullUrl": f"{base_url}/Patient/{p['id']}", "resource": p} for p in extra_patients),
               *({"fullUrl": f"{base_url}/{key}", "resource": r} for key, r in included.items()),
               {"fullUrl": f"urn:uuid:{author_id}", "resource": author}]
    return {"resourceType": "Bundle", "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{document_id}"},
            "type": "document", "timestamp": now, "entry": entries}


def _person_name(patient: Resource) -> str:
    for name in patient.get("name") or ():
        if isinstance(name, dict):
            if isinstance(name.get("text"), str):
                return str(name["text"])
            parts = [name.get("family"), *(name.get("given") or ())]
            text = " ".join(p for p in parts if isinstance(p, str))
            if text:
                return text
    return ""


def _identifiers_html(patients: list[Resource]) -> str:
    """The person's identifiers (citizen id, BHYT number, hospital record numbers) as a list."""
    seen: dict[tuple[str, str], str] = {}
    for p in patients:
        for ident in p.get("identifier") or ():
            if isinstance(ident, dict) and isinstance(ident.get("value"), str):
                label = concept_text(ident.get("type")) or str(ident.get("system") or "")
                seen.setdefault((str(ident.get("system") or ""), ident["value"]), label)
    if not seen:
        return ""
    return "<ul>" + "".join(f"<li>{escape(label)}: {escape(value)}</li>"
                            for (_, value), label in seen.items()) + "</ul>"


async def _compartment(hub: Any, pids: tuple[str, ...]) -> list[Resource]:
    """The resources of the section types whose compartment parameters name one of ``pids``."""
    target = tuple(ReferenceValue(f"Patient/{p}") for p in pids)
    members = definitions.compartments()["Patient"]
    out: list[Resource] = []
    for rtype in TYPES:
        ids: set[str] = set()
        for param in members.get(rtype, ()):
            ids.update(await hub.store.find(rtype, [Clause(param, "reference", target)], 100_000))
        if ids:
            out.extend(orjson.loads(v.body) for v in await hub.store.read_many(rtype, sorted(ids))
                       if v.body is not None)
    return out


async def _medications(hub: Any, resources: list[Resource]) -> dict[str, Resource]:
    ids = sorted({ref[len("Medication/"):] for r in resources
                  if isinstance(ref := _path(r, "medicationReference.reference"), str)
                  and ref.startswith("Medication/") and "/" not in ref[len("Medication/"):]})
    if not ids:
        return {}
    return {f"Medication/{v.rid}": orjson.loads(v.body) for v in await hub.store.read_many("Medication", ids)
            if v.body is not None}


async def handle_summary(hub: Any, req: Request, pid: str) -> Response:
    """``Patient/[id]/$summary``."""
    check_id(pid)
    for name, _ in req.query:
        if name not in _ACCEPTED:
            raise FhirError(400, error("not-supported", f"Patient/[id]/$summary takes no parameter {name!r}", name))
    return await _summary(hub, req, pid)


async def handle_summary_by_identifier(hub: Any, req: Request) -> Response:
    """``Patient/$summary?identifier=system|value``: the summary of the one Patient with that identifier."""
    asked = [value for name, value in req.query if name == "identifier"]
    for name, _ in req.query:
        if name not in _ACCEPTED and name != "identifier":
            raise FhirError(400, error("not-supported", f"Patient/$summary takes identifier, not {name!r}", name))
    if len(asked) != 1 or not asked[0]:
        raise FhirError(400, error("required", "Patient/$summary needs one identifier (system|value) naming the "
                                   "patient; or ask Patient/[id]/$summary", "identifier"))
    q = parse(["Patient"], [("identifier", asked[0])], base_url=req.base_url, strict=True)
    ids = await hub.store.find("Patient", list(q.criteria_for("Patient")), 2)
    if not ids:
        raise FhirError(404, error("not-found", f"no Patient has the identifier {asked[0]!r}", "identifier"))
    if len(ids) > 1:
        raise FhirError(400, error("multiple-matches", f"several Patients have the identifier {asked[0]!r}; ask "
                                   "Patient/[id]/$summary", "identifier"))
    return await _summary(hub, req, ids[0])


async def _summary(hub: Any, req: Request, pid: str) -> Response:
    found = await hub.store.read("Patient", pid)
    if found is None or found.body is None:
        raise FhirError(404, error("not-found", f"Patient/{pid} is not known"))
    patient = orjson.loads(found.body)
    pids: tuple[str, ...] = (pid,)
    if hub.settings.mpi:  # a golden record: its sources' data too
        from fhir_hub.mpi import expand

        pids = expand.members(pid, patient)
    linked = []
    if len(pids) > 1:
        linked = [orjson.loads(v.body) for v in await hub.store.read_many("Patient", list(pids[1:]))
                  if v.body is not None]
    resources = await _compartment(hub, pids)
    medications = await _medications(hub, resources)
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    doc = compose(patient, resources, medications, req.base_url, now, str(uuid.uuid4()), str(uuid.uuid4()),
                  linked)
    return Response(200, dumps(doc, req.param("_pretty") == "true"), [CONTENT_TYPE_HEADER])


__all__ = ["SECTIONS", "compose", "handle_summary", "handle_summary_by_identifier"]
