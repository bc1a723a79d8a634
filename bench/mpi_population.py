"""A generated population of Vietnamese persons, and facility copies of them with known faults.

Deterministic by seed, and by person: :meth:`Population.person` rebuilds person ``i`` from
``(seed, i)`` alone, so a million persons need not be held to make copies of a few of them, and a
copy ``c`` of person ``i`` is the same on every run.

What a person has (the golden record, :meth:`Population.golden`):

* sex 50/50; an age from a flat-then-falling pyramid (0–95, as on 2025-07-01) and a full birth date;
* a name in họ–đệm–tên order: family names by the shares of research notes §2 (Nguyễn 38.4 %,
  Trần 11 %, Lê 9.5 % …, Hoàng→Huỳnh and Vũ→Võ mostly in the centre and south), middle names by sex
  with "Văn"/"Thị" far more common for older people and a second middle name for some younger ones,
  given names by sex with a Zipf-like spread (no public frequency list was found, §2);
* a residence commune drawn among the pre-2025 communes of a province drawn by population,
  recorded with its 2025 code (for a split commune, one of its successors), the 2025 province;
* a personal ID (97 %) consistent with the birth year, sex and birth-registration province (the
  residence's pre-2025 province, or another for 15 % migrants); the ID's last six digits and the
  social-insurance number are bijections of ``i``, so no two persons share either (for
  ``i < 1,000,000`` the IDs are unique; above that two persons share one only if they also share
  province, sex and birth year — the bench checks);
* a BHYT card (92 %): object code by age (TE, HS/SV, HT, DN/HC/GD/HN/CN…), its benefit level, a
  province code and the 10-digit BHXH number; a mobile phone (85 % of those 15 and over).

What a facility copy gets wrong (:meth:`Population.copy`, each fault drawn independently; the
list of faults applied is returned with the copy): lost diacritics (upper- or mixed case), NFD
text, upper case with diacritics, old tone placement, a one-letter typo in one part, a dropped
middle name, swapped day and month, a year-only or year-month birth date, a wrong sex, no personal
ID, a family member's personal ID, no BHYT card, a renewed card (other object code), the BHXH
number alone, pre-2025 address codes, no address, a move within the province, no phone, the phone
written ``+84…``/``84…``/dotted/in the pre-2018 11-digit form, a changed phone.
"""

from __future__ import annotations

import bisect
import csv
import random
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property
from importlib import resources
from itertools import accumulate
from typing import Any

from fhir_hub.mpi import units as _units
from fhir_hub.mpi.features import ADMIN_ADDRESS, ADMIN_ADDRESS_EXT, INSURANCE_NUMBER, NATIONAL_ID
from fhir_hub.search.text import normalise
from fhir_hub.terminology import code_system

_AGE_REFERENCE = date(2025, 7, 1)

#: Family names with their share in percent (research notes §2; the tail is a rough guess).
SURNAMES: tuple[tuple[str, float], ...] = (
    ("Nguyễn", 38.4), ("Trần", 11.0), ("Lê", 9.5), ("Phạm", 7.1), ("Hoàng", 5.1), ("Phan", 4.5), ("Vũ", 3.9),
    ("Đặng", 2.1), ("Bùi", 2.0), ("Đỗ", 1.4), ("Hồ", 1.3), ("Ngô", 1.3), ("Dương", 1.0), ("Lý", 0.5),
    ("Trương", 0.8), ("Đinh", 0.7), ("Đào", 0.6), ("Mai", 0.6), ("Trịnh", 0.5), ("Đoàn", 0.5), ("Lâm", 0.5),
    ("Lương", 0.4), ("Cao", 0.4), ("Hà", 0.4), ("Tạ", 0.3), ("Lưu", 0.3), ("Tô", 0.3), ("Châu", 0.3),
    ("Quách", 0.2), ("Thái", 0.2), ("Vương", 0.2), ("Kiều", 0.2), ("Triệu", 0.2), ("Phùng", 0.2), ("Chu", 0.2),
    ("Lại", 0.2), ("La", 0.1), ("Tăng", 0.1), ("Mạc", 0.1), ("Thân", 0.1), ("Khúc", 0.1), ("Nông", 0.2),
    ("Thạch", 0.1), ("Danh", 0.1), ("Lò", 0.1), ("Giàng", 0.1), ("Sùng", 0.05), ("Lục", 0.05), ("Hứa", 0.05),
)
MIDDLE_MALE = ("Đức", "Minh", "Hữu", "Quốc", "Thanh", "Công", "Xuân", "Quang", "Ngọc", "Anh", "Tuấn", "Hoàng",
               "Gia", "Đình", "Trọng", "Thành", "Duy", "Hải", "Tiến", "Mạnh", "Bảo", "Trung", "Nhật", "Khánh",
               "Việt", "Thế", "Chí", "Phú")
