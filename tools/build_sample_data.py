"""Copy the small code lists the sample generator needs from ../shared/vn into the package.

Run as ``python tools/build_sample_data.py [--shared DIR]``; the outputs in
``fhir_hub/sample/data/`` are committed, so the package never reads ``shared/`` at run time.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "fhir_hub" / "sample" / "data"

#: Common outpatient diagnoses (ICD-10, Vietnamese edition); names come from the catalogue.
ICD10 = ("J00 J02.9 J03.9 J06.9 J18.9 J20.9 J45.9 I10 I11.9 I20.9 I25.1 E11.9 E78.5 E66.9 K21.9 K29.7 K30 "
         "K59.0 M54.5 M17.9 M81.9 N39.0 N18.9 A09 B34.9 L20.9 L30.9 H10.9 H52.1 R51 R50.9 G43.9 F41.9 F32.9 "
         "D50.9 Z00.0 K02.9 E03.9 A15.0").split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    lists = parser.parse_args().shared / "vn" / "code-lists"
    OUT.mkdir(parents=True, exist_ok=True)
    with open(lists / "provinces_2025.csv", encoding="utf-8") as f, \
            open(OUT / "provinces.csv", "w", encoding="utf-8", newline="") as out:
        w = csv.writer(out)
        w.writerow(["code", "name"])
        for row in csv.DictReader(f):
            w.writerow([row["province_code"], row["province_name"]])
    with open(lists / "wards_2025.csv", encoding="utf-8") as f, \
            open(OUT / "wards.csv", "w", encoding="utf-8", newline="") as out:
        w = csv.writer(out)
        w.writerow(["code", "name", "province_code"])
        for row in csv.DictReader(f):
            w.writerow([row["ward_code"], row["ward_name"], row["province_code"]])
    catalogue = {r["code"]: r for r in csv.DictReader(open(lists / "icd10_vn_catalogue.csv", encoding="utf-8"))}
    with open(OUT / "icd10.csv", "w", encoding="utf-8", newline="") as out:
        w = csv.writer(out)
        w.writerow(["code", "name_vi"])
        for code in ICD10:
            w.writerow([code, catalogue[code]["name_vi"]])


if __name__ == "__main__":
    main()
