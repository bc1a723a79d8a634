"""Fellegi–Sunter comparison of two feature sets: an agreement level and its weight per field.

Each field of :class:`~fhir_hub.mpi.features.Features` is compared on its own and lands on one
:class:`Level`; the configured weight of that level (:mod:`fhir_hub.mpi.config`, bits of
log-likelihood ratio) is its contribution, and the score is their sum. A value missing on either
side is :attr:`Level.MISSING` and weighs 0. The comparison is symmetric (``compare(a, b)`` and
``compare(b, a)`` give the same levels and score) and pure.

Names are compared with their diacritics first (exact), then without (folded), then by
Jaro–Winkler similarity of the folded forms (rapidfuzz) against ``fuzzy_threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rapidfuzz.distance import JaroWinkler

from fhir_hub.mpi.config import DateWeights, MatchConfig, NameWeights, Weights
from fhir_hub.mpi.features import BirthDate, Features, NamePart


class Level(StrEnum):
    EXACT = "exact"
    #: names: equal once diacritics and case are dropped
    FOLDED = "folded"
    #: names: Jaro–Winkler similarity at or above the threshold
    FUZZY = "fuzzy"
    #: identifiers: one digit different or two adjacent digits swapped
    NEAR = "near"
    #: dates: both full, day and month swapped
    SWAPPED = "swapped"
    #: dates: agree down to the month, one side has no day
    MONTH = "month"
    #: dates: agree on the year, one side has no month
    YEAR = "year"
    #: dates: same year, month or day differ
    SAME_YEAR = "same-year"
    DISAGREE = "disagree"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class FieldAgreement:
    field: str
    level: Level
    weight: float


@dataclass(frozen=True, slots=True)
class Comparison:
    score: float
    fields: tuple[FieldAgreement, ...]

    def level(self, name: str) -> Level:
        for f in self.fields:
            if f.field == name:
                return f.level
        raise KeyError(name)


def name_level(a: NamePart | None, b: NamePart | None, threshold: float) -> Level:
    if a is None or b is None:
        return Level.MISSING
    if a.exact == b.exact:
        return Level.EXACT
    if a.folded == b.folded:
        return Level.FOLDED
    if JaroWinkler.similarity(a.folded, b.folded, score_cutoff=threshold):
        return Level.FUZZY
    return Level.DISAGREE


def date_level(a: BirthDate | None, b: BirthDate | None) -> Level:
    if a is None or b is None:
        return Level.MISSING
    if a.year != b.year:
        return Level.DISAGREE
    if a.month is None or b.month is None:
        return Level.YEAR
    if a.day is not None and b.day is not None:
        if a.month == b.month and a.day == b.day:
            return Level.EXACT
        if a.month == b.day and a.day == b.month:
            return Level.SWAPPED
        return Level.SAME_YEAR
    return Level.MONTH if a.month == b.month else Level.SAME_YEAR


def _near_digits(a: str, b: str) -> bool:
    if len(a) != len(b):
        return False
    diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    if len(diff) == 1:
        return True
    return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


def id_level(a: str | None, b: str | None) -> Level:
    if a is None or b is None:
        return Level.MISSING
    if a == b:
        return Level.EXACT
    return Level.NEAR if _near_digits(a, b) else Level.DISAGREE


def set_level(a: frozenset[str], b: frozenset[str]) -> Level:
    if not a or not b:
        return Level.MISSING
    return Level.EXACT if not a.isdisjoint(b) else Level.DISAGREE


def value_level(a: str | None, b: str | None) -> Level:
    if a is None or b is None:
        return Level.MISSING
    return Level.EXACT if a == b else Level.DISAGREE


def _name_weight(w: NameWeights, level: Level) -> float:
    return {Level.EXACT: w.exact, Level.FOLDED: w.folded, Level.FUZZY: w.fuzzy,
            Level.DISAGREE: w.disagree}.get(level, 0.0)


def _date_weight(w: DateWeights, level: Level) -> float:
    return {Level.EXACT: w.exact, Level.SWAPPED: w.swapped, Level.MONTH: w.month, Level.YEAR: w.year,
            Level.SAME_YEAR: w.same_year, Level.DISAGREE: w.disagree}.get(level, 0.0)


def _weight(w: Weights, level: Level) -> float:
    if level is Level.EXACT:
        return w.agree
    if level is Level.NEAR:
        return w.near if w.near is not None else w.disagree
    return w.disagree if level is Level.DISAGREE else 0.0


def levels(a: Features, b: Features, config: MatchConfig) -> dict[str, Level]:
    """The agreement level of every field (see :class:`Level`)."""
    t = config.fuzzy_threshold
    return {
        "national_id": id_level(a.national_id, b.national_id),
        "insurance_number": set_level(a.insurance_numbers, b.insurance_numbers),
        "given": name_level(a.given, b.given, t),
        "middle": name_level(a.middle, b.middle, t),
        "family": name_level(a.family, b.family, t),
        "birth_date": date_level(a.birth, b.birth),
        "sex": value_level(a.sex, b.sex),
        "province": set_level(a.provinces, b.provinces),
        "commune": set_level(a.communes, b.communes),
        "phone": set_level(a.phones, b.phones),
    }


def weight(config: MatchConfig, name: str, level: Level) -> float:
    """The configured weight of ``level`` for field ``name``."""
    w = getattr(config, name)
    if isinstance(w, NameWeights):
        return _name_weight(w, level)
    if isinstance(w, DateWeights):
        return _date_weight(w, level)
    return _weight(w, level)


def compare(a: Features, b: Features, config: MatchConfig) -> Comparison:
    """Every field's level and weight, and their sum."""
    found = levels(a, b, config)
    agreements = tuple(FieldAgreement(name, found[name], weight(config, name, found[name]))
                       for name in config.field_order)
    return Comparison(round(sum(f.weight for f in agreements), 6), agreements)
