"""The matching rules, in the order issue 6 gives them, and the explained :class:`Decision`.

For one pair (:func:`decide`):

1. **Personal ID** — both records carry the same valid personal ID: link automatically, unless
   the birth year or sex disagree (between the two records, or with what the ID's digits say),
   in which case the pair goes to review, not merged: a parent's ID on a child's record looks
   exactly like this.
2. **Social-insurance number** — a 10-digit BHXH number in common (from any BHYT card): link, with
   the same conflict check, and review when the records carry two *different* personal IDs.
3. **Probabilistic** — the Fellegi–Sunter score of :func:`fhir_hub.mpi.score.compare`: at or above
   ``link_threshold`` link, at or above ``review_threshold`` review, else a new person.

For one incoming patient against an index (:func:`match`): the personal ID and insurance
numbers are looked up first; a deterministic hit answers on its own. Otherwise the candidates
sharing a blocking key are scored, and the best one decides, except that two candidates above the
link threshold make it a review (the population itself may hold a duplicate).

Everything here is pure: features and an index in, a decision out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fhir_hub.mpi import blocking
from fhir_hub.mpi.config import MatchConfig
from fhir_hub.mpi.features import Features
from fhir_hub.mpi.index import CandidateSource
from fhir_hub.mpi.score import Comparison, FieldAgreement, compare


class Outcome(StrEnum):
    AUTO_LINK = "auto-link"
    REVIEW = "review"
    NEW = "new"


class Rule(StrEnum):
    NATIONAL_ID = "national-id"
    INSURANCE_NUMBER = "insurance-number"
    PROBABILISTIC = "probabilistic"


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with an incoming patient, and why.

    ``candidate`` is the person compared (``None`` when there was none); ``fields`` the level and
    weight of every field, ``score`` their sum (reported for the deterministic rules too);
    ``reasons`` one sentence per fact that decided."""

    outcome: Outcome
    rule: Rule
    score: float
    candidate: str | None = None
    fields: tuple[FieldAgreement, ...] = ()
    reasons: tuple[str, ...] = ()
    #: the other candidates scored, best first (person id, outcome, score)
    others: tuple[tuple[str, Outcome, float], ...] = field(default=())

    def explain(self) -> str:
        """A few lines for a reviewer or a log."""
        head = f"{self.outcome} by {self.rule}" + (f" with {self.candidate}" if self.candidate else "")
        lines = [f"{head}: score {self.score:+.1f}", *(f"  {r}" for r in self.reasons)]
        lines += [f"  {f.field}: {f.level} ({f.weight:+.1f})" for f in self.fields]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"outcome": str(self.outcome), "rule": str(self.rule), "score": self.score,
                "candidate": self.candidate, "reasons": list(self.reasons),
                "fields": [{"field": f.field, "level": str(f.level), "weight": f.weight} for f in self.fields],
                "others": [{"candidate": c, "outcome": str(o), "score": s} for c, o, s in self.others]}


def conflicts(a: Features, b: Features) -> list[str]:
    """Why two records that share an identifier may still be two people: birth year or sex
    disagreeing between them, or with the personal ID's own digits."""
    found: list[str] = []
    (year_a, sex_a), (year_b, sex_b) = (a.birth_year, a.sex), (b.birth_year, b.sex)
    if year_a is not None and year_b is not None and year_a != year_b:
        found.append(f"birth year {year_a} != {year_b}")
    if sex_a is not None and sex_b is not None and sex_a != sex_b:
        found.append(f"sex {sex_a} != {sex_b}")
    for side, f in (("incoming", a), ("candidate", b)):
        if f.id_birth_year is not None and f.birth_year is not None and f.id_birth_year != f.birth_year:
            found.append(f"{side} birth year {f.birth_year} != {f.id_birth_year} written in its personal ID")
        if f.id_sex is not None and f.sex is not None and f.id_sex != f.sex:
            found.append(f"{side} sex {f.sex} != {f.id_sex} written in its personal ID")
    return list(dict.fromkeys(found))


def _banded(comparison: Comparison, config: MatchConfig) -> Outcome:
    if comparison.score >= config.link_threshold:
        return Outcome.AUTO_LINK
    if comparison.score >= config.review_threshold:
        return Outcome.REVIEW
    return Outcome.NEW


def decide(incoming: Features, candidate: Features, config: MatchConfig, candidate_id: str | None = None) -> Decision:
    """The rules applied to one pair, in order."""
    comparison = compare(incoming, candidate, config)

    def decision(outcome: Outcome, rule: Rule, *reasons: str) -> Decision:
        return Decision(outcome, rule, comparison.score, candidate_id, comparison.fields, reasons)

    if incoming.national_id and incoming.national_id == candidate.national_id:
        found = conflicts(incoming, candidate)
        if found:
            return decision(Outcome.REVIEW, Rule.NATIONAL_ID, "same personal ID, but " + "; ".join(found))
        return decision(Outcome.AUTO_LINK, Rule.NATIONAL_ID, "same personal ID")
    shared = incoming.insurance_numbers & candidate.insurance_numbers
    if shared:
        number = min(shared)
        found = conflicts(incoming, candidate)
        if incoming.national_id and candidate.national_id:
            found.insert(0, f"different personal IDs {incoming.national_id} and {candidate.national_id}")
        if found:
            return decision(Outcome.REVIEW, Rule.INSURANCE_NUMBER,
                            f"same social-insurance number {number}, but " + "; ".join(found))
        return decision(Outcome.AUTO_LINK, Rule.INSURANCE_NUMBER, f"same social-insurance number {number}")
    outcome = _banded(comparison, config)
    band = {Outcome.AUTO_LINK: f"score >= link threshold {config.link_threshold:g}",
            Outcome.REVIEW: f"review threshold {config.review_threshold:g} <= score < link threshold "
                            f"{config.link_threshold:g}",
            Outcome.NEW: f"score < review threshold {config.review_threshold:g}"}[outcome]
    return decision(outcome, Rule.PROBABILISTIC, band)


