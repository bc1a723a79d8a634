"""The rules in order, the threshold bands, the conflict cases and the explanation."""

from __future__ import annotations

import dataclasses

import pytest

from fhir_hub.mpi import blocking
from fhir_hub.mpi.config import MatchConfig
from fhir_hub.mpi.features import Features, extract
from fhir_hub.mpi.index import CandidateIndex
from fhir_hub.mpi.rules import Decision, Outcome, Rule, decide, match
from fhir_hub.mpi.score import Level
from tests.mpi.conftest import address, patient

CONFIG = MatchConfig()


def _decide(a: dict, b: dict, config: MatchConfig = CONFIG) -> Decision:  # type: ignore[type-arg]
    return decide(extract(a), extract(b), config, "P1")


# ------------------------------------------------------------------ rule 1: personal ID

def test_same_personal_id_links_whatever_else_differs() -> None:
    d = _decide(patient(name="NGUYEN VAN HUNG", phone=None, card=None), patient(name="Nguyễn Hữu Hùng", card=None))
    assert (d.outcome, d.rule, d.candidate) == (Outcome.AUTO_LINK, Rule.NATIONAL_ID, "P1")
    assert d.reasons == ("same personal ID",)


@pytest.mark.parametrize(("incoming", "reason"), [
    (patient(birth="1986-03-04"), "birth year 1986 != 1985"),
    (patient(sex="female"), "sex female != male"),
])
def test_same_personal_id_with_birth_year_or_sex_disagreeing_goes_to_review(incoming: dict, reason: str) -> None:  # type: ignore[type-arg]
    d = _decide(incoming, patient())
    assert (d.outcome, d.rule) == (Outcome.REVIEW, Rule.NATIONAL_ID)
    assert reason in d.reasons[0]


def test_record_disagreeing_with_its_own_personal_id_goes_to_review() -> None:
    # a parent's ID (born 1985, male) on a child's record, the candidate has no birth date or sex
    d = _decide(patient(name="Nguyễn Văn An", birth="2015-06-01"), patient(birth=None, sex=None))
    assert (d.outcome, d.rule) == (Outcome.REVIEW, Rule.NATIONAL_ID)
    assert "incoming birth year 2015 != 1985 written in its personal ID" in d.reasons[0]
    d = _decide(patient(sex="female"), patient(sex=None))
    assert "incoming sex female != male written in its personal ID" in d.reasons[0]


def test_swapped_day_month_is_no_conflict_for_the_personal_id_rule() -> None:
    d = _decide(patient(birth="1985-04-03"), patient())
    assert d.outcome is Outcome.AUTO_LINK


def test_invalid_personal_id_is_not_a_deterministic_match() -> None:
    bad = "003085012345"  # no province 03
    d = _decide(patient(cccd=bad, card=None, name="Trần Thị Lan", sex="female", phone=None),
                patient(cccd=bad, card=None))
    assert d.rule is Rule.PROBABILISTIC and d.outcome is Outcome.NEW


# ------------------------------------------------------------------ rule 2: social-insurance number

def test_same_bhxh_number_links_across_card_renewals() -> None:
    d = _decide(patient(cccd=None, card="HT3010123456789"), patient(card="DN4790123456789"))
    assert (d.outcome, d.rule) == (Outcome.AUTO_LINK, Rule.INSURANCE_NUMBER)
    assert d.reasons == ("same social-insurance number 0123456789",)


def test_bhxh_number_alone_matches_a_card() -> None:
    d = _decide(patient(cccd=None, card="0123456789"), patient())
    assert (d.outcome, d.rule) == (Outcome.AUTO_LINK, Rule.INSURANCE_NUMBER)


def test_same_bhxh_number_with_conflicts_goes_to_review() -> None:
    d = _decide(patient(cccd=None, birth="1990-01-01"), patient())
    assert (d.outcome, d.rule) == (Outcome.REVIEW, Rule.INSURANCE_NUMBER)
    assert "birth year 1990 != 1985" in d.reasons[0]
    d = _decide(patient(cccd="001085099999"), patient())
    assert (d.outcome, d.rule) == (Outcome.REVIEW, Rule.INSURANCE_NUMBER)
    assert "different personal IDs 001085099999 and 001085012345" in d.reasons[0]


def test_personal_id_rule_comes_before_the_insurance_rule() -> None:
    d = _decide(patient(card="DN4010999999999"), patient())
    assert d.rule is Rule.NATIONAL_ID and d.outcome is Outcome.AUTO_LINK


# ------------------------------------------------------------------ rule 3: probabilistic bands

