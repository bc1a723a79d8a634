"""Vietnamese health-insurance claims XML (QĐ 130 as amended by QĐ 4750 / 3176) → FHIR R4.

Input: one ``GIAMDINHHS`` envelope (research notes §6.2)::

    GIAMDINHHS/THONGTINDONVI/MACSKCB                      facility code
    GIAMDINHHS/THONGTINHOSO/NGAYLAP, SOLUONGHOSO
    GIAMDINHHS/THONGTINHOSO/DANHSACHHOSO/HOSO*            one visit each
        FILEHOSO* {LOAIHOSO = XML1…, NOIDUNGFILE = base64(UTF-8 table XML)}
    GIAMDINHHS/CHUKYDONVI                                 the facility's XML-DSig (may be empty)

Output: one transaction Bundle per HOSO, made by the declarative specs in
``fhir_hub/mappings/qd130`` (:mod:`.engine`), plus a Binary holding the HOSO's original bytes
(sliced from the file, not re-serialised) and a Provenance pointing at it, at the file (by
sha256) and carrying ``CHUKYDONVI`` as its signature.  Every resource is written conditionally
(:mod:`.functions`, "requests"), so importing the same file again updates instead of
duplicating; fullUrls and ids derive from facility + MA_LK, so the same input gives the same
bundle.  Staff named by licence number become one Practitioner each (:mod:`.practitioners`,
created only when the server has none with that number).

Errors are values: every problem is a :class:`~fhir_hub.mapping.engine.Problem` of its HOSO (or
of the file, when the envelope itself cannot be read) and an OperationOutcome issue naming the
HOSO, MA_LK, table, field and value.  A HOSO whose XML1 is unreadable, lacks MA_LK, or maps to a
resource that fails structural validation gets no bundle; the others are unaffected.  The XML
parser forbids DTDs, entities and external references (defusedxml), so a hostile file is a
problem of that file, not a billion laughs.

Tables mapped: XML1–XML5, XML7, XML8, XML13, XML14.  The older QĐ 4210 layout (XML1–XML5; list
tables without the ``CHITIEU_*`` wrapper, XML1 with ``MA_THE``) is recognised per HOSO and read
with ``fhir_hub/mappings/qd4210``, whose tables extend the QĐ 130 ones with 4210's field names.
A one-record table's original bytes are given to the specs as ``$content`` (NOIDUNGFILE as sent,
for a DocumentReference of the signed paper); fields that copy XML1's (``echoes``) are checked equal.

Costs: a ChargeItem per drug, service and supply line (code, quantity, unit price, factor,
department).  Not built yet: XML6, XML9–XML12, XML15 (reported as not mapped and kept in the
Binary); the amounts and their split between the BHYT fund, the patient and other sources (a
Claim / ExplanationOfBenefit adjudication), listed as unmapped.
"""

from __future__ import annotations

import base64
import binascii
import gc
import hashlib
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from fhir_hub.mapping import systems
from fhir_hub.mapping.engine import Problem, Spec, TableSpec, instantiate, load_spec, unmapped, uuid5
from fhir_hub.mapping.functions import REQUESTS, BadValue, instant_from_date
from fhir_hub.mapping.practitioners import link_practitioners
from fhir_hub.mapping.records import validate_entries

__all__ = ["FileResult", "HosoResult", "gc_paused", "map_file"]

