"""Deterministic Vietnamese outpatient data as FHIR R4 transaction Bundles.

Why it exists: the hub needs data that looks like what Vietnamese facilities send — diacritics
in names, CCCD and BHYT numbers that agree with the person, post-2025 addresses, ICD-10 with
Vietnamese titles, vital signs and labs with the right LOINC/UCUM — for demos (``fhir-hub
demo-data``, ``serve --sample``), benches and tests.  Everything comes from one
``random.Random(seed)``, so a seed names a data set.

One Bundle per patient (``transaction``, every entry ``POST`` with a ``urn:uuid:`` fullUrl drawn
from the seeded generator; references inside the bundle use those URNs):

* the patient's facility (the one they are registered with, visited every time):
  ``Organization`` with ``request.ifNoneExist = identifier=<system>|<code>`` so that loading many
  bundles (or the same ones twice) leaves one Organization per facility code;
* the ``Patient``;
* per visit an outpatient ``Encounter`` (class AMB, finished, visit number scoped to the
  facility through ``assigner``), vital signs exactly as the R4 vital-signs profiles want, a few
  lab results with reference ranges, and 1–3 ICD-10 ``Condition`` (encounter-diagnosis).

With the default five visits a bundle has about 60–105 entries (mean ~72).

Labs are reported in SI units (mmol/L, µmol/L, g/L, G/L) with the matching LOINC codes, as most
Vietnamese laboratories do; the hospitals of four provinces report conventional units (mg/dL,
g/dL) with *their* LOINC codes (e.g. glucose 14749-6 mmol/L vs 2345-7 mg/dL), so that consumers
of the data meet both.  Values follow the person (a per-person level per test) and the diagnoses
(diabetes raises glucose and HbA1c, dengue lowers platelets and white cells, …).

Identifier systems are those of the MOH draft VN Core IG (``shared/vn/fhir-ig-refs``):
``…/sid/national_id`` (CCCD, type NI), ``…/sid/insurance_number`` (BHYT, type SB),
``…/sid/patient-internal-id`` (MA_BN, type PI), ``…/sid/VisitNumber`` (Encounter slice
MaDotThamKham, type VN) and ``…/sid/provider-code`` for the 5-character facility code: that is the
URI the IG's Provider profile fixes for its ``MaCSKCB`` slice and the id of the IG's NamingSystem
"mã cơ sở KCB" (whose ``uniqueId`` wrongly repeats the licence-number URI).

Identifier formats (``research/vietnam-domain.md`` §1):

* CCCD, 12 digits: 3-digit code of the (pre-2025) province where the birth was registered, one
  century/sex digit (0/1 = man/woman born 1900–1999, 2/3 = 2000–2099), the last two digits of
  the birth year, six random digits (there is no check digit);
* BHYT card, 15 characters: 2-letter beneficiary code (chosen by age and situation), the benefit
  level digit that goes with it, 2-digit province code, 10-digit social-insurance number.
  About 7 % of patients have no card (national coverage is about 93 %).

Dates: birth dates are fixed by the seed; visits fall in the three years before *today* (Viet
Nam time), so the data always looks recent.  The same seed therefore gives the same bundles on
the same day; on another day only visit-related dates move (the random draws are the same).

Data files in ``sample/data`` (all from ``shared/vn/code-lists``, NFC): ``wards.csv`` and
``provinces.csv`` (the 2025 units), ``provinces_pre2025.csv`` (the 63 old provinces — CCCD
prefixes — with the 2025 province each went into and a rough population in thousands, ~2023,
used only as sampling weights), ``icd10_outpatient.csv`` (Vietnamese titles of the codes used
below, from the BHYT ICD-10 catalogue), ``ethnic_groups.csv`` (QĐ 121-TCTK codes as in the IG's
``vn-core-race``), ``bhyt_beneficiary_codes.csv`` and ``facilities.json`` (a fixed set of 68
facilities, a provincial general hospital ``PP001`` and a commune health station ``PP101`` per
province; the codes are made up in the real format, they are not real MA_CSKCB codes).
"""

from __future__ import annotations

import csv
import json
import random
import unicodedata
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import cache
from importlib import resources
from itertools import accumulate
from typing import Any

__all__ = [
    "ACT_CODE", "ADMIN_ADDRESS", "FACILITY_CODE", "ICD10", "INSURANCE_NUMBER", "LOINC", "NATIONAL_ID", "Facility",
    "PATIENT_INTERNAL_ID", "UCUM", "VISIT_NUMBER", "VN_TZ", "facilities", "patient_bundles",
]

# --------------------------------------------------------------------------- systems

_CORE = "http://fhir.ehealth.gov.vn/core"
NATIONAL_ID = f"{_CORE}/sid/national_id"
INSURANCE_NUMBER = f"{_CORE}/sid/insurance_number"
PATIENT_INTERNAL_ID = f"{_CORE}/sid/patient-internal-id"
VISIT_NUMBER = f"{_CORE}/sid/VisitNumber"
FACILITY_CODE = f"{_CORE}/sid/provider-code"
ADMIN_ADDRESS = f"{_CORE}/CodeSystem/vn-core-administrative-address"
RACE_EXT = f"{_CORE}/StructureDefinition/extension-race"
RACE_CS = f"{_CORE}/CodeSystem/vn-core-race"
NATIONALITY_EXT = f"{_CORE}/StructureDefinition/extension-nationality"
ADMIN_ADDRESS_EXT = f"{_CORE}/StructureDefinition/extension-administrative-address"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
_V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
_TERM = "http://terminology.hl7.org/CodeSystem"

VN_TZ = timezone(timedelta(hours=7))
#: Birth dates are drawn as ages on this day, so they do not move with the calendar.
_AGE_REFERENCE = date(2025, 7, 1)
#: Version written on address codings: codes of the 2025 list (codes are reused across reforms).
_ADMIN_VERSION = "2025"

# --------------------------------------------------------------------------- names

#: Kinh family names with their approximate share of the population in percent (research notes
#: §2: Nguyễn 38.4, Trần 11, …); "Hoàng" and "Vũ" stand for Hoàng/Huỳnh and Vũ/Võ, resolved by region.
_SURNAMES: tuple[tuple[str, float], ...] = (
    ("Nguyễn", 38.4), ("Trần", 11.0), ("Lê", 9.5), ("Phạm", 7.1), ("Hoàng", 5.1), ("Phan", 4.5), ("Vũ", 3.9),
    ("Đặng", 2.1), ("Bùi", 2.0), ("Đỗ", 1.4), ("Hồ", 1.3), ("Ngô", 1.3), ("Dương", 1.0), ("Lý", 0.5),
    ("Trương", 0.8), ("Đinh", 0.7), ("Đào", 0.6), ("Mai", 0.6), ("Trịnh", 0.5), ("Đoàn", 0.5), ("Lâm", 0.5),
    ("Lương", 0.4), ("Cao", 0.4), ("Hà", 0.4), ("Tạ", 0.3), ("Lưu", 0.3), ("Tô", 0.3), ("Châu", 0.3),
    ("Quách", 0.2), ("Thái", 0.2), ("Vương", 0.2), ("Kiều", 0.2), ("Triệu", 0.2), ("Phùng", 0.2), ("Chu", 0.2),
    ("Lại", 0.2), ("Văn", 0.1), ("La", 0.1), ("Tăng", 0.1), ("Mạc", 0.1), ("Thân", 0.1), ("Khúc", 0.1),
)
#: Family names typical of some ethnic groups (QĐ 121 codes); other groups use Kinh names.
_ETHNIC_SURNAMES: dict[str, tuple[str, ...]] = {
    "02": ("Hoàng", "Nông", "Lục", "Đinh", "Triệu", "Lương", "Hà", "Chu", "Lăng"),   # Tày
    "03": ("Lò", "Lường", "Quàng", "Cầm", "Tòng", "Lù", "Vì", "Hà"),                  # Thái
    "04": ("Lâm", "Trương", "Quách", "Mã", "Lý", "Tăng", "Hứa", "Diệp", "Lưu"),       # Hoa
    "05": ("Thạch", "Danh", "Sơn", "Kim", "Lâm", "Chau", "Lý"),                       # Khơ-me
    "06": ("Bùi", "Đinh", "Quách", "Hà", "Xa", "Bạch"),                               # Mường
    "07": ("Hoàng", "Nông", "Lương", "Vi", "Lăng", "Chu", "Lục"),                     # Nùng
    "08": ("Giàng", "Vàng", "Sùng", "Lý", "Thào", "Hạng", "Mùa", "Lầu", "Hầu", "Vừ"),  # HMông
    "09": ("Triệu", "Bàn", "Đặng", "Lý", "Phùng", "Chảo", "Tẩn"),                     # Dao
}
_HMONG_GIVEN_MALE = ("Páo", "Chứ", "Dình", "Sử", "Của", "Lử", "Tủa", "Chư", "Pó", "Sình")
_HMONG_GIVEN_FEMALE = ("Mỷ", "Dua", "Súa", "Mai", "Chá", "Pằng", "Sua", "Dợ", "Say", "Mang")
_MIDDLE_MALE = ("Đức", "Minh", "Hữu", "Quốc", "Thanh", "Công", "Xuân", "Quang", "Ngọc", "Anh", "Tuấn", "Hoàng",
                "Gia", "Đình", "Trọng", "Thành", "Duy", "Hải", "Tiến", "Mạnh", "Bảo", "Trung")
