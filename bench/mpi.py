"""Patient matching bench: precision and recall of automatic links, review share, latency.

    python bench/mpi.py                      # 1,000,000 persons (~3.5 GB RSS, ~10 min on 2 cores)
    python bench/mpi.py --persons 100000 --incoming 10000

1. Builds a population of ``--persons`` persons (:mod:`bench.mpi_population`): each golden record's
   features, blocking keys in a :class:`~fhir_hub.mpi.index.CandidateIndex`.
2. Matches ``--incoming`` facility copies (``--new-share`` of them of persons not in the
   population) one by one with :func:`fhir_hub.mpi.rules.match`, and counts against the truth:
   precision = right automatic links / automatic links, recall = right automatic links / copies
   of persons in the population, review share = reviews / copies.
3. Runs the same copies again with every identifier removed, so the probabilistic rule alone
   decides: its precision, recall, review share and latency.
4. Latency of one incoming patient (feature extraction + match), p50/p95: all copies; those that
   carry a personal ID (a new person's ID finds nobody and goes on to the probabilistic rule); those
   the personal-ID rule decided; the identifier-less copies (probabilistic only). The floor is a
   dict lookup of a person's features by personal ID, timed the same way in the same run.

Results: ``bench/results/mpi.json`` (``--out`` to change), and a table on stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import resource
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.mpi_population import Population  # noqa: E402
from fhir_hub.mpi import blocking  # noqa: E402
from fhir_hub.mpi.config import MatchConfig  # noqa: E402
from fhir_hub.mpi.features import NATIONAL_ID, Features, extract  # noqa: E402
from fhir_hub.mpi.index import CandidateIndex  # noqa: E402
from fhir_hub.mpi.rules import Decision, Outcome, Rule, match  # noqa: E402


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def build(population: Population) -> tuple[CandidateIndex, list[Features], dict[str, int], float]:
    index = CandidateIndex()
    features: list[Features] = []
    by_id: dict[str, int] = {}
    start = time.perf_counter()
    for i in range(population.size):
        f = extract(population.golden(population.person(i)))
        features.append(f)
        index.add(str(i), blocking.keys(f))
        if f.national_id:
            by_id[f.national_id] = i
        if i and i % 100_000 == 0:
            print(f"  {i:,} persons, {time.perf_counter() - start:.0f} s, {_rss_mb():,.0f} MB", file=sys.stderr)
    return index, features, by_id, time.perf_counter() - start


def _strip_ids(patient: dict[str, Any]) -> dict[str, Any]:
    return {**patient, "identifier": [i for i in patient.get("identifier", ())
                                      if not str(i.get("system", "")).startswith("http://fhir.ehealth.gov.vn")]}


class Tally:
    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.rules: Counter[str] = Counter()
        self.right_links = 0
        self.wrong_links = 0
        self.known = 0
        self.total = 0
        self.latency_ms: list[float] = []
        self.missed_by_fault: Counter[str] = Counter()
        self.faults_seen: Counter[str] = Counter()
        self.wrong_examples: list[dict[str, Any]] = []

    def add(self, decision: Decision, truth: int | None, faults: list[str], ms: float) -> None:
        self.total += 1
        self.latency_ms.append(ms)
        self.outcomes[str(decision.outcome)] += 1
        self.rules[f"{decision.rule}/{decision.outcome}"] += 1
        if truth is not None:
            self.known += 1
            self.faults_seen.update(faults or ["(none)"])
        if decision.outcome is Outcome.AUTO_LINK:
            if truth is not None and decision.candidate == str(truth):
                self.right_links += 1
            else:
                self.wrong_links += 1
                if len(self.wrong_examples) < 10:
                    self.wrong_examples.append({"truth": truth, "faults": faults, "decision": decision.to_dict()})
        if truth is not None and not (decision.outcome is Outcome.AUTO_LINK and decision.candidate == str(truth)):
            self.missed_by_fault.update(faults or ["(none)"])

    def summary(self) -> dict[str, Any]:
        links = self.right_links + self.wrong_links
        return {
            "incoming": self.total, "of_known_persons": self.known,
            "auto_links": links, "right_auto_links": self.right_links, "wrong_auto_links": self.wrong_links,
            "precision": round(self.right_links / links, 5) if links else None,
            "recall": round(self.right_links / self.known, 5) if self.known else None,
            "review_share": round(self.outcomes["review"] / self.total, 5) if self.total else None,
            "outcomes": dict(self.outcomes), "by_rule": dict(sorted(self.rules.items())),
            "latency_ms": {"p50": round(_pct(self.latency_ms, 0.5), 4), "p95": round(_pct(self.latency_ms, 0.95), 4),
                           "p99": round(_pct(self.latency_ms, 0.99), 4),
                           "mean": round(statistics.fmean(self.latency_ms), 4) if self.latency_ms else None},
            "not_auto_linked_by_fault": {f: f"{self.missed_by_fault[f]}/{self.faults_seen.get(f, 0)}"
                                         for f in sorted(self.missed_by_fault)},
            "wrong_link_examples": self.wrong_examples,
        }


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = MatchConfig()
    population = Population(args.persons, seed=args.seed)
    rss0 = _rss_mb()
    print(f"building {args.persons:,} persons …", file=sys.stderr)
    index, features, by_id, build_s = build(population)
    gc.collect()
    rss_built = _rss_mb()
    features_of = features.__getitem__

    def lookup(pid: str) -> Features:
        return features_of(int(pid))

    copies = []
    collisions = 0
    for patient, truth, faults in population.incoming(args.incoming, args.new_share, seed=args.seed + 6):
        if truth is None:
            if index.lookup(blocking.deterministic_keys(extract(patient))).ids:
                collisions += 1  # a generated "new" person whose ID a population person already has
                continue
        copies.append((patient, truth, faults))

    full, probabilistic, by_nid, nid_rule = Tally(), Tally(), Tally(), Tally()
    # as on the server: probabilistic candidates sharing fewer blocking keys than the best less
    # one are not scored (rules.prune), unless --score-all
    keys_of = None if args.score_all else index.keys_of
    clock = time.perf_counter_ns
    gc.disable()
    for patient, truth, faults in copies:
        t0 = clock()
        decision = match(extract(patient), index, lookup, config, keys_of)
        ms = (clock() - t0) / 1e6
        full.add(decision, truth, faults, ms)
        if any(i["system"] == NATIONAL_ID for i in patient["identifier"]):
            by_nid.add(decision, truth, faults, ms)
        if decision.rule is Rule.NATIONAL_ID:
            nid_rule.add(decision, truth, faults, ms)
    for patient, truth, faults in copies:
        stripped = _strip_ids(patient)
        t0 = clock()
        decision = match(extract(stripped), index, lookup, config, keys_of)
        probabilistic.add(decision, truth, faults, (clock() - t0) / 1e6)
    floor: list[float] = []
    keys = list(by_id)[: len(copies)]
    for key in keys:
        t0 = clock()
        features_of(by_id[key])
        floor.append((clock() - t0) / 1e6)
    gc.enable()

    result = {
        "meta": {"persons": args.persons, "seed": args.seed, "pruned": not args.score_all, "incoming": len(copies), "new_share": args.new_share,
                 "new_person_id_collisions_skipped": collisions, "python": platform.python_version(),
                 "machine": platform.machine(), "cores": len(__import__("os").sched_getaffinity(0)),
                 "build_seconds": round(build_s, 1), "rss_mb_before": round(rss0), "rss_mb_built": round(rss_built),
                 "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                 "index_keys": index.key_count, "config": {"link_threshold": config.link_threshold,
                                                          "review_threshold": config.review_threshold,
                                                          "max_block": config.max_block}},
        "all_rules": full.summary(),
        "carrying_personal_id": by_nid.summary(),
        "decided_by_personal_id": nid_rule.summary(),
        "probabilistic_only": probabilistic.summary(),
        "floor_dict_lookup_ms": {"p50": round(_pct(floor, 0.5), 5), "p95": round(_pct(floor, 0.95), 5)},
    }
    return result


def report(r: dict[str, Any]) -> str:
    m = r["meta"]
    lines = [f"{m['persons']:,} persons (built in {m['build_seconds']} s, {m['rss_mb_built']:,} MB RSS), "
             f"{m['incoming']:,} incoming copies",
             f"{'':24} {'precision':>10} {'recall':>8} {'review':>8} {'p50 ms':>8} {'p95 ms':>8}"]
    for name in ("all_rules", "carrying_personal_id", "decided_by_personal_id", "probabilistic_only"):
        s = r[name]
        lines.append(f"{name:24} {s['precision'] or 0:>10.4%} {s['recall'] or 0:>8.2%} {s['review_share'] or 0:>8.2%} "
                     f"{s['latency_ms']['p50']:>8.3f} {s['latency_ms']['p95']:>8.3f}")
    f = r["floor_dict_lookup_ms"]
    lines.append(f"{'floor: dict lookup':24} {'':>10} {'':>8} {'':>8} {f['p50']:>8.4f} {f['p95']:>8.4f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--incoming", type=int, default=20_000)
    parser.add_argument("--new-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--score-all", action="store_true",
                        help="score every candidate sharing a blocking key (no rules.prune), as before 2026-12-02")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mpi.json")
    args = parser.parse_args(argv)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(report(result))
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
