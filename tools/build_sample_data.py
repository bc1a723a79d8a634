"""Build the sample generator's data files in ``fhir_hub/sample/data/`` from ``../shared/vn/code-lists``.

Run as ``python tools/build_sample_data.py [--shared DIR]``. The outputs are committed, so the
package never reads ``shared/`` at run time. Province populations (thousands, approximate) are only
sampling weights for where generated people were born; the facility codes are invented in the
real 5-character format (province code + 3 digits).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "fhir_hub" / "sample" / "data"


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def write_csv(name: str, header: list[str], rows: Iterable[list[Any]]) -> None:
    with open(OUT / name, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def build(src: Path) -> None:
    def rows(name: str) -> list[dict[str, Any]]:
        with open(src / name, encoding="utf-8") as f:
            return list(csv.DictReader(f))

    write_csv("provinces.csv", ["code", "name"],
              ([r["province_code"], nfc(r["province_name"])] for r in rows("provinces_2025.csv")))
    write_csv("wards.csv", ["code", "name", "province_code"],
              ([r["ward_code"], nfc(r["ward_name"]), r["province_code"]] for r in rows("wards_2025.csv")))

    POP = dict(
        x.split(":")
        for x in """01:8587 02:900 04:548 06:327 08:805 10:770 11:640 12:482 14:1300 15:850 17:880 19:1335
    20:802 22:1363 24:1922 25:1516 26:1212 27:1518 30:1956 31:2105 33:1290 34:1880 35:885 36:1876 37:1010 38:3740 40:3442
    42:1323 44:913 45:650 46:1166 48:1245 49:1520 51:1245 52:1505 54:878 56:1260 58:600 60:1250 62:580 64:1590 66:1918
    67:670 68:1332 70:1030 72:1190 74:2763 75:3310 77:1187 79:9456 80:1735 82:1790 83:1300 84:1020 86:1030 87:1600
    89:1910 91:1760 92:1250 93:730 94:1200 95:925 96:1210""".split()
    )
    pre = rows("provinces_pre2025.csv")
    assert len(pre) == 63 and set(POP) == {r["province_code"] for r in pre}
    write_csv("provinces_pre2025.csv", ["code", "name", "province_code_2025", "population_thousands"],
              ([r["province_code"], nfc(r["province_name"]), r["province_code_2025"], POP[r["province_code"]]]
               for r in pre))

    ICD = """I10 E11.9 E78.5 K29.5 M17.9 J44.9 J45.9 B18.1 M10.9 N18.9 I25.9 K76.0 E03.9
    J06.9 J00 J02.9 J03.9 J20.9 J18.9 J11.1 A09 A97.0 B08.4 B01.9 H66.9 H10.9 L30.9 L50.9 K29.7 K21.9 K30 K59.0 M54.5
    R51 G44.2 N39.0 G47.0 F41.9 J30.4 D50.9 M79.1 K02.9 R50.9 Z00.0""".split()
    cat = {r["code"]: r for r in rows("icd10_vn_catalogue.csv")}
    write_csv("icd10_outpatient.csv", ["code", "name_vi"], ([c, nfc(cat[c]["name_vi"])] for c in ICD))

    write_csv("ethnic_groups.csv", ["code", "name_vi"],
              ([r["code"], nfc(r["name_vi"])] for r in rows("ethnic_groups.csv")))

    write_csv("bhyt_beneficiary_codes.csv", ["object_code", "payer_group", "benefit_level", "description_vi"],
              ([r["object_code"], r["payer_group"], r["typical_benefit_level"], nfc(r["description_vi"])]
               for r in rows("bhyt_beneficiary_codes.csv")))

    # facilities: one provincial general hospital (PP001) and one commune health station (PP101) per 2025 province
    prov = rows("provinces_2025.csv")
    wards = rows("wards_2025.csv")
    conventional = {"79", "48", "75", "92"}
    rng = random.Random(2025)
    fac = []
    for p in prov:
        pc = p["province_code"]
        pw = [w_ for w_ in wards if w_["province_code"] == pc]
        phuong = [w_ for w_ in pw if w_["division_type"] == "phường"] or pw
        xa = [w_ for w_ in pw if w_["division_type"] == "xã"] or pw
        pname = nfc(p["province_name"])
        lower = pname.replace("Tỉnh ", "tỉnh ").replace("Thành phố ", "thành phố ")
        area = p["phone_area_code"]

        def phone(area: str = area) -> str:
            return "0" + area + "".join(str(rng.randrange(10)) for _ in range(10 - len(area)))

        h = phuong[0]
        fac.append(
            {
                "code": pc + "001",
                "name": f"Bệnh viện Đa khoa {lower}",
                "kind": "hospital",
                "province_code": pc,
                "ward_code": h["ward_code"],
                "phone": phone(),
                "lab_units": "conventional" if pc in conventional else "si",
            }
        )
        s = xa[len(xa) // 2]
        sname = nfc(s["ward_name"])
        stype, _, rest = sname.partition(" ")
        fac.append(
            {
                "code": pc + "101",
                "name": f"Trạm Y tế {stype.lower()} {rest}",
                "kind": "station",
                "province_code": pc,
                "ward_code": s["ward_code"],
                "phone": phone(),
                "lab_units": "si",
            }
        )
    (OUT / "facilities.json").write_text(
        json.dumps(fac, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    build(parser.parse_args().shared / "vn" / "code-lists")


if __name__ == "__main__":
    main()
