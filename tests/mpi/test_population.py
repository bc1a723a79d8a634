"""The bench population: deterministic, internally consistent, faults as labelled; and a small
end-to-end run of the bench so that a change that hurts matching shows up in the tests."""

from __future__ import annotations

import argparse
from collections import Counter

from bench import mpi
from bench.mpi_population import Population
from fhir_hub.mpi.features import extract, national_id


def test_persons_are_deterministic_by_seed_and_index() -> None:
    a, b = Population(1000, seed=3), Population(1000, seed=3)
    assert a.person(17) == b.person(17)
    assert a.person(17) != Population(1000, seed=4).person(17)
    assert a.copy(a.person(5), 2) == b.copy(b.person(5), 2)


def test_personal_ids_agree_with_birth_year_sex_and_are_unique() -> None:
    pop = Population(5000)
    seen: set[str] = set()
    for i in range(pop.size):
        p = pop.person(i)
        if p.national_id:
            assert national_id(p.national_id) == (p.national_id, p.birth.year, p.sex)
            seen.add(p.national_id)
        if p.card:
            assert p.card.endswith(p.bhxh) and len(p.card) == 15
    assert len(seen) > 0.95 * pop.size


def test_name_distribution_is_vietnamese() -> None:
    pop = Population(20000)
    families = Counter(pop.person(i).family for i in range(pop.size))
    assert 0.35 < families["Nguyễn"] / pop.size < 0.42
    assert families.most_common(3)[0][0] == "Nguyễn" and families["Trần"] > families["Phạm"]
    middles = Counter(pop.person(i).middle[0] for i in range(2000))
    assert middles["Văn"] > middles["Đức"] and middles["Thị"] > middles["Ngọc"]


def test_golden_record_features_are_complete() -> None:
    pop = Population(100)
    p = pop.person(1)
    f = extract(pop.golden(p))
    assert f.given and f.given.text == p.given and f.communes == {p.ward} and f.provinces == {p.province}


def test_faults_are_applied_as_labelled() -> None:
    pop = Population(3000)
    for i in range(3000):
        p = pop.person(i)
        copy, faults = pop.copy(p, 0)
        f = extract(copy)
        if "no-personal-id" in faults:
            assert f.national_id is None
        if "no-diacritics" in faults:
            name = copy["name"][0]
            assert " ".join([name.get("text", ""), name.get("family", ""), *name.get("given", ())]).isascii()
        if "old-address-codes" in faults:
            assert p.ward in f.communes and "pre2025" in str(copy["address"])
        if "swapped-day-month" in faults:
            assert copy["birthDate"] == f"{p.birth.year:04d}-{p.birth.day:02d}-{p.birth.month:02d}"


def test_small_bench_run_meets_the_issue_bars(tmp_path) -> None:  # type: ignore[no-untyped-def]
    args = argparse.Namespace(persons=5000, incoming=1500, new_share=0.1, seed=1, score_all=False,
                              out=tmp_path / "mpi.json")
    result = mpi.run(args)
    for part in ("all_rules", "probabilistic_only"):
        assert result[part]["precision"] >= 0.995, result[part]
        assert result[part]["recall"] >= 0.95, result[part]
    assert "floor: dict lookup" in mpi.report(result)
