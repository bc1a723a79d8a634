"""Named functions of the HL7 v2 and CSV specs (``fhir_hub/mappings/hl7v2``, ``mappings/csv``).

The HL7 v2 adapter (:mod:`.hl7v2`) hands each segment over as ``SEG-n`` (the whole field, in the
standard encoding ``|^~\\&``, escapes already undone per component) and ``SEG-n.m`` (component m of
the first repetition); the functions below read composite values (CX, XPN, XAD, CE, DTM) from that.
Like :mod:`.functions`, a value that cannot be converted is a :class:`~.functions.BadValue`, one
worth a remark a :class:`~.functions.Remark`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date
from typing import Any
from urllib.parse import quote

from fhir_hub.mapping import systems
from fhir_hub.mapping.functions import BadValue, Remark, decimal

__all__ = ["CONVERTERS"]

_DTM = re.compile(r"(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.\d+)?([+-]\d{4})?")


def v2_datetime(text: str) -> str:
    """An HL7 v2 DTM → FHIR dateTime.  ``202501031430`` → ``2025-01-03T14:30:00+07:00`` (no offset
    means Vietnamese local time); an offset is kept (``…+0000`` → ``Z`` is not assumed, ``+00:00``);
    ``20250103`` → ``2025-01-03``, ``202501`` → ``2025-01``, ``2025`` → ``2025``.  An hour without
    minutes is read as ``HH:00``."""
    m = _DTM.fullmatch(text.strip())
    if m is None:
        raise BadValue(f"{text!r} is not an HL7 v2 date/time (YYYY[MM[DD[HH[MM[SS]]]]][+ZZZZ])")
    y, mo, d, h, mi, sec, tz = m.groups()
    if mo is not None and not 1 <= int(mo) <= 12:
        raise BadValue(f"{text!r} has no such month")
    if d is not None:
        try:
            date(int(y), int(mo), int(d))
        except ValueError:
            raise BadValue(f"{text!r} is not a real calendar date") from None
    if h is None:
        return "-".join(p for p in (y, mo, d) if p)
    if d is None:
        raise BadValue(f"{text!r} has a time but no day")
    if int(h) > 23 or int(mi or 0) > 59 or int(sec or 0) > 59:
        raise BadValue(f"{text!r} has no such time of day")
    offset = f"{tz[:3]}:{tz[3:]}" if tz else "+07:00"
    return f"{y}-{mo}-{d}T{h}:{mi or '00'}:{sec or '00'}{offset}"


def v2_date(text: str) -> str:
    """An HL7 v2 DT (or the date part of a DTM) → FHIR date at its precision (birth dates)."""
    value = v2_datetime(text.strip()[:8])
    return value


def _components(repetition: str) -> list[str]:
    return repetition.split("^")


#: PID-3 identifier types (CX.5, table 0203) and assigning authorities (CX.4) read as the personal ID,
#: the BHYT card and the facility's patient number.
_NATIONAL_TYPES = {"NI", "NNVNM", "CCCD", "CMND"}
_NATIONAL_AUTHORITIES = {"BCA", "CCCD", "VNM", "BO CONG AN"}
_INSURANCE_TYPES = {"SB", "HC", "BHYT", "IN"}
_INSURANCE_AUTHORITIES = {"BHXH", "BHYT", "VSS"}
_PATIENT_TYPES = {"PI", "MR", "PN", "PT"}


def v2_identifiers(text: str, facility: str = "") -> list[dict[str, Any] | Remark]:
    """PID-3 (CX, repeating) → Patient identifiers.  A CCCD (type NI, or assigned by BCA/CCCD)
    gets the VN Core IG's national-ID system; a BHYT card (type SB/HC, or BHXH) the insurance-number
    system; a facility number (PI/MR) the patient-internal-id system.  A CCCD that is not 12 digits,
    or an identifier of no known type (kept with a ``urn:fhir-hub:v2-authority:`` system), comes
    with a remark."""
    out: list[dict[str, Any] | Remark] = []
    for rep in text.split("~"):
        parts = _components(rep) + [""] * 5
        value, authority, kind = parts[0].strip(), parts[3].split("&")[0].strip(), parts[4].strip().upper()
        if not value:
            continue
        if kind in _NATIONAL_TYPES or authority.upper() in _NATIONAL_AUTHORITIES:
            ident = {"use": "official", "type": {"coding": [{"system": systems.V2_0203, "code": "NI"}]},
                     "system": systems.NATIONAL_ID, "value": value}
            if not re.fullmatch(r"\d{12}", value):  # kept, but not as a personal ID (the profiles require 12 digits)
                ident = {**ident, "use": "old", "system": f"urn:fhir-hub:v2-authority:{authority or 'NI'}"}
                out.append(Remark(ident, f"{value!r} is not a 12-digit CCCD: kept outside the national-ID system"))
                continue
            out.append(ident)
        elif kind in _INSURANCE_TYPES or authority.upper() in _INSURANCE_AUTHORITIES:
            out.append({"use": "official", "type": {"coding": [{"system": systems.V2_0203, "code": "SB"}]},
                        "system": systems.INSURANCE_NUMBER, "value": value})
        elif kind in _PATIENT_TYPES or not kind:
            ident = {"use": "usual", "type": {"coding": [{"system": systems.V2_0203, "code": "PI"}]},
                     "system": systems.PATIENT_INTERNAL_ID, "value": value}
            if authority or facility:
                ident["assigner"] = {"identifier": {"system": systems.FACILITY_CODE, "value": authority or facility}}
            out.append(ident)
        else:
            system = f"urn:fhir-hub:v2-authority:{authority or 'unknown'}"
            out.append(Remark({"type": {"coding": [{"system": systems.V2_0203, "code": kind}]}, "system": system,
                               "value": value}, f"identifier type {kind!r} is not one the mapping knows"))
    if not out:
        raise BadValue("PID-3 holds no identifier")
    return out


def v2_name(family: str, given: str = "", middle: str = "") -> dict[str, Any]:
    """PID-5 (XPN: family ^ given ^ middle) → HumanName.  Vietnamese names read family, middle,
    given (``Nguyễn Văn An``: XPN ``Nguyễn^An^Văn``), so ``text`` is written in that order and
    the middle name comes first among the given names."""
    givens = [w for w in (middle.split() + given.split()) if w]
    name: dict[str, Any] = {"use": "official", "text": " ".join([family.strip(), *givens]).strip()}
    if family.strip():
        name["family"] = family.strip()
    if givens:
        name["given"] = givens
    return name


def v2_address(text: str) -> dict[str, Any]:
    """PID-11 (XAD: street ^ other ^ city ^ state ^ zip ^ country, first repetition) → Address
    with a ``text`` in Vietnamese order (street, ward, district/city, province)."""
    parts = (_components(text.split("~")[0]) + [""] * 6)[:6]
    street, other, city, state, postal, country = (p.strip() for p in parts)
    addr: dict[str, Any] = {"use": "home"}
    if street:
        addr["line"] = [street]
    if other:
        addr["district"] = other
    if city:
        addr["city"] = city
    if state:
        addr["state"] = state
    if postal:
        addr["postalCode"] = postal
    if country:
        addr["country"] = "VN" if country.upper() in ("VNM", "VN") else country
    shown = ", ".join(p for p in (street, other, city, state) if p)
    if not shown and len(addr) == 1:
        raise BadValue("PID-11 holds no address")
    if shown:
        addr["text"] = shown
    return addr


def v2_telecom(text: str) -> dict[str, Any]:
    """PID-13 (XTN, first repetition): the number (component 1, or 12 when 1 is empty)."""
    parts = _components(text.split("~")[0]) + [""] * 12
    number = parts[0].strip() or parts[11].strip()
    if not number:
        raise BadValue("PID-13 holds no number")
    return {"system": "email" if parts[2].strip().upper() == "INTERNET" else "phone", "value": number}


#: Coding systems of CE/CWE component 3 (HL7 table 0396).
_CODE_SYSTEMS = {"LN": systems.LOINC, "LOINC": systems.LOINC, "SCT": systems.SNOMED, "SNM": systems.SNOMED,
                 "I10": systems.ICD10_VN, "ICD10": systems.ICD10_VN, "UCUM": systems.UCUM,
                 "I9C": systems.ICD9_CM}


def v2_coding(text: str) -> dict[str, Any]:
    """A CE/CWE (code ^ text ^ system) → CodeableConcept; a local system (``L``, ``99…``) becomes
    ``urn:fhir-hub:v2-local:<name>``.  Only a text: ``text`` alone."""
    parts = _components(text.split("~")[0]) + ["", "", ""]
    code, shown, system = parts[0].strip(), parts[1].strip(), parts[2].strip()
    out: dict[str, Any] = {}
    if code:
        coding: dict[str, Any] = {"system": _CODE_SYSTEMS.get(system.upper(), f"urn:fhir-hub:v2-local:{system or 'L'}"),
                                  "code": code}
        if shown:
            coding["display"] = shown
        out["coding"] = [coding]
    if shown:
        out["text"] = shown
    if not out:
        raise BadValue(f"{text!r} holds no code or text")
    return out


def v2_value(kind: str, value: str, units: str = "") -> dict[str, Any]:
    """OBX-2 (value type) + OBX-5 + OBX-6 → the Observation's ``value[x]``: NM a Quantity (UCUM when
    OBX-6 names the UCUM system or its code is UCUM-shaped), ST/TX/FT a string, CE/CWE a
    CodeableConcept, SN (``>^5``, ``^1^:^128``) a string as written."""
    kind = kind.strip().upper()
    if kind == "NM":
        try:
            number = decimal(value.strip())
        except BadValue:
            raise BadValue(f"{value!r} is not a number (OBX-2 is NM)") from None
        qty: dict[str, Any] = {"value": number}
        unit_parts = _components(units) + ["", "", ""]
        code, shown, system = unit_parts[0].strip(), unit_parts[1].strip(), unit_parts[2].strip().upper()
        if code:
            qty["unit"] = shown or code
            if system in ("UCUM", "") and re.fullmatch(r"[A-Za-z0-9%/.\[\]*^{}-]+", code):
                qty["system"] = systems.UCUM
                qty["code"] = code
        return {"valueQuantity": qty}
    if kind in ("CE", "CWE", "CNE"):
        return {"valueCodeableConcept": v2_coding(value)}
    if kind in ("ST", "TX", "FT", "SN", ""):
        text = value.replace("^", " ").strip() if kind == "SN" else value
        return {"valueString": text}
    raise BadValue(f"OBX-2 value type {kind!r} is not mapped (NM, ST, TX, FT, SN, CE, CWE)")


def v2_practitioner(text: str) -> dict[str, Any]:
    """An XCN (id ^ family ^ given ^ middle) → a logical Reference by the licence number (as
    :func:`fhir_hub.mapping.functions.practitioner`), with the name as ``display``."""
    parts = _components(text.split("~")[0]) + [""] * 4
    ident, family, given, middle = (p.strip() for p in parts[:4])
    shown = " ".join(p for p in (family, middle, given) if p)
    if not ident and not shown:
        raise BadValue(f"{text!r} names nobody")
    out: dict[str, Any] = {}
    if ident:
        out["identifier"] = {"type": {"coding": [{"system": systems.V2_0203, "code": "LN"}], "text": "CCHN"},
                             "value": ident}
    if shown:
        out["display"] = shown
    return out


def first_component(text: str) -> str:
    """Component 1 of the first repetition (PV1-19 visit number, OBR-3 filler order number)."""
    value = _components(text.split("~")[0])[0].strip()
    if not value:
        raise BadValue(f"{text!r} has an empty first component")
    return value


def qualified(text: str, facility: str) -> str:
    """``<facility>/<first component>``: a number the sending facility assigns (visit number PV1-19,
    order numbers) made unique across facilities, as the claims' ``facility/MA_LK``."""
    return f"{facility}/{first_component(text)}"