_MIDDLE_FEMALE = ("Ngọc", "Thu", "Thanh", "Minh", "Phương", "Hồng", "Kim", "Thúy", "Bảo", "Khánh", "Hoài", "Mai",
                  "Diệu", "Như", "Quỳnh", "Bích", "Thùy", "Hải", "Tuyết", "Lan")
_GIVEN_MALE = ("Anh", "Bảo", "Bình", "Cường", "Dũng", "Duy", "Đạt", "Đức", "Hải", "Hiếu", "Hiển", "Hoàng", "Hùng",
               "Huy", "Khang", "Khánh", "Khoa", "Kiên", "Lâm", "Long", "Lộc", "Mạnh", "Minh", "Nam", "Nghĩa",
               "Nhân", "Phát", "Phong", "Phúc", "Quang", "Quân", "Sơn", "Tài", "Tâm", "Thắng", "Thành", "Thịnh",
               "Toàn", "Trung", "Tuấn", "Tùng", "Việt", "Vinh", "Hưng", "Thái", "Lợi", "Tú", "Định")
_GIVEN_FEMALE = ("An", "Anh", "Ánh", "Chi", "Dung", "Duyên", "Giang", "Hà", "Hằng", "Hạnh", "Hiền", "Hoa", "Hồng",
                 "Huyền", "Hương", "Lan", "Liên", "Linh", "Loan", "Ly", "Mai", "My", "Nga", "Ngân", "Ngọc", "Nhung",
                 "Nhi", "Oanh", "Phương", "Quyên", "Tâm", "Thảo", "Thủy", "Thư", "Trang", "Trâm", "Tuyết", "Uyên",
                 "Vân", "Vy", "Xuân", "Yến", "Hậu", "Thơm", "Lụa", "Nhàn")
#: Names popular with parents since about 2000.
_GIVEN_MALE_MODERN = ("Khang", "Khôi", "Phúc", "Bảo", "An", "Minh", "Huy", "Nam", "Kiên", "Lâm", "Quân", "Đăng",
                      "Khoa", "Thiện", "Nhật")
_GIVEN_FEMALE_MODERN = ("An", "Vy", "Ngân", "Nhi", "Thư", "Linh", "Chi", "My", "Hân", "Trâm", "Anh", "Ngọc",
                        "Quyên", "Như", "Diệp")
#: Southern-form regions: Huỳnh from Quảng Nam (now Đà Nẵng) southwards, Võ from Nghệ An southwards.
_HUYNH_PROVINCES = frozenset("48 51 52 56 66 68 75 79 80 82 86 91 92 96".split())
_VO_PROVINCES = frozenset("40 42 44 46".split()) | _HUYNH_PROVINCES
_SOUTH = frozenset("75 79 80 82 86 91 92 96".split())
_MOUNTAIN_NORTH = frozenset("04 08 11 12 14 15 20".split())

#: Rough share of the main ethnic minorities per 2025 province (the rest Kinh); sampling weights only.
_ETHNIC_MIX: dict[str, tuple[tuple[str, float], ...]] = {
    "04": (("02", .41), ("07", .31), ("08", .11), ("09", .10)),
    "08": (("08", .25), ("02", .20), ("09", .13), ("07", .05)),
    "11": (("03", .38), ("08", .35)),
    "12": (("08", .40), ("03", .32), ("09", .13)),
    "14": (("03", .53), ("08", .16), ("06", .08)),
    "15": (("08", .15), ("02", .15), ("09", .12), ("03", .06)),
    "19": (("02", .15), ("07", .05), ("09", .03)),
    "20": (("07", .42), ("02", .35), ("09", .03)),
    "22": (("09", .04), ("02", .03)),
    "25": (("06", .20), ("09", .02)),
    "38": (("06", .09), ("03", .06)),
    "40": (("03", .09), ("08", .01)),
    "51": (("14", .10), ("19", .05), ("13", .03)),
    "52": (("10", .20), ("13", .10)),
    "56": (("21", .05), ("17", .04)),
    "66": (("12", .12), ("20", .02), ("07", .03), ("02", .02)),
    "68": (("16", .07), ("20", .02), ("17", .01)),
    "75": (("04", .02), ("22", .02)),
    "79": (("04", .05),),
    "86": (("05", .10),),
    "91": (("05", .10), ("04", .02)),
    "92": (("05", .15), ("04", .03)),
    "96": (("05", .03),),
}
_STREETS = ("Lê Lợi", "Trần Hưng Đạo", "Nguyễn Trãi", "Lý Thường Kiệt", "Hai Bà Trưng", "Quang Trung", "Nguyễn Huệ",
            "Lê Duẩn", "Phan Chu Trinh", "Nguyễn Du", "Trần Phú", "Hùng Vương", "Lê Thánh Tông", "Điện Biên Phủ",
            "Nguyễn Văn Cừ", "Võ Thị Sáu", "Cách Mạng Tháng Tám", "Nguyễn Thị Minh Khai", "Bà Triệu", "Ngô Quyền",
            "Phan Đình Phùng", "Lạc Long Quân", "Tôn Đức Thắng", "Nguyễn Chí Thanh", "Hoàng Hoa Thám")
_HAMLETS = ("Đông", "Tây", "Nam", "Bắc", "Thượng", "Hạ", "Trung", "An Lạc", "Phú Mỹ", "Tân Lập", "Hòa Bình",
            "Đoàn Kết", "Thống Nhất", "Quyết Thắng", "Tân Thành", "Phú Lợi", "Bình An", "Mỹ Hòa")

# --------------------------------------------------------------------------- clinical model


@dataclass(frozen=True)
class _Dx:
    """An outpatient diagnosis and what it does to the visit (reason, labs, vital signs)."""

    code: str
    reason: str
    labs: tuple[str, ...] = ()
    fever: tuple[float, float] | None = None
    effects: frozenset[str] = frozenset()
    #: days until an acute condition is over
    days: tuple[int, int] = (5, 14)


def _dx(code: str, reason: str, labs: str = "", fever: tuple[float, float] | None = None, effects: str = "",
        days: tuple[int, int] = (5, 14)) -> _Dx:
    return _Dx(code, reason, tuple(labs.split()), fever, frozenset(effects.split()), days)


_CHRONIC: dict[str, _Dx] = {d.code: d for d in (
    _dx("I10", "Tái khám tăng huyết áp", "creatinine cholesterol triglycerides glucose", effects="htn"),
    _dx("E11.9", "Tái khám đái tháo đường", "glucose hba1c creatinine cholesterol triglycerides", effects="dm"),
    _dx("E78.5", "Tái khám rối loạn mỡ máu", "cholesterol triglycerides hdl ldl alt", effects="lipid"),
    _dx("K29.5", "Đau thượng vị, tái khám viêm dạ dày", "hemoglobin"),
    _dx("M17.9", "Đau khớp gối", "uric_acid"),
    _dx("J44.9", "Ho khạc đờm, khó thở khi gắng sức", "wbc hemoglobin", effects="copd"),
    _dx("J45.9", "Khò khè, khó thở", "wbc", effects="airway"),
    _dx("B18.1", "Tái khám viêm gan virus B", "alt ast platelets", effects="liver"),
    _dx("M10.9", "Sưng đau khớp ngón chân cái", "uric_acid creatinine", effects="gout"),
    _dx("N18.9", "Tái khám suy thận mạn", "creatinine urea hemoglobin", effects="ckd"),
    _dx("I25.9", "Đau tức ngực, tái khám tim mạch", "cholesterol ldl glucose", effects="htn"),
    _dx("K76.0", "Tái khám gan nhiễm mỡ", "alt ast triglycerides", effects="liver lipid"),
    _dx("E03.9", "Mệt mỏi, tái khám suy giáp", "cholesterol"),
)}