VN_TZ = timezone(timedelta(hours=7))
_BOM = b"\xef\xbb\xbf"
#: A HOSO's bytes as sent: what ``<HOSO…>.*?</HOSO\s*>`` (DOTALL) matches, written as runs of
#: ``[^<]*`` between ``<``s that do not close it, which the regex engine scans in a tight loop
#: (the lazy ``.*?`` tried the end tag at every byte: 0.3 s of the 18 MB bench file, now 0.02 s).
_HOSO_BYTES = re.compile(rb"<HOSO(?:\s[^>]*)?>[^<]*(?:<(?!/HOSO\s*>)[^<]*)*</HOSO\s*>")
_SIGNATURE_BYTES = re.compile(rb"<CHUKYDONVI(?:\s[^>]*)?>([^<]*(?:<(?!/CHUKYDONVI\s*>)[^<]*)*)</CHUKYDONVI\s*>")
_WS = re.compile(rb"\s+")
_ENCODING = re.compile(r"""\s*<\?xml[^>]*?\bencoding\s*=\s*["']([^"']*)["']""")
_ENCODING_BYTES = re.compile(rb"""\s*<\?xml[^>]*?\bencoding\s*=\s*["']([^"']*)["']""")
#: Root elements of the QĐ 4210 list tables (no CHITIEU_* wrapper): they tell the layout.
_QD4210_ROOTS = {"DSACH_CHI_TIET_THUOC", "DSACH_CHI_TIET_DVKT", "DSACH_CHI_TIET_CLS",
                 "DSACH_CHI_TIET_DIEN_BIEN_BENH"}


