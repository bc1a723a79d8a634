"""Weights and thresholds of the matcher: configuration, with defaults that the bench measured.

The weights are Fellegi–Sunter log-likelihood ratios in bits, ``log2(m / u)``, where *m* is the
chance that two records of one person agree at that level and *u* the chance that two records of
different people do. A missing value on either side weighs 0 (no evidence either way), so only
the levels below are configured. The defaults are set from rough m/u estimates, not fitted:

* tên (given name) ≈ 60 common names per sex → u ≈ 1/60: agreement +6; the họ (family name) is
  Nguyễn for ~38 % of people (research notes §2) → u ≈ 0.2: +2; đệm (middle) ≈ u 0.15 and often
  dropped or abbreviated: +2.5, disagreement mild.
* A full birth date is ~1/29,000 by chance; +8 is kept well below that because a date with a typo
  and two people with one name and one date both happen; a swapped day/month earns most of it.
* Phones are shared inside families (a parent's number on a child's record): +5, not +20.
* Two different valid personal IDs are strong evidence of two people (−12); one digit apart is a
  typo as often as not (0).

:class:`MatchConfig` checks on construction that a better agreement never weighs less than a
worse one (so adding agreement can never lower a score) and that the thresholds are ordered.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(frozen=True, slots=True)
class NameWeights:
    """One name part: same with diacritics / same without / Jaro–Winkler ≥ the fuzzy threshold / other."""

    exact: float
    folded: float
    fuzzy: float
    disagree: float


@dataclass(frozen=True, slots=True)
class DateWeights:
    """Birth dates. ``month``/``year``: they agree as far as the coarser of the two goes (one side
    is year-month or year only); ``same_year``: both have a month, the year agrees and the
    month or day do not (a typo, or a namesake born the same year)."""

    exact: float = 8.0
    swapped: float = 6.0
    month: float = 4.5
    year: float = 3.0
    same_year: float = -2.0
    disagree: float = -7.0


@dataclass(frozen=True, slots=True)
class Weights:
    """A field compared as equal or not (``near``: see the field's doc)."""

    agree: float
    disagree: float
    near: float | None = None


@dataclass(frozen=True, slots=True)
class MatchConfig:
    given: NameWeights = NameWeights(exact=6.0, folded=5.5, fuzzy=3.0, disagree=-4.0)
    middle: NameWeights = NameWeights(exact=2.5, folded=2.2, fuzzy=1.0, disagree=-1.5)
    family: NameWeights = NameWeights(exact=2.0, folded=1.8, fuzzy=0.8, disagree=-3.0)
    birth_date: DateWeights = DateWeights()
    sex: Weights = Weights(agree=0.8, disagree=-6.0)
    #: 2025 province and commune (after conversion); commune agreement means the sets of possible
    #: 2025 communes meet
    province: Weights = Weights(agree=1.5, disagree=-2.5)
    commune: Weights = Weights(agree=4.0, disagree=-1.0)
    #: any phone in common
    phone: Weights = Weights(agree=5.0, disagree=-1.5)
    #: ``near``: one digit different or two adjacent digits swapped
    national_id: Weights = Weights(agree=15.0, disagree=-12.0, near=0.0)
    #: any social-insurance number in common
    insurance_number: Weights = Weights(agree=12.0, disagree=-6.0)
    #: Jaro–Winkler similarity (0–1, on the folded forms) from which two name parts are "fuzzy" alike
    fuzzy_threshold: float = 0.88
    #: at or above: link automatically; at or above ``review_threshold``: queue for review; below: new
    link_threshold: float = 19.0
    review_threshold: float = 9.0
    #: a blocking key with more persons than this is not used to find candidates (too common to
    #: tell anyone apart; the other keys still are)
    max_block: int = 2000
    #: names of the fields compared, in explanation order
    field_order: tuple[str, ...] = field(default=(
        "national_id", "insurance_number", "given", "middle", "family", "birth_date", "sex",
        "province", "commune", "phone"))

    def __post_init__(self) -> None:
        problems: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, NameWeights):
                if not value.exact >= value.folded >= value.fuzzy >= 0 >= value.disagree:
                    problems.append(f"{f.name}: need exact >= folded >= fuzzy >= 0 >= disagree")
            elif isinstance(value, DateWeights):
                if not (value.exact >= value.swapped >= 0 and value.exact >= value.month >= value.year >= 0
                        and 0 >= value.same_year >= value.disagree):
                    problems.append(f"{f.name}: need exact >= swapped, month >= year >= 0 >= same_year >= disagree")
            elif isinstance(value, Weights):
                near = 0.0 if value.near is None else value.near
                if not (value.agree >= near >= value.disagree and value.agree >= 0 >= value.disagree):
                    problems.append(f"{f.name}: need agree >= near, agree >= 0 >= disagree")
        if not self.link_threshold > self.review_threshold:
            problems.append("link_threshold must be above review_threshold")
        if not 0 < self.fuzzy_threshold <= 1:
            problems.append("fuzzy_threshold must be in (0, 1]")
        if problems:
            raise ValueError("; ".join(problems))
