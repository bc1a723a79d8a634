"""The named functions mapping specs refer to: every conversion or choice that branches lives here.

Why here and not in the YAML: a spec is a table (field → element, code table); the moment a rule
needs an ``if`` it becomes code, and code belongs where it can be read, typed and unit-tested.  A
spec names a function (``convert: datetime_vn``); :data:`CONVERTERS` and :data:`REQUESTS` are the
registries the engine looks names up in, so a typo in a spec fails when the spec is loaded.

Contract of a converter: ``fn(*values: str) -> JSON value``, pure, given the non-empty text of
the field(s) the rule names (stripped; CDATA already unwrapped).  A value it cannot convert
raises :class:`BadValue` with the reason (the engine turns it into an OperationOutcome issue that
names the HOSO, table, field and value, and leaves the element out).  A value that converts but
deserves a remark returns :class:`Remark` (value plus a warning).

Formats are those of QĐ 130 as amended by QĐ 4750 (research notes §6.4): ``yyyymmddHHMM`` local
times without offset (Vietnam is UTC+07:00 all year), ``yyyymmdd`` dates, 12-character birth
dates with ``0000`` for an unknown part, ``;``-separated lists, ``.`` as the decimal separator.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Any
from urllib.parse import quote

from fhir_hub.mapping import systems

__all__ = ["CONVERTERS", "REQUESTS", "BadValue", "Remark"]


class BadValue(ValueError):
    """A field value that cannot be converted; ``severity`` is the OperationOutcome severity."""

    def __init__(self, reason: str, severity: str = "error") -> None:
        super().__init__(reason)
        self.reason = reason
        self.severity = severity


@dataclass(frozen=True, slots=True)
class Remark:
    """A converted value with a warning about it (e.g. a code not in the loaded code list)."""

    value: Any
    reason: str


_DIGITS = re.compile(r"\d+")
_DECIMAL = re.compile(r"-?\d+(\.\d+)?")


def _real_date(year: int, month: int, day: int, text: str) -> date:
    try:
        return date(year, month, day)
    except ValueError:
        raise BadValue(f"{text!r} is not a real calendar date") from None


def _hhmm(text: str, hh: str, mm: str) -> tuple[int, int]:
    h, m = int(hh), int(mm)
    if h > 23 or m > 59:
        raise BadValue(f"{text!r} has no such time of day {hh}:{mm}")
    return h, m


# -- dates and times -------------------------------------------------------------------------


@lru_cache(maxsize=4096)  # a visit repeats its times on many lines; errors are not cached (re-raised each time)
def datetime_vn(text: str) -> str:
    """``yyyymmddHHMM`` (local Vietnamese time) → FHIR dateTime ``YYYY-MM-DDTHH:MM:00+07:00``.

    ``202503030745`` → ``2025-03-03T07:45:00+07:00``.  Anything but 12 digits, an impossible
    date or an impossible time is a :class:`BadValue`.
    """
    if len(text) != 12 or not _DIGITS.fullmatch(text):
        raise BadValue(f"{text!r} is not a yyyymmddHHMM date-time (12 digits)")
    d = _real_date(int(text[:4]), int(text[4:6]), int(text[6:8]), text)
    h, m = _hhmm(text, text[8:10], text[10:12])
    return f"{d.isoformat()}T{h:02d}:{m:02d}:00+07:00"


def date_ymd(text: str) -> str:
    """``yyyymmdd`` → FHIR date ``YYYY-MM-DD`` (card validity, re-exam day, NGAYLAP)."""
    if len(text) != 8 or not _DIGITS.fullmatch(text):
        raise BadValue(f"{text!r} is not a yyyymmdd date (8 digits)")
    return _real_date(int(text[:4]), int(text[4:6]), int(text[6:8]), text).isoformat()


def date_or_datetime(text: str) -> str:
    """A field that is ``yyyymmdd`` in one version and ``yyyymmddHHMM`` in another (XML14
    ``NGAY_HEN_KL`` under QĐ 3176 / 4750): 8 digits → date, 12 → dateTime."""
    return date_ymd(text) if len(text) == 8 else datetime_vn(text)


def birth_date(text: str) -> str:
    """``NGAY_SINH`` (12 characters, ``0000`` for what is unknown) → FHIR date at its precision.

    ``196803150000`` → ``1968-03-15``; ``194800000000`` → ``1948`` (day and month unknown, never
    1 January); ``19480300`` + ``0000`` → ``1948-03``.  An 8-digit ``yyyymmdd`` is accepted too
    (some HIS drop the time).  The time of day, when known, is :func:`birth_time`'s business.
    """
    if len(text) not in (8, 12) or not _DIGITS.fullmatch(text):
        raise BadValue(f"{text!r} is not a birth date yyyymmddHHMM (12 digits, 0000 for unknown parts)")
    year, month, day = int(text[:4]), int(text[4:6]), int(text[6:8])
    if year == 0:
        raise BadValue(f"{text!r} has no year")
    if month == 0:
        if day != 0:
            raise BadValue(f"{text!r} has a day but no month")
        return f"{year:04d}"
    if day == 0:
        if month > 12:
            raise BadValue(f"{text!r} has no month {month}")
        return f"{year:04d}-{month:02d}"
    return _real_date(year, month, day, text).isoformat()


def birth_time(text: str) -> str:
    """The ``patient-birthTime`` extension value: a full dateTime when ``NGAY_SINH`` carries a
    time (newborns must), else :class:`BadValue` with severity ``information`` (nothing to map:
    ``0000`` means the time is unknown, and so the extension is left out)."""
    if len(text) != 12 or text[8:] == "0000" or text[6:8] == "00":
        raise BadValue("no time of birth", severity="information")
    return datetime_vn(text)


def class_history(admitted: str, start: str = "", end: str = "", kind: str = "") -> list[dict[str, Any]]:
    """``NGAY_VAO_NOI_TRU`` (when the doctor admitted the patient to inpatient or day-inpatient
    care, after the visit began at ``NGAY_VAO``) → Encounter.classHistory: ambulatory from the
    visit's start to the admission, then inpatient (short stay when ``MA_LOAI_KCB`` is 04, day
    care) to ``NGAY_RA``.  Only the admission time is this field's to check: a bad start or end is
    left out here (its own element reports it)."""
    at = datetime_vn(admitted)

    def when(text: str) -> str | None:
        try:
            return datetime_vn(text) if text else None
        except BadValue:
            return None

    began, left = when(start), when(end)
    out = []
    if began is not None and began < at:
        out.append({"class": {"system": systems.ACT_CODE, "code": "AMB", "display": "ambulatory"},
                    "period": {"start": began, "end": at}})
    stay: dict[str, Any] = {"start": at}
    if left is not None and left >= at:
        stay["end"] = left
    admitted_as = ({"system": systems.ACT_CODE, "code": "SS", "display": "short stay"} if kind == "04" else
                   {"system": systems.ACT_CODE, "code": "IMP", "display": "inpatient encounter"})
    out.append({"class": admitted_as, "period": stay})
    return out


def instant_from_date(text: str) -> str:
    """``yyyymmdd`` → the instant at 00:00 in Vietnam (Provenance.signature.when from NGAYLAP)."""
    return f"{date_ymd(text)}T00:00:00+07:00"


# -- numbers and lists -----------------------------------------------------------------------


def decimal(text: str) -> int | float:
    """A QĐ 130 number: ``.`` as the decimal point, no thousands separator.  ``68.00`` → 68.0,
    ``60`` → 60; ``68,5`` or ``1 000`` are :class:`BadValue` (a comma is never a decimal point)."""
    if not _DECIMAL.fullmatch(text):
        raise BadValue(f"{text!r} is not a number with '.' as the decimal point")
    return float(text) if "." in text else int(text)


def integer(text: str) -> int:
    """A whole number (``SO_NGAY_DTRI``, ``STT``)."""
    if not re.fullmatch(r"-?\d+", text):
        raise BadValue(f"{text!r} is not a whole number")
    return int(text)


def money(text: str) -> dict[str, Any]:
    """A QĐ 130 amount (đồng, :func:`decimal`) → Money in VND."""
    return {"value": decimal(text), "currency": "VND"}


def percent(text: str) -> int | float:
    """A rate written as a percentage (``TYLE_TT_DV`` 50) → the factor (0.5)."""
    value = decimal(text)
    if value < 0:
        raise BadValue(f"{text!r} is a negative percentage")
    return round(value / 100, 6)


def department(text: str) -> dict[str, Any] | Remark:
    """``MA_KHOA`` (department code, QĐ 5937 annex 5) → a logical Reference to the department by
    that code; several ``;``-separated codes (a stay across departments) → the first, with a
    warning (only one fits where this is used)."""
    codes = split_list(text)
    if not codes:
        raise BadValue(f"{text!r} holds no department code")
    ref = {"identifier": {"system": systems.DEPARTMENT, "value": codes[0]}}
    if len(codes) > 1:
        return Remark(ref, f"{len(codes)} department codes where one fits: the first is mapped")
    return ref


def split_list(text: str) -> list[str]:
    """A ``;``-separated list (``MA_BENH_KT``, several cards in ``MA_THE_BHYT``): items stripped,
    empty items dropped (``I10;;E78.5;`` → ``['I10', 'E78.5']``)."""
    return [part.strip() for part in text.split(";") if part.strip()]


def first_of_list(text: str) -> str:
    """The first item of a ``;`` list (the main performer of ``NGUOI_THUC_HIEN``)."""
    items = split_list(text)
    if not items:
        raise BadValue(f"{text!r} holds no item")
    return items[0]


def body_weight(text: str) -> int | float:
    """``CAN_NANG`` in kg.  0 and the vendor sentinel 0.01 mean "not weighed" (research notes
    §6.8 item 9): no Observation, a warning instead."""
    value = decimal(text)
    if value <= 0.01:
        raise BadValue(f"{text!r} is the 'not weighed' sentinel, not a weight", severity="warning")
    return value


# -- codes -----------------------------------------------------------------------------------


def _known(system: str, code: str) -> str | None:
    """The display of ``code`` in ``system`` (as ``terminology.lookup`` gives it, without the
    concept's properties it builds and a mapping never reads); None when either is unknown."""
    from fhir_hub.terminology import code_system

    cs = code_system(system)
    concept = None if cs is None else cs.concepts.get(code)
    return None if concept is None else concept.get("display", "")


def _coding(system: str, code: str, what: str) -> dict[str, Any] | Remark:
    display = _known(system, code)
    if display is None:
        return Remark({"system": system, "code": code}, f"{code!r} is not a known {what} code")
    return {"system": system, "code": code, "display": display}


def icd10(text: str) -> dict[str, Any] | Remark:
    """An ICD-10 code (Vietnamese edition, QĐ 4469) → Coding with the Vietnamese title.  A code
    not in the loaded catalogue is kept as sent, with a warning."""
    return _coding(systems.ICD10_VN, text.strip().upper(), "ICD-10 (QĐ 4469)")


def icd10_list(text: str) -> list[dict[str, Any] | Remark]:
    """A ``;``-list of ICD-10 codes (``MA_BENH_KT`` in XML13/XML14) → one :func:`icd10` Coding each
    (with ``each: true``)."""
    return [icd10(code) for code in split_list(text)]


def ethnic_group(text: str) -> dict[str, Any] | Remark:
    """``MA_DANTOC`` (QĐ 121-TCTK, 2 digits) → Coding of the draft IG's ``vn-core-race``."""
    return _coding(systems.ETHNIC_GROUP, text, "ethnic group (QĐ 121-TCTK)")


def visit_type(text: str) -> dict[str, Any] | Remark:
    """``MA_LOAI_KCB`` → Coding of the QĐ 130 visit-type list; a one-digit code of the pre-4750
    numeric form (``2``) is read as ``02`` (research notes §6.8 item 3)."""
    code = text.zfill(2) if text.isdigit() and len(text) == 1 else text
    return _coding(systems.VISIT_TYPE, code, "MA_LOAI_KCB")


def discharge_type(text: str) -> dict[str, Any] | Remark:
    """``MA_LOAI_RV`` → Coding of the QĐ 130 discharge-type list."""
    return _coding(systems.DISCHARGE_TYPE, text, "MA_LOAI_RV")


def treatment_result(text: str) -> dict[str, Any] | Remark:
    """``KET_QUA_DTRI`` → Coding of the QĐ 130 treatment-result list."""
    return _coding(systems.TREATMENT_RESULT, text, "KET_QUA_DTRI")


def bhyt_object(card: str) -> dict[str, Any]:
    """The Coverage.class of a 15-character BHYT card: its 2-letter object code (``HT3…`` →
    ``HT``), named from the object-code list when known."""
    if len(card) < 3 or not card[:2].isalpha():
        raise BadValue(f"{card!r} does not start with a 2-letter BHYT object code")
    code = card[:2].upper()
    out: dict[str, Any] = {"type": {"coding": [{"system": systems.COVERAGE_CLASS, "code": "group"}]},
                           "value": code}
    name = _known(systems.BHYT_OBJECT, code)
    if name:
        out["name"] = name
    return out


def admin_address(province: str, district: str = "", ward: str = "") -> dict[str, Any]:
    """``MATINH_CU_TRU`` / ``MAHUYEN_CU_TRU`` / ``MAXA_CU_TRU`` → the draft IG's
    administrative-address extension.  With a district code the codes are of the pre-2025 lists
    (three levels); without one, of the 2025 lists (no district level since 01/07/2025).  The
    codes are kept as sent, even when the list does not know them (mergers make old codes
    ambiguous: keep the original, research notes §6.8 item 13)."""
    pre2025 = bool(district)
    province_cs = systems.PROVINCE_PRE2025 if pre2025 else systems.PROVINCE_2025
    ward_cs = systems.WARD_PRE2025 if pre2025 else systems.WARD_2025
    parts: list[dict[str, Any]] = []

    def part(url: str, system: str, code: str) -> None:
        coding: dict[str, Any] = {"system": system, "code": code}
        display = _known(system, code)
        if display:
            coding["display"] = display
        parts.append({"url": url, "valueCodeableConcept": {"coding": [coding]}})

    part("state", province_cs, province)
    if district:
        part("district", systems.ADMIN_ADDRESS, district)
    if ward:
        part("ward", ward_cs, ward)
    return {"url": systems.ADMIN_ADDRESS_EXT, "extension": parts}


_UCUM = {"mmol/l": "mmol/L", "umol/l": "umol/L", "µmol/l": "umol/L", "g/l": "g/L", "mg/l": "mg/L",
         "mg/dl": "mg/dL", "g/dl": "g/dL", "%": "%", "u/l": "U/L", "iu/l": "[IU]/L", "fl": "fL", "pg": "pg",
         "mmhg": "mm[Hg]", "l/l": "L/L", "kg": "kg", "g": "g", "cm": "cm"}
#: Vietnamese labs write G/L and T/L for 10^9/L and 10^12/L (cell counts): case matters there.
_UCUM_CASED = {"G/L": "10*9/L", "T/L": "10*12/L"}


def lab_value(value: str, unit: str = "") -> dict[str, Any]:
    """``GIA_TRI`` (+ ``DON_VI_DO``) → the Observation's ``value[x]``: ``valueQuantity`` when the
    value is a number (with a UCUM code when the unit is one of a small table), ``valueString``
    otherwise (``Âm tính``, ``>1000``)."""
    if not _DECIMAL.fullmatch(value):
        return {"valueString": value}
    qty: dict[str, Any] = {"value": decimal(value)}
    if unit:
        qty["unit"] = unit
        code = _UCUM_CASED.get(unit) or _UCUM.get(unit.lower())
        if code:
            qty["system"] = systems.UCUM
            qty["code"] = code
    return {"valueQuantity": qty}


def vn_name(text: str) -> dict[str, Any]:
    """``HO_TEN`` → HumanName: the whole name as ``text``, the first word as ``family`` and the
    rest as ``given`` (Vietnamese order is family, middle, given; the middle name is part of the
    given names in FHIR).  A one-word name is ``text`` and ``given`` only."""
    words = text.split()
    name: dict[str, Any] = {"use": "official", "text": " ".join(words)}
    if len(words) > 1:
        name["family"] = words[0]
        name["given"] = words[1:]
    else:
        name["given"] = words
    return name


def _licence(code: str) -> dict[str, Any]:
    return {"identifier": {"type": {"coding": [{"system": systems.V2_0203, "code": "LN"}], "text": "CCHN"},
                           "value": code}}


def practitioner(text: str) -> dict[str, Any] | Remark:
    """A staff code (practising-certificate number, ``MA_BAC_SI``) → a logical Reference by
    identifier, for an element that holds one person.  Several ``;``-separated codes → the first
    (the one responsible), with a warning that the others are only in the original XML."""
    codes = split_list(text)
    if not codes:
        raise BadValue(f"{text!r} holds no staff code")
    if len(codes) > 1:
        return Remark(_licence(codes[0]), f"{len(codes)} staff codes where one person fits: the first is mapped, "
                                          "the others are kept in the Binary only")
    return _licence(codes[0])


def practitioners(text: str) -> list[dict[str, Any]]:
    """A ``;``-list of staff codes (``NGUOI_THUC_HIEN`` of a service: everyone who performed it)
    → one logical Reference each (with ``each: true``)."""
    return [_licence(code) for code in split_list(text)]


def phone(text: str) -> dict[str, Any]:
    """``DIEN_THOAI`` → ContactPoint (a string: leading zeros kept)."""
    return {"system": "phone", "value": text}


def signer(text: str) -> dict[str, Any]:
    """``MA_TTDV`` (the social-insurance number of the head of the facility, or of whom they
    delegated, who signs the paper) → a logical Reference by that identifier."""
    return {"identifier": {"type": {"coding": [{"system": systems.V2_0203, "code": "SS"}]},
                           "system": systems.SOCIAL_INSURANCE, "value": text}}


# -- text ------------------------------------------------------------------------------------


def labelled(text: str, label: str) -> str:
    """``label: text`` — free text that lands in a shared element (several notes of a referral)
    keeps the name of the field it came from."""
    return f"{label}: {text}"


def narrative(text: str) -> dict[str, Any]:
    """Free text → a generated Narrative (XHTML-escaped, line breaks kept), for a Composition
    section."""
    lines = "<br/>".join(html.escape(line) for line in text.splitlines() or [text])
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{lines}</p></div>'}


def labelled_narrative(text: str, label: str) -> dict[str, Any]:
    """:func:`labelled` as a Narrative (several fields in one section)."""
    return narrative(labelled(text, label))


def treatment_result_text(text: str) -> dict[str, Any] | Remark:
    """``KET_QUA_DTRI`` as the Narrative of a section: ``2 — Đỡ`` (the code and its name)."""
    found = treatment_result(text)
    if isinstance(found, Remark):
        return Remark(narrative(text), found.reason)
    return narrative(f"{text} — {found['display']}")


# -- vital signs in the clinical-course text (XML5 DIEN_BIEN_LS) -----------------------------

#: QĐ 4750 asks XML5 to carry the vital signs as "Mạch (M), nhiệt độ (T), huyết áp (HA), nhịp thở
#: (NT), SpO2 (SP)": label, ':' and the value; decimals with '.' or ','.
_VITAL = {label: re.compile(rf"(?:^|[\s,;.(]){label}\s*:\s*(\d+(?:[.,]\d+)?)(?:\s*/\s*(\d+))?")
          for label in ("M", "T", "HA", "NT", "SP")}
_VITALS: dict[str, tuple[str, str, str, str]] = {  # label → LOINC, display, UCUM code, unit shown
    "M": ("8867-4", "Heart rate", "/min", "/min"),
    "T": ("8310-5", "Body temperature", "Cel", "Cel"),
    "NT": ("9279-1", "Respiratory rate", "/min", "/min"),
    "SP": ("2708-6", "Oxygen saturation in Arterial blood", "%", "%"),
}
#: SpO2 is measured by pulse oximetry: its own LOINC code next to R4's vital-signs one.
_PULSE_OXIMETRY = {"system": systems.LOINC, "code": "59408-5",
                   "display": "Oxygen saturation in Arterial blood by Pulse oximetry"}


def _vital_number(text: str, label: str) -> tuple[float | int, str | None] | None:
    m = _VITAL[label].search(text)
    if m is None:
        return None
    number = m.group(1).replace(",", ".")
    return (float(number) if "." in number else int(number)), m.group(2)


def vital_sign(text: str, label: str) -> dict[str, Any]:
    """One vital sign written ``M: 102`` in a clinical-course note → ``code`` and
    ``valueQuantity`` of a vital-signs Observation (LOINC, UCUM).  Absent from the note:
    :class:`BadValue` of severity ``information`` (nothing to map, no remark)."""
    found = _vital_number(text, label)
    if found is None:
        raise BadValue(f"no {label}: in the note", severity="information")
    loinc, display, ucum, unit = _VITALS[label]
    codings = [{"system": systems.LOINC, "code": loinc, "display": display}]
    if label == "SP":
        codings.append(_PULSE_OXIMETRY)
    return {"code": {"coding": codings},
            "valueQuantity": {"value": found[0], "unit": unit, "system": systems.UCUM, "code": ucum}}


def blood_pressure(text: str) -> dict[str, Any]:
    """``HA: 140/85`` in a clinical-course note → a blood-pressure panel (85354-9) with systolic
    and diastolic components in mm[Hg]; a value without ``/diastolic`` is a :class:`BadValue`."""
    found = _vital_number(text, "HA")
    if found is None:
        raise BadValue("no HA: in the note", severity="information")
    if found[1] is None:
        raise BadValue("HA: has no systolic/diastolic pair", severity="warning")

    def part(code: str, display: str, value: float | int) -> dict[str, Any]:
        return {"code": {"coding": [{"system": systems.LOINC, "code": code, "display": display}]},
                "valueQuantity": {"value": value, "unit": "mmHg", "system": systems.UCUM, "code": "mm[Hg]"}}

    return {"code": {"coding": [{"system": systems.LOINC, "code": "85354-9", "display": "Blood pressure panel "
                                 "with all children optional"}]},
            "component": [part("8480-6", "Systolic blood pressure", found[0]),
                          part("8462-4", "Diastolic blood pressure", int(found[1]))]}


CONVERTERS: dict[str, Callable[..., Any]] = {f.__name__: f for f in (
    datetime_vn, date_ymd, date_or_datetime, birth_date, birth_time, instant_from_date, class_history, decimal,
    integer, money, percent, department, split_list, first_of_list, body_weight, icd10, icd10_list, ethnic_group, visit_type, discharge_type,
    treatment_result, bhyt_object, admin_address, lab_value, vn_name, practitioner, practitioners, phone, signer,
    labelled, narrative, labelled_narrative, treatment_result_text, vital_sign, blood_pressure,
)}


# -- requests (how a resource is written: conditional so re-imports update) ------------------


#: Text of ``quote``'s always-safe characters and ``:/=`` (which the value escapes, the system keeps).
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_.~:/=-]*")
_PLAIN_SYSTEM = re.compile(r"[A-Za-z0-9_.~:/-]*")
#: A system as written in a search token, by system: a spec's few URLs, asked for every resource.
_SYSTEM_TOKENS: dict[str, str] = {}