@dataclass
class HosoResult:
    """What one HOSO became: its bundle (None when it could not be imported) and its problems."""

    index: int  # 1-based position in DANHSACHHOSO
    ma_lk: str | None
    bundle: dict[str, Any] | None
    problems: list[Problem] = field(default_factory=list)
    #: table → non-empty input fields whose value no resource holds, ``FIELD (STT 2, 5)`` when only
    #: some lines lose it (:func:`~fhir_hub.mapping.engine.unmapped`); kept in the bundle on the
    #: Provenance, and as sent in the Binary
    unmapped: dict[str, list[str]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"HOSO {self.index}" + (f" (MA_LK {self.ma_lk})" if self.ma_lk else "")


@dataclass
class FileResult:
    name: str
    facility: str | None = None
    hosos: list[HosoResult] = field(default_factory=list)
    #: Problems of the envelope itself (unreadable file, count mismatch).
    problems: list[Problem] = field(default_factory=list)

    @property
    def records(self) -> list[HosoResult]:
        """The HOSO: what every adapter's result calls its records."""
        return self.hosos

    def record_outcome(self, hoso: HosoResult) -> dict[str, Any]:
        """The problems of one HOSO, as :meth:`outcome` words them."""
        return {"resourceType": "OperationOutcome", "issue": [_issue(p, self.name, hoso) for p in hoso.problems]}

    def outcome(self) -> dict[str, Any]:
        """Every problem of the file as one OperationOutcome (an ``information`` issue when none)."""
        issues = [_issue(p, self.name, None) for p in self.problems]
        for h in self.hosos:
            issues += [_issue(p, self.name, h) for p in h.problems]
        if not issues:
            issues = [{"severity": "information", "code": "informational",
                       "diagnostics": f"{self.name}: {len(self.hosos)} HOSO mapped without problems"}]
        return {"resourceType": "OperationOutcome", "issue": issues}


def _issue(p: Problem, name: str, hoso: HosoResult | None) -> dict[str, Any]:
    parts = [name]
    if hoso is not None:
        parts.append(hoso.where)
    if p.table:
        parts.append(p.table + (f" STT {p.line}" if p.line else "") + (f".{p.field}" if p.field else ""))
    elif p.field:
        parts.append(p.field)
    subject = ", ".join(parts)
    shown = f" = {p.value[:80]!r}" if p.value is not None else ""
    out: dict[str, Any] = {"severity": p.severity, "code": p.code, "diagnostics": f"{subject}{shown}: {p.reason}"}
    loc = "/GIAMDINHHS"
    if hoso is not None:
        loc += f"/THONGTINHOSO/DANHSACHHOSO/HOSO[{hoso.index}]"
        if p.table:
            loc += f"/FILEHOSO[LOAIHOSO='{p.table}']"
            if p.field == "NOIDUNGFILE":
                loc += "/NOIDUNGFILE"
            elif p.field:
                loc += f"/NOIDUNGFILE//{p.field}"
    elif p.field:
        loc += f"//{p.field}"
    out["location"] = [loc]
    return out


# -- reading -----------------------------------------------------------------------------------


def _parse(data: bytes) -> ET.Element:
    """Parse untrusted XML: no DTD, no entities, no external references."""
    return SafeET.fromstring(data.removeprefix(_BOM), forbid_dtd=True)  # type: ignore[no-any-return]


def _parse_envelope(data: bytes) -> ET.Element:
    """The envelope, parsed as :func:`_parse` would, by expat's C parser when it cannot meet a
    DTD (the reasoning of :func:`_parse_text`): its bytes, BOM removed, start with ``<`` and not
    ``<\\0`` (expat would read UTF-16 then, where a ``<!DOCTYPE`` is not those bytes), hold no
    ``<!DOCTYPE``, and declare UTF-8 or nothing.  Anything else goes to :func:`_parse`.
    defusedxml's pure-Python parser took 3 % of the mapping on the envelope alone."""
    return ET.fromstring(data.removeprefix(_BOM)) if plain_utf8(data) else _parse(data)


def plain_utf8(data: bytes) -> bool:
    """Whether expat's C parser reads ``data`` as :func:`_parse` would (see :func:`_parse_envelope`):
    then any element's bytes cut from it parse alone to the same element (mapping in worker
    processes relies on it)."""
    body = data.removeprefix(_BOM)
    if body[:1] != b"<" or body[1:2] == b"\0" or b"<!DOCTYPE" in body:
        return False
    declared = _ENCODING_BYTES.match(body)
    return declared is None or declared.group(1).lower() == b"utf-8"


def _parse_text(data: bytes, text: str) -> ET.Element:
    """An inner table (``text``: its bytes decoded as UTF-8, BOM removed), parsed as :func:`_parse`
    would.  defusedxml's parser is ElementTree's pure-Python one (a Python call per element: 40 %
    of the mapping's time); expat's C parser is used instead when it cannot meet a DTD: given a
    ``str``, it reads UTF-8 whatever the XML declaration says, so a text without ``<!DOCTYPE``
    declares no entity and names no external DTD (only the five predefined entities and
    character references exist; any other ``&name;`` is "undefined entity", as with defusedxml).
    A table with a DOCTYPE, or declaring another encoding than UTF-8 (which defusedxml would
    honour), goes to :func:`_parse`: same elements, same errors, same refusals.  When the table
    declares ``UTF-8`` or nothing, the parser gets the bytes (BOM removed, as ``text`` is: the
    same columns in its errors) rather than ``text``, which it would encode back to UTF-8."""
    if "<!DOCTYPE" in text:
        return _parse(data)
    declared = _ENCODING.match(text)
    if declared is None or declared.group(1).lower() == "utf-8":
        return ET.fromstring(data.removeprefix(_BOM))
    if declared.group(1).lower() != "utf8":
        return _parse(data)
    return ET.fromstring(text)  # "utf8": UTF-8 to Python, a name expat does not know


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _child(el: ET.Element, name: str) -> ET.Element | None:
    for c in el:
        if c.tag == name or (c.tag[0] == "{" and _local(c.tag) == name):
            return c
    return None


def _record(el: ET.Element, table: str, line: str | None, problems: list[Problem]) -> dict[str, str]:
    out: dict[str, str] = {}
    for c in el:
        name = c.tag if c.tag[0] != "{" else _local(c.tag)  # tables carry no namespace, as a rule
        if name in out:
            problems.append(Problem("error", "structure", "field appears twice; the first is used", table, name,
                                    _text(c), line))
            continue
        out[name] = _text(c)
    return out


def _plain_record(el: ET.Element) -> dict[str, str] | None:
    """The record :func:`_record` makes, in one comprehension, when it has nothing to report or
    rename: no field twice, no namespace (the rule for tables); ``None`` otherwise.  A table has
    tens of thousands of fields, and a Python call per field was 5 % of the mapping."""
    out = {c.tag: (c.text or "").strip() for c in el}
    if len(out) != len(el) or "{" in "".join(out):
        return None
    return out


def _records(root: ET.Element, spec: TableSpec, content: str, problems: list[Problem]
             ) -> list[dict[str, str]] | None:
    name = _local(root.tag)
    if name != spec.root:
        problems.append(Problem("error", "structure", f"root element is <{name}>, expected <{spec.root}>",
                                spec.table))
        return None
    nodes = [root]
    for step in spec.records:  # a tag is ``{ns}name`` or a name without "}" (not a name character)
        nodes = [c for n in nodes for c in n if c.tag == step or (c.tag[0] == "{" and _local(c.tag) == step)]
    out: list[dict[str, str]] = []
    for n in nodes:
        rec = _plain_record(n)
        if rec is None:
            rec = _record(n, spec.table, _text(_child(n, "STT")) or None, problems)
        out.append(rec)
    # a one-record table (a paper): its bytes as sent, for a DocumentReference; only where a rule
    # reads it (XML7, XML8), since nothing else sees a record's ``$`` fields (XML1's is the largest)
    if not spec.records and out and "$content" in spec.used_fields():
        out[0]["$content"] = _compact(content)
    return out


#: What ``_WS`` (``\s`` of a bytes pattern) matches: ASCII space, tab, LF, CR, VT, FF.
_WS_BYTES = b" \t\n\r\x0b\x0c"


def _compact(content: str) -> str:
    """NOIDUNGFILE without whitespace, non-ASCII characters as ``?``: for ASCII text (the usual
    base64), ``bytes.translate`` deletes the bytes ``_WS`` matches in one pass in C, where the
    regex's substitution walked it character by character (2 % of the mapping)."""
    if content.isascii():
        return content.encode("ascii").translate(None, _WS_BYTES).decode("ascii")
    return _WS.sub(b"", content.encode("ascii", "replace")).decode("ascii")


def _is_qd4210(roots: Mapping[str, ET.Element]) -> bool:
    """The QĐ 4210 layout: a list table without its CHITIEU_* wrapper, or an XML1 with 4210's card
    field ``MA_THE`` and none of QĐ 130's ``MA_THE_BHYT``."""
    if any(_local(r.tag) in _QD4210_ROOTS for r in roots.values()):
        return True
    xml1 = roots.get("XML1")
    return xml1 is not None and _child(xml1, "MA_THE") is not None and _child(xml1, "MA_THE_BHYT") is None


def _check_echoes(spec: Spec, tables: Mapping[str, list[dict[str, str]]], problems: list[Problem]) -> None:
    """Fields that copy another table's (``echoes`` in the spec) must agree with it: a warning each
    time they do not (the copy is not mapped; the original is)."""
    for kind, records in tables.items():
        for source, names in spec.tables[kind].echoes.items():
            origin = (tables.get(source) or [{}])[0]
            for rec in records:
                for name in names:
                    here, _, there = name.partition("=")
                    mine, theirs = rec.get(here, ""), origin.get(there or here, "")
                    if mine and theirs and mine != theirs:
                        problems.append(Problem("warning", "value", f"differs from {source}.{there or here} "
                                                f"{theirs[:60]!r}; {source}'s is mapped", kind, here, mine,
                                                rec.get("STT") or None))


def _decode(table: str, content: str, problems: list[Problem]) -> ET.Element | None:
    try:  # the usual NOIDUNGFILE: one ASCII line, nothing to strip
        data = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raw = _WS.sub(b"", content.encode("ascii", "replace"))
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError) as exc:
            problems.append(Problem("error", "structure", f"NOIDUNGFILE is not valid base64 ({exc}): table not "
                                    "read", table, "NOIDUNGFILE", content[:40]))
            return None
    try:
        text = data.removeprefix(_BOM).decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(Problem("error", "structure", f"the decoded table is not UTF-8 ({exc})", table,
                                "NOIDUNGFILE"))
        return None
    try:
        return _parse_text(data, text)
    except DefusedXmlException as exc:
        problems.append(Problem("error", "security", f"the table XML uses a forbidden construct "
                                f"({type(exc).__name__}: DTDs and entities are refused)", table, "NOIDUNGFILE"))
    except ET.ParseError as exc:
        problems.append(Problem("error", "structure", f"the decoded table is not well-formed XML ({exc})", table,
                                "NOIDUNGFILE"))
    return None