MIDDLE_FEMALE = ("Ngọc", "Thu", "Thanh", "Minh", "Phương", "Hồng", "Kim", "Thúy", "Bảo", "Khánh", "Hoài",
                 "Mai", "Diệu", "Như", "Quỳnh", "Bích", "Thùy", "Hải", "Tuyết", "Lan", "Thảo", "Mỹ", "Yến",
                 "Cẩm", "Hà")
GIVEN_MALE = ("Anh", "Hùng", "Dũng", "Tuấn", "Minh", "Nam", "Hải", "Long", "Sơn", "Thắng", "Cường", "Hiếu",
              "Huy", "Đức", "Trung", "Thành", "Tùng", "Quang", "Bình", "Phong", "Tú", "Khoa", "Việt", "Hưng",
              "Lâm", "Phúc", "Bảo", "Khang", "Kiên", "Toàn", "Vinh", "Tâm", "Hoàng", "Đạt", "Duy", "Nghĩa",
              "Tài", "Thịnh", "Quân", "Khánh", "Lộc", "Mạnh", "Nhân", "Phát", "Thái", "Lợi", "Định", "Hiển",
              "Chiến", "Công", "Trí", "Thiện", "Nhật", "Đăng", "Khôi", "Tiến", "Thanh", "Hậu", "Hòa", "Sang",
              "Tân", "Vũ", "Bách", "Hiệp", "Luân", "Thuận", "Trọng", "Kha", "Quý", "Tín", "Thủy", "Xuân")
GIVEN_FEMALE = ("Linh", "Anh", "Trang", "Hương", "Ngọc", "Hà", "Thảo", "Lan", "Mai", "Hoa", "Hằng", "Huyền",
                "Nhung", "Phương", "Thủy", "Hạnh", "Dung", "Yến", "Vân", "Nga", "Ngân", "Hiền", "Giang", "Loan",
                "Oanh", "Hồng", "Liên", "Chi", "My", "Vy", "Nhi", "Thư", "Trâm", "Uyên", "Quyên", "Tâm", "Xuân",
                "Tuyết", "Ánh", "Duyên", "Hậu", "Thơm", "Lụa", "Nhàn", "Hân", "Diệp", "An", "Như", "Ly", "Thu",
                "Hòa", "Thúy", "Châu", "Diễm", "Khánh", "Quỳnh", "Sương", "Thắm", "Tươi", "Cúc", "Đào", "Gấm",
                "Bích", "Kiều", "Lệ", "Ngà", "Phượng", "Thoa", "Hoài", "Khuê")
#: Mobile prefixes in use since the 2018 renumbering.
MOBILE_PREFIXES = ("090", "091", "093", "094", "096", "097", "098", "032", "033", "034", "035", "036", "037",
                   "038", "039", "070", "076", "077", "078", "079", "081", "082", "083", "084", "085", "086",
                   "088", "089")
#: The 2018 renumbering backwards (10-digit prefix → the old 11-digit one), for the old-format fault.
_NEW_TO_OLD_MOBILE = {"070": "0120", "079": "0121", "077": "0122", "076": "0126", "078": "0128", "083": "0123",
                      "084": "0124", "085": "0125", "081": "0127", "082": "0129", "032": "0162", "033": "0163",
                      "034": "0164", "035": "0165", "036": "0166", "037": "0167", "038": "0168", "039": "0169"}

