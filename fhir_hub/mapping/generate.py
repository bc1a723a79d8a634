"""Synthetic claims envelopes (``GIAMDINHHS``, QĐ 130 as amended by QĐ 4750 / 3176), with
optional injected faults.

Why it exists: the mapping is judged on what it does with *many* visits of varied shape, not on
the six hand-written samples — the round-trip honesty test (every input value is in the
resources or listed as unmapped), the fault-report test (each bad HOSO reported precisely, the
good ones imported) and bench/import.py all need files of any size whose content is known.
Everything comes from one ``random.Random(seed)``: a seed names a file.

Variety: examinations (MA_LOAI_KCB 01), outpatient treatment (02) and stays (03) with their
own durations; men, women and children, a few with a year-only birth date; pre-2025 (three
level) and 2025 (two level) addresses; one to three diagnoses; drug lines (with dosage, route,
registration number and the prescriber's licence number), exam, laboratory, imaging, bed-day and
supply lines with their costs; lab results (numbers with units, and text), an imaging
description; clinical-course notes carrying the vital signs QĐ 4750 asks for; a discharge paper
(XML7) and a medical-record summary (XML8) for stays, a referral paper (XML13) for some stays that end in a transfer, and a re-exam
appointment (XML14) for some outpatients.  Tables are written with
every field of the QĐ 3176 dictionary in its order, the ones a visit does not use empty.

Faults (``faults={kind: count}``), each on its own HOSO, described by a :class:`Fault`:

* ``base64`` — XML3's NOIDUNGFILE is not base64 (the table is lost, the visit imports);
* ``date`` — an XML2 line's NGAY_YL is ``2025-13-45`` (that element is left out);
* ``code`` — XML1's MA_LOAI_KCB is ``77`` (no Encounter class: the HOSO is not imported);
* ``ma_lk`` — XML1's MA_LK is empty (the HOSO is not imported);
* ``number`` — an XML2 line's SO_LUONG is ``1,5`` (a comma is never a decimal point).
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from xml.sax.saxutils import escape

__all__ = ["FAULT_KINDS", "FIELDS", "Fault", "Generated", "generate"]

#: Every field of each table, in the order of the QĐ 3176 dictionary
#: (``shared/vn/bhyt-xml/BHYT_XML_fields_QD130_4750_3176.csv``).
FIELDS: dict[str, tuple[str, ...]] = {
    "XML1": tuple("""MA_LK STT MA_BN HO_TEN SO_CCCD NGAY_SINH GIOI_TINH NHOM_MAU MA_QUOCTICH MA_DANTOC MA_NGHE_NGHIEP
        DIA_CHI MATINH_CU_TRU MAHUYEN_CU_TRU MAXA_CU_TRU DIEN_THOAI MA_THE_BHYT MA_DKBD GT_THE_TU GT_THE_DEN
        NGAY_MIEN_CCT LY_DO_VV LY_DO_VNT MA_LY_DO_VNT CHAN_DOAN_VAO CHAN_DOAN_RV MA_BENH_CHINH MA_BENH_KT MA_BENH_YHCT
        MA_PTTT_QT MA_DOITUONG_KCB MA_NOI_DI MA_NOI_DEN MA_TAI_NAN NGAY_VAO NGAY_VAO_NOI_TRU NGAY_RA GIAY_CHUYEN_TUYEN
        SO_NGAY_DTRI PP_DIEU_TRI KET_QUA_DTRI MA_LOAI_RV GHI_CHU NGAY_TTOAN T_THUOC T_VTYT T_TONGCHI_BV T_TONGCHI_BH
        T_BNTT T_BNCCT T_BHTT T_NGUONKHAC T_BHTT_GDV NAM_QT THANG_QT MA_LOAI_KCB MA_KHOA MA_CSKCB MA_KHUVUC CAN_NANG
        CAN_NANG_CON NAM_NAM_LIEN_TUC NGAY_TAI_KHAM MA_HSBA MA_TTDV DU_PHONG""".split()),
    "XML2": tuple("""MA_LK STT MA_THUOC MA_PP_CHEBIEN MA_CSKCB_THUOC MA_NHOM TEN_THUOC DON_VI_TINH HAM_LUONG DUONG_DUNG
        DANG_BAO_CHE LIEU_DUNG CACH_DUNG SO_DANG_KY TT_THAU PHAM_VI TYLE_TT_BH SO_LUONG DON_GIA THANH_TIEN_BV
        THANH_TIEN_BH T_NGUONKHAC_NSNN T_NGUONKHAC_VTNN T_NGUONKHAC_VTTN T_NGUONKHAC_CL T_NGUONKHAC MUC_HUONG T_BNTT
        T_BNCCT T_BHTT MA_KHOA MA_BAC_SI MA_DICH_VU NGAY_YL NGAY_TH_YL MA_PTTT NGUON_CTRA VET_THUONG_TP
        DU_PHONG""".split()),
    "XML3": tuple("""MA_LK STT MA_DICH_VU MA_PTTT_QT MA_VAT_TU MA_NHOM GOI_VTYT TEN_VAT_TU TEN_DICH_VU MA_XANG_DAU
        DON_VI_TINH PHAM_VI SO_LUONG DON_GIA_BV DON_GIA_BH TT_THAU TYLE_TT_DV TYLE_TT_BH THANH_TIEN_BV THANH_TIEN_BH
        T_TRANTT MUC_HUONG T_NGUONKHAC_NSNN T_NGUONKHAC_VTNN T_NGUONKHAC_VTTN T_NGUONKHAC_CL T_NGUONKHAC T_BNTT T_BNCCT
        T_BHTT MA_KHOA MA_GIUONG MA_BAC_SI NGUOI_THUC_HIEN MA_BENH MA_BENH_YHCT NGAY_YL NGAY_TH_YL NGAY_KQ MA_PTTT
        VET_THUONG_TP PP_VO_CAM VI_TRI_TH_DVKT MA_MAY MA_HIEU_SP TAI_SU_DUNG DU_PHONG""".split()),
    "XML4": tuple("""MA_LK STT MA_DICH_VU MA_CHI_SO TEN_CHI_SO GIA_TRI DON_VI_DO MO_TA KET_LUAN NGAY_KQ MA_BS_DOC_KQ
        DU_PHONG""".split()),
    "XML5": tuple("MA_LK STT DIEN_BIEN_LS GIAI_DOAN_BENH HOI_CHAN PHAU_THUAT THOI_DIEM_DBLS NGUOI_THUC_HIEN "
                  "DU_PHONG".split()),
    "XML7": tuple("""MA_LK SO_LUU_TRU MA_YTE MA_KHOA_RV NGAY_VAO NGAY_RA MA_DINH_CHI_THAI NGUYENNHAN_DINHCHI
        THOIGIAN_DINHCHI TUOI_THAI CHAN_DOAN_RV PP_DIEUTRI GHI_CHU MA_TTDV MA_BS TEN_BS NGAY_CT MA_CHA MA_ME MA_THE_TAM
        HO_TEN_CHA HO_TEN_ME SO_NGAY_NGHI NGOAITRU_TUNGAY NGOAITRU_DENNGAY DU_PHONG""".split()),
    "XML8": tuple("""MA_LK MA_LOAI_KCB HO_TEN_CHA HO_TEN_ME NGUOI_GIAM_HO DON_VI NGAY_VAO NGAY_RA CHAN_DOAN_VAO
        CHAN_DOAN_RV QT_BENHLY TOMTAT_KQ PP_DIEUTRI NGAY_SINHCON NGAY_CONCHET SO_CONCHET KET_QUA_DTRI GHI_CHU MA_TTDV
        NGAY_CT MA_THE_TAM DU_PHONG""".split()),
    "XML13": tuple("""MA_LK SO_HOSO SO_CHUYENTUYEN GIAY_CHUYEN_TUYEN MA_CSKCB MA_CSKCB_DI MA_CSKCB_DEN HO_TEN NGAY_SINH
        GIOI_TINH MA_QUOCTICH MA_DANTOC MA_NGHE_NGHIEP DIA_CHI MA_THE_BHYT GT_THE_DEN NGAY_VAO NGAY_VAO_NOI_TRU NGAY_RA
        DAU_HIEU_LS CHAN_DOAN_RV QT_BENHLY TOMTAT_KQ PP_DIEUTRI MA_BENH_CHINH MA_BENH_KT MA_BENH_YHCT TINH_TRANG_CT
        MA_LOAI_RV MA_LYDO_CT HUONG_DIEU_TRI PHUONGTIEN_VC HOTEN_NGUOI_HT CHUCDANH_NGUOI_HT MA_BAC_SI MA_TTDV
        DU_PHONG""".split()),
    "XML14": tuple("""MA_LK SO_GIAYHEN_KL MA_CSKCB HO_TEN NGAY_SINH GIOI_TINH DIA_CHI MA_THE_BHYT GT_THE_DEN NGAY_VAO
        NGAY_VAO_NOI_TRU NGAY_RA NGAY_HEN_KL CHAN_DOAN_RV MA_BENH_CHINH MA_BENH_KT MA_BENH_YHCT MA_DOITUONG_KCB
        MA_BAC_SI MA_TTDV NGAY_CT DU_PHONG""".split()),
}
#: (root element, record path) of each table.
_SHAPE: dict[str, tuple[str, tuple[str, ...]]] = {
    "XML1": ("TONG_HOP", ()),
    "XML2": ("CHITIEU_CHITIET_THUOC", ("DSACH_CHI_TIET_THUOC", "CHI_TIET_THUOC")),
    "XML3": ("CHITIEU_CHITIET_DVKT_VTYT", ("DSACH_CHI_TIET_DVKT", "CHI_TIET_DVKT")),
    "XML4": ("CHITIEU_CHITIET_DICHVUCANLAMSANG", ("DSACH_CHI_TIET_CLS", "CHI_TIET_CLS")),
    "XML5": ("CHITIEU_CHITIET_DIENBIENLAMSANG", ("DSACH_CHI_TIET_DIEN_BIEN_BENH", "CHI_TIET_DIEN_BIEN_BENH")),
    "XML7": ("CHI_TIEU_DU_LIEU_GIAY_RA_VIEN", ()),
    "XML8": ("CHI_TIEU_DU_LIEU_TOM_TAT_HO_SO_BENH_AN", ()),
    "XML13": ("CHI_TIEU_GIAYCHUYENTUYEN", ()),
    "XML14": ("CHI_TIEU_GIAYHEN_KHAMLAI", ()),
}
FAULT_KINDS = ("base64", "date", "code", "ma_lk", "number")

_FAMILY = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô")
_MIDDLE = {"1": ("Văn", "Hữu", "Minh", "Đức", "Quang"), "2": ("Thị", "Ngọc", "Thu", "Thanh", "Kim")}
_GIVEN = {"1": ("An", "Bình", "Dũng", "Hùng", "Nam", "Quân", "Tuấn", "Khoa", "Long", "Sơn"),
          "2": ("Chi", "Hà", "Lan", "Mai", "Phương", "Thảo", "Yến", "Hoa", "Linh", "Trang")}
#: (MATINH, MAHUYEN, MAXA, address tail): pre-2025 three-level and 2025 two-level codes.
_PLACES = (("79", "760", "26734", "Phường Bến Nghé, Quận 1, TP Hồ Chí Minh"),
           ("01", "001", "00001", "Phường Phúc Xá, Quận Ba Đình, Hà Nội"),
           ("48", "", "20194", "Phường Hải Châu, TP Đà Nẵng"),
           ("92", "", "31117", "Phường Ninh Kiều, TP Cần Thơ"),
           ("22", "193", "06652", "Phường Hồng Gai, TP Hạ Long, Quảng Ninh"))
#: (ICD-10, title, reason for visit, admission text)
_DIAGNOSES = (("J18.9", "Viêm phổi, không đặc hiệu", "Sốt, ho có đờm", "Viêm phổi"),
              ("J06.9", "Nhiễm trùng hô hấp trên cấp", "Sốt, đau họng", "Viêm họng cấp"),
              ("A90", "Sốt Dengue [sốt xuất huyết Dengue cổ điển]", "Sốt cao 3 ngày", "Sốt xuất huyết"),
              ("K29.7", "Viêm dạ dày, không đặc hiệu", "Đau thượng vị", "Viêm dạ dày"),
              ("N39.0", "Nhiễm khuẩn hệ tiết niệu, vị trí không xác định", "Tiểu buốt", "Nhiễm khuẩn tiết niệu"),
              ("E11.9", "Bệnh đái tháo đường không phụ thuộc insuline", "Tái khám đái tháo đường", "Đái tháo đường"),
              ("I10", "Bệnh lý tăng huyết áp vô căn", "Đau đầu, chóng mặt", "Tăng huyết áp"))
_CHRONIC = ("I10", "E11.9", "E78.5", "K21.9", "M54.5")
#: (MA_THUOC, name, unit, strength, route, form, registration, dosage, how, unit price)
_DRUGS = (("40.226", "Ceftriaxon 1g", "Lọ", "1g", "2.10", "Bột pha tiêm", "VD-00001-21", "1 lọ/lần x 2 lần/ngày",
           "Tiêm tĩnh mạch chậm", 28500),
          ("40.20", "Paracetamol 500mg", "Viên", "500mg", "1.01", "Viên nén", "VD-00002-21", "1 viên/lần x 3 lần/ngày",
           "Uống sau ăn", 350),
          ("40.677", "Metformin 850mg", "Viên", "850mg", "1.01", "Viên nén bao phim", "VD-00003-22",
           "1 viên/lần x 2 lần/ngày", "Uống sau ăn", 620),
          ("40.466", "Amlodipin 5mg", "Viên", "5mg", "1.01", "Viên nang cứng", "VD-00004-20", "1 viên/ngày",
           "Uống buổi sáng", 450),
          ("40.678", "Omeprazol 20mg", "Viên", "20mg", "1.01", "Viên nang", "VD-00005-23", "1 viên/lần x 2 lần/ngày",
           "Uống trước ăn 30 phút", 900),
          ("40.1017", "Natri clorid 0,9% 500ml", "Chai", "0,9%", "2.15", "Dung dịch tiêm truyền", "VD-00006-19",
           "1 chai/ngày", "Truyền tĩnh mạch 40 giọt/phút", 9800))
#: (MA_DICH_VU, name, MA_NHOM, unit price, XML4 results: (MA_CHI_SO, name, unit, low, high) or None)
_LABS = (("23.0166.1494", "Định lượng Glucose máu", "1", 21500, (("GLU", "Glucose", "mmol/L", 4.0, 12.0),)),
         ("22.0120.1370", "Tổng phân tích tế bào máu ngoại vi", "1", 46200,
          (("WBC", "Số lượng bạch cầu", "G/L", 3.5, 15.0), ("PLT", "Số lượng tiểu cầu", "G/L", 60.0, 400.0),
           ("HGB", "Huyết sắc tố", "g/L", 95.0, 160.0))),
         ("23.0020.1487", "Định lượng Creatinin máu", "1", 21500, (("CRE", "Creatinin", "µmol/L", 50.0, 140.0),)),
         ("24.0017.1714", "Dengue virus NS1Ag test nhanh", "1", 129000, (("NS1", "Dengue NS1Ag", "", 0, 0),)))
_IMAGING = (("18.0119.0028", "Chụp Xquang ngực thẳng", "2", 65400, "Đám mờ đáy phổi phải", "Theo dõi viêm phổi"),
            ("18.0001.0001", "Siêu âm ổ bụng", "2", 43900, "Gan, mật, tụy, lách bình thường", "Không thấy bất thường"))
_EXAM = ("02.1896", "Khám Nội", "13", 38700)
_BED = ("K03.1920", "Giường Nội khoa loại 2 Hạng II", "14", 218700)
_SUPPLY = ("N03.05.070", "Bơm tiêm nhựa 5ml", "10", 1200)
_DEPARTMENTS = ("K01", "K02", "K03", "K19", "K26")
_CARD_OBJECTS = (("HT", "3"), ("DN", "4"), ("GD", "4"), ("TE", "1"), ("BT", "2"), ("CK", "2"), ("HN", "2"))
_COURSE = ("Sốt, mệt mỏi", "Đỡ sốt, ăn uống được", "Hết sốt, tỉnh táo", "Ho giảm, phổi giảm ran", "Ổn định")


@dataclass(frozen=True)
class Fault:
    """One injected fault: where it is and what the import must report."""

    hoso: int  # 1-based index in DANHSACHHOSO
    kind: str  # one of FAULT_KINDS
    ma_lk: str
    table: str
    field: str
    value: str
    imported: bool  # whether the HOSO must still give a bundle


@dataclass
class Generated:
    data: bytes
    facility: str
    #: Per HOSO, table → records (field → text) as written (before any fault).
    hosos: list[dict[str, list[dict[str, str]]]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)

    @property
    def ma_lks(self) -> list[str]:
        return [h["XML1"][0]["MA_LK"] for h in self.hosos]


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M")


def _day(moment: datetime) -> str:
    return moment.strftime("%Y%m%d")


def _staff(rng: random.Random) -> str:
    return f"{rng.randrange(1, 999999):06d}/{rng.choice(('HCM', 'HNO', 'DNG', 'CTH'))}-CCHN"


def _money(line: dict[str, str], price: int, quantity: float, rate: int) -> int:
    total = round(price * quantity)
    insured = round(total * rate / 100)
    line.update(THANH_TIEN_BV=str(total), THANH_TIEN_BH=str(total), MUC_HUONG=str(rate), T_BNTT="0",
                T_BNCCT=str(total - insured), T_BHTT=str(insured), T_NGUONKHAC="0", T_NGUONKHAC_NSNN="0",
                T_NGUONKHAC_VTNN="0", T_NGUONKHAC_VTTN="0", T_NGUONKHAC_CL="0", PHAM_VI="1")
    return total


def _visit(rng: random.Random, facility: str, n: int, year: int) -> dict[str, list[dict[str, str]]]:
    """The tables of one visit (HOSO number ``n``)."""
    kind = rng.choices(("01", "02", "03"), (4, 3, 3))[0]
    sex = rng.choice("12")
    age = rng.choice((rng.randrange(1, 15), rng.randrange(18, 60), rng.randrange(60, 90)))
    start = datetime(year, 1, 1, 7) + timedelta(days=rng.randrange(330), minutes=rng.randrange(0, 600, 5))
    stay = rng.randrange(2, 9) if kind == "03" else 0
    end = start + (timedelta(days=stay, hours=rng.randrange(1, 6)) if stay else timedelta(minutes=rng.randrange(30, 180)))
    birth_year = year - age
    birth = (f"{birth_year}00000000" if rng.random() < 0.05
             else f"{birth_year}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}0000")
    name = f"{rng.choice(_FAMILY)} {rng.choice(_MIDDLE[sex])} {rng.choice(_GIVEN[sex])}"
    province, district, ward, tail = rng.choice(_PLACES)
    obj, level = ("TE", "1") if age < 6 else rng.choice(_CARD_OBJECTS)
    card = f"{obj}{level}{province}{rng.randrange(10**9, 10**10)}"
    main = rng.choice(_DIAGNOSES)
    extra = rng.sample([c for c in _CHRONIC if c != main[0]], rng.choice((0, 0, 1, 1, 2, 3)))
    department = rng.choice(_DEPARTMENTS)
    doctor = _staff(rng)
    ma_lk = f"{facility}.{year}.{('KB', 'NGT', 'NT')[int(kind) - 1]}.{n:06d}"
    seq = {"MA_LK": ma_lk}
    weight = f"{rng.uniform(8, 25) if age < 15 else rng.uniform(40, 85):.2f}"
    xml1: dict[str, str] = {
        **seq, "STT": "1", "MA_BN": f"BN{year}{n:06d}", "HO_TEN": name,
        "SO_CCCD": "" if age < 14 else f"0{province}{int(sex) - 1 + (2 if birth_year >= 2000 else 0)}"
                                       f"{birth_year % 100:02d}{rng.randrange(10**6):06d}",
        "NGAY_SINH": birth, "GIOI_TINH": sex, "NHOM_MAU": rng.choice(("", "", "O+", "A+", "B+", "AB+")),
        "MA_QUOCTICH": "000", "MA_DANTOC": rng.choices(("01", "04", "05", "08"), (10, 1, 1, 1))[0],
        "MA_NGHE_NGHIEP": "00000" if age < 18 else rng.choice(("00000", "11110", "61110", "92110")),
        "DIA_CHI": f"Số {rng.randrange(1, 300)} đường {rng.choice(_GIVEN['1'])}, {tail}",
        "MATINH_CU_TRU": province, "MAHUYEN_CU_TRU": district, "MAXA_CU_TRU": ward,
        "DIEN_THOAI": f"09{rng.randrange(10**8):08d}" if rng.random() < 0.8 else "",
        "MA_THE_BHYT": card, "MA_DKBD": f"{province}{rng.randrange(1, 999):03d}",
        "GT_THE_TU": f"{year}0101", "GT_THE_DEN": f"{year}1231",
        "LY_DO_VV": main[2], "LY_DO_VNT": f"{main[2]}, cần theo dõi" if kind == "03" else "",
        "CHAN_DOAN_VAO": main[3], "CHAN_DOAN_RV": "; ".join([main[1], *extra]),
        "MA_BENH_CHINH": main[0], "MA_BENH_KT": ";".join(extra), "MA_DOITUONG_KCB": rng.choice(("1.1", "1.2", "3.1")),
        "NGAY_VAO": _stamp(start), "NGAY_VAO_NOI_TRU": _stamp(start + timedelta(hours=2)) if kind == "03" else "",
        "NGAY_RA": _stamp(end), "SO_NGAY_DTRI": str(stay + 1 if stay else 1),
        "PP_DIEU_TRI": "Nội khoa" if kind == "03" else "Điều trị ngoại trú",
        "KET_QUA_DTRI": rng.choice(("1", "2", "2", "3")), "MA_LOAI_RV": "1",
        "GHI_CHU": "DỮ LIỆU GIẢ LẬP - không phải người bệnh thật", "NGAY_TTOAN": _stamp(end + timedelta(minutes=30)),
        "NAM_QT": str(end.year), "THANG_QT": str(end.month), "MA_LOAI_KCB": kind, "MA_KHOA": department,
        "MA_CSKCB": facility, "CAN_NANG": weight, "MA_HSBA": f"BA{year}-{n:06d}",
        "MA_TTDV": f"79{rng.randrange(10**8):08d}",
    }
    if rng.random() < 0.15:  # referred here by a lower-level facility, with its paper
        xml1.update(MA_NOI_DI=f"{province}{rng.randrange(100, 999):03d}", GIAY_CHUYEN_TUYEN=f"{rng.randrange(1, 9999)}/CT")
    rate = {"1": 100, "2": 100, "3": 95, "4": 80}[level]
    drugs: list[dict[str, str]] = []
    services: list[dict[str, str]] = []
    results: list[dict[str, str]] = []
    course: list[dict[str, str]] = []
    drug_total = supply_total = other_total = 0
    for i, d in enumerate(rng.sample(_DRUGS, rng.randrange(1, 5)), 1):
        qty = rng.choice((1, 2, 5, 10, 14, 20, 30)) * (max(stay, 1) if d[2] in ("Lọ", "Chai") else 1)
        at = start + timedelta(minutes=rng.randrange(10, 90))
        line = {**seq, "STT": str(i), "MA_THUOC": d[0], "MA_NHOM": "4", "TEN_THUOC": d[1], "DON_VI_TINH": d[2],
                "HAM_LUONG": d[3], "DUONG_DUNG": d[4], "DANG_BAO_CHE": d[5], "LIEU_DUNG": d[7], "CACH_DUNG": d[8],
                "SO_DANG_KY": d[6], "TT_THAU": f"{rng.randrange(100, 999)}/QĐ-SYT;G1;N4;{year - 1}",
                "TYLE_TT_BH": "100", "SO_LUONG": str(qty), "DON_GIA": str(d[9]), "MA_KHOA": department,
                "MA_BAC_SI": doctor, "NGAY_YL": _stamp(at), "NGAY_TH_YL": _stamp(at + timedelta(minutes=15)),
                "MA_PTTT": "1", "NGUON_CTRA": "1"}
        drug_total += _money(line, d[9], qty, rate)
        drugs.append(line)

    def service(code: str, title: str, group: str, price: int, qty: float = 1, **more: str) -> dict[str, str]:
        nonlocal other_total
        at = start + timedelta(minutes=rng.randrange(5, 60))
        line = {**seq, "STT": str(len(services) + 1), "MA_DICH_VU": code, "MA_NHOM": group, "TEN_DICH_VU": title,
                "DON_VI_TINH": "Lần", "SO_LUONG": f"{qty:g}", "DON_GIA_BV": str(price), "DON_GIA_BH": str(price),
                "TYLE_TT_DV": "100", "TYLE_TT_BH": "100", "MA_KHOA": department, "MA_BAC_SI": doctor,
                "MA_BENH": main[0], "NGAY_YL": _stamp(at), "NGAY_TH_YL": _stamp(at + timedelta(minutes=10)),
                "MA_PTTT": "1", **more}
        if group in ("1", "2"):
            line["NGUOI_THUC_HIEN"] = ";".join(_staff(rng) for _ in range(rng.randrange(1, 3)))
            line["NGAY_KQ"] = _stamp(at + timedelta(minutes=rng.randrange(40, 120)))
            line["MA_MAY"] = f"XN.{rng.randrange(1, 99):02d}"
        other_total += _money(line, price, qty, rate)
        services.append(line)
        return line

    service(*_EXAM)
    for lab in rng.sample(_LABS, rng.randrange(0, 3)):
        line = service(*lab[:4])
        for ind in lab[4]:
            if ind[3] == ind[4]:
                value, unit = rng.choice(("Âm tính", "Dương tính")), ""
            else:
                value, unit = f"{rng.uniform(ind[3], ind[4]):.1f}", ind[2]
            results.append({**seq, "STT": str(len(results) + 1), "MA_DICH_VU": lab[0], "MA_CHI_SO": ind[0],
                            "TEN_CHI_SO": ind[1], "GIA_TRI": value, "DON_VI_DO": unit, "NGAY_KQ": line["NGAY_KQ"],
                            "MA_BS_DOC_KQ": _staff(rng)})
    if rng.random() < 0.4:
        img = rng.choice(_IMAGING)
        line = service(*img[:4])
        results.append({**seq, "STT": str(len(results) + 1), "MA_DICH_VU": img[0], "MO_TA": img[4],
                        "KET_LUAN": img[5], "NGAY_KQ": line["NGAY_KQ"], "MA_BS_DOC_KQ": _staff(rng)})
    if stay:
        service(*_BED, qty=stay, MA_GIUONG=f"H{rng.randrange(1, 9)}.{rng.randrange(1, 40):03d}")
    if stay or rng.random() < 0.3:
        code, title, group, price = _SUPPLY
        line = {**seq, "STT": str(len(services) + 1), "MA_VAT_TU": code, "MA_NHOM": group, "TEN_VAT_TU": title,
                "DON_VI_TINH": "Cái", "SO_LUONG": "2", "DON_GIA_BV": str(price), "DON_GIA_BH": str(price),
                "TT_THAU": f"{rng.randrange(100, 999)}.01;G1;N1;{year - 1}", "TYLE_TT_DV": "100",
                "TYLE_TT_BH": "100", "MA_KHOA": department, "MA_BAC_SI": doctor,
                "NGAY_YL": _stamp(start + timedelta(minutes=20)), "MA_HIEU_SP": f"SP{rng.randrange(1000, 9999)}"}
        supply_total += _money(line, price, 2, rate)
        services.append(line)
    for day in range(max(stay, 1)):
        at = start + timedelta(days=day, hours=1)
        temp = f"{rng.uniform(36.5, 39.5):.1f}"
        course.append({**seq, "STT": str(day + 1), "THOI_DIEM_DBLS": _stamp(at), "NGUOI_THUC_HIEN": doctor,
                       "DIEN_BIEN_LS": f"{rng.choice(_COURSE)}. M: {rng.randrange(60, 120)} l/p, T: {temp} °C, "
                                       f"HA: {rng.randrange(100, 160)}/{rng.randrange(60, 95)} mmHg, "
                                       f"NT: {rng.randrange(14, 28)} l/p, SP: {rng.randrange(92, 100)}%",
                       "GIAI_DOAN_BENH": "Giai đoạn cấp" if day == 0 and stay else ""})
    total = drug_total + supply_total + other_total
    insured = round(total * rate / 100)
    xml1.update(T_THUOC=str(drug_total), T_VTYT=str(supply_total), T_TONGCHI_BV=str(total), T_TONGCHI_BH=str(total),
                T_BNTT="0", T_BNCCT=str(total - insured), T_BHTT=str(insured), T_NGUONKHAC="0",
                T_BHTT_GDV=str(insured))
    tables: dict[str, list[dict[str, str]]] = {"XML1": [xml1], "XML2": drugs, "XML3": services}
    if results:
        tables["XML4"] = results
    tables["XML5"] = course
    signer = xml1["MA_TTDV"]
    if kind == "03":
        tables["XML7"] = [{**seq, "SO_LUU_TRU": f"LT{year}-{n:06d}", "MA_YTE": xml1["MA_BN"], "MA_KHOA_RV": department,
                           "NGAY_VAO": xml1["NGAY_VAO"], "NGAY_RA": xml1["NGAY_RA"], "MA_DINH_CHI_THAI": "0",
                           "CHAN_DOAN_RV": xml1["CHAN_DOAN_RV"], "PP_DIEUTRI": xml1["PP_DIEU_TRI"],
                           "GHI_CHU": "Tái khám khi có dấu hiệu bất thường", "MA_TTDV": signer,
                           "MA_BS": f"79{rng.randrange(10**8):08d}", "TEN_BS": f"{rng.choice(_FAMILY)} Văn Định",
                           "NGAY_CT": _day(end)}]
    if kind == "03":  # the medical-record summary of a stay
        child = age < 6
        tables["XML8"] = [{**seq, **{k: xml1[k] for k in ("MA_LOAI_KCB", "NGAY_VAO", "NGAY_RA", "CHAN_DOAN_VAO",
                                                          "CHAN_DOAN_RV", "KET_QUA_DTRI")},
                           "HO_TEN_CHA": f"{name.split()[0]} Văn Cha" if child else "",
                           "HO_TEN_ME": f"{rng.choice(_FAMILY)} Thị Mẹ" if child else "",
                           "DON_VI": "" if child or age >= 60 else "Công ty giả lập",
                           "QT_BENHLY": f"{main[2]} trước vào viện", "TOMTAT_KQ": "Kết quả cận lâm sàng như hồ sơ",
                           "PP_DIEUTRI": xml1["PP_DIEU_TRI"], "GHI_CHU": "Ổn định, ra viện", "MA_TTDV": signer,
                           "NGAY_CT": _day(end)}]
    if kind == "03" and rng.random() < 0.25:  # transferred to a higher level: a referral paper
        xml1.update(MA_LOAI_RV="2", MA_NOI_DEN=f"{province}{rng.randrange(1, 99):03d}")
        tables["XML13"] = [{**seq, "SO_HOSO": f"HS{year}-{n:06d}", "SO_CHUYENTUYEN": f"SCT-{year}-{n:04d}",
                            "GIAY_CHUYEN_TUYEN": f"CT{year}-{n:06d}", "MA_CSKCB": facility,
                            "MA_CSKCB_DEN": xml1["MA_NOI_DEN"],
                            **{k: xml1[k] for k in ("HO_TEN", "NGAY_SINH", "GIOI_TINH", "MA_QUOCTICH", "MA_DANTOC",
                                                    "MA_NGHE_NGHIEP", "DIA_CHI", "MA_THE_BHYT", "GT_THE_DEN",
                                                    "NGAY_VAO", "NGAY_VAO_NOI_TRU", "NGAY_RA", "CHAN_DOAN_RV",
                                                    "MA_BENH_CHINH", "MA_BENH_KT", "MA_LOAI_RV", "MA_TTDV")},
                            "DAU_HIEU_LS": f"{main[2]}, diễn biến nặng", "QT_BENHLY": "Điều trị nội khoa không đỡ",
                            "TOMTAT_KQ": "Xét nghiệm và chẩn đoán hình ảnh như hồ sơ", "PP_DIEUTRI": xml1["PP_DIEU_TRI"],
                            "TINH_TRANG_CT": "Tỉnh, sinh hiệu ổn định", "MA_LYDO_CT": rng.choice("123"),
                            "HUONG_DIEU_TRI": "Đề nghị tuyến trên đánh giá và điều trị tiếp",
                            "PHUONGTIEN_VC": "Xe cứu thương", "HOTEN_NGUOI_HT": f"{rng.choice(_FAMILY)} Thị Hộ Tống",
                            "CHUCDANH_NGUOI_HT": "Điều dưỡng", "MA_BAC_SI": doctor}]
    if kind == "02" or (kind == "03" and rng.random() < 0.5):
        again = end + timedelta(days=rng.choice((7, 14, 30)))
        xml1["NGAY_TAI_KHAM"] = _day(again)
        tables["XML14"] = [{**seq, "SO_GIAYHEN_KL": f"GH{year}-{n:06d}", "MA_CSKCB": facility,
                            **{k: xml1[k] for k in ("HO_TEN", "NGAY_SINH", "GIOI_TINH", "DIA_CHI", "MA_THE_BHYT",
                                                    "GT_THE_DEN", "NGAY_VAO", "NGAY_VAO_NOI_TRU", "NGAY_RA",
                                                    "CHAN_DOAN_RV", "MA_BENH_CHINH", "MA_BENH_KT",
                                                    "MA_DOITUONG_KCB", "MA_TTDV")},
                            "NGAY_HEN_KL": _day(again), "MA_BAC_SI": doctor, "NGAY_CT": _day(end)}]
    return tables


def render_table(table: str, records: list[dict[str, str]]) -> bytes:
    """One inner table as its XML bytes: every field of the dictionary, in order (empty ones as
    ``<F />``), values escaped."""
    root, path = _SHAPE[table]
    names = FIELDS[table]

    def record(rec: dict[str, str], indent: str) -> str:
        return "".join(f"{indent}<{f}>{escape(rec[f])}</{f}>\n" if rec.get(f) else f"{indent}<{f} />\n"
                       for f in names)

    if not path:
        body = record(records[0], "  ")
    else:
        items = "".join(f"    <{path[1]}>\n{record(r, '      ')}    </{path[1]}>\n" for r in records)
        body = f"  <{path[0]}>\n{items}  </{path[0]}>\n"
    return f'<?xml version="1.0" encoding="utf-8"?>\n<{root}>\n{body}</{root}>\n'.encode()


def _inject(kind: str, index: int, tables: dict[str, list[dict[str, str]]], rendered: dict[str, str]) -> Fault:
    """Spoil one HOSO's tables (``rendered``: table → NOIDUNGFILE) with a fault of ``kind``."""
    ma_lk = tables["XML1"][0]["MA_LK"]

    def replace(table: str, records: list[dict[str, str]]) -> None:
        rendered[table] = base64.b64encode(render_table(table, records)).decode()

    if kind == "base64":
        rendered["XML3"] = "@@" + rendered["XML3"][2:40] + "!!"
        return Fault(index, kind, ma_lk, "XML3", "NOIDUNGFILE", rendered["XML3"], True)
    if kind in ("date", "number"):
        drugs = [dict(r) for r in tables["XML2"]]
        line = index % len(drugs)
        name, value = ("NGAY_YL", "2025-13-45") if kind == "date" else ("SO_LUONG", "1,5")
        drugs[line][name] = value
        replace("XML2", drugs)
        return Fault(index, kind, ma_lk, "XML2", name, value, True)
    head = dict(tables["XML1"][0])
    name, value = ("MA_LOAI_KCB", "77") if kind == "code" else ("MA_LK", "")
    head[name] = value
    replace("XML1", [head])
    return Fault(index, kind, ma_lk, "XML1", name, value, False)