# -- CSV ---------------------------------------------------------------------------------------


def date_flexible(text: str) -> str:
    """A CSV date: ISO ``1980-03-15`` / ``1980-03`` / ``1980``, or Vietnamese ``15/03/1980``."""
    t = text.strip()
    m = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", t)
    if m:
        t = f"{m.group(3)}-{int(m.group(2)):02d}-{int(m.group(1)):02d}"
    if not re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", t):
        raise BadValue(f"{text!r} is not a date (YYYY-MM-DD or DD/MM/YYYY)")
    return v2_datetime(t.replace("-", ""))


def datetime_flexible(text: str) -> str:
    """A CSV date-time: ISO ``2025-03-01T08:30`` (or with a space; seconds and offset optional,
    no offset = +07:00), or ``01/03/2025 08:30``."""
    t = text.strip()
    m = re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})[ T](\d{1,2}):(\d{2})", t)
    if m:
        return v2_datetime(f"{m.group(3)}{int(m.group(2)):02d}{int(m.group(1)):02d}{int(m.group(4)):02d}{m.group(5)}")
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})[ T](\d{2}):(\d{2})(?::(\d{2}))?(Z|[+-]\d{2}:\d{2})?", t)
    if not m:
        raise BadValue(f"{text!r} is not a date-time (YYYY-MM-DDTHH:MM or DD/MM/YYYY HH:MM)")
    y, mo, d, h, mi, sec, tz = m.groups()
    stamp = v2_datetime(f"{y}{mo}{d}{h}{mi}{sec or '00'}")
    return stamp if tz is None else stamp[:-6] + ("+00:00" if tz == "Z" else tz)


