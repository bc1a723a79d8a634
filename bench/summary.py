"""``Patient/[id]/$summary`` latency for one patient with many resources (issue 9: p50 ≤ 100 ms at ~1,000).

Loads one patient and ``--resources`` resources about it (conditions, allergies, medication
statements, immunizations, vital-sign and laboratory observations, procedures, encounters,
coverage, appointments, referrals, in a fixed mix) in transactions of 500, plus a second patient
of the same size so the compartment lookups have something to skip; then asks for the first
patient's summary ``--requests`` times, one at a time over one keep-alive connection, after
``--warmup`` requests, and prints p50, p99 and the document's size.

    python bench/summary.py [--resources 1000] [--requests 200] [--warmup 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import fhir_hub_proc, free_port  # noqa: E402

_CAT = "http://terminology.hl7.org/CodeSystem/observation-category"


def _resource(i: int, subject: str) -> dict[str, Any]:
    """The ``i``-th resource of the mix, about ``subject``."""
    ref = {"reference": subject}
    day = f"20{10 + i % 15:02d}-{1 + i % 12:02d}-{1 + i % 28:02d}"
    kind = i % 12
    if kind == 0:
        return {"resourceType": "Condition", "code": {"text": f"Bệnh {i}"}, "subject": ref, "onsetDateTime": day,
                "clinicalStatus": {"coding": [{"code": "active" if i % 24 else "resolved"}]}}
    if kind == 1:
        return {"resourceType": "AllergyIntolerance", "code": {"text": f"Dị nguyên {i}"}, "patient": ref,
                "recordedDate": day}
    if kind == 2:
        return {"resourceType": "MedicationStatement", "status": "active", "subject": ref,
                "medicationCodeableConcept": {"text": f"Thuốc {i}"}, "effectiveDateTime": day}
    if kind == 3:
        return {"resourceType": "Immunization", "status": "completed", "vaccineCode": {"text": f"Vắc xin {i}"},
                "patient": ref, "occurrenceDateTime": day}
    if kind in (4, 5, 6):
        cat = "vital-signs" if kind == 4 else "laboratory"
        return {"resourceType": "Observation", "status": "final", "subject": ref, "effectiveDateTime": day,
                "category": [{"coding": [{"system": _CAT, "code": cat}]}], "code": {"text": f"Chỉ số {i}"},
                "valueQuantity": {"value": i % 200, "unit": "mmol/L"}}
    if kind == 7:
        return {"resourceType": "Procedure", "status": "completed", "code": {"text": f"Thủ thuật {i}"},
                "subject": ref, "performedDateTime": day}
    if kind in (8, 9):
        return {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": ref,
                "period": {"start": day}}
    if kind == 10:
        return {"resourceType": "Appointment", "status": "proposed", "description": "Giấy hẹn khám lại",
                "requestedPeriod": [{"start": day}], "participant": [{"actor": ref, "status": "needs-action"}]}
    return {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": ref,
            "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "3457005"}]}],
            "code": {"text": "Chuyển tuyến"}, "authoredOn": day}


def load(c: httpx.Client, resources: int) -> str:
    """One patient with ``resources`` resources (in transactions of 500); its id."""
    r = c.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Nguyễn", "given": ["Bench"]}]})
    r.raise_for_status()
    pid = str(r.json()["id"])
    entries = [{"resource": _resource(i, f"Patient/{pid}"), "request": {"method": "POST", "url": "x"}}
               for i in range(resources)]
    for e in entries:
        e["request"]["url"] = e["resource"]["resourceType"]
    for start in range(0, len(entries), 500):
        r = c.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries[start:start + 500]})
        r.raise_for_status()
    return pid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resources", type=int, default=1000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="fhirhub-bench-summary-"))
    port = free_port()
    proc = fhir_hub_proc(port, tmp / "hub.db", tmp / "server.log").start(180)
    try:
        headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/fhir", headers=headers, timeout=120) as c:
            pid = load(c, args.resources)
            load(c, args.resources)  # another patient, as large
            url = f"/Patient/{pid}/$summary"
            size = 0
            for _ in range(args.warmup):
                size = len(c.get(url).content)
            times: list[float] = []
            for _ in range(args.requests):
                t0 = time.perf_counter()
                r = c.get(url)
                times.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text[:300]
    finally:
        proc.stop()
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"$summary of a patient with {args.resources} resources ({size:,} bytes), {args.requests} requests: "
          f"p50 {statistics.median(times):.1f} ms, p99 {p99:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