#: (minimum age, sex or "", base prevalence at that age, added per decade above it, visit weight)
_CHRONIC_RISK: dict[str, tuple[int, str, float, float, float]] = {
    "I10": (30, "", 0.06, 0.09, 3), "E11.9": (35, "", 0.03, 0.035, 3), "E78.5": (35, "", 0.08, 0.04, 2),
    "K29.5": (20, "", 0.05, 0.0, 1), "M17.9": (50, "", 0.10, 0.06, 1), "J44.9": (50, "male", 0.04, 0.03, 2),
    "J45.9": (5, "", 0.03, 0.0, 1), "B18.1": (18, "", 0.05, 0.0, 1), "M10.9": (35, "male", 0.03, 0.01, 1),
    "N18.9": (50, "", 0.02, 0.02, 2), "I25.9": (55, "", 0.03, 0.03, 2), "K76.0": (25, "", 0.07, 0.01, 1),
    "E03.9": (25, "female", 0.02, 0.005, 1),
}

_ACUTE: dict[str, _Dx] = {d.code: d for d in (
    _dx("J06.9", "Sốt, ho, sổ mũi", "wbc", fever=(37.8, 38.9), effects="infection", days=(5, 10)),
    _dx("J00", "Hắt hơi, sổ mũi, đau họng nhẹ", days=(4, 8)),
    _dx("J02.9", "Đau họng, nuốt vướng", "wbc", fever=(37.6, 38.5), effects="infection", days=(5, 10)),
    _dx("J03.9", "Sốt, đau họng", "wbc hemoglobin platelets", fever=(38.0, 39.5), effects="bacterial", days=(6, 10)),
    _dx("J20.9", "Ho khạc đờm", "wbc", fever=(37.5, 38.5), effects="infection airway", days=(7, 21)),
    _dx("J18.9", "Sốt, ho, khó thở", "wbc hemoglobin platelets", fever=(38.2, 39.8),
        effects="bacterial pneumonia", days=(10, 21)),
    _dx("J11.1", "Sốt, đau mỏi người", "wbc", fever=(38.3, 39.6), effects="infection", days=(5, 10)),
    _dx("A09", "Tiêu chảy, đau bụng", "wbc hemoglobin", fever=(37.5, 38.6), effects="infection", days=(3, 7)),
    _dx("A97.0", "Sốt cao liên tục, đau nhức người", "wbc hemoglobin platelets alt ast", fever=(38.5, 40.0),
        effects="dengue", days=(7, 12)),
    _dx("B08.4", "Sốt, loét miệng, nổi ban tay chân", "wbc", fever=(37.8, 39.0), effects="infection", days=(7, 10)),
    _dx("B01.9", "Sốt, nổi mụn nước", fever=(37.8, 38.8), days=(7, 14)),
    _dx("H66.9", "Đau tai, sốt", "wbc", fever=(37.8, 39.0), effects="bacterial", days=(7, 14)),
    _dx("H10.9", "Đỏ mắt, chảy nước mắt", days=(5, 10)),
    _dx("L30.9", "Ngứa, nổi mẩn da", days=(7, 21)),
    _dx("L50.9", "Nổi mề đay", days=(3, 10)),
    _dx("K29.7", "Đau thượng vị", "hemoglobin", days=(7, 28)),
    _dx("K21.9", "Ợ chua, nóng rát sau xương ức", days=(14, 42)),
    _dx("K30", "Đầy bụng, khó tiêu", days=(7, 21)),
    _dx("K59.0", "Táo bón", days=(7, 21)),
    _dx("M54.5", "Đau lưng", "uric_acid", days=(7, 28)),
    _dx("R51", "Đau đầu", days=(3, 7)),
    _dx("G44.2", "Đau đầu, căng thẳng", days=(5, 14)),
    _dx("N39.0", "Tiểu buốt, tiểu rắt", "wbc creatinine", fever=(37.5, 38.5), effects="bacterial", days=(5, 10)),
    _dx("G47.0", "Mất ngủ", days=(14, 42)),
    _dx("F41.9", "Hồi hộp, lo âu", days=(14, 60)),
    _dx("J30.4", "Hắt hơi, ngạt mũi", days=(7, 21)),
    _dx("D50.9", "Mệt mỏi, hoa mắt chóng mặt", "hemoglobin wbc platelets", effects="anemia", days=(30, 90)),
    _dx("M79.1", "Đau mỏi cơ", days=(3, 10)),
    _dx("K02.9", "Đau răng", days=(3, 10)),
    _dx("R50.9", "Sốt", "wbc hemoglobin platelets", fever=(37.8, 39.2), effects="infection", days=(3, 7)),
    _dx("Z00.0", "Khám sức khỏe định kỳ",
        "glucose cholesterol triglycerides alt ast creatinine hemoglobin wbc", days=(0, 0)),
)}

#: Acute diagnosis weights per age band: (0–5, 6–17, 18–59, 60+).
_ACUTE_WEIGHTS: dict[str, tuple[float, float, float, float]] = {
    "J06.9": (20, 14, 10, 7), "J00": (10, 8, 5, 3), "J02.9": (4, 10, 8, 4), "J03.9": (8, 8, 3, 1),
    "J20.9": (8, 5, 5, 8), "J18.9": (4, 1, 1, 4), "J11.1": (3, 4, 4, 3), "A09": (12, 6, 4, 3),
    "A97.0": (2, 5, 3, 1), "B08.4": (8, 1, 0, 0), "B01.9": (3, 2, 0.3, 0), "H66.9": (6, 2, 0.5, 0.3),
    "H10.9": (2, 3, 2, 1), "L30.9": (4, 3, 3, 2), "L50.9": (2, 3, 2, 1), "K29.7": (0, 2, 6, 5),
    "K21.9": (0, 0.5, 4, 3), "K30": (1, 2, 3, 3), "K59.0": (2, 1, 1, 3), "M54.5": (0, 0.5, 6, 7),
    "R51": (0, 2, 3, 2), "G44.2": (0, 1, 3, 1), "N39.0": (1, 1, 3, 3), "G47.0": (0, 0, 2, 4),
    "F41.9": (0, 0.5, 2, 1), "J30.4": (1, 4, 3, 1), "D50.9": (1, 1, 2, 2), "M79.1": (0, 1, 3, 3),
    "K02.9": (3, 4, 2, 1), "R50.9": (6, 2, 1, 1), "Z00.0": (4, 5, 8, 6),
}
#: Diagnoses much commoner in women: the share of draws kept for men.
_MALE_KEEP: dict[str, float] = {"N39.0": 0.3, "D50.9": 0.3}


@dataclass(frozen=True)
class _Lab:
    """One lab test: the SI and the conventional reporting (LOINC code, unit, factor from SI)."""

    key: str
    text: str
    si: tuple[str, str, str, str, int]            # LOINC, LOINC display, UCUM code, unit shown, decimals
    conventional: tuple[str, str, str, str, int]
    factor: float                                 # conventional value = SI value * factor
    low: float | None                             # reference range in SI (men, or both sexes)
    high: float | None
    mean: float                                   # healthy adult mean (men), SD in SI
    sd: float
    female: tuple[float | None, float | None, float] | None = None  # low, high, mean for women


