"""HL7 v2.x messages → FHIR R4 transaction bundles (one per message).

Supported: ADT^A01 / A04 / A08 (MSH, PID, PV1, PV2, IN1 → Organization, Patient, Encounter,
Coverage), ADT^A40 (merge: PID's Patient, and the prior one of MRG-1 retired by a conditional
PATCH, :mod:`.merge`) and ORU^R01 (PID, PV1, OBR, OBX → Patient, Encounter, Observations, one DiagnosticReport
per OBR).  Parsing is python-hl7's (``hl7.parse``); the mapping is the declarative spec in
``fhir_hub/mappings/hl7v2`` run by :mod:`.engine`, with the v2 functions of :mod:`.v2_functions`.

Each segment becomes a record of ``SEG-n`` (whole field, standard separators ``^~&``) and
``SEG-n.m`` (component m of the first repetition), each component unescaped (``\\F\\`` → ``|``…).
PV2 is merged into PV1's record, each OBX gets its OBR's fields (and ``$order``, the OBR's
position), and MSH-9.2 (the event) is given to PV1.

A file may hold several messages (segments separated by CR, LF or CRLF; MLLP framing bytes are
dropped); each message starts at an ``MSH``.  Errors are values per message, segment and field:
an unparseable message, an unsupported type, a message without PID are that message's fatal
problems; a bad field leaves its element out (a warning or error naming ``PID-7``); the other
messages import.  The bundle holds a Binary with the message as sent and a Provenance.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import hl7

from fhir_hub.mapping.claims_xml import VN_TZ
from fhir_hub.mapping.engine import Built, Problem, Spec, instantiate, load_spec
from fhir_hub.mapping.functions import BadValue
from fhir_hub.mapping.merge import merge_entry
from fhir_hub.mapping.records import FileRecords, RecordResult, assemble, validate_entries

__all__ = ["SUPPORTED", "map_messages"]

#: message type^event → the segments read (others are listed as not mapped).
SUPPORTED: dict[str, frozenset[str]] = {
    "ADT^A01": frozenset({"MSH", "EVN", "PID", "PV1", "PV2", "IN1"}),
    "ADT^A04": frozenset({"MSH", "EVN", "PID", "PV1", "PV2", "IN1"}),
    "ADT^A08": frozenset({"MSH", "EVN", "PID", "PV1", "PV2", "IN1"}),
    "ADT^A40": frozenset({"MSH", "EVN", "PID", "MRG", "PV1"}),
    "ORU^R01": frozenset({"MSH", "PID", "PV1", "PV2", "ORC", "OBR", "OBX"}),
}
_SEGMENT_BREAK = re.compile(r"\r\n|\r|\n")
_CONTENT_TYPE = "x-application/hl7-v2+er7"


def _render(value: Any, message: hl7.Message, depth: int = 0) -> str:
    """A parsed field (nested lists) back to text with the standard separators, leaves unescaped."""
    if isinstance(value, str):
        return str(message.unescape(value)) if "\\" in value else value
    seps = ("~", "^", "&", "&")
    return seps[min(depth, 3)].join(_render(v, message, depth + 1) for v in value)


def _segment_record(seg: hl7.Segment, message: hl7.Message) -> dict[str, str]:
    name = str(seg[0])
    out: dict[str, str] = {}
    start = 3 if name == "MSH" else 1  # MSH-1 / MSH-2 are the separators
    for n in range(start, len(seg)):
        field = seg[n]
        text = _render(field, message) if not isinstance(field, str) else field
        if not text:
            continue
        out[f"{name}-{n}"] = text
        first = text.split("~")[0]
        if "^" in first:
            for m, comp in enumerate(first.split("^"), 1):
                if comp:
                    out[f"{name}-{n}.{m}"] = comp
    return out


def _split_messages(text: str) -> list[list[str]]:
    text = text.replace("\x0b", "").replace("\x1c", "")
    messages: list[list[str]] = []
    for line in _SEGMENT_BREAK.split(text):
        line = line.strip("\x00")
        if not line.strip():
            continue
        if line.startswith("MSH") or not messages:
            messages.append([])
        messages[-1].append(line)
    return messages


def _unmapped(spec: Spec, tables: Mapping[str, list[dict[str, str]]]) -> dict[str, list[str]]:
    """Fields no rule reads; a whole field counts as read when one of its components is, and
    the other way round."""
    out: dict[str, list[str]] = {}
    for name, records in tables.items():
        tspec = spec.tables.get(name)
        used = tspec.used_fields() if tspec else frozenset()
        fields_used = {u.split(".")[0] for u in used}
        names = sorted({k for rec in records for k, v in rec.items()
                        if v and k[0] != "$" and k.startswith(name + "-") and k not in used
                        and k.split(".")[0] not in fields_used and k not in ("OBR", "PV2")})
        if names:
            out[name] = names
    return out


def _map_message(index: int, lines: list[str], spec: Spec, name: str, sha: str, recorded: str) -> RecordResult:
    problems: list[Problem] = []
    raw = "\r".join(lines)
    label = f"message {index}"
    if not lines[0].startswith("MSH"):
        problems.append(Problem("fatal", "structure", "does not start with an MSH segment: not imported", lines[0][:3]))
        return RecordResult(index, label, None, problems)
    try:
        message = hl7.parse(raw)
    except Exception as exc:  # noqa: BLE001 - python-hl7 raises several kinds on malformed input
        problems.append(Problem("fatal", "structure", f"not a parseable HL7 v2 message ({type(exc).__name__}: "
                                f"{exc}): not imported", "MSH"))
        return RecordResult(index, label, None, problems)
    segments = [(str(seg[0]), _segment_record(seg, message)) for seg in message]
    msh = segments[0][1]
    control = msh.get("MSH-10", "")
    label = f"message {index}" + (f" (MSH-10 {control})" if control else "")
    kind = f"{msh.get('MSH-9.1', msh.get('MSH-9', ''))}^{msh.get('MSH-9.2', '')}"
    if kind not in SUPPORTED:
        problems.append(Problem("fatal", "not-supported", f"message type {kind!r} is not mapped (supported: "
                                f"{', '.join(SUPPORTED)}): not imported", "MSH", "MSH-9", msh.get("MSH-9")))
        return RecordResult(index, label, None, problems)
    facility = msh.get("MSH-4.1") or msh.get("MSH-4", "")
    if not facility:
        problems.append(Problem("fatal", "required", "no sending facility (MSH-4): not imported", "MSH", "MSH-4"))
        return RecordResult(index, label, None, problems)
    tables: dict[str, list[dict[str, str]]] = {"MSH": [msh]}
    order = 0
    obr: dict[str, str] = {}
    for n, (seg, rec) in enumerate(segments[1:], 2):
        if seg not in SUPPORTED[kind]:
            problems.append(Problem("information", "not-supported", "segment not mapped; kept in the Binary", seg,
                                    None, None, str(n)))
            continue
        if seg == "PV2":
            if "PV1" in tables:
                tables["PV1"][0].update(rec)
            continue
        if seg == "OBR":
            order += 1
            obr = rec
            continue
        if seg == "OBX":
            if not obr:
                problems.append(Problem("error", "structure", "OBX before any OBR: skipped", seg, None, None, str(n)))
                continue
            rec = {**obr, **rec, "$order": str(order), "STT": f"{order}.{rec.get('OBX-1') or n}"}
        if seg == "PV1":
            rec["MSH-9.2"] = msh.get("MSH-9.2", "")
        if seg in ("PID", "PV1", "MRG") and seg in tables:
            problems.append(Problem("error", "structure", "a second segment of this kind is skipped", seg, None, None,
                                    str(n)))
            continue
        tables.setdefault(seg, []).append(rec)
    if "PID" not in tables:
        problems.append(Problem("fatal", "required", "the message has no PID segment: not imported", "PID"))
        return RecordResult(index, label, None, problems)
    pv1 = tables.get("PV1", [{}])[0]
    obrs = tables.get("OBX", [{}])
    visit = pv1.get("PV1-19.1") or pv1.get("PV1-19") or obrs[0].get("OBR-3.1") or obrs[0].get("OBR-3") or control
    key = visit or f"{name}#{index}"
    built, mapped = instantiate(spec, tables, facility, f"hl7v2/{key}")
    problems += mapped
    result = RecordResult(index, label, None, problems, _unmapped(spec, tables))
    entries = assemble(built, raw.encode("utf-8"), _CONTENT_TYPE, f"hl7v2/{facility}/{key}/{control}",
                       f"Import of an HL7 v2 {kind} message", name, sha, recorded)
    if kind == "ADT^A40":
        merge = _merge(tables, facility, built, problems)
        if merge is None:
            return result
        entries.append(merge)
    if validate_entries(entries, problems):
        result.bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return result


def _merge(tables: Mapping[str, list[dict[str, str]]], facility: str, built: list[Built],
           problems: list[Problem]) -> dict[str, Any] | None:
    """ADT^A40's PATCH of the prior record (MRG-1); None, with a fatal problem, when there is none
    to find it by: a merge that cannot be done is not imported half."""
    prior = (tables.get("MRG") or [{}])[0].get("MRG-1", "")
    survivor = next((b.resource for b in built if b.rule == "patient"), None)
    if not prior or survivor is None:
        problems.append(Problem("fatal", "required", "ADT^A40 without MRG-1 (the prior patient's identifiers) or "
                                "a Patient from PID: not imported", "MRG", "MRG-1"))
        return None
    try:
        return merge_entry(prior, facility, survivor)
    except BadValue as exc:
        problems.append(Problem("fatal", "value", f"MRG-1 or PID-3: {exc.reason}: not imported", "MRG", "MRG-1",
                                prior))
        return None


def _locate(record: RecordResult | None, p: Problem) -> str:
    parts = [record.label] if record is not None else []
    if p.table:
        parts.append(f"{p.table}" + (f"[{p.line}]" if p.line else ""))
    if p.field:
        parts.append(p.field)
    return " / ".join(parts)


def map_messages(data: bytes, name: str = "messages.hl7", recorded: str | None = None) -> FileRecords:
    """Map every message of one file.  ``recorded`` as in :func:`.claims_xml.map_file`."""
    recorded = recorded or datetime.now(VN_TZ).replace(microsecond=0).isoformat()
    result = FileRecords(name, locate=_locate)
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError as exc:
        result.problems.append(Problem("fatal", "structure", f"not UTF-8 ({exc}); set MSH-18 to UNICODE UTF-8 "
                                       "and send UTF-8: nothing imported"))
        return result
    messages = _split_messages(text)
    if not messages:
        result.problems.append(Problem("fatal", "structure", "no HL7 v2 message in the file: nothing imported"))
        return result
    spec = load_spec("hl7v2")
    sha = hashlib.sha256(data).hexdigest()
    for i, lines in enumerate(messages, 1):
        try:
            result.records.append(_map_message(i, lines, spec, name, sha, recorded))
        except Exception as exc:  # noqa: BLE001 - one message's bug must not lose the others
            result.records.append(RecordResult(i, f"message {i}", None, [Problem(
                "fatal", "exception", f"mapping failed: {type(exc).__name__}: {exc}")]))
    return result