def _token(identifier: dict[str, Any]) -> str:
    value = str(identifier["value"])
    if _PLAIN_KEY.fullmatch(value):  # most values are plain or line keys (a group's has "="): no need for quote
        value = value.replace("/", "%2F").replace(":", "%3A").replace("=", "%3D")
    else:
        value = quote(value, safe="")
    system = identifier.get("system")
    if not system:
        return value
    written = _SYSTEM_TOKENS.get(system)
    if written is None:
        written = system if _PLAIN_SYSTEM.fullmatch(system) else quote(system, safe=":/")
        if len(_SYSTEM_TOKENS) < 1024:  # systems come from the specs; bounded all the same
            _SYSTEM_TOKENS[system] = written
    return f"{written}|{value}"


def put_by_identifier(resource: dict[str, Any]) -> dict[str, Any]:
    """Conditional update on the resource's first identifier: created on the first import,
    updated (a new version, no duplicate) on every later one."""
    ident = resource["identifier"]  # a list, but one Identifier in Composition
    return {"method": "PUT", "url": f"{resource['resourceType']}?identifier={_token(ident[0] if isinstance(ident, list) else ident)}"}


def create_once_by_identifier(resource: dict[str, Any]) -> dict[str, Any]:
    """Create unless one with the first identifier exists (the facility's Organization: the
    claims file knows only its code, so an existing, richer record is left alone)."""
    rtype = resource["resourceType"]
    return {"method": "POST", "url": rtype, "ifNoneExist": f"identifier={_token(resource['identifier'][0])}"}


#: The identifier systems a Patient is matched by, best first.
_PATIENT_KEYS = (systems.NATIONAL_ID, systems.INSURANCE_NUMBER, systems.PATIENT_INTERNAL_ID)


def patient_request(resource: dict[str, Any]) -> dict[str, Any]:
    """Create the Patient unless one exists with the personal ID (``SO_CCCD``), else the BHYT
    card, else the facility's patient number.  Not a conditional update: a Patient the hub holds
    from an EMR is richer than the claim, and merging is the reconciliation issue's job."""
    by_system = {i.get("system"): i for i in resource.get("identifier", [])}
    for system in _PATIENT_KEYS:
        if system in by_system:
            return {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={_token(by_system[system])}"}
    return {"method": "POST", "url": "Patient"}


def replace_by_id(resource: dict[str, Any]) -> dict[str, Any]:
    """Update-as-create on the resource's own (content-derived) id: the Binary of the original XML."""
    return {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}


REQUESTS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {f.__name__: f for f in (
    put_by_identifier, create_once_by_identifier, patient_request, replace_by_id,
)}
