"""The comparison features of a Patient: what reconciliation looks at, normalised once.

:func:`extract` is pure: a Patient dict (R4 JSON) in, a frozen :class:`Features` out, no store
and no clock. Everything the matcher compares is decided here, so the scorer only compares:

* **Personal ID** (``…/sid/national_id``): 12 digits once spaces and dots are dropped, valid when
  the first three digits are a birth-registration province prefix (``"0"`` + a pre-2025 province
  code, 001 … 096) and the fourth is a century/sex digit 0–3 (1900–2099). The ID's own birth year
  and sex are kept, to be checked against ``birthDate`` and ``gender`` (research notes §1.1). IDs of
  people whose birth was registered abroad start with a country code and are not recognised.
* **Social-insurance numbers** (``…/sid/insurance_number``): a 10-digit BHXH number as it is, or
  the last 10 characters of a 15-character BHYT card ``XX D PP NNNNNNNNNN`` (§1.3–1.4): the
  number outlives card renewals, the object code and benefit level do not.
* **Name**: the ``official`` (else ``usual``, else first) HumanName split into họ (``family``),
  đệm (the given words but the last) and tên (the last given word), or, without parts, ``text``
  split likewise. Each part twice: *exact* (NFC, case-folded, tone mark moved to the end of the
  syllable so that "Hoà" and "Hòa" agree: §2's tone-placement trap) and *folded* (no diacritics,
  ``đ`` → ``d``; :func:`fhir_hub.search.text.normalise`).
* **Birth date** with its precision: year, year-month or full date.
* **Sex** (``male`` / ``female``; ``other`` and ``unknown`` are treated as missing).
* **Address**: province and commune codes from the administrative-address extension, converted
  to the 2025 lists (:mod:`fhir_hub.mpi.units`); a commune becomes the set of 2025 communes it
  may now be in.
* **Phones**: digits only, ``+84``/``84`` → ``0``, a dropped leading zero restored, and the
  11-digit mobile numbers renumbered in 2018 (``0162…`` → ``032…``) rewritten to 10 digits.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from fhir_hub.mpi import units as _units
from fhir_hub.search.text import normalise

_CORE = "http://fhir.ehealth.gov.vn/core"
NATIONAL_ID = f"{_CORE}/sid/national_id"
INSURANCE_NUMBER = f"{_CORE}/sid/insurance_number"
ADMIN_ADDRESS = f"{_CORE}/CodeSystem/vn-core-administrative-address"
ADMIN_ADDRESS_EXT = f"{_CORE}/StructureDefinition/extension-administrative-address"


class Precision(StrEnum):
    YEAR = "year"
    MONTH = "year-month"
    DAY = "full"


@dataclass(frozen=True, slots=True)
class BirthDate:
    year: int
    month: int | None = None
    day: int | None = None

    @property
    def precision(self) -> Precision:
        return Precision.DAY if self.day is not None else Precision.MONTH if self.month is not None else Precision.YEAR


@dataclass(frozen=True, slots=True)
class NamePart:
    """One part of a name: as written (NFC), exact comparison key, folded comparison key."""

    text: str
    exact: str
    folded: str


@dataclass(frozen=True, slots=True)
class Features:
    """What the matcher compares, for one Patient. Absent values are ``None`` or empty sets."""

    national_id: str | None = None
    #: birth year and sex written into the personal ID's digits 4–6
    id_birth_year: int | None = None
    id_sex: str | None = None
    insurance_numbers: frozenset[str] = frozenset()
    family: NamePart | None = None
    middle: NamePart | None = None
    given: NamePart | None = None
    birth: BirthDate | None = None
    sex: str | None = None
    #: 2025 province codes, and the 2025 communes the address may be in
    provinces: frozenset[str] = frozenset()
    communes: frozenset[str] = frozenset()
    phones: frozenset[str] = frozenset()

    @property
    def folded_name(self) -> str:
        return " ".join(p.folded for p in (self.family, self.middle, self.given) if p is not None)

    @property
    def birth_year(self) -> int | None:
        return self.birth.year if self.birth else None


# --------------------------------------------------------------------------- identifiers

_SEPARATORS = re.compile(r"[\s.\-]")
_CARD = re.compile(r"[A-Z]{2}[1-5][0-9]{2}([0-9]{10})")
_BHXH = re.compile(r"[0-9]{10}")


def national_id(value: str) -> tuple[str, int, str] | None:
    """A valid personal ID with the birth year and sex its digits encode, else ``None``.

    >>> national_id("001 085 012345")
    ('001085012345', 1985, 'male')
    """
    digits = _SEPARATORS.sub("", value)
    if len(digits) != 12 or not digits.isascii() or not digits.isdigit():
        return None
    if digits[:3] not in _units.units().cccd_prefixes:
        return None
    century_sex = int(digits[3])
    if century_sex > 3:  # 2100 and later: nobody is born yet
        return None
    year = 1900 + 100 * (century_sex // 2) + int(digits[4:6])
    return digits, year, "female" if century_sex % 2 else "male"


def insurance_number(value: str) -> str | None:
    """The 10-digit social-insurance number of a BHXH number or a 15-character BHYT card."""
    text = _SEPARATORS.sub("", value).upper()
    if _BHXH.fullmatch(text):
        return text
    card = _CARD.fullmatch(text)
    return card.group(1) if card else None


# --------------------------------------------------------------------------- names

#: The five Vietnamese tone marks (huyền, sắc, ngã, hỏi, nặng) as combining characters; the other
#: marks (circumflex, breve, horn) belong to the vowel and stay where they are.
_TONES = frozenset("\u0300\u0301\u0303\u0309\u0323")


@lru_cache(maxsize=65536)
def exact_key(text: str) -> str:
    """Case-folded NFC with each word's tone mark moved to its end, so the old ("hòa", "thủy")
    and new ("hoà", "thuỷ") placements agree; ``exact_key("Hoà") == exact_key("HÒA")``."""
    words = []
    for word in text.split():
        decomposed = unicodedata.normalize("NFD", word.casefold())
        tones = "".join(c for c in decomposed if c in _TONES)
        base = "".join(c for c in decomposed if c not in _TONES)
        words.append(unicodedata.normalize("NFC", base) + tones)
    return " ".join(words)


def _part(words: list[str]) -> NamePart | None:
    return _name_part(" ".join(words)) if words else None


@lru_cache(maxsize=65536)
def _name_part(text: str) -> NamePart:
    """Cached: a few thousand distinct name parts cover most people, so a million persons' features
    share their NamePart objects."""
    text = unicodedata.normalize("NFC", text)
    return NamePart(text, exact_key(text), normalise(text))


def split_name(name: dict[str, Any]) -> tuple[NamePart | None, NamePart | None, NamePart | None]:
    """(họ, đệm, tên) of a HumanName: ``family`` + ``given`` when it has them, else ``text``.

    The given words may be one string (``["Văn A"]``) or several; the last word is the tên. The
    whole ``family`` is the họ, so a double family name given as such ("Tôn Thất") stays whole;
    from ``text`` only the first word can be taken as the họ.
    """
    given_words = [w for g in name.get("given", ()) if isinstance(g, str) for w in g.split()]
    family = name.get("family")
    family_words = family.split() if isinstance(family, str) else []
    if not given_words:
        text = name.get("text")
        words = text.split() if isinstance(text, str) else []
        if family_words and words[:len(family_words)] == family_words:
            words = words[len(family_words):]
        elif not family_words and len(words) > 1:
            family_words, words = words[:1], words[1:]
        given_words = words
    if not given_words:
        return _part(family_words), None, None
    return _part(family_words), _part(given_words[:-1]), _part(given_words[-1:])


def _pick_name(names: Iterable[Any]) -> dict[str, Any] | None:
    usable = [n for n in names if isinstance(n, dict) and n.get("use") not in ("old", "nickname", "anonymous")]
    for use in ("official", "usual"):
        for n in usable:
            if n.get("use") == use:
                return n
    return usable[0] if usable else None


# --------------------------------------------------------------------------- dates, sex

_DATE = re.compile(r"([0-9]{4})(?:-([0-9]{2})(?:-([0-9]{2}))?)?")


def birth_date(value: Any) -> BirthDate | None:
    """``birthDate`` (``YYYY``, ``YYYY-MM``, ``YYYY-MM-DD``; a time part is ignored) with its precision."""
    if not isinstance(value, str):
        return None
    m = _DATE.match(value)
    if not m:
        return None
    year = int(m.group(1))
    month = int(m.group(2)) if m.group(2) else None
    day = int(m.group(3)) if m.group(3) else None
    if month is not None and not 1 <= month <= 12:
        return BirthDate(year)
    if day is not None and not 1 <= day <= 31:
        return BirthDate(year, month)
    return BirthDate(year, month, day)


def _sex(value: Any) -> str | None:
    return value if value in ("male", "female") else None


# --------------------------------------------------------------------------- address

def _generation(system: str, version: str | None) -> str | None:
    """``"new"``, ``"old"`` or ``None`` (either) for an address coding."""
    if system in (_units.PROVINCE_2025, _units.WARD_2025):
        return "new"
    if system in (_units.PROVINCE_PRE2025, _units.WARD_PRE2025):
        return "old"
    if system == ADMIN_ADDRESS and version:
        # the 2025 lists are version "2025-07-01" (the demo data writes "2025"); the pre-2025 ones "2025-01-04"
        return "new" if version == "2025" or version[:10] >= "2025-07-01" else "old"
    return None


def _codings(ext: dict[str, Any], part: str) -> Iterable[tuple[str, str | None]]:
    for sub in ext.get("extension", ()):
        if isinstance(sub, dict) and sub.get("url") == part:
            for coding in (sub.get("valueCodeableConcept") or {}).get("coding", ()):
                code = coding.get("code") if isinstance(coding, dict) else None
                if isinstance(code, str) and code:
                    yield code, _generation(str(coding.get("system", "")), coding.get("version"))


def convert_province(code: str, generation: str | None) -> frozenset[str]:
    """The 2025 province(s) a province code may stand for."""
    u = _units.units()
    found: set[str] = set()
    if generation != "old" and code in u.provinces_2025:
        found.add(code)
    if generation != "new" and code in u.province_old_to_new:
        found.add(u.province_old_to_new[code])
    return frozenset(found)


def convert_commune(code: str, generation: str | None) -> frozenset[str]:
    """The 2025 commune(s) a commune code may stand for (several when an old commune was split,
    or when the code's generation is not said and it exists in both lists)."""
    u = _units.units()
    found: set[str] = set()
    if generation != "old" and code in u.ward_province:
        found.add(code)
    if generation != "new":
        found.update(u.ward_old_to_new.get(code, ()))
    return frozenset(found)


def _address(addresses: Iterable[Any]) -> tuple[frozenset[str], frozenset[str]]:
    provinces: set[str] = set()
    communes: set[str] = set()
    for address in addresses:
        if not isinstance(address, dict) or address.get("use") == "old":
            continue
        for ext in address.get("extension", ()):
            if isinstance(ext, dict) and ext.get("url") == ADMIN_ADDRESS_EXT:
                for code, gen in _codings(ext, "state"):
                    provinces |= convert_province(code, gen)
                for code, gen in _codings(ext, "ward"):
                    communes |= convert_commune(code, gen)
    if communes and not provinces:
        ward_province = _units.units().ward_province
        provinces = {ward_province[c] for c in communes if c in ward_province}
    return frozenset(provinces), frozenset(communes)


# --------------------------------------------------------------------------- phones

#: Mobile prefixes renumbered from 11 to 10 digits in 2018 (from memory, unverified): 0162 → 032 …
_OLD_MOBILE = {"0120": "070", "0121": "079", "0122": "077", "0126": "076", "0128": "078", "0123": "083",
               "0124": "084", "0125": "085", "0127": "081", "0129": "082", "0162": "032", "0163": "033",
               "0164": "034", "0165": "035", "0166": "036", "0167": "037", "0168": "038", "0169": "039",
               "0186": "056", "0188": "058", "0199": "059"}


def phone(value: str) -> str | None:
    """A Vietnamese phone number in its national 0-prefixed form, else ``None``.

    >>> phone("+84 912 345 678"), phone("0912.345.678"), phone("01623456789")
    ('0912345678', '0912345678', '0323456789')
    """
    digits = "".join(c for c in value if c.isdigit())
    if value.lstrip().startswith("+") or (digits.startswith("84") and len(digits) in (11, 12)):
        if not digits.startswith("84"):
            return None  # another country's number
        digits = "0" + digits[2:]
    elif len(digits) == 9 and not digits.startswith("0"):
        digits = "0" + digits
    if len(digits) == 11 and digits[:4] in _OLD_MOBILE:
        digits = _OLD_MOBILE[digits[:4]] + digits[4:]
    if digits.startswith("0") and len(digits) in (10, 11) and digits[1] != "0":
        return digits
    return None


# --------------------------------------------------------------------------- extract

def extract(patient: dict[str, Any]) -> Features:
    """The features of one Patient resource (R4 JSON as a dict)."""
    nid: tuple[str, int, str] | None = None
    insurance: set[str] = set()
    for identifier in patient.get("identifier", ()):
        if not isinstance(identifier, dict) or not isinstance(identifier.get("value"), str):
            continue
        system, value = identifier.get("system"), identifier["value"]
        if system == NATIONAL_ID and nid is None:
            nid = national_id(value)
        elif system == INSURANCE_NUMBER and (number := insurance_number(value)):
            insurance.add(number)
    name = _pick_name(patient.get("name", ()))
    family, middle, given = split_name(name) if name else (None, None, None)
    phones = frozenset(p for t in patient.get("telecom", ())
                       if isinstance(t, dict) and t.get("system") in ("phone", "sms", None)
                       and isinstance(t.get("value"), str) and (p := phone(t["value"])))
    provinces, communes = _address(patient.get("address", ()))
    return Features(
        national_id=nid[0] if nid else None, id_birth_year=nid[1] if nid else None, id_sex=nid[2] if nid else None,
        insurance_numbers=frozenset(insurance), family=family, middle=middle, given=given,
        birth=birth_date(patient.get("birthDate")), sex=_sex(patient.get("gender")),
        provinces=provinces, communes=communes, phones=phones)