def cccd(text: str) -> dict[str, Any]:
    """A personal-ID column → Identifier with the national-ID system; not 12 digits is a
    :class:`BadValue` (the identifier is left out: the VN profiles require 12 digits)."""
    value = text.strip()
    if not re.fullmatch(r"\d{12}", value):
        raise BadValue(f"{value!r} is not a 12-digit CCCD")
    return {"use": "official", "type": {"coding": [{"system": systems.V2_0203, "code": "NI"}]},
            "system": systems.NATIONAL_ID, "value": value}


def patient_by_identifier(text: str, system_name: str) -> dict[str, Any]:
    """A conditional reference ``Patient?identifier=<system>|<value>`` (the patient is imported
    before its measurements; the server resolves it in the transaction)."""
    system = quote(systems.BY_NAME[system_name], safe="")
    return {"reference": f"Patient?identifier={system}%7C{quote(text.strip(), safe='')}"}




def v2_encounter_status(event: str, discharged: str = "") -> str:
    """The Encounter.status an ADT event implies: a discharge time (PV1-45) → ``finished``; A01
    (admit) and A08 (update) → ``in-progress``; A04 (register an outpatient) → ``arrived``; any
    other (an ORU's visit) → ``unknown``."""
    if discharged.strip():
        return "finished"
    return {"A01": "in-progress", "A08": "in-progress", "A04": "arrived"}.get(event.strip().upper(), "unknown")


def v2_result_status(text: str) -> str:
    """OBX-11 / OBR-25 result status (HL7 table 0085 / 0123) → Observation/DiagnosticReport status."""
    code = text.strip().upper()
    status = {"F": "final", "P": "preliminary", "C": "corrected", "X": "cancelled", "R": "preliminary",
              "I": "registered", "S": "partial", "A": "partial", "W": "entered-in-error", "D": "entered-in-error"}
    if code not in status:
        raise BadValue(f"{text!r} is not a result status of HL7 table 0085 (F, P, C, X, R, I, S, A, W, D)")
    return status[code]


CONVERTERS: dict[str, Callable[..., Any]] = {f.__name__: f for f in (
    v2_datetime, v2_date, v2_identifiers, v2_name, v2_address, v2_telecom, v2_coding, v2_value, v2_practitioner,
    first_component, qualified, date_flexible, datetime_flexible, cccd, patient_by_identifier, v2_encounter_status,
    v2_result_status,
)}