# -- one HOSO ----------------------------------------------------------------------------------


def _ma_lk_elsewhere(tables: Mapping[str, list[dict[str, str]]]) -> str | None:
    """The MA_LK the other tables agree on, when XML1 gives none: not to import the HOSO by (XML1
    is its key), but so that the report names the visit the facility will look for."""
    found = {rec.get("MA_LK") for kind, records in tables.items() if kind != "XML1" for rec in records} - {None, ""}
    return found.pop() if len(found) == 1 else None


def _stable_id(facility: str, ma_lk: str) -> str:
    return f"qd130-{uuid5(f'{facility}/{ma_lk}').replace('-', '')}"


def _map_hoso(index: int, hoso: ET.Element, raw: bytes, envelope: _Envelope, spec: Spec | None,
              recorded: str) -> HosoResult:
    problems: list[Problem] = []
    tables: dict[str, list[dict[str, str]]] = {}
    roots: dict[str, ET.Element] = {}
    contents: dict[str, str] = {}
    known = set(load_spec("qd130").tables) | set(load_spec("qd4210").tables) if spec is None else set(spec.tables)
    for f in hoso:
        if _local(f.tag) != "FILEHOSO":
            continue
        kind = _text(_child(f, "LOAIHOSO")).upper()
        if not kind:
            problems.append(Problem("error", "required", "FILEHOSO without LOAIHOSO is skipped", None, "LOAIHOSO"))
            continue
        if kind not in known:
            problems.append(Problem("information", "not-supported", "table not mapped yet; kept in the Binary",
                                    kind))
            continue
        if kind in roots or any(p.table == kind and p.field == "NOIDUNGFILE" for p in problems):
            problems.append(Problem("error", "structure", "a second FILEHOSO of this table is skipped", kind))
            continue
        contents[kind] = _text(_child(f, "NOIDUNGFILE"))
        root = _decode(kind, contents[kind], problems)
        if root is not None:
            roots[kind] = root
    if spec is None:
        spec = load_spec("qd4210") if _is_qd4210(roots) else load_spec("qd130")
        if spec.format == "qd4210":
            problems.append(Problem("information", "informational", "QĐ 4210 layout: read with the qd4210 specs"))
    for kind, root in roots.items():
        tspec = spec.tables.get(kind)
        if tspec is None:
            problems.append(Problem("information", "not-supported", f"table not part of the {spec.format} "
                                    "layout; kept in the Binary", kind))
            continue
        records = _records(root, tspec, contents[kind], problems)
        if records is not None:
            tables[kind] = records
    head = tables.get("XML1", [])
    if not head:
        if not any(p.table == "XML1" for p in problems):
            problems.append(Problem("fatal", "required", "the HOSO has no readable XML1: not imported", "XML1"))
        else:
            problems.append(Problem("fatal", "incomplete", "XML1 could not be read: HOSO not imported", "XML1"))
        return HosoResult(index, _ma_lk_elsewhere(tables), None, problems)
    if len(head) > 1:
        problems.append(Problem("error", "structure", "XML1 holds more than one record; the first is used", "XML1"))
    xml1 = head[0]
    ma_lk = xml1.get("MA_LK", "")
    if not ma_lk:
        elsewhere = _ma_lk_elsewhere(tables)
        problems.append(Problem("fatal", "required", "MA_LK is empty or missing" + (
            f" (the other tables give {elsewhere!r})" if elsewhere else "") + ": HOSO not imported", "XML1", "MA_LK"))
        return HosoResult(index, elsewhere, None, problems)
    facility = xml1.get("MA_CSKCB") or envelope.facility
    if not facility:
        problems.append(Problem("fatal", "required", "no facility code (MA_CSKCB, MACSKCB): HOSO not imported",
                                "XML1", "MA_CSKCB"))
        return HosoResult(index, ma_lk, None, problems)
    if envelope.facility and xml1.get("MA_CSKCB") and xml1["MA_CSKCB"] != envelope.facility:
        problems.append(Problem("warning", "value", f"differs from the envelope's MACSKCB {envelope.facility!r}; "
                                "XML1's is used", "XML1", "MA_CSKCB", xml1["MA_CSKCB"]))
    for kind, records in list(tables.items()):
        kept = []
        for rec in records:
            if kind != "XML1" and rec.get("MA_LK", ma_lk) != ma_lk:
                problems.append(Problem("error", "value", f"MA_LK differs from XML1's {ma_lk!r}: record skipped",
                                        kind, "MA_LK", rec.get("MA_LK"), rec.get("STT") or None))
                continue
            kept.append(rec)
        tables[kind] = kept
    tables["XML1"] = [xml1]
    _check_echoes(spec, tables, problems)
    built, mapped_problems = instantiate(spec, tables, facility, ma_lk)
    problems += mapped_problems
    result = HosoResult(index, ma_lk, None, problems, unmapped(spec, tables, built))
    entries: list[dict[str, Any]] = [
        {"fullUrl": b.full_url, "resource": b.resource, "request": REQUESTS[b.request_fn](b.resource)} for b in built]
    entries += link_practitioners(entries)
    targets = [str(e["fullUrl"]) for e in entries]
    facility_ref = next((b.full_url for b in built if b.rule == "facility"), None)
    stable = _stable_id(facility, ma_lk)
    binary_url = f"urn:uuid:{uuid5(f'{facility}/{ma_lk}/Binary')}"
    binary = {"resourceType": "Binary", "id": stable, "contentType": "application/xml",
              "data": base64.b64encode(raw).decode("ascii")}
    entries.append({"fullUrl": binary_url, "resource": binary, "request": REQUESTS["replace_by_id"](binary)})
    provenance = _provenance(stable, targets, binary_url, facility_ref, envelope, recorded,
                             "QĐ 4210" if spec.format == "qd4210" else "QĐ 130", result.unmapped)
    entries.append({"fullUrl": f"urn:uuid:{uuid5(f'{facility}/{ma_lk}/Provenance')}",
                    "resource": provenance, "request": REQUESTS["replace_by_id"](provenance)})
    # the Binary is made here from base64 of bytes, with a fixed shape: valid by construction (its
    # check, base64 of the whole HOSO, was a tenth of the validation's time)
    if validate_entries(entries[:-2] + entries[-1:], problems, "HOSO"):
        result.bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    return result


