"""Profile validator against the structural validator on the same resources: resources/s on one core.

Usage: ``python bench/validate.py [--patients N] [--seconds S]``

The resources are the claims mapping's output for the synthetic GIAMDINHHS samples plus the VN
sample Patient and vital-sign Observation of the tests, repeated to N of each kind. Four figures
per kind: structural only (``structure.validate``), the profile layer only (``profile.validate``
against the resource's default VN profile), both as ``fhir-hub validate`` runs them
(``profile.validate_resource``), and fhirpathpy evaluating one invariant (vs-2) for scale. Times are
the best of three runs (``time.perf_counter``), in one process, after a warm-up.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fhir_hub import profiles  # noqa: E402
from fhir_hub.mapping import map_file  # noqa: E402
from fhir_hub.validation import profile, structure  # noqa: E402
from tests.validation import vn_samples  # noqa: E402


def _resources(n: int) -> dict[str, list[dict[str, Any]]]:
    mapped: list[dict[str, Any]] = []
    for path in sorted((ROOT.parent / "shared" / "vn" / "bhyt-xml" / "sample-synthetic").glob("GIAMDINHHS_*.xml")):
        for h in map_file(path.read_bytes(), path.name).hosos:
            if h.bundle is not None:
                mapped.extend(e["resource"] for e in h.bundle["entry"] if profiles.default_profiles(e["resource"]))
    kinds = {
        "Patient (VN sample)": [vn_samples.patient()],
        "vital-sign Observation (VN sample)": [vn_samples.vital_sign()],
        "claims-mapping resources (8 profiles)": mapped,
    }
    return {k: [copy.deepcopy(v[i % len(v)]) for i in range(n)] for k, v in kinds.items()}


def _rate(fn: Callable[[dict[str, Any]], Any], items: list[dict[str, Any]]) -> float:
    for r in items[:200]:
        fn(r)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for r in items:
            fn(r)
        best = min(best, time.perf_counter() - t)
    return len(items) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--patients", type=int, default=5000, help="resources of each kind")
    args = parser.parse_args()
    default = {}

    def profile_only(r: dict[str, Any]) -> None:
        urls = default.get(id(r))
        if urls is None:
            urls = default[id(r)] = profiles.default_profiles(r)
        for u in urls:
            profile.validate(r, u)

    import fhirpathpy
    from fhirpathpy.models import models

    vs2 = fhirpathpy.compile("(component.empty() and hasMember.empty()) implies (dataAbsentReason.exists() or "
                             "value.exists())", models["r4"])
    print(f"{'resources':40} {'structural':>12} {'profile':>12} {'both':>12} {'fhirpathpy 1 inv':>17}  (resources/s)")
    for kind, items in _resources(args.patients).items():
        s = _rate(structure.validate, items)
        p = _rate(profile_only, items)
        b = _rate(profile.validate_resource, items)
        f = _rate(lambda r: vs2(r, {}), items[: max(len(items) // 10, 1)])
        print(f"{kind:40} {s:12,.0f} {p:12,.0f} {b:12,.0f} {f:17,.0f}")


if __name__ == "__main__":
    main()