_LABS: dict[str, _Lab] = {lab.key: lab for lab in (
    _Lab("glucose", "Glucose máu",
         ("14749-6", "Glucose [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 1),
         ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 0), 18.016, 3.9, 6.4, 5.2, 0.5),
    _Lab("hba1c", "HbA1c",
         ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", "%", 1),
         ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", "%", 1), 1.0, 4.0, 6.0, 5.3, 0.3),
    _Lab("creatinine", "Creatinin máu",
         ("14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "umol/L", "µmol/L", 0),
         ("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 2), 1 / 88.4,
         62, 120, 86, 12, female=(53, 100, 66)),
    _Lab("urea", "Urê máu",
         ("22664-7", "Urea [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 1),
         ("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 1), 2.8, 2.5, 7.5, 5.0, 1.1),
    _Lab("cholesterol", "Cholesterol toàn phần",
         ("14647-2", "Cholesterol [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 2),
         ("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 0), 38.67, None, 5.2, 4.7, 0.6),
    _Lab("triglycerides", "Triglycerid",
         ("14927-8", "Triglyceride [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 2),
         ("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 0), 88.57, None, 1.7, 1.3, 0.4),
    _Lab("hdl", "HDL-Cholesterol",
         ("14646-4", "Cholesterol in HDL [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 2),
         ("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 0), 38.67,
         0.9, None, 1.25, 0.25, female=(1.0, None, 1.4)),
    _Lab("ldl", "LDL-Cholesterol",
         ("22748-8", "Cholesterol in LDL [Moles/volume] in Serum or Plasma", "mmol/L", "mmol/L", 2),
         ("2089-1", "Cholesterol in LDL [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 0), 38.67,
         None, 3.4, 2.8, 0.6),
    _Lab("alt", "ALT (GPT)",
         ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", "U/L", 0),
         ("1742-6", "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", "U/L", 0),
         1.0, None, 40, 24, 8, female=(None, 35, 19)),
    _Lab("ast", "AST (GOT)",
         ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", "U/L", 0),
         ("1920-8", "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma", "U/L", "U/L", 0),
         1.0, None, 37, 25, 7, female=(None, 31, 22)),
    _Lab("uric_acid", "Acid uric máu",
         ("14933-6", "Urate [Moles/volume] in Serum or Plasma", "umol/L", "µmol/L", 0),
         ("3084-1", "Urate [Mass/volume] in Serum or Plasma", "mg/dL", "mg/dL", 1), 1 / 59.48,
         202, 416, 330, 60, female=(142, 339, 255)),
    _Lab("wbc", "Số lượng bạch cầu (WBC)",
         ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*9/L", "G/L", 1),
         ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", "K/µL", 1), 1.0, 4.0, 10.0, 7.0, 1.5),
    _Lab("hemoglobin", "Huyết sắc tố (Hb)",
         ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/L", "g/L", 0),
         ("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", "g/dL", 1), 0.1, 130, 170, 148, 9,
         female=(120, 150, 130)),
    _Lab("platelets", "Số lượng tiểu cầu (PLT)",
         ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*9/L", "G/L", 0),
         ("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", "K/µL", 0), 1.0, 150, 450, 260, 55),
)}
_MAX_LABS = 8

#: Beneficiary codes by age band with weights (QĐ 1351/QĐ-BHXH object codes; see bhyt_beneficiary_codes.csv).
_BHYT_BY_AGE: tuple[tuple[int, tuple[tuple[str, float], ...]], ...] = (
    (5, (("TE", 1.0),)),
    (17, (("HS", 0.88), ("HN", 0.05), ("CN", 0.04), ("DT", 0.03))),
    (22, (("SV", 0.5), ("DN", 0.22), ("GD", 0.16), ("HN", 0.05), ("CN", 0.04), ("DT", 0.03))),
    (59, (("DN", 0.34), ("GD", 0.26), ("HC", 0.1), ("CH", 0.04), ("GB", 0.05), ("HN", 0.05), ("CN", 0.04),
          ("TK", 0.03), ("HX", 0.02), ("XK", 0.02), ("TN", 0.02), ("DT", 0.03))),
    (79, (("HT", 0.45), ("GD", 0.24), ("CB", 0.07), ("HN", 0.05), ("CN", 0.04), ("KC", 0.04), ("XB", 0.02),
          ("MS", 0.02), ("CC", 0.02), ("BT", 0.03), ("DT", 0.02))),
    (200, (("HT", 0.4), ("BT", 0.2), ("GD", 0.15), ("CB", 0.08), ("CT", 0.05), ("KC", 0.05), ("CC", 0.04),
           ("HN", 0.03))),
)
_UNINSURED = 0.07

_CAT = f"{_TERM}/observation-category"
_VITAL_CATEGORY = [{"coding": [{"system": _CAT, "code": "vital-signs", "display": "Vital Signs"}]}]
_LAB_CATEGORY = [{"coding": [{"system": _CAT, "code": "laboratory", "display": "Laboratory"}]}]
_INTERP = f"{_TERM}/v3-ObservationInterpretation"
_INTERPRETATION = {
    "H": [{"coding": [{"system": _INTERP, "code": "H", "display": "High"}], "text": "Cao"}],
    "L": [{"coding": [{"system": _INTERP, "code": "L", "display": "Low"}], "text": "Thấp"}],
    "N": [{"coding": [{"system": _INTERP, "code": "N", "display": "Normal"}], "text": "Bình thường"}],
}
_CLINICAL = f"{_TERM}/condition-clinical"
_VERIFICATION = f"{_TERM}/condition-ver-status"
_CLINICAL_STATUS = {
    code: {"coding": [{"system": _CLINICAL, "code": code, "display": code.capitalize()}]}
    for code in ("active", "resolved")
}
_VERIFICATION_STATUS = {
    code: {"coding": [{"system": _VERIFICATION, "code": code, "display": code.capitalize()}]}
    for code in ("confirmed", "provisional")
}
_DX_CATEGORY = [{"coding": [{"system": f"{_TERM}/condition-category", "code": "encounter-diagnosis",
                             "display": "Encounter Diagnosis"}]}]
_DX_ROLE = f"{_TERM}/diagnosis-role"
#: The VN Core Encounter profile slices main disease as CC ("ChiefComplaint_CDBenhChinh") and others as CM.
_DX_MAIN = {"coding": [{"system": _DX_ROLE, "code": "CC", "display": "Chief complaint"}], "text": "Bệnh chính"}
_DX_OTHER = {"coding": [{"system": _DX_ROLE, "code": "CM", "display": "Comorbidity diagnosis"}],
             "text": "Bệnh kèm theo"}
_AMB = {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"}
_ENCOUNTER_TYPE = [{"text": "Khám bệnh ngoại trú"}]
_VISIT_TYPE = {"coding": [{"system": _V2_0203, "code": "VN", "display": "Visit number"}]}
_CCCD_TYPE = {"coding": [{"system": _V2_0203, "code": "NI", "display": "National unique individual identifier"}],
              "text": "Căn cước công dân"}
_BHYT_TYPE = {"coding": [{"system": _V2_0203, "code": "SB", "display": "Social Beneficiary Identifier"}],
              "text": "Thẻ bảo hiểm y tế"}
_MRN_TYPE = {"coding": [{"system": _V2_0203, "code": "PI", "display": "Patient internal identifier"}],
             "text": "Mã người bệnh"}
_PRN_TYPE = {"coding": [{"system": _V2_0203, "code": "PRN", "display": "Provider number"}],
             "text": "Mã cơ sở khám bệnh, chữa bệnh"}
_ORG_TYPE = [{"coding": [{"system": f"{_TERM}/organization-type", "code": "prov",
                          "display": "Healthcare Provider"}]}]
_NATIONALITY = {"url": NATIONALITY_EXT, "valueCodeableConcept": {
    "coding": [{"system": "urn:iso:std:iso:3166", "code": "VN", "display": "Viet Nam"}], "text": "Việt Nam"}}
_VIETNAMESE = [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "vi", "display": "Vietnamese"}],
                             "text": "Tiếng Việt"}, "preferred": True}]
_MARITAL = f"{_TERM}/v3-MaritalStatus"
_MARITAL_STATUS = {
    code: {"coding": [{"system": _MARITAL, "code": code, "display": display}], "text": text}
    for code, display, text in (("M", "Married", "Đã kết hôn"), ("S", "Never Married", "Độc thân"),
                                ("W", "Widowed", "Góa"), ("D", "Divorced", "Ly hôn"))
}
_PARENT = {
    "female": [{"coding": [{"system": f"{_TERM}/v3-RoleCode", "code": "MTH", "display": "mother"},
                           {"system": f"{_TERM}/v2-0131", "code": "N", "display": "Next-of-Kin"}], "text": "Mẹ"}],
    "male": [{"coding": [{"system": f"{_TERM}/v3-RoleCode", "code": "FTH", "display": "father"},
                         {"system": f"{_TERM}/v2-0131", "code": "N", "display": "Next-of-Kin"}], "text": "Bố"}],
}


def _quantity(value: float | int, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def _loinc(code: str, display: str, text: str) -> dict[str, Any]:
    return {"coding": [{"system": LOINC, "code": code, "display": display}], "text": text}


_VITAL_CODES = {
    "hr": _loinc("8867-4", "Heart rate", "Mạch"),
    "temp": _loinc("8310-5", "Body temperature", "Nhiệt độ"),
    "rr": _loinc("9279-1", "Respiratory rate", "Nhịp thở"),
    "weight": _loinc("29463-7", "Body weight", "Cân nặng"),
    "height": _loinc("8302-2", "Body height", "Chiều cao"),
    "bmi": _loinc("39156-5", "Body mass index (BMI) [Ratio]", "Chỉ số khối cơ thể (BMI)"),
    "head": _loinc("9843-4", "Head Occipital-frontal circumference", "Vòng đầu"),
    "bp": _loinc("85354-9", "Blood pressure panel with all children optional", "Huyết áp"),
    "sys": _loinc("8480-6", "Systolic blood pressure", "Huyết áp tâm thu"),
    "dia": _loinc("8462-4", "Diastolic blood pressure", "Huyết áp tâm trương"),
    "spo2": {"coding": [{"system": LOINC, "code": "2708-6", "display": "Oxygen saturation in Arterial blood"},
                        {"system": LOINC, "code": "59408-5",
                         "display": "Oxygen saturation in Arterial blood by Pulse oximetry"}],
             "text": "SpO2"},
}

# --------------------------------------------------------------------------- data files


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _rows(name: str) -> list[dict[str, str]]:
    text = resources.files("fhir_hub.sample").joinpath("data", name).read_text(encoding="utf-8")
    return [{k: _nfc(v) for k, v in row.items()} for row in csv.DictReader(text.splitlines())]


@dataclass(frozen=True)
class Facility:
    """A facility of the fixed sample set (``facilities.json``)."""

    code: str
    name: str
    kind: str            # "hospital" | "station"
    province_code: str
    ward_code: str
    phone: str
    lab_units: str       # "si" | "conventional": how its laboratory reports


@dataclass(frozen=True)
class _Geo:
    provinces: dict[str, str]                       # 2025 code -> name
    wards: dict[str, list[tuple[str, str]]]          # 2025 province code -> [(ward code, name)]
    ward_names: dict[str, str]
    residence: tuple[list[str], list[float]]        # 2025 province codes, cumulative weights
    birth_all: tuple[list[str], list[float]]        # pre-2025 codes, cumulative weights
    birth_by_2025: dict[str, tuple[list[str], list[float]]]


def _cumulative(pairs: Sequence[tuple[str, float]]) -> tuple[list[str], list[float]]:
    return [k for k, _ in pairs], list(accumulate(w for _, w in pairs))


@cache
def _geo() -> _Geo:
    provinces = {r["code"]: r["name"] for r in _rows("provinces.csv")}
    wards: dict[str, list[tuple[str, str]]] = {}
    ward_names: dict[str, str] = {}
    for r in _rows("wards.csv"):
        wards.setdefault(r["province_code"], []).append((r["code"], r["name"]))
        ward_names[r["code"]] = r["name"]
    old = _rows("provinces_pre2025.csv")
    pop_2025: dict[str, float] = {}
    groups: dict[str, list[tuple[str, float]]] = {}
    for r in old:
        pop = float(r["population_thousands"])
        pop_2025[r["province_code_2025"]] = pop_2025.get(r["province_code_2025"], 0.0) + pop
        groups.setdefault(r["province_code_2025"], []).append((r["code"], pop))
    return _Geo(
        provinces=provinces, wards=wards, ward_names=ward_names,
        residence=_cumulative(sorted(pop_2025.items())),
        birth_all=_cumulative([(r["code"], float(r["population_thousands"])) for r in old]),
        birth_by_2025={k: _cumulative(v) for k, v in groups.items()},
    )


@cache
def facilities() -> tuple[Facility, ...]:
    """The fixed facility set, in file order (two per 2025 province)."""
    text = resources.files("fhir_hub.sample").joinpath("data", "facilities.json").read_text(encoding="utf-8")
    return tuple(Facility(**{k: _nfc(v) for k, v in item.items()}) for item in json.loads(text))


@cache
def _facilities_by_province() -> dict[str, tuple[Facility, Facility]]:
    out: dict[str, dict[str, Facility]] = {}
    for f in facilities():
        out.setdefault(f.province_code, {})[f.kind] = f
    return {p: (kinds["hospital"], kinds["station"]) for p, kinds in out.items()}


@cache
def _icd_names() -> dict[str, str]:
    names = {r["code"]: r["name_vi"] for r in _rows("icd10_outpatient.csv")}
    missing = (set(_CHRONIC) | set(_ACUTE)) - set(names)
    if missing:  # a data file out of step with the model would otherwise fail deep inside a bundle
        raise RuntimeError(f"icd10_outpatient.csv lacks {sorted(missing)}")
    return names


@cache
def _ethnic_names() -> dict[str, str]:
    return {r["code"]: r["name_vi"] for r in _rows("ethnic_groups.csv")}


@cache
def _benefit_levels() -> dict[str, str]:
    return {r["object_code"]: r["benefit_level"] for r in _rows("bhyt_beneficiary_codes.csv")}


@cache
def _tables() -> dict[str, Any]:
    """Name and diagnosis tables as cumulative weights (built once; NFC-normalised literals)."""
    kinh = [(_nfc(s), w) for s, w in _SURNAMES]
    acute_codes = list(_ACUTE_WEIGHTS)
    acute = [list(accumulate(_ACUTE_WEIGHTS[c][band] for c in acute_codes)) for band in range(4)]
    return {"kinh": _cumulative(kinh), "acute_codes": acute_codes, "acute_cum": acute}


# --------------------------------------------------------------------------- helpers


def _pick(rng: random.Random, table: tuple[list[str], list[float]]) -> str:
    keys, cum = table
    return rng.choices(keys, cum_weights=cum)[0]


def _weighted(rng: random.Random, pairs: Sequence[tuple[str, float]]) -> str:
    x = rng.random() * sum(w for _, w in pairs)
    for key, w in pairs:
        x -= w
        if x < 0:
            return key
    return pairs[-1][0]


def _urn(rng: random.Random) -> str:
    return f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def _ts(moment: datetime) -> str:
    """dateTime with seconds and the +07:00 offset (never microseconds)."""
    return moment.isoformat()


def _clamp(x: float, low: float, high: float) -> float:
    return low if x < low else high if x > high else x


def _today() -> date:
    """Today in Viet Nam: the end of the visit window (a function so tests can pin it)."""
    return datetime.now(VN_TZ).date()


def _age(birth: date, on: date) -> float:
    return (on - birth).days / 365.25


_HEIGHT_BOYS = ((0, 50), (1, 75), (2, 87), (3, 96), (4, 103), (5, 110), (6, 116), (8, 127), (10, 138), (12, 150),
                (14, 162), (16, 167), (18, 168))
_HEIGHT_GIRLS = ((0, 49), (1, 74), (2, 86), (3, 95), (4, 102), (5, 109), (6, 115), (8, 126), (10, 138), (12, 150),
                 (14, 155), (16, 156), (18, 156))


def _child_height(age: float, sex: str) -> float:
    curve = _HEIGHT_BOYS if sex == "male" else _HEIGHT_GIRLS
    for (a0, h0), (a1, h1) in zip(curve, curve[1:], strict=False):
        if age <= a1:
            return h0 + (h1 - h0) * (age - a0) / (a1 - a0)
    return curve[-1][1]


# --------------------------------------------------------------------------- the person


@dataclass
class _Person:
    """Everything drawn once per patient; visits read it."""

    sex: str
    birth: date
    province: str           # 2025 residence province
    ward: tuple[str, str]
    ethnic: str
    chronic: list[str]
    onset: dict[str, date]
    height_z: float
    adult_height: float
    bmi: float
    bp_offset: float
    lab_z: dict[str, float] = field(default_factory=dict)
    last_hba1c: date | None = None


def _draw_person(rng: random.Random, geo: _Geo) -> _Person:
    sex = "female" if rng.random() < 0.52 else "male"
    band = rng.random()
    age = (rng.randint(0, 5) if band < 0.08 else rng.randint(6, 17) if band < 0.18 else
           rng.randint(18, 39) if band < 0.42 else rng.randint(40, 59) if band < 0.72 else rng.randint(60, 92))
    birth = _AGE_REFERENCE - timedelta(days=int(age * 365.25) + rng.randrange(365))
    province = _pick(rng, geo.residence)
    ward = rng.choice(geo.wards[province])
    mix = _ETHNIC_MIX.get(province, ())
    ethnic = _weighted(rng, (*mix, ("01", 1 - sum(w for _, w in mix)))) if mix else "01"
    chronic: list[str] = []
    onset: dict[str, date] = {}
    for code, (min_age, only, base, per_decade, _w) in _CHRONIC_RISK.items():
        if age < min_age or (only and only != sex):
            continue
        if rng.random() < base + per_decade * (age - min_age) / 10:
            chronic.append(code)
            years = rng.uniform(0.5, max(1.0, min(25.0, age - min_age + 1)))
            onset[code] = _AGE_REFERENCE - timedelta(days=int(years * 365.25))
    adult_mean = (165.0 if birth.year >= 1975 else 162.0) if sex == "male" else (154.0 if birth.year >= 1975 else 151.0)
    height_z = rng.gauss(0, 1)
    bmi = _clamp(rng.gauss(22.3, 3.0) + (2.0 if {"E11.9", "I10", "K76.0"} & set(chronic) else 0), 16.5, 38)
    return _Person(sex=sex, birth=birth, province=province, ward=ward, ethnic=ethnic, chronic=chronic, onset=onset,
                   height_z=height_z, adult_height=adult_mean + 6 * height_z, bmi=bmi, bp_offset=rng.gauss(0, 8))


def _name(rng: random.Random, sex: str, birth_year: int, ethnic: str, province: str,
          family: str | None = None) -> dict[str, Any]:
    """A HumanName in họ–đệm–tên order: family = họ, given = [đệm…, tên], text = the full name."""
    if family is None:
        own = _ETHNIC_SURNAMES.get(ethnic)
        family = rng.choice(own) if own else _pick(rng, _tables()["kinh"])
        if family == "Hoàng" and not own and rng.random() < (0.85 if province in _HUYNH_PROVINCES else 0.05):
            family = "Huỳnh"
        elif family == "Vũ" and rng.random() < (0.8 if province in _VO_PROVINCES else 0.05):
            family = "Võ"
    male = sex == "male"
    plain = 0.8 if birth_year < 1970 else 0.55 if birth_year < 1990 else 0.3 if birth_year < 2005 else 0.12
    if ethnic == "08":  # HMông: "A" for men, "Thị" for women, own given names
        middle = ["A" if male else "Thị"]
        given = rng.choice(_HMONG_GIVEN_MALE if male else _HMONG_GIVEN_FEMALE)
    else:
        if rng.random() < (plain if male else plain + 0.1):
            middle = ["Văn" if male else "Thị"]
        else:
            middle = [rng.choice(_MIDDLE_MALE if male else _MIDDLE_FEMALE)]
        if rng.random() < (0.25 if birth_year >= 1990 else 0.08):
            extra = rng.choice(_MIDDLE_MALE if male else _MIDDLE_FEMALE)
            if extra not in middle:
                middle.append(extra)
        modern = birth_year >= 2000 and rng.random() < 0.6
        pool = ((_GIVEN_MALE_MODERN if modern else _GIVEN_MALE) if male else
                (_GIVEN_FEMALE_MODERN if modern else _GIVEN_FEMALE))
        given = rng.choice(pool)
        while given in middle:
            given = rng.choice(pool)
    given_all = [*middle, given]
    return {"use": "official", "text": " ".join([family, *given_all]), "family": family, "given": given_all}


def _cccd(rng: random.Random, birth_province_pre2025: str, birth: date, sex: str) -> str:
    century = (birth.year // 100 - 19) * 2
    return f"0{birth_province_pre2025}{century + (sex == 'female')}{birth.year % 100:02d}{rng.randrange(10**6):06d}"


def _bhyt(rng: random.Random, age: int, ethnic: str, card_province: str) -> str:
    for max_age, options in _BHYT_BY_AGE:
        if age <= max_age:
            code = _weighted(rng, options)
            break
    if code == "DT" and ethnic == "01":
        code = "HN"
    level = _benefit_levels()[code]
    return f"{code}{level}{card_province}{rng.randrange(10**10):010d}"


def _admin_address(province: str, province_name: str, ward: tuple[str, str]) -> dict[str, Any]:
    return {"url": ADMIN_ADDRESS_EXT, "extension": [
        {"url": "state", "valueCodeableConcept": {"coding": [
            {"system": ADMIN_ADDRESS, "version": _ADMIN_VERSION, "code": province, "display": province_name}]}},
        {"url": "ward", "valueCodeableConcept": {"coding": [
            {"system": ADMIN_ADDRESS, "version": _ADMIN_VERSION, "code": ward[0], "display": ward[1]}]}},
    ]}


def _street_line(rng: random.Random, province: str, ward_name: str, ethnic: str) -> str:
    if ward_name.startswith("Phường"):
        n = rng.randint(1, 350)
        street = rng.choice(_STREETS)
        r = rng.random()
        if r < 0.35:
            return f"Số {n} {'hẻm' if province in _SOUTH else 'ngõ'} {rng.randint(2, 200)} {street}"
        if r < 0.45:
            return f"Tổ dân phố {rng.randint(1, 30)}"
        return f"Số {n} {street}"
    if ward_name.startswith("Đặc khu"):
        return f"Khu {rng.randint(1, 12)}"
    if province in _MOUNTAIN_NORTH and ethnic != "01":
        kind = "Bản"
    else:
        kind = "Ấp" if province in _SOUTH else rng.choice(("Thôn", "Thôn", "Xóm"))
    return f"{kind} {rng.choice(_HAMLETS) if rng.random() < 0.6 else rng.randint(1, 12)}"


def _patient(rng: random.Random, geo: _Geo, p: _Person, usual: Facility, usual_urn: str) -> dict[str, Any]:
    age = int(_age(p.birth, _AGE_REFERENCE))
    name = _name(rng, p.sex, p.birth.year, p.ethnic, p.province)
    if rng.random() < (0.65 if p.province in ("01", "79", "75", "24", "48") else 0.12):
        birth_province = _pick(rng, geo.birth_all)  # born elsewhere: migrants
    else:
        birth_province = _pick(rng, geo.birth_by_2025[p.province])
    identifiers: list[dict[str, Any]] = [
        {"use": "official", "type": _CCCD_TYPE, "system": NATIONAL_ID,
         "value": _cccd(rng, birth_province, p.birth, p.sex)},
    ]
    if rng.random() >= _UNINSURED:
        # Cards issued before the 2025 merger carry the old province code: the card keeps it.
        card_province = birth_province if birth_province in geo.birth_by_2025[p.province][0] else p.province
        identifiers.append({"use": "official", "type": _BHYT_TYPE, "system": INSURANCE_NUMBER,
                            "value": _bhyt(rng, age, p.ethnic, card_province)})
    identifiers.append({"use": "usual", "type": _MRN_TYPE, "system": PATIENT_INTERNAL_ID,
                        "value": f"{usual.code}-{rng.randrange(10**8):08d}",
                        "assigner": {"reference": usual_urn, "display": usual.name}})
    province_name = geo.provinces[p.province]
    line = _street_line(rng, p.province, p.ward[1], p.ethnic)
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "extension": [
            {"url": RACE_EXT, "valueCodeableConcept": {
                "coding": [{"system": RACE_CS, "code": p.ethnic, "display": _ethnic_names()[p.ethnic]}]}},
            _NATIONALITY,
        ],
        "identifier": identifiers,
        "active": True,
        "name": [name],
    }
    if age >= 15:
        resource["telecom"] = [{"system": "phone", "value": f"09{rng.randrange(10**8):08d}", "use": "mobile"}]
    resource["gender"] = p.sex
    resource["birthDate"] = p.birth.isoformat()
    resource["address"] = [{
        "extension": [_admin_address(p.province, province_name, p.ward)],
        "use": "home", "type": "physical",
        "text": f"{line}, {p.ward[1]}, {province_name}",
        "line": [line], "city": p.ward[1], "state": province_name, "country": "VN",
    }]
    if age >= 18:
        r = rng.random()
        if age < 26:
            status = "S" if r < 0.65 else "M"
        elif age < 60:
            status = "M" if r < 0.85 else "S" if r < 0.95 else "D"
        else:
            widowed = 0.35 if p.sex == "female" else 0.12
            status = "W" if r < widowed else "D" if r < widowed + 0.04 else "M"
        resource["maritalStatus"] = _MARITAL_STATUS[status]
    if age < 16:
        parent_sex = "female" if rng.random() < 0.6 else "male"
        parent_year = p.birth.year - rng.randint(22, 38)
        parent = _name(rng, parent_sex, parent_year, p.ethnic, p.province,
                       family=name["family"] if parent_sex == "male" else None)
        resource["contact"] = [{"relationship": _PARENT[parent_sex], "name": parent,
                                "telecom": [{"system": "phone", "value": f"09{rng.randrange(10**8):08d}",
                                             "use": "mobile"}],
                                "gender": parent_sex}]
    resource["communication"] = _VIETNAMESE
    resource["managingOrganization"] = {"reference": usual_urn, "display": usual.name}
    return resource


def _organization(f: Facility, geo: _Geo) -> dict[str, Any]:
    province_name = geo.provinces[f.province_code]
    ward_name = geo.ward_names[f.ward_code]
    return {
        "resourceType": "Organization",
        "identifier": [{"use": "secondary", "type": _PRN_TYPE, "system": FACILITY_CODE, "value": f.code}],
        "active": True,
        "type": _ORG_TYPE,
        "name": f.name,
        "telecom": [{"system": "phone", "value": f.phone, "use": "work"}],
        "address": [{"extension": [_admin_address(f.province_code, province_name, (f.ward_code, ward_name))],
                     "use": "work", "type": "physical", "text": f"{ward_name}, {province_name}",
                     "city": ward_name, "state": province_name, "country": "VN"}],
    }


# --------------------------------------------------------------------------- visits


def _entry(full_url: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


def _choose_acute(rng: random.Random, age: float, sex: str, month: int) -> _Dx:
    t = _tables()
    band = 0 if age < 6 else 1 if age < 18 else 2 if age < 60 else 3
    codes: list[str] = t["acute_codes"]
    while True:
        code = rng.choices(codes, cum_weights=t["acute_cum"][band])[0]
        # dengue is a rainy-season disease; other sex-skewed diagnoses are thinned for the other sex
        keep = (0.9 if 5 <= month <= 11 else 0.15) if code == "A97.0" else 1.0
        if sex == "male":
            keep *= _MALE_KEEP.get(code, 1.0)
        if keep >= 1.0 or rng.random() < keep:
            return _ACUTE[code]


def _lab_value(rng: random.Random, p: _Person, lab: _Lab, effects: set[str], age: float) -> tuple[float, Any, Any]:
    """An SI value for this person and visit, and the SI reference range (low, high)."""
    low, high, mean = lab.low, lab.high, lab.mean
    if lab.female and p.sex == "female":
        low, high, mean = lab.female
    sd = lab.sd
    key = lab.key
    if key == "hemoglobin" and age < 12:
        low, high, mean = 110, 140, 122
    z = p.lab_z.get(key)
    if z is None:
        z = p.lab_z[key] = rng.gauss(0, 1)
    # most of the spread is the person's own level; the rest varies visit to visit
    x = mean + sd * (0.75 * z + 0.45 * rng.gauss(0, 1))
    if key == "glucose" and "dm" in effects:
        x = _clamp(rng.gauss(8.6, 2.0) + z, 5.6, 22)
    elif key == "hba1c" and "dm" in effects:
        x = _clamp(rng.gauss(7.5, 0.9) + 0.3 * z, 6.0, 12.5)
    elif key in ("cholesterol", "ldl", "triglycerides") and "lipid" in effects:
        x += {"cholesterol": 1.4, "ldl": 1.2, "triglycerides": 1.3}[key]
    elif key in ("creatinine", "urea") and "ckd" in effects:
        x *= rng.uniform(1.8, 3.2)
    elif key == "hemoglobin" and ("ckd" in effects or "anemia" in effects):
        x -= rng.uniform(20, 35)
    elif key in ("alt", "ast") and "liver" in effects:
        x *= rng.uniform(1.4, 3.0)
    elif key in ("alt", "ast") and "dengue" in effects:
        x *= rng.uniform(1.5, 4.0)
    elif key == "uric_acid" and "gout" in effects:
        x = rng.gauss(520, 60)
    elif key == "wbc":
        if "bacterial" in effects:
            x = rng.gauss(13.5, 3.0)
        elif "dengue" in effects:
            x = rng.gauss(3.3, 0.8)
        elif age < 6:
            x += 2.5
    elif key == "platelets" and "dengue" in effects:
        x = rng.gauss(85, 35)
    floor = {"wbc": 1.2, "platelets": 12, "hemoglobin": 60, "hdl": 0.4, "triglycerides": 0.3, "alt": 5, "ast": 8,
             "creatinine": 30, "urea": 1.2, "glucose": 3.0, "hba1c": 4.0, "cholesterol": 2.5, "ldl": 1.0,
             "uric_acid": 100}[key]
    return max(floor, x), low, high


def _lab(rng: random.Random, p: _Person, lab: _Lab, effects: set[str], age: float, units: str,
         refs: tuple[str, str], collected: datetime, issued: datetime) -> dict[str, Any]:
    si, low, high = _lab_value(rng, p, lab, effects, age)
    loinc, display, ucum, unit, decimals = lab.si if units == "si" else lab.conventional
    factor = 1.0 if units == "si" else lab.factor

    def conv(v: float) -> float | int:
        v = round(v * factor, decimals)
        return int(v) if decimals == 0 else v

    value = conv(si)
    flag = "H" if high is not None and value > conv(high) else "L" if low is not None and value < conv(low) else "N"
    ref: dict[str, Any] = {}
    if low is not None:
        ref["low"] = _quantity(conv(low), unit, ucum)
    if high is not None:
        ref["high"] = _quantity(conv(high), unit, ucum)
    return {
        "resourceType": "Observation", "status": "final", "category": _LAB_CATEGORY,
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": lab.text},
        "subject": {"reference": refs[0]}, "encounter": {"reference": refs[1]},
        "effectiveDateTime": _ts(collected), "issued": _ts(issued),
        "valueQuantity": _quantity(value, unit, ucum),
        "interpretation": _INTERPRETATION[flag],
        "referenceRange": [ref],
    }


def _vital(code: dict[str, Any], refs: tuple[str, str], when: str, value: float | int, unit: str,
           ucum: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "status": "final", "category": _VITAL_CATEGORY, "code": code,
        "subject": {"reference": refs[0]}, "encounter": {"reference": refs[1]}, "effectiveDateTime": when,
        "valueQuantity": _quantity(value, unit, ucum),
    }


def _vitals(rng: random.Random, p: _Person, age: float, effects: set[str], fever: tuple[float, float] | None,
            refs: tuple[str, str], when: str) -> list[dict[str, Any]]:
    if age < 18:
        height = _child_height(age, p.sex) * (1 + 0.04 * p.height_z)
        bmi = _clamp(16.0 + 1.5 * (p.bmi - 22.3) / 3.0, 13.0, 24.0)
    else:
        height = p.adult_height - (max(0.0, age - 65) * 0.15)
        bmi = p.bmi
    height_value: float | int = round(height, 1) if age < 6 else int(round(height))
    weight = round(bmi * (height_value / 100) ** 2 * (1 + rng.gauss(0, 0.015)), 1)
    temp = round(rng.uniform(*fever), 1) if fever else round(_clamp(rng.gauss(36.7, 0.25), 36.0, 37.3), 1)
    hr_mean, rr_mean = ((125, 35) if age < 1 else (105, 26) if age < 6 else (90, 20) if age < 13 else
                        (80, 18) if age < 18 else (76, 17))
    hr = int(round(_clamp(rng.gauss(hr_mean, 9) + max(0.0, temp - 37.0) * 10, 45, 190)))
    rr = int(round(_clamp(rng.gauss(rr_mean, 2) + (4 if effects & {"pneumonia", "airway", "copd"} else 0), 10, 60)))
    spo2 = (rng.gauss(93, 1.8) if "copd" in effects else rng.gauss(94, 1.5) if "pneumonia" in effects
            else rng.gauss(98, 0.9))
    spo2_value = int(round(_clamp(spo2, 85, 100)))
    bmi_value = round(weight / (height_value / 100) ** 2, 1)
    out = [
        _vital(_VITAL_CODES["hr"], refs, when, hr, "/min", "/min"),
        _vital(_VITAL_CODES["temp"], refs, when, temp, "Cel", "Cel"),
        _vital(_VITAL_CODES["rr"], refs, when, rr, "/min", "/min"),
        _vital(_VITAL_CODES["spo2"], refs, when, spo2_value, "%", "%"),
        _vital(_VITAL_CODES["weight"], refs, when, weight, "kg", "kg"),
        _vital(_VITAL_CODES["height"], refs, when, height_value, "cm", "cm"),
        _vital(_VITAL_CODES["bmi"], refs, when, bmi_value, "kg/m2", "kg/m2"),
    ]
    if age < 3:  # small children: head circumference instead of a blood pressure
        head = (35 + 11 * age ** 0.5 if age < 1 else 46 + 2.0 * (age - 1)) * (1 + 0.02 * p.height_z)
        out.append(_vital(_VITAL_CODES["head"], refs, when, round(head, 1), "cm", "cm"))
    else:
        if age < 18:  # blood pressure is measured from three years on
            systolic = rng.gauss(95 + 1.5 * age, 7)
        else:
            systolic = 110 + 0.45 * max(0.0, age - 30) + p.bp_offset + rng.gauss(0, 6)
            if "htn" in effects:
                systolic += rng.gauss(18, 10)
        systolic = _clamp(systolic, 80, 200)
        diastolic = _clamp(0.55 * systolic + 12 + rng.gauss(0, 4), 45, 120)
        out.append({
            "resourceType": "Observation", "status": "final", "category": _VITAL_CATEGORY, "code": _VITAL_CODES["bp"],
            "subject": {"reference": refs[0]}, "encounter": {"reference": refs[1]}, "effectiveDateTime": when,
            "component": [
                {"code": _VITAL_CODES["sys"], "valueQuantity": _quantity(int(round(systolic)), "mmHg", "mm[Hg]")},
                {"code": _VITAL_CODES["dia"], "valueQuantity": _quantity(int(round(diastolic)), "mmHg", "mm[Hg]")},
            ],
        })
    return out


def _condition(dx: _Dx, refs: tuple[str, str], onset: date, recorded: str, abated: date | None,
               provisional: bool) -> dict[str, Any]:
    name = _icd_names()[dx.code]
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "clinicalStatus": _CLINICAL_STATUS["resolved" if abated or dx.code == "Z00.0" else "active"],
        "verificationStatus": _VERIFICATION_STATUS["provisional" if provisional else "confirmed"],
        "category": _DX_CATEGORY,
        "code": {"coding": [{"system": ICD10, "code": dx.code, "display": name}], "text": name},
        "subject": {"reference": refs[0]},
        "encounter": {"reference": refs[1]},
        "onsetDateTime": onset.isoformat(),
    }
    if abated:
        resource["abatementDateTime"] = abated.isoformat()
    resource["recordedDate"] = recorded
    return resource


def _visit_days(rng: random.Random, n: int, birth: date, today: date) -> list[date]:
    """``n`` clinic days (Monday–Saturday) in the three years before today, oldest first."""
    last = today - timedelta(days=1)
    first = max(today - timedelta(days=3 * 365), birth + timedelta(days=7))
    span = max(0, (last - first).days)
    days = []
    for _ in range(n):
        d = first + timedelta(days=int(rng.random() * (span + 1)))
        if d.weekday() == 6:  # Sunday: the clinic is closed
            d = d - timedelta(days=1) if d > first else d + timedelta(days=1)
        days.append(min(d, last))
    return sorted(days)


def _visit(rng: random.Random, p: _Person, day: date, today: date, facility: Facility, facility_urn: str,
           patient_urn: str, entries: list[dict[str, Any]]) -> None:
    age = _age(p.birth, day)
    # --- diagnoses: a chronic follow-up or an acute problem, with the other chronic ones as comorbidities
    chronic = [c for c in p.chronic if p.onset[c] <= day]
    if chronic and rng.random() < 0.65:
        main_code = rng.choices(chronic, weights=[_CHRONIC_RISK[c][4] for c in chronic])[0]
        main = _CHRONIC[main_code]
    else:
        main = _choose_acute(rng, age, p.sex, day.month)
    others = [_CHRONIC[c] for c in chronic if c != main.code]
    rng.shuffle(others)
    dxs = [main, *others[:2]]
    effects: set[str] = set()
    for dx in dxs:
        effects |= dx.effects
    # --- labs ordered for these diagnoses
    wanted: list[str] = []
    for dx in dxs:
        for key in dx.labs:
            if key == "hba1c" and p.last_hba1c and (day - p.last_hba1c).days < 80:
                continue
            if key not in wanted:
                wanted.append(key)
    if len(wanted) < 2:
        for key in (("wbc", "hemoglobin", "platelets") if age < 18 else ("glucose", "cholesterol", "alt")):
            if len(wanted) >= 2:
                break
            if key not in wanted:
                wanted.append(key)
    wanted = wanted[:_MAX_LABS]
    if "hba1c" in wanted:
        p.last_hba1c = day
    # --- timeline: arrival, vital signs, sample, results, end of visit
    if rng.random() < 0.7:
        start = datetime(day.year, day.month, day.day, 7, 0, tzinfo=VN_TZ) + timedelta(minutes=rng.randrange(240))
    else:
        start = datetime(day.year, day.month, day.day, 13, 30, tzinfo=VN_TZ) + timedelta(minutes=rng.randrange(180))
    start += timedelta(seconds=rng.randrange(60))
    measured = start + timedelta(minutes=rng.randint(3, 12), seconds=rng.randrange(60))
    collected = measured + timedelta(minutes=rng.randint(8, 30), seconds=rng.randrange(60))
    issued = collected + timedelta(minutes=rng.randint(40, 100), seconds=rng.randrange(60))
    end = issued + timedelta(minutes=rng.randint(10, 40), seconds=rng.randrange(60))
    encounter_urn = _urn(rng)
    condition_urns = [_urn(rng) for _ in dxs]
    refs = (patient_urn, encounter_urn)
    entries.append(_entry(encounter_urn, {
        "resourceType": "Encounter",
        "identifier": [{"use": "official", "type": _VISIT_TYPE, "system": VISIT_NUMBER,
                        "value": f"{facility.code}.{day:%Y%m%d}.{rng.randrange(10**6):06d}",
                        "assigner": {"reference": facility_urn, "display": facility.name}}],
        "status": "finished",
        "class": _AMB,
        "type": _ENCOUNTER_TYPE,
        "subject": {"reference": patient_urn},
        "period": {"start": _ts(start), "end": _ts(end)},
        "length": {"value": int((end - start).total_seconds() // 60), "unit": "min", "system": UCUM, "code": "min"},
        "reasonCode": [{"text": main.reason}],
        "diagnosis": [{"condition": {"reference": urn}, "use": _DX_MAIN if i == 0 else _DX_OTHER, "rank": i + 1}
                      for i, urn in enumerate(condition_urns)],
        "serviceProvider": {"reference": facility_urn, "display": facility.name},
    }))
    when = _ts(measured)
    for obs in _vitals(rng, p, age, effects, main.fever, refs, when):
        entries.append(_entry(_urn(rng), obs))
    for key in wanted:
        obs = _lab(rng, p, _LABS[key], effects, age, facility.lab_units, refs, collected, issued)
        entries.append(_entry(_urn(rng), obs))
    recorded = _ts(end)
    for dx, urn in zip(dxs, condition_urns, strict=True):
        if dx.code in _CHRONIC:
            onset, abated, provisional = p.onset[dx.code], None, False
        else:
            onset = day - timedelta(days=0 if dx.code == "Z00.0" else rng.randint(1, 6))
            lasts = day + timedelta(days=rng.randint(*dx.days))
            abated = lasts if dx.days[1] > 0 and lasts < today else None
            provisional = bool(dx.fever) and rng.random() < 0.1
        entries.append(_entry(urn, _condition(dx, refs, onset, recorded, abated, provisional)))


def _patient_bundle(rng: random.Random, encounters: int, today: date) -> dict[str, Any]:
    geo = _geo()
    p = _draw_person(rng, geo)
    hospital, station = _facilities_by_province()[p.province]
    # One facility per patient, the one they are registered with (BHYT "nơi đăng ký KCB ban đầu"):
    # the commune health station or the provincial hospital of the home province.
    facility = station if rng.random() < 0.45 else hospital
    days = _visit_days(rng, encounters, p.birth, today)
    org_urn = _urn(rng)
    org = _entry(org_urn, _organization(facility, geo))
    org["request"]["ifNoneExist"] = f"identifier={FACILITY_CODE}|{facility.code}"
    patient_urn = _urn(rng)
    entries = [org, _entry(patient_urn, _patient(rng, geo, p, facility, org_urn))]
    for day in days:
        _visit(rng, p, day, today, facility, org_urn, patient_urn, entries)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def patient_bundles(count: int, seed: int = 0, encounters: int = 5) -> Iterator[dict]:
    """Yield ``count`` transaction Bundles, one per patient, each with ``encounters`` visits.

    Deterministic: the same ``(count, seed, encounters)`` gives the same bundles (on the same
    day — visit dates are relative to today), and the first ``n`` bundles do not depend on
    ``count``, so a larger data set extends a smaller one.
    """
    if count < 0 or encounters < 0:
        raise ValueError("count and encounters must not be negative")
    master = random.Random(seed)
    today = _today()
    for _ in range(count):
        # one sub-generator per patient: a patient's data does not depend on how much the previous drew
        yield _patient_bundle(random.Random(master.getrandbits(64)), encounters, today)


def _self_check() -> None:  # pragma: no cover - handy when editing the model: python -m fhir_hub.sample.generator
    import sys
    import time

    t0 = time.perf_counter()
    bundles = list(patient_bundles(200, seed=1))
    dt = time.perf_counter() - t0
    sizes = [len(b["entry"]) for b in bundles]
    sys.stdout.write(f"{len(bundles)} bundles in {dt:.2f}s ({len(bundles) / dt:.0f}/s); entries "
                     f"min {min(sizes)} mean {sum(sizes) / len(sizes):.1f} max {max(sizes)}\n")


if __name__ == "__main__":  # pragma: no cover
    _self_check()