_RANK = {Outcome.AUTO_LINK: 2, Outcome.REVIEW: 1, Outcome.NEW: 0}


def best_of(decisions: Iterable[Decision], config: MatchConfig) -> Decision | None:
    """The decision for the incoming patient among one decision per candidate, or ``None`` when
    there was no candidate: deterministic before probabilistic, then outcome, then score; two
    automatic links to different persons (or one beside a deterministic review) become a review of
    the best one."""
    ranked = sorted(decisions, key=lambda d: (d.rule is not Rule.PROBABILISTIC, _RANK[d.outcome], d.score),
                    reverse=True)
    if not ranked:
        return None
    best = ranked[0]
    others = tuple((d.candidate or "", d.outcome, d.score) for d in ranked[1:])
    reasons = best.reasons
    outcome = best.outcome
    rivals = [d.candidate for d in ranked[1:] if d.candidate != best.candidate and (
        d.outcome is Outcome.AUTO_LINK or (d.rule is not Rule.PROBABILISTIC and d.outcome is Outcome.REVIEW))]
    if outcome is Outcome.AUTO_LINK and rivals:
        outcome = Outcome.REVIEW
        reasons = (*reasons, f"also linkable to {', '.join(str(r) for r in rivals[:5])}: possible duplicate persons")
    return Decision(outcome, best.rule, best.score, best.candidate, best.fields, reasons, others)


#: A probabilistic candidate sharing this many blocking keys fewer than the best-sharing one is
#: not scored (with ``keys_of``). Among bench/mpi_population's 100,000 persons the true person
#: shared the most keys of all candidates for each of the 332 copies their identifiers did not
#: decide, while the candidates of a common name grow with the population: 13 per copy on
#: average, 4.4 of them within one key of the best.
KEY_MARGIN = 1


def prune(keys: Iterable[str], ids: Iterable[str], keys_of: Callable[[str], Iterable[str]],
          margin: int = KEY_MARGIN) -> tuple[list[str], int]:
    """The candidates (sorted) sharing at least the most blocking keys any of them shares with
    the incoming patient, less ``margin``, and how many were set aside: the ones sharing fewer
    agree on less of what the keys are made of (names, birth year, commune, phone)."""
    wanted = frozenset(keys)
    shared = {pid: len(wanted.intersection(keys_of(pid))) for pid in ids}
    if not shared:
        return [], 0
    floor = max(shared.values()) - margin
    kept = sorted(pid for pid, n in shared.items() if n >= floor)
    return kept, len(shared) - len(kept)


def match(incoming: Features, index: CandidateSource, features_of: Callable[[str], Features],
          config: MatchConfig | None = None, keys_of: Callable[[str], Iterable[str]] | None = None) -> Decision:
    """The decision for one incoming patient against the persons in ``index``
    (``features_of(person_id)`` gives a person's features). With ``keys_of(person_id)`` (a
    person's blocking keys), probabilistic candidates sharing fewer keys than the best-sharing
    one less :data:`KEY_MARGIN` are not scored (:func:`prune`), so that the number scored grows
    little with the population; the decision says how many were set aside."""
    config = config or MatchConfig()
    deterministic = blocking.deterministic_keys(incoming)
    if deterministic:
        found = index.lookup(deterministic)
        decisions = [decide(incoming, features_of(pid), config, pid) for pid in sorted(found.ids)]
        answer = best_of([d for d in decisions if d.rule is not Rule.PROBABILISTIC], config)
        if answer is not None:
            return answer
    keys = blocking.probabilistic_keys(incoming)
    found = index.lookup(keys, config.max_block)
    scored, set_aside = (sorted(found.ids), 0) if keys_of is None or len(found.ids) < 2 else \
        prune(keys, found.ids, keys_of)
    answer = best_of((decide(incoming, features_of(pid), config, pid) for pid in scored), config)
    skipped = (f"blocking keys too common to use: {', '.join(found.skipped)}",) if found.skipped else ()
    if set_aside:
        skipped = (*skipped, f"{set_aside} candidates sharing fewer blocking keys not scored")
    if answer is None:
        return Decision(Outcome.NEW, Rule.PROBABILISTIC, 0.0, reasons=("no candidate shares a blocking key", *skipped))
    if answer.outcome is Outcome.NEW:
        answer = Decision(Outcome.NEW, answer.rule, answer.score, None, answer.fields,
                          (f"best candidate {answer.candidate} scored below the review threshold", *answer.reasons,
                           *skipped), answer.others)
    elif skipped:
        answer = Decision(answer.outcome, answer.rule, answer.score, answer.candidate, answer.fields,
                          (*answer.reasons, *skipped), answer.others)
    return answer