def _provenance(rid: str, targets: list[str], binary_url: str, facility_ref: str | None, envelope: _Envelope,
                recorded: str, layout: str, lost: Mapping[str, list[str]]) -> dict[str, Any]:
    """The Provenance of a HOSO's bundle.  Its first entity (the Binary with the HOSO as sent)
    lists the input fields no resource holds (:func:`~fhir_hub.mapping.engine.unmapped`), one
    ``unmapped-fields`` extension per table, so that what was not mapped stays with the record
    and says where to find it."""
    prov: dict[str, Any] = {
        "resourceType": "Provenance", "id": rid,
        "target": [{"reference": t} for t in targets] or [{"reference": binary_url}],
        "recorded": recorded,
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                                 "code": "CREATE", "display": "create"}],
                     "text": f"Import of a {layout} claims XML (GIAMDINHHS) HOSO"},
        "agent": [{"type": {"coding": [{"system": systems.PROVENANCE_ROLE, "code": "author"}]},
                   "who": {"reference": facility_ref} if facility_ref else {"display": "unknown facility"}}],
        "entity": [
            {"role": "source", "what": {"reference": binary_url, "display": "the HOSO as sent (original bytes)"},
             **({"extension": [{"url": systems.UNMAPPED_EXT, "valueString": f"{table}: {', '.join(names)}"}
                               for table, names in lost.items()]} if lost else {})},
            {"role": "source", "what": {"identifier": {"system": systems.FILE_SHA256, "value": envelope.sha256},
                                        "display": envelope.name}},
        ],
    }
    if envelope.ngaylap:
        prov["occurredDateTime"] = envelope.ngaylap
    if envelope.signature:
        prov["signature"] = [{
            "type": [{"system": "urn:iso-astm:E1762-95:2013", "code": "1.2.840.10065.1.12.1.14",
                      "display": "Source Signature"}],
            "when": envelope.signed_when or recorded,
            "who": {"reference": facility_ref} if facility_ref else {"display": "unknown facility"},
            "sigFormat": "application/signature+xml",
            "data": base64.b64encode(envelope.signature).decode("ascii"),
        }]
    return prov