def test_probabilistic_bands() -> None:
    base = patient(cccd=None, card=None)
    same = _decide(dict(base, name=[{"text": "NGUYEN VAN HUNG"}]), base)
    assert (same.rule, same.outcome) == (Rule.PROBABILISTIC, Outcome.AUTO_LINK)
    assert same.score >= CONFIG.link_threshold
    # a namesake born the same year, another commune of the same city, no phone: for a reviewer
    namesake = _decide(patient(cccd=None, card=None, birth="1985-07-21", phone=None, addr=address("01", "00008")),
                       base)
    assert namesake.outcome is Outcome.REVIEW
    assert CONFIG.review_threshold <= namesake.score < CONFIG.link_threshold
    other = _decide(patient(name="Trần Thị Lan", sex="female", cccd=None, card=None, birth="1990-01-01", phone=None),
                    base)
    assert other.outcome is Outcome.NEW and other.score < CONFIG.review_threshold


@pytest.mark.parametrize(("link", "outcome"), [("at", Outcome.AUTO_LINK), ("above", Outcome.REVIEW)])
def test_link_threshold_is_inclusive(link: str, outcome: Outcome) -> None:
    a, b = patient(cccd=None, card=None), patient(cccd=None, card=None, phone=None)
    score = _decide(a, b).score
    config = dataclasses.replace(CONFIG, link_threshold=score if link == "at" else score + 0.01,
                                 review_threshold=score - 5)
    assert _decide(a, b, config).outcome is outcome


@pytest.mark.parametrize(("review", "outcome"), [("at", Outcome.REVIEW), ("above", Outcome.NEW)])
def test_review_threshold_is_inclusive(review: str, outcome: Outcome) -> None:
    a, b = patient(cccd=None, card=None), patient(cccd=None, card=None, phone=None)
    score = _decide(a, b).score
    config = dataclasses.replace(CONFIG, link_threshold=score + 10,
                                 review_threshold=score if review == "at" else score + 0.01)
    d = _decide(a, b, config)
    assert d.outcome is outcome and d.rule is Rule.PROBABILISTIC


def test_thresholds_come_from_the_config() -> None:
    a, b = patient(cccd=None, card=None), patient(cccd=None, card=None)
    assert _decide(a, b, dataclasses.replace(CONFIG, link_threshold=100.0, review_threshold=99.0)).outcome is Outcome.NEW


def test_config_refuses_disordered_weights_and_thresholds() -> None:
    with pytest.raises(ValueError, match="link_threshold"):
        MatchConfig(link_threshold=5, review_threshold=5)
    with pytest.raises(ValueError, match="given"):
        dataclasses.replace(CONFIG, given=dataclasses.replace(CONFIG.given, folded=7.0))
    with pytest.raises(ValueError, match="phone"):
        dataclasses.replace(CONFIG, phone=dataclasses.replace(CONFIG.phone, disagree=1.0))


def test_two_different_personal_ids_weigh_heavily_against() -> None:
    d = _decide(patient(cccd="001085099999", card=None), patient(card=None))
    assert d.rule is Rule.PROBABILISTIC
    assert dict((f.field, f.level) for f in d.fields)["national_id"] is Level.DISAGREE
    assert d.outcome is not Outcome.AUTO_LINK


# ------------------------------------------------------------------ explanation

def test_explanation_names_rule_score_and_every_field() -> None:
    d = _decide(patient(cccd=None, card=None, name="NGUYEN VAN HUNG", birth="1985-04-03",
                        addr=address("01", "00013", old=True)),
                patient(cccd=None, card=None))
    levels = {f.field: f.level for f in d.fields}
    assert levels == {"national_id": Level.MISSING, "insurance_number": Level.MISSING, "given": Level.FOLDED,
                      "middle": Level.FOLDED, "family": Level.FOLDED, "birth_date": Level.SWAPPED,
                      "sex": Level.EXACT, "province": Level.EXACT, "commune": Level.EXACT, "phone": Level.EXACT}
    weights = {f.field: f.weight for f in d.fields}
    assert weights["given"] == CONFIG.given.folded and weights["birth_date"] == CONFIG.birth_date.swapped
    assert d.score == pytest.approx(sum(weights.values()))
    text = d.explain()
    assert text.startswith(f"auto-link by probabilistic with P1: score {d.score:+.1f}")
    assert "birth_date: swapped (+6.0)" in text and "commune: exact (+4.0)" in text
    as_dict = d.to_dict()
    assert as_dict["rule"] == "probabilistic" and as_dict["outcome"] == "auto-link"
    assert {"field": "given", "level": "folded", "weight": CONFIG.given.folded} in as_dict["fields"]


def test_deterministic_decisions_carry_the_field_comparison_too() -> None:
    d = _decide(patient(birth="1986-01-01"), patient())
    assert {f.field: f.level for f in d.fields}["birth_date"] is Level.DISAGREE
    assert "birth_date: disagree" in d.explain()


# ------------------------------------------------------------------ against an index