def generate(count: int, seed: int = 0, facility: str = "79001", faults: dict[str, int] | None = None,
             year: int = 2025) -> Generated:
    """An envelope of ``count`` HOSO; ``faults`` (kind → how many) spoil that many distinct HOSO."""
    rng = random.Random(seed)
    out = Generated(b"", facility)
    plan: dict[int, str] = {}
    wanted = [k for k, n in (faults or {}).items() for _ in range(n)]
    unknown = set(wanted) - set(FAULT_KINDS)
    if unknown:
        raise ValueError(f"unknown fault kinds {sorted(unknown)}: {', '.join(FAULT_KINDS)}")
    if len(wanted) > count:
        raise ValueError(f"{len(wanted)} faults need at least as many HOSO, not {count}")
    # placed by a generator of their own: the same seed gives the same visits with or without faults
    places = random.Random(f"faults/{seed}").sample(range(1, count + 1), len(wanted))
    for kind, index in zip(wanted, sorted(places), strict=True):
        plan[index] = kind
    parts = []
    for n in range(1, count + 1):
        tables = _visit(rng, facility, n, year)
        out.hosos.append(tables)
        rendered = {t: base64.b64encode(render_table(t, recs)).decode() for t, recs in tables.items()}
        if n in plan:
            out.faults.append(_inject(plan[n], n, tables, rendered))
        files = "".join(f"<FILEHOSO><LOAIHOSO>{t}</LOAIHOSO><NOIDUNGFILE>{c}</NOIDUNGFILE></FILEHOSO>"
                        for t, c in rendered.items())
        parts.append(f"<HOSO>{files}</HOSO>")
    out.data = (f'<?xml version="1.0" encoding="utf-8"?>\n<GIAMDINHHS><THONGTINDONVI><MACSKCB>{facility}</MACSKCB>'
                f"</THONGTINDONVI><THONGTINHOSO><NGAYLAP>{year}1231</NGAYLAP><SOLUONGHOSO>{count}</SOLUONGHOSO>"
                f"<DANHSACHHOSO>{''.join(parts)}</DANHSACHHOSO></THONGTINHOSO><CHUKYDONVI></CHUKYDONVI>"
                f"</GIAMDINHHS>").encode()
    return out