# -- the file ----------------------------------------------------------------------------------


@dataclass
class _Envelope:
    name: str
    sha256: str
    facility: str = ""
    ngaylap: str | None = None
    signature: bytes | None = None
    signed_when: str | None = None


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a file is mapped, back as it was after (nested
    and concurrent calls: when the last one ends).  A file's result is hundreds of thousands of
    small dicts and lists that all live on, so every collection walked the growing result again:
    40 % of the mapping's time on the bench file (2.9 s without, 4.7 s with).  Mapping makes no
    reference cycles (resources are trees; measured: none after clean or faulted HOSO; an
    unparsable envelope leaves a few dozen objects, once), so the collector, when back, has
    next to nothing to free that it would have freed sooner.  ``import-claims`` holds it paused
    until a file's bundles are posted and dropped too: back right after the mapping, it walked
    the whole result again (0.35 s of the client's 10 s for 1,002 HOSO).  When the collector comes
    back, the objects made meanwhile are moved to its oldest generation (``gc.freeze`` then
    ``gc.unfreeze``: two list splices; only when nothing else is frozen), so a result kept by the
    caller is not walked by the next young collection; a cycle among them (mapping makes none)
    waits for a full collection."""
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                # what was allocated meanwhile (the result) goes to the oldest generation, where
                # only a full collection looks: back in the youngest, the first allocation after
                # enable() walked all of it at once (0.2 s, 5 % of the bench file's mapping).  Not
                # when something else froze objects (the server does at start): unfreeze would thaw them
                if gc.get_freeze_count() == 0:
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()


def map_file(data: bytes, name: str = "GIAMDINHHS.xml", recorded: str | None = None,
             spec: Spec | None = None) -> FileResult:
    """Map one envelope.  ``recorded`` is Provenance.recorded (default: now, in Vietnam); pass it
    to get byte-identical output for the same input.  ``spec`` forces one layout; by default each
    HOSO is read as QĐ 130 or QĐ 4210, whichever it is."""
    result = FileResult(name)
    for _ in stream_file(result, data, recorded, spec):
        pass
    return result


def stream_file(result: FileResult, data: bytes, recorded: str | None = None, spec: Spec | None = None
                ) -> Iterator[HosoResult]:
    """:func:`map_file` one HOSO at a time: each HOSO's result is appended to ``result.hosos``
    and yielded as soon as it is mapped, so an importer can post a visit while the next is
    mapped (the server no longer waits for the whole file).  The envelope's own problems are in
    ``result.problems`` before the first HOSO is yielded; the output is :func:`map_file`'s.  The
    collector stays paused until the iterator ends or is closed."""
    with gc_paused():
        yield from _map_file(result, data, recorded, spec)


@dataclass
class OpenedFile:
    """An envelope read up to its HOSO: what mapping each of them needs."""

    envelope: _Envelope
    recorded: str
    hosos: list[ET.Element]
    #: Each HOSO's bytes as written in the file (kept in its Binary), or ``None`` where the
    #: slices do not line up with the parsed HOSO (then the element is serialised again).
    slices: list[bytes] | None


def _map_file(result: FileResult, data: bytes, recorded: str | None, spec: Spec | None) -> Iterator[HosoResult]:
    opened = open_file(result, data, recorded)
    if opened is not None:
        yield from map_opened(result, opened, spec)


def map_opened(result: FileResult, opened: OpenedFile, spec: Spec | None) -> Iterator[HosoResult]:
    """Map every HOSO of an opened file here, appending each result to ``result.hosos`` as it is
    yielded."""
    for i, hoso in enumerate(opened.hosos):
        done = map_hoso(i + 1, hoso, opened.slices[i] if opened.slices else None, opened, spec)
        result.hosos.append(done)
        yield done


def map_hoso(index: int, hoso: ET.Element, raw: bytes | None, opened: OpenedFile, spec: Spec | None) -> HosoResult:
    """One HOSO of an opened file (1-based ``index``); a bug in the mapping becomes its fatal problem."""
    if raw is None:
        raw = ET.tostring(hoso, encoding="utf-8")
    try:
        return _map_hoso(index, hoso, raw, opened.envelope, spec, opened.recorded)
    except Exception as exc:  # noqa: BLE001 - one HOSO's bug must not lose the others
        return HosoResult(index, None, None, [Problem("fatal", "exception", f"mapping failed: "
                                                      f"{type(exc).__name__}: {exc}")])


def open_file(result: FileResult, data: bytes, recorded: str | None) -> OpenedFile | None:
    """Parse the envelope and read its header; ``None`` (with a fatal problem in ``result``) when
    nothing can be imported."""
    recorded = recorded or datetime.now(VN_TZ).replace(microsecond=0).isoformat()
    name = result.name
    env = _Envelope(name, hashlib.sha256(data).hexdigest())
    try:
        root = _parse_envelope(data)
    except DefusedXmlException as exc:
        result.problems.append(Problem("fatal", "security", f"the file uses a forbidden XML construct "
                                       f"({type(exc).__name__}: DTDs and entities are refused): nothing imported"))
        return None
    except ET.ParseError as exc:
        result.problems.append(Problem("fatal", "structure", f"not well-formed XML ({exc}): nothing imported"))
        return None
    if _local(root.tag) != "GIAMDINHHS":
        result.problems.append(Problem("fatal", "structure", f"root element is <{_local(root.tag)}>, not "
                                       "<GIAMDINHHS>: nothing imported"))
        return None
    info = _child(root, "THONGTINDONVI")
    env.facility = result.facility = _text(_child(info, "MACSKCB")) if info is not None else ""
    head = _child(root, "THONGTINHOSO")
    lists = [el for el in head if _local(el.tag) == "DANHSACHHOSO"] if head is not None else []
    hosos = [h for lst in lists for h in lst if _local(h.tag) == "HOSO"]
    if head is not None and _text(_child(head, "NGAYLAP")):
        lap = _text(_child(head, "NGAYLAP"))
        try:
            env.signed_when = instant_from_date(lap)
            env.ngaylap = env.signed_when[:10]
        except BadValue as exc:
            result.problems.append(Problem("warning", "value", exc.reason, None, "NGAYLAP", lap))
    declared = _text(_child(head, "SOLUONGHOSO")) if head is not None else ""
    if declared != str(len(hosos)):
        result.problems.append(Problem("warning", "value", f"SOLUONGHOSO says {declared or 'nothing'} but the file "
                                       f"holds {len(hosos)} HOSO; all {len(hosos)} are read", None, "SOLUONGHOSO",
                                       declared))
    signature = _SIGNATURE_BYTES.search(data)
    if signature and signature.group(1).strip():
        env.signature = signature.group(1).strip()
    slices = _HOSO_BYTES.findall(data)
    return OpenedFile(env, recorded, hosos, slices if len(slices) == len(hosos) else None)