#: Probability of each fault in a facility copy.
FAULTS: dict[str, float] = {
    "no-diacritics": 0.35, "nfd": 0.05, "upper-case": 0.15, "tone-placement": 0.05, "name-typo": 0.07,
    "no-middle-name": 0.03, "swapped-day-month": 0.04, "year-only": 0.03, "year-month": 0.01, "wrong-sex": 0.003,
    "no-personal-id": 0.30, "family-member-id": 0.003, "no-card": 0.35, "renewed-card": 0.20, "bhxh-only": 0.10,
    "old-address-codes": 0.40, "no-address": 0.08, "moved": 0.03, "no-phone": 0.40, "phone-format": 0.40,
    "old-phone-format": 0.03, "changed-phone": 0.05,
}

_PROVINCE_2025 = _units.PROVINCE_2025
_WARD_2025 = _units.WARD_2025
_PROVINCE_PRE2025 = _units.PROVINCE_PRE2025
_WARD_PRE2025 = _units.WARD_PRE2025
_OLD_TONE = {"oà": "òa", "oá": "óa", "oả": "ỏa", "oã": "õa", "oạ": "ọa", "uỳ": "ùy", "uý": "úy", "uỷ": "ủy",
             "uỹ": "ũy", "uỵ": "ụy", "oè": "òe", "oé": "óe"}
_NEW_TONE = {v: k for k, v in _OLD_TONE.items()}


@dataclass(frozen=True, slots=True)
class Person:
    index: int
    sex: str
    birth: date
    family: str
    middle: tuple[str, ...]
    given: str
    national_id: str | None
    card: str | None
    bhxh: str
    phone: str | None
    old_province: str
    old_ward: str
    province: str
    ward: str

    @property
    def full_name(self) -> str:
        return " ".join((self.family, *self.middle, self.given))


class _Picker:
    """Weighted choice by bisecting cumulative weights (``random.choices`` rebuilds them per call)."""

    def __init__(self, items: Sequence[Any], weights: Sequence[float]) -> None:
        self.items = list(items)
        self.cum = list(accumulate(weights))

    def __call__(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect(self.cum, rng.random() * self.cum[-1])]


def _zipf(items: Sequence[str], s: float = 0.8) -> _Picker:
    return _Picker(items, [1 / (rank + 1) ** s for rank in range(len(items))])