def _indexed(*patients: dict) -> tuple[CandidateIndex, dict[str, Features]]:  # type: ignore[type-arg]
    index, people = CandidateIndex(), {}
    for n, p in enumerate(patients):
        f = extract(p)
        people[f"P{n}"] = f
        index.add(f"P{n}", blocking.keys(f))
    return index, people


def test_match_finds_the_person_by_personal_id_among_many() -> None:
    index, people = _indexed(patient(cccd="001085000001", card=None, name="Lê Văn Hùng"), patient(),
                             patient(cccd="001085000002", card=None, name="Phạm Văn Hùng"))
    d = match(extract(patient(card=None, phone=None)), index, people.__getitem__)
    assert (d.outcome, d.rule, d.candidate) == (Outcome.AUTO_LINK, Rule.NATIONAL_ID, "P1")


def test_match_falls_back_to_probabilistic_through_blocking() -> None:
    index, people = _indexed(patient(), patient(name="Trần Thị Lan", sex="female", cccd="001185000001",
                                                card=None, phone="0987654321"))
    incoming = patient(name="NGUYEN VAN HUNG", cccd=None, card=None, addr=address("01", "00013", old=True))
    d = match(extract(incoming), index, people.__getitem__)
    assert (d.outcome, d.rule, d.candidate) == (Outcome.AUTO_LINK, Rule.PROBABILISTIC, "P0")


def test_match_with_no_candidate_is_new() -> None:
    index, people = _indexed(patient())
    d = match(extract(patient(name="Trần Thị Lan", sex="female", cccd=None, card=None, phone=None,
                              birth="1990-01-01")), index, people.__getitem__)
    assert d.outcome is Outcome.NEW and d.candidate is None
    assert d.reasons == ("no candidate shares a blocking key",)


def test_match_below_review_names_the_best_candidate_but_links_none() -> None:
    index, people = _indexed(patient())
    d = match(extract(patient(cccd=None, card=None, name="Nguyễn Văn Hùng", birth="1960-01-01", sex="male",
                              addr=address("79", "26734"))), index, people.__getitem__)
    assert d.outcome is Outcome.NEW and d.candidate is None
    assert d.reasons[0].startswith("best candidate P0 scored below the review threshold")


def test_two_persons_above_the_link_threshold_make_a_review() -> None:
    twin = patient(cccd="001085000009", card=None)
    index, people = _indexed(patient(card=None), twin)
    d = match(extract(patient(cccd=None, card=None)), index, people.__getitem__)
    assert d.outcome is Outcome.REVIEW
    assert "possible duplicate persons" in d.reasons[-1]
    assert {d.candidate, d.others[0][0]} == {"P0", "P1"}


def test_conflicting_personal_id_in_match_is_a_review_not_a_link() -> None:
    index, people = _indexed(patient())
    d = match(extract(patient(name="Nguyễn Văn An", birth="2015-06-01", card=None)), index, people.__getitem__)
    assert (d.outcome, d.rule, d.candidate) == (Outcome.REVIEW, Rule.NATIONAL_ID, "P0")


def test_too_common_blocking_keys_are_skipped_and_said() -> None:
    index, people = _indexed(*(patient(cccd=None, card=None, phone=None, addr={}) for _ in range(4)))
    config = dataclasses.replace(CONFIG, max_block=3)
    d = match(extract(patient(cccd=None, card=None, phone=None, addr={})), index, people.__getitem__, config)
    assert d.outcome is Outcome.NEW
    assert any(r.startswith("blocking keys too common to use: gfy:hung|nguyen|1985") for r in d.reasons)


def test_candidates_sharing_fewer_blocking_keys_are_not_scored_and_said() -> None:
    # P0 is the person (same name, year, commune and phone: five keys); P1 and P2 share only the
    # tên + họ + year key (other middle name, commune and phone); P3 shares all but the phone
    index, people = _indexed(
        patient(),
        patient(name="Nguyễn Hữu Hùng", phone="0900000001", addr=address("79", "26734"), cccd="001085000011"),
        patient(name="Nguyễn Đức Hùng", phone="0900000002", addr=address("79", "26734"), cccd="001085000012"),
        patient(phone="0900000003", cccd="001085000013"))
    incoming = extract(patient(cccd=None, card=None))
    scored: list[str] = []

    def features_of(pid: str) -> Features:
        scored.append(pid)
        return people[pid]

    d = match(incoming, index, features_of, CONFIG, index.keys_of)
    assert sorted(scored) == ["P0", "P3"]
    assert "2 candidates sharing fewer blocking keys not scored" in d.reasons
    unpruned = match(incoming, index, people.__getitem__, CONFIG)
    assert {d.candidate} | {o[0] for o in d.others} == {"P0", "P3"}
    assert {unpruned.candidate} | {o[0] for o in unpruned.others} == {"P0", "P1", "P2", "P3"}
    assert (d.outcome, d.candidate) == (unpruned.outcome, unpruned.candidate)