class Population:
    """``size`` persons ``0 … size-1`` of seed ``seed``; persons from ``size`` on are people the
    population does not hold (incoming new patients)."""

    def __init__(self, size: int, seed: int = 1) -> None:
        self.size = size
        self.seed = seed

    # ----------------------------------------------------------------- tables

    @cached_property
    def _tables(self) -> dict[str, Any]:
        u = _units.units()
        with resources.files("fhir_hub.sample").joinpath("data/provinces_pre2025.csv").open(encoding="utf-8") as fh:
            population = {r["code"]: float(r["population_thousands"]) for r in csv.DictReader(fh)}
        old_wards = code_system(_WARD_PRE2025)
        assert old_wards is not None
        by_province: dict[str, list[str]] = {}
        for code, concept in old_wards.concepts.items():
            province = next((p["valueString"] for p in concept.get("property", ()) if p["code"] == "province_code"), None)
            if province and u.ward_old_to_new.get(code):
                by_province.setdefault(province, []).append(code)
        provinces = sorted(p for p in by_province if p in population and p in u.province_old_to_new)
        new_wards: dict[str, list[str]] = {}
        for ward, province in u.ward_province.items():
            new_wards.setdefault(province, []).append(ward)
        ages = list(range(96))
        return {
            "units": u,
            "province": _Picker(provinces, [population[p] for p in provinces]),
            "old_wards": {p: sorted(w) for p, w in by_province.items()},
            "new_wards": {p: sorted(w) for p, w in new_wards.items()},
            "all_provinces": provinces,
            "age": _Picker(ages, [1.0 if a < 45 else max(0.03, 1.0 - (a - 45) / 50) for a in ages]),
            "surname": _Picker([s for s, _ in SURNAMES], [w for _, w in SURNAMES]),
            "middle_male": _zipf(MIDDLE_MALE, 0.6),
            "middle_female": _zipf(MIDDLE_FEMALE, 0.6),
            "given_male": _zipf(GIVEN_MALE),
            "given_female": _zipf(GIVEN_FEMALE),
        }

    def _rng(self, i: int, k: int) -> random.Random:
        return random.Random(((self.seed << 40) + i) * 64 + k)

    # ----------------------------------------------------------------- persons

    def person(self, i: int) -> Person:
        t = self._tables
        rng = self._rng(i, 0)
        sex = "male" if rng.random() < 0.5 else "female"
        age = t["age"](rng)
        birth = _AGE_REFERENCE - timedelta(days=int(age * 365.25) + rng.randrange(365))
        old_province = t["province"](rng)
        old_ward = rng.choice(t["old_wards"][old_province])
        u = t["units"]
        province = u.province_old_to_new[old_province]
        ward = rng.choice(sorted(u.ward_old_to_new[old_ward]))
        family = t["surname"](rng)
        if family == "Hoàng" and rng.random() < (0.85 if int(province) >= 48 else 0.05):
            family = "Huỳnh"
        elif family == "Vũ" and rng.random() < (0.8 if int(province) >= 40 else 0.05):
            family = "Võ"
        male = sex == "male"
        plain = 0.8 if birth.year < 1970 else 0.55 if birth.year < 1990 else 0.3 if birth.year < 2005 else 0.12
        if rng.random() < (plain if male else plain + 0.1):
            middle = ["Văn" if male else "Thị"]
        else:
            middle = [t["middle_male" if male else "middle_female"](rng)]
        if rng.random() < (0.25 if birth.year >= 1990 else 0.08):
            extra = t["middle_male" if male else "middle_female"](rng)
            if extra not in middle:
                middle.append(extra)
        given = t["given_male" if male else "given_female"](rng)
        while given in middle:
            given = t["given_male" if male else "given_female"](rng)
        migrant = rng.random() < 0.15
        birth_province = rng.choice(t["all_provinces"]) if migrant else old_province
        national_id = self._national_id(i, birth_province, birth, sex) if rng.random() < 0.97 else None
        bhxh = f"{(i * 7_777_777_777 + 1_234_567_891) % 10**10:010d}"
        card = self._card(rng, age, old_province, bhxh) if rng.random() < 0.92 else None
        phone = None
        if age >= 15 and rng.random() < 0.85:
            phone = rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**7):07d}"
        return Person(i, sex, birth, family, tuple(middle), given, national_id, card, bhxh, phone,
                      old_province, old_ward, province, ward)

    def _national_id(self, i: int, province: str, birth: date, sex: str) -> str:
        century = (birth.year - 1900) // 100
        digit = century * 2 + (1 if sex == "female" else 0)
        serial = (i * 792_731 + 104_729) % 10**6
        return f"0{province}{digit}{birth.year % 100:02d}{serial:06d}"

    @staticmethod
    def _card(rng: random.Random, age: int, province: str, bhxh: str) -> str:
        if age < 6:
            code, level = "TE", 1
        elif age < 18:
            code, level = "HS", 4
        elif age < 23 and rng.random() < 0.5:
            code, level = "SV", 4
        elif age >= 60 and rng.random() < 0.6:
            code, level = "HT", 3
        else:
            code, level = rng.choice((("DN", 4), ("DN", 4), ("HC", 4), ("GD", 4), ("HN", 2), ("CN", 3), ("HX", 4)))
        return f"{code}{level}{province}{bhxh}"

    # ----------------------------------------------------------------- FHIR

    def golden(self, p: Person) -> dict[str, Any]:
        """The person as the population record holds it: full diacritics, 2025 codes."""
        identifiers: list[dict[str, Any]] = []
        if p.national_id:
            identifiers.append({"system": NATIONAL_ID, "value": p.national_id})
        if p.card:
            identifiers.append({"system": INSURANCE_NUMBER, "value": p.card})
        resource: dict[str, Any] = {
            "resourceType": "Patient", "id": f"p{p.index}", "identifier": identifiers,
            "name": [{"use": "official", "text": p.full_name, "family": p.family, "given": [*p.middle, p.given]}],
            "gender": p.sex, "birthDate": p.birth.isoformat(),
            "address": [_address(_PROVINCE_2025, p.province, _WARD_2025, p.ward)],
        }
        if p.phone:
            resource["telecom"] = [{"system": "phone", "value": p.phone}]
        return resource

    def faults_for(self, i: int, c: int) -> list[str]:
        rng = self._rng(i, 1 + c)
        return [name for name, chance in FAULTS.items() if rng.random() < chance]

    def copy(self, p: Person, c: int, family_member: Person | None = None) -> tuple[dict[str, Any], list[str]]:
        """Facility copy ``c`` of ``p`` and the faults it carries. ``family_member`` lends its
        personal ID for the ``family-member-id`` fault (none drawn without one)."""
        rng = self._rng(p.index, 33 + c)
        faults = self.faults_for(p.index, c)
        applied: list[str] = []

        def has(fault: str) -> bool:
            if fault in faults:
                applied.append(fault)
                return True
            return False

        family, middle, given = p.family, list(p.middle), p.given
        if middle and has("no-middle-name"):
            middle = []
        if has("name-typo"):
            which = rng.random()
            if which < 0.4:
                given = _typo(rng, given)
            elif which < 0.7 and middle:
                middle[-1] = _typo(rng, middle[-1])
            else:
                family = _typo(rng, family)
        parts = [family, *middle, given]
        if any(_retone(w) != w for w in parts) and has("tone-placement"):
            parts = [_retone(w) for w in parts]
        if has("no-diacritics"):
            parts = [normalise(w).upper() if rng.random() < 0.7 else normalise(w).title() for w in parts]
        elif has("upper-case"):
            parts = [w.upper() for w in parts]
        if has("nfd"):
            parts = [unicodedata.normalize("NFD", w) for w in parts]
        shape = rng.random()
        if shape < 0.5:
            name: dict[str, Any] = {"use": "official", "text": " ".join(parts), "family": parts[0],
                                    "given": parts[1:]}
        elif shape < 0.8:
            name = {"text": " ".join(parts)}
        else:
            name = {"family": parts[0], "given": [" ".join(parts[1:])]}

        birth = p.birth.isoformat()
        if p.birth.day <= 12 and p.birth.day != p.birth.month and has("swapped-day-month"):
            birth = f"{p.birth.year:04d}-{p.birth.day:02d}-{p.birth.month:02d}"
        elif has("year-only"):
            birth = f"{p.birth.year:04d}"
        elif has("year-month"):
            birth = birth[:7]
        sex = p.sex
        if has("wrong-sex"):
            sex = "female" if sex == "male" else "male"

        identifiers: list[dict[str, Any]] = []
        national_id = p.national_id
        if family_member is not None and family_member.national_id and has("family-member-id"):
            national_id = family_member.national_id
        elif has("no-personal-id"):
            national_id = None
        if national_id:
            identifiers.append({"system": NATIONAL_ID, "value": national_id})
        if p.card and not has("no-card"):
            card = p.card
            if has("bhxh-only"):
                card = p.bhxh
            elif has("renewed-card"):
                card = f"{rng.choice(('DN', 'HC', 'GD', 'HN', 'CN', 'HX'))}{rng.randint(2, 4)}{p.old_province}{p.bhxh}"
            identifiers.append({"system": INSURANCE_NUMBER, "value": card})
        identifiers.append({"system": "urn:fhir-hub:bench:facility-mrn", "value": f"{c}-{p.index}"})

        resource: dict[str, Any] = {"resourceType": "Patient", "identifier": identifiers, "name": [name],
                                    "gender": sex, "birthDate": birth}
        if not has("no-address"):
            t = self._tables
            if has("moved"):
                ward = rng.choice(t["new_wards"][p.province])
                resource["address"] = [_address(_PROVINCE_2025, p.province, _WARD_2025, ward)]
            elif has("old-address-codes"):
                resource["address"] = [_address(_PROVINCE_PRE2025, p.old_province, _WARD_PRE2025, p.old_ward)]
            elif rng.random() < 0.2:
                resource["address"] = [_address(ADMIN_ADDRESS, p.province, ADMIN_ADDRESS, p.ward, version="2025")]
            else:
                resource["address"] = [_address(_PROVINCE_2025, p.province, _WARD_2025, p.ward)]
        phone = p.phone
        if phone and has("changed-phone"):
            phone = rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**7):07d}"
        if phone and not has("no-phone"):
            if phone[:3] in _NEW_TO_OLD_MOBILE and has("old-phone-format"):
                phone = _NEW_TO_OLD_MOBILE[phone[:3]] + phone[3:]
            elif has("phone-format"):
                style = rng.random()
                phone = ("+84 " + phone[1:4] + " " + phone[4:7] + " " + phone[7:] if style < 0.6 else
                         "84" + phone[1:] if style < 0.75 else f"{phone[:4]}.{phone[4:7]}.{phone[7:]}")
            resource["telecom"] = [{"system": "phone", "value": phone}]
        return resource, applied

    def incoming(self, count: int, new_share: float = 0.1, seed: int = 7) -> Iterator[tuple[dict[str, Any], int | None, list[str]]]:
        """``count`` facility copies, ``new_share`` of them of persons not in the population:
        (Patient, index of the person in the population or ``None``, faults)."""
        rng = random.Random(seed)
        fresh = self.size
        for n in range(count):
            if rng.random() < new_share:
                p = self.person(fresh)
                fresh += 1
                truth = None
            else:
                p = self.person(rng.randrange(self.size))
                truth = p.index
            relative = self.person(rng.randrange(self.size))
            if relative.birth.year == p.birth.year:
                relative = self.person((relative.index + 1) % self.size)
            resource, faults = self.copy(p, n % 8, family_member=relative)
            yield resource, truth, faults


def _address(province_system: str, province: str, ward_system: str, ward: str,
             version: str | None = None) -> dict[str, Any]:
    def coding(system: str, code: str) -> dict[str, Any]:
        c: dict[str, Any] = {"system": system, "code": code}
        if version:
            c["version"] = version
        return c

    return {"use": "home", "extension": [{"url": ADMIN_ADDRESS_EXT, "extension": [
        {"url": "state", "valueCodeableConcept": {"coding": [coding(province_system, province)]}},
        {"url": "ward", "valueCodeableConcept": {"coding": [coding(ward_system, ward)]}},
    ]}]}


_LETTERS = "abcdeghiklmnopqrstuvxy"


def _typo(rng: random.Random, word: str) -> str:
    """One keyboard-style slip: a letter replaced, dropped, doubled or swapped with the next."""
    if len(word) < 2:
        return word
    i = rng.randrange(1, len(word))
    kind = rng.randrange(4)
    if kind == 0:
        return word[:i] + rng.choice(_LETTERS) + word[i + 1:]
    if kind == 1:
        return word[:i] + word[i + 1:]
    if kind == 2:
        return word[:i] + word[i] + word[i:]
    if i < len(word) - 1:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word[:i - 1] + word[i] + word[i - 1]


def _retone(word: str) -> str:
    """The other tone placement of a word ("Hòa" ↔ "Hoà"), if it has the choice."""
    lower = word.lower()
    for table in (_OLD_TONE, _NEW_TONE):
        for a, b in table.items():
            if a in lower:
                at = lower.index(a)
                out = word[:at] + (b if word[at:at + 2].islower() else b.capitalize()) + word[at + 2:]
                return out
    return word
