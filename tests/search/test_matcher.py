"""The reference matcher, case by case: every type × modifier × prefix, with hand-checked answers.

Rows are written by hand in the shapes ``search/extract.py`` makes; values as ``search/parse.py``
makes them (pre-normalised strings, inclusive µs ranges, significant-digit ranges). Each case's id
says what it checks, e.g. ``date-ge-day-vs-period-overlapping-start``. The date and number tables
below are the rule table of ``search/matcher.py`` worked out on concrete values: one line per
target, one column per prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_hub.search.dates import period
from fhir_hub.search.matcher import (
    ElementRows,
    Env,
    Indexed,
    IndexRow,
    composite_matches,
    date_matches,
    group,
    matches,
    matches_clause,
    matches_composite,
    number_matches,
    value_matches,
)
from fhir_hub.search.query import (
    Chain,
    Clause,
    CompositeValue,
    DateValue,
    Has,
    NumberValue,
    OfTypeValue,
    Prefix,
    QuantityValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    Value,
)
from fhir_hub.search.text import normalise

PREFIXES: tuple[Prefix, ...] = get_args(Prefix)
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
#: What extraction writes for an open Period end (any value beyond every real date will do).
MIN, MAX = -(2**62), 2**62


def span(start: str, end: str) -> tuple[int, int]:
    """The inclusive µs range from the start of ``start`` to the end of ``end``."""
    a, b = period(start), period(end)
    assert a is not None and b is not None
    return a[0], b[1]


def at(text: str) -> tuple[int, int]:
    p = period(text)
    assert p is not None
    return p


#: The clock for ``ap``: 2026-01-01T00:00:00Z.
NOW = at("2026-01-01T00:00:00Z")[0]


def date_row(r: tuple[int, int], param: str = "date") -> IndexRow:
    return ("date", param, r[0], r[1], None)


def string_row(text: str, param: str = "name") -> IndexRow:
    return ("string", param, normalise(text), text, None)


def check(clause: Clause, rows: Iterable[IndexRow], now: int = NOW) -> bool:
    return matches_clause(clause, group(rows), now)


def table(text: str) -> dict[str, dict[Prefix, bool]]:
    """``name  1 0 1 ...`` lines → per name, per prefix (in :data:`PREFIXES` order), the answer."""
    out: dict[str, dict[Prefix, bool]] = {}
    for line in text.strip().splitlines():
        name, *flags = line.split()
        assert len(flags) == len(PREFIXES), line
        out[name] = {p: f == "1" for p, f in zip(PREFIXES, flags, strict=True)}
    return out


# --- dates -----------------------------------------------------------------------------------------

DATE_VALUES = {"day": at("2024-03-01"), "year": at("2024"), "instant": at("2024-03-01T10:00:00Z")}
DATE_TARGETS = {
    "same-day": at("2024-03-01"),
    "instant-inside": at("2024-03-01T10:00:00Z"),
    "instant-last-us-of-day": at("2024-03-01T23:59:59.999999Z"),
    "instant-first-us-after": at("2024-03-02T00:00:00.000000Z"),
    "period-overlapping-start": span("2024-02-28", "2024-03-01T12:00:00Z"),
    "period-overlapping-end": span("2024-03-01T12:00:00Z", "2024-03-03"),
    "period-containing": span("2024-02-01", "2024-04-01"),
    "period-after": span("2024-03-02", "2024-03-05"),
    "period-before-touching": span("2024-02-01", "2024-02-29"),
    "period-far-before": span("2020-01-01", "2020-02-01"),
    "period-open-end": (at("2024-03-01T08:00:00Z")[0], MAX),
    "period-open-start": (MIN, at("2024-02-15")[1]),
    "day-last-of-year": at("2024-12-31"),
    "period-starting-before-ending-inside": span("2023-12-01", "2024-06-01"),
    "period-starting-inside-ending-after": span("2024-06-01", "2025-02-01"),
    "year-after": at("2025"),
    "same-second": at("2024-03-01T10:00:00Z"),
    "instant-ms-inside": at("2024-03-01T10:00:00.500Z"),
    "day": at("2024-03-01"),
}
# ap: now is 2026-01-01, so ap2024-03-01 widens by 10% of 671 days (~67 days) each way.
#                                          eq ne gt lt ge le sa eb ap
DATE_TABLE = {
    "day": table("""
        same-day                            1  0  0  0  1  1  0  0  1
        instant-inside                      1  0  0  0  1  1  0  0  1
        instant-last-us-of-day              1  0  0  0  1  1  0  0  1
        instant-first-us-after              0  1  1  0  1  0  1  0  1
        period-overlapping-start            0  1  0  1  0  1  0  0  1
        period-overlapping-end              0  1  1  0  1  0  0  0  1
        period-containing                   0  1  1  1  1  1  0  0  1
        period-after                        0  1  1  0  1  0  1  0  1
        period-before-touching              0  1  0  1  0  1  0  1  1
        period-far-before                   0  1  0  1  0  1  0  1  0
        period-open-end                     0  1  1  0  1  0  0  0  1
        period-open-start                   0  1  0  1  0  1  0  1  1
    """),
    # Precision: a year value contains instants and days; ge/le read literally (module docstring).
    "year": table("""
        instant-inside                      1  0  0  0  1  1  0  0  1
        day-last-of-year                    1  0  0  0  1  1  0  0  1
        period-starting-before-ending-inside 0 1  0  1  0  1  0  0  1
        period-starting-inside-ending-after 0  1  1  0  1  0  0  0  1
        year-after                          0  1  1  0  1  0  1  0  1
        period-open-end                     0  1  1  0  1  0  0  0  1
        period-far-before                   0  1  0  1  0  1  0  1  0
    """),
    # An instant value (a one-second range) does not contain the day around it.
    "instant": table("""
        same-second                         1  0  0  0  1  1  0  0  1
        instant-ms-inside                   1  0  0  0  1  1  0  0  1
        day                                 0  1  1  1  1  1  0  0  1
    """),
}
DATE_CASES = [
    pytest.param(value, target, prefix, expected, id=f"date-{prefix}-{value}-vs-{target}")
    for value, rows in DATE_TABLE.items()
    for target, answers in rows.items()
    for prefix, expected in answers.items()
]


@pytest.mark.parametrize(("value", "target", "prefix", "expected"), DATE_CASES)
def test_date_prefix(value: str, target: str, prefix: Prefix, expected: bool) -> None:
    lo, hi = DATE_VALUES[value]
    clause = Clause("date", "date", (DateValue(prefix, lo, hi),))
    assert check(clause, [date_row(DATE_TARGETS[target])]) is expected


# ap2025-12-01 with now 2026-01-01: 10% of 31 days = 3 days 2 h 24 min each way.
AP_CASES = [
    pytest.param("2025-12-01", "2025-12-05T02:23:59.999999Z", True, id="date-ap-day-upper-edge-of-widening"),
    pytest.param("2025-12-01", "2025-12-05T02:24:00.000000Z", False, id="date-ap-day-just-beyond-upper-widening"),
    pytest.param("2025-12-01", "2025-11-27T21:36:00.000000Z", True, id="date-ap-day-lower-edge-of-widening"),
    pytest.param("2025-12-01", "2025-11-27T21:35:59.999999Z", False, id="date-ap-day-just-beyond-lower-widening"),
    # now inside the value: the farther end (24 h away) still widens it by ~2 h 24 min
    pytest.param("2026-01-01", "2026-01-02T01:00:00Z", True, id="date-ap-now-inside-day-still-widens"),
    pytest.param("2026-01-01", "2026-01-02T03:00:00Z", False, id="date-ap-now-inside-day-beyond-widening"),
]


def test_date_prefixes_test_each_row() -> None:
    """``ne`` is row by row like every prefix, not "no row is eq"."""
    rows = [date_row(at("2024")), date_row(at("2025"))]
    assert check(Clause("date", "date", (DateValue("eq", *at("2024")),)), rows)
    assert check(Clause("date", "date", (DateValue("ne", *at("2024")),)), rows)
    assert not check(Clause("date", "date", (DateValue("ne", *at("2024")),)), [])


@pytest.mark.parametrize(("value", "target", "expected"), AP_CASES)
def test_date_approximately(value: str, target: str, expected: bool) -> None:
    clause = Clause("date", "date", (DateValue("ap", *at(value)),))
    assert check(clause, [date_row(at(target))]) is expected


# --- numbers ---------------------------------------------------------------------------------------

# 100 → [99.5, 100.5]; gt/lt/ge/le compare with exactly 100; ap accepts [90, 110].
#                                          eq ne gt lt ge le sa eb ap
NUMBER_TABLE = table("""
    89.9                                   0  1  0  1  0  1  0  1  0
    90                                     0  1  0  1  0  1  0  1  1
    99.4                                   0  1  0  1  0  1  0  1  1
    99.5                                   1  0  0  1  0  1  0  1  1
    100                                    1  0  0  0  1  1  0  0  1
    100.5                                  1  0  1  0  1  0  1  0  1
    100.6                                  0  1  1  0  1  0  1  0  1
    110                                    0  1  1  0  1  0  1  0  1
    110.1                                  0  1  1  0  1  0  1  0  0
""")
NUMBER_CASES = [
    pytest.param(float(x), prefix, expected, id=f"number-{prefix}-100-vs-{x}")
    for x, answers in NUMBER_TABLE.items()
    for prefix, expected in answers.items()
]


@pytest.mark.parametrize(("x", "prefix", "expected"), NUMBER_CASES)
def test_number_prefix(x: float, prefix: Prefix, expected: bool) -> None:
    clause = Clause("probability", "number", (NumberValue(prefix, 100.0, 99.5, 100.5),))
    assert check(clause, [("number", "probability", x, None, None)]) is expected


PRECISION_CASES = [
    # 1e2: one significant digit, [95, 105]
    pytest.param(NumberValue("eq", 100.0, 95.0, 105.0), 95.0, True, id="number-eq-1e2-vs-95"),
    pytest.param(NumberValue("eq", 100.0, 95.0, 105.0), 105.0, True, id="number-eq-1e2-vs-105"),
    pytest.param(NumberValue("eq", 100.0, 95.0, 105.0), 94.9, False, id="number-eq-1e2-vs-94.9"),
    pytest.param(NumberValue("ap", 100.0, 95.0, 105.0), 109.0, True, id="number-ap-1e2-vs-109"),
    # 100.00: five significant digits, [99.995, 100.005]
    pytest.param(NumberValue("eq", 100.0, 99.995, 100.005), 100.004, True, id="number-eq-100.00-vs-100.004"),
    pytest.param(NumberValue("eq", 100.0, 99.995, 100.005), 100.006, False, id="number-eq-100.00-vs-100.006"),
    pytest.param(NumberValue("ne", 100.0, 99.995, 100.005), 100.006, True, id="number-ne-100.00-vs-100.006"),
    # ap is 10% of the magnitude, on both sides of a negative value too
    pytest.param(NumberValue("ap", -100.0, -100.5, -99.5), -109.0, True, id="number-ap-negative-vs-inside"),
    pytest.param(NumberValue("ap", -100.0, -100.5, -99.5), -111.0, False, id="number-ap-negative-vs-outside"),
    # ap never narrower than eq: ap0 keeps the precision range of 0
    pytest.param(NumberValue("ap", 0.0, -0.5, 0.5), 0.5, True, id="number-ap-0-vs-0.5"),
    pytest.param(NumberValue("ap", 0.0, -0.5, 0.5), 0.6, False, id="number-ap-0-vs-0.6"),
]


@pytest.mark.parametrize(("value", "x", "expected"), PRECISION_CASES)
def test_number_precision(value: NumberValue, x: float, expected: bool) -> None:
    clause = Clause("probability", "number", (value,))
    assert check(clause, [("number", "probability", x, None, None)]) is expected


# --- quantities ------------------------------------------------------------------------------------

MG = ("quantity", "value-quantity", UCUM, "mg", 5.4)
#: The same 5.4 mg again in canonical UCUM units (grams), as extraction adds it.
MG_CANONICAL = ("quantity", "value-quantity", UCUM, "g", 0.0054)
NO_SYSTEM = ("quantity", "value-quantity", "", "mmHg", 120.0)


def q(prefix: Prefix, value: float, low: float, high: float, system: str | None = None,
      code: str | None = None) -> QuantityValue:
    return QuantityValue(prefix, value, low, high, system, code)


QUANTITY_CASES = [
    pytest.param(q("eq", 5.4, 5.35, 5.45), [MG], True, id="quantity-eq-number-only-any-unit"),
    pytest.param(q("eq", 5.4, 5.35, 5.45, UCUM, "mg"), [MG], True, id="quantity-eq-system-and-code"),
    pytest.param(q("eq", 5.4, 5.35, 5.45, UCUM, "kg"), [MG], False, id="quantity-eq-other-code"),
    pytest.param(q("eq", 5.4, 5.35, 5.45, LOINC, "mg"), [MG], False, id="quantity-eq-other-system"),
    pytest.param(q("eq", 5.4, 5.35, 5.45, None, "mg"), [MG], True, id="quantity-eq-code-any-system"),
    pytest.param(q("eq", 120.0, 119.5, 120.5, None, "mmHg"), [NO_SYSTEM], True,
                 id="quantity-eq-unit-without-system"),
    pytest.param(q("eq", 5.45, 5.445, 5.455), [MG], False, id="quantity-eq-precision-excludes"),
    pytest.param(q("eq", 5.0, 4.5, 5.5), [MG], True, id="quantity-eq-coarse-precision-includes"),
    # the query parser turned 5.4 mg into canonical grams; the canonical row answers it
    pytest.param(q("eq", 0.0054, 0.00535, 0.00545, UCUM, "g"), [MG, MG_CANONICAL], True,
                 id="quantity-eq-ucum-canonical"),
    pytest.param(q("gt", 0.005, 0.00495, 0.00505, UCUM, "g"), [MG, MG_CANONICAL], True,
                 id="quantity-gt-ucum-canonical"),
    pytest.param(q("lt", 0.005, 0.00495, 0.00505, UCUM, "g"), [MG, MG_CANONICAL], False,
                 id="quantity-lt-ucum-canonical"),
    pytest.param(q("ge", 5.4, 5.35, 5.45, UCUM, "mg"), [MG], True, id="quantity-ge-equal-value"),
    pytest.param(q("le", 5.3, 5.25, 5.35, UCUM, "mg"), [MG], False, id="quantity-le-below"),
    pytest.param(q("sa", 5.0, 4.95, 5.05, UCUM, "mg"), [MG], True, id="quantity-sa"),
    pytest.param(q("eb", 5.0, 4.95, 5.05, UCUM, "mg"), [MG], False, id="quantity-eb"),
    pytest.param(q("ap", 5.0, 4.95, 5.05, UCUM, "mg"), [MG], True, id="quantity-ap-within-10pct"),
    pytest.param(q("ap", 4.8, 4.75, 4.85, UCUM, "mg"), [MG], False, id="quantity-ap-beyond-10pct"),
    pytest.param(q("ne", 6.0, 5.95, 6.05, UCUM, "mg"), [MG], True, id="quantity-ne-same-unit"),
    # the unit filters hold for ne too: 5.4 mg is not "a quantity in kg other than 6"
    pytest.param(q("ne", 6.0, 5.95, 6.05, UCUM, "kg"), [MG], False, id="quantity-ne-other-unit"),
    pytest.param(q("eq", 5.4, 5.35, 5.45), [], False, id="quantity-eq-no-rows"),
]


@pytest.mark.parametrize(("value", "rows", "expected"), QUANTITY_CASES)
def test_quantity(value: QuantityValue, rows: list[IndexRow], expected: bool) -> None:
    assert check(Clause("value-quantity", "quantity", (value,)), rows) is expected


# --- strings ---------------------------------------------------------------------------------------

NGUYEN = string_row("Nguyễn")
DUC = string_row("Đức")
DUC_ASCII = string_row("Duc")
FULL = string_row("Nguyễn Văn Đức")


def s(query: str, modifier: str | None = None) -> Clause:
    text = query if modifier == "exact" else normalise(query)
    return Clause("name", "string", (StringValue(text),), modifier)


STRING_CASES = [
    pytest.param(s("nguyen"), [NGUYEN], True, id="string-prefix-unaccented-finds-accented"),
    pytest.param(s("NGUYỄN"), [NGUYEN], True, id="string-prefix-case-insensitive"),
    pytest.param(s("nguy"), [NGUYEN], True, id="string-prefix-partial"),
    pytest.param(s("guyen"), [NGUYEN], False, id="string-prefix-not-a-substring-match"),
    pytest.param(s("nguyenx"), [NGUYEN], False, id="string-prefix-longer-than-target"),
    pytest.param(s("đức"), [DUC], True, id="string-prefix-d-stroke-vs-d-stroke"),
    pytest.param(s("đức"), [DUC_ASCII], True, id="string-prefix-d-stroke-finds-plain-d"),
    pytest.param(s("duc"), [DUC], True, id="string-prefix-plain-d-finds-d-stroke"),
    pytest.param(s("nguyen van d"), [FULL], True, id="string-prefix-several-words"),
    pytest.param(s("nguyen  van"), [FULL], True, id="string-prefix-spaces-collapsed"),
    pytest.param(s("van"), [FULL], False, id="string-prefix-second-word-not-a-prefix"),
    pytest.param(s("van", "contains"), [FULL], True, id="string-contains-second-word"),
    pytest.param(s("uyễn v", "contains"), [FULL], True, id="string-contains-across-words-accented"),
    pytest.param(s("xyz", "contains"), [FULL], False, id="string-contains-absent"),
    pytest.param(s("Nguyễn", "exact"), [NGUYEN], True, id="string-exact-same"),
    pytest.param(s("nguyễn", "exact"), [NGUYEN], False, id="string-exact-case-differs"),
    pytest.param(s("Nguyen", "exact"), [NGUYEN], False, id="string-exact-accent-differs"),
    pytest.param(s("Đức", "exact"), [DUC_ASCII], False, id="string-exact-d-stroke-vs-d"),
    pytest.param(s("Nguyễn", "exact"), [FULL], False, id="string-exact-not-a-prefix"),
    pytest.param(s("nguyen"), [], False, id="string-prefix-no-rows"),
    pytest.param(s("tran"), [DUC, NGUYEN], False, id="string-prefix-none-of-several-rows"),
    pytest.param(s("nguyen"), [DUC, NGUYEN], True, id="string-prefix-one-of-several-rows"),
    pytest.param(Clause("name", "string", (StringValue("tran"), StringValue("nguyen"))), [NGUYEN], True,
                 id="string-or-second-value-matches"),
    pytest.param(Clause("name", "string", (StringValue("tran"), StringValue("le"))), [NGUYEN], False,
                 id="string-or-no-value-matches"),
    pytest.param(s("nguyen"), [string_row("Nguyễn", "family")], False, id="string-other-param-ignored"),
]


@pytest.mark.parametrize(("clause", "rows", "expected"), STRING_CASES)
def test_string(clause: Clause, rows: list[IndexRow], expected: bool) -> None:
    assert check(clause, rows) is expected


# --- tokens ----------------------------------------------------------------------------------------

BP = ("token", "code", LOINC, "85354-9", None)
LOCAL = ("token", "code", "", "HA", None)
BP_TEXT = ("string", "code:text", normalise("Huyết áp"), "Huyết áp", None)
CCCD = "http://fhir.ehealth.gov.vn/core/sid/national_id"
ID_ROW = ("token", "identifier", CCCD, "001090000001", None)
ID_TYPE = ("token", "identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|NI", "001090000001", None)


def t(*values: Value, modifier: str | None = None, param: str = "code") -> Clause:
    return Clause(param, "token", values, modifier)


TOKEN_CASES = [
    pytest.param(t(TokenValue(LOINC, "85354-9")), [BP], True, id="token-system-and-code"),
    pytest.param(t(TokenValue("http://snomed.info/sct", "85354-9")), [BP], False, id="token-system-differs"),
    pytest.param(t(TokenValue(LOINC, "8480-6")), [BP], False, id="token-code-differs"),
    pytest.param(t(TokenValue(None, "85354-9")), [BP], True, id="token-code-any-system"),
    pytest.param(t(TokenValue(None, "HA")), [LOCAL], True, id="token-code-any-system-matches-no-system"),
    pytest.param(t(TokenValue("", "HA")), [LOCAL], True, id="token-bar-code-no-system"),
    pytest.param(t(TokenValue("", "85354-9")), [BP], False, id="token-bar-code-refuses-a-system"),
    pytest.param(t(TokenValue(LOINC, None)), [BP], True, id="token-system-bar-any-code"),
    pytest.param(t(TokenValue(LOINC, None)), [LOCAL], False, id="token-system-bar-other-system"),
    pytest.param(t(TokenValue(None, "85354-9")), [LOCAL, BP], True, id="token-one-of-several-codings"),
    pytest.param(t(TokenValue(None, "85354-9")), [], False, id="token-no-rows"),
    pytest.param(t(TokenValue(None, "x"), TokenValue(LOINC, "85354-9")), [BP], True, id="token-or-second-value"),
    pytest.param(t(TokenValue(None, "85354-9")), [BP_TEXT], False, id="token-text-rows-are-not-codes"),
    # :not — resources without a matching code, those without the element included
    pytest.param(t(TokenValue(LOINC, "85354-9"), modifier="not"), [BP], False, id="token-not-has-code"),
    pytest.param(t(TokenValue(LOINC, "8480-6"), modifier="not"), [BP], True, id="token-not-other-code"),
    pytest.param(t(TokenValue(LOINC, "85354-9"), modifier="not"), [], True, id="token-not-missing-element"),
    pytest.param(t(TokenValue(LOINC, "85354-9"), modifier="not"), [BP_TEXT], True,
                 id="token-not-only-text-rows"),
    pytest.param(t(TokenValue(None, "HA"), modifier="not"), [LOCAL, BP], False,
                 id="token-not-one-of-several-codings-matches"),
    pytest.param(t(TokenValue(None, "x"), TokenValue(None, "HA"), modifier="not"), [LOCAL], False,
                 id="token-not-any-value-excludes"),
    # :text — a string prefix search on the code's text and displays
    pytest.param(t(StringValue("huyet"), modifier="text"), [BP, BP_TEXT], True, id="token-text-prefix-unaccented"),
    pytest.param(t(StringValue("huyet ap"), modifier="text"), [BP_TEXT], True, id="token-text-two-words"),
    pytest.param(t(StringValue("ap"), modifier="text"), [BP_TEXT], False, id="token-text-not-a-prefix"),
    pytest.param(t(StringValue("85354"), modifier="text"), [BP], False, id="token-text-ignores-codes"),
    # :of-type
    pytest.param(t(OfTypeValue("http://terminology.hl7.org/CodeSystem/v2-0203", "NI", "001090000001"),
                   modifier="of-type", param="identifier"), [ID_ROW, ID_TYPE], True, id="token-of-type-match"),
    pytest.param(t(OfTypeValue("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", "001090000001"),
                   modifier="of-type", param="identifier"), [ID_ROW, ID_TYPE], False, id="token-of-type-other-type"),
    pytest.param(t(OfTypeValue("http://terminology.hl7.org/CodeSystem/v2-0203", "NI", "001090000002"),
                   modifier="of-type", param="identifier"), [ID_ROW, ID_TYPE], False, id="token-of-type-other-value"),
    pytest.param(t(OfTypeValue("http://terminology.hl7.org/CodeSystem/v2-0203", "NI", "001090000001"),
                   modifier="of-type", param="identifier"), [ID_ROW], False, id="token-of-type-untyped-identifier"),
]


@pytest.mark.parametrize(("clause", "rows", "expected"), TOKEN_CASES)
def test_token(clause: Clause, rows: list[IndexRow], expected: bool) -> None:
    assert check(clause, rows) is expected


# --- references ------------------------------------------------------------------------------------

P1 = ("reference", "subject", "Patient/1", None, None)
G1 = ("reference", "subject", "Group/1", None, None)
REMOTE = ("reference", "subject", "http://other.example/fhir/Patient/1", None, None)
BY_ID = ("token", "subject:identifier", CCCD, "001090000001", None)


def r(*values: Value, modifier: str | None = None) -> Clause:
    return Clause("subject", "reference", values, modifier)


REFERENCE_CASES = [
    pytest.param(r(ReferenceValue("Patient/1")), [P1], True, id="reference-type-id"),
    pytest.param(r(ReferenceValue("Patient/2")), [P1], False, id="reference-other-id"),
    pytest.param(r(ReferenceValue("Group/1")), [P1], False, id="reference-other-type-same-id"),
    pytest.param(r(ReferenceValue("Patient/1", ("Patient", "Group"))), [G1], True, id="reference-bare-id-any-target-type"),
    pytest.param(r(ReferenceValue("Patient/1", ("Patient", "Group"))), [P1], True, id="reference-bare-id-first-type"),
    pytest.param(r(ReferenceValue("Patient/1", ("Patient",))),
                 [("reference", "subject", "Practitioner/1", None, None)], False, id="reference-bare-id-type-not-allowed"),
    pytest.param(r(ReferenceValue("http://other.example/fhir/Patient/1")), [REMOTE], True, id="reference-absolute-url"),
    pytest.param(r(ReferenceValue("http://other.example/fhir/Patient/1")), [P1], False,
                 id="reference-absolute-url-not-local"),
    pytest.param(r(ReferenceValue("Patient/1")), [REMOTE], False, id="reference-local-not-absolute"),
    pytest.param(r(ReferenceValue("Patient/9"), ReferenceValue("Patient/1")), [P1], True, id="reference-or"),
    pytest.param(r(ReferenceValue("Patient/1")), [BY_ID], False, id="reference-identifier-rows-are-not-targets"),
    pytest.param(r(TokenValue(CCCD, "001090000001"), modifier="identifier"), [P1, BY_ID], True,
                 id="reference-identifier-system-and-value"),
    pytest.param(r(TokenValue(None, "001090000001"), modifier="identifier"), [BY_ID], True,
                 id="reference-identifier-value-any-system"),
    pytest.param(r(TokenValue(CCCD, "001090000002"), modifier="identifier"), [BY_ID], False,
                 id="reference-identifier-other-value"),
    pytest.param(r(TokenValue(CCCD, "001090000001"), modifier="identifier"), [P1], False,
                 id="reference-identifier-without-identifier"),
]


@pytest.mark.parametrize(("clause", "rows", "expected"), REFERENCE_CASES)
def test_reference(clause: Clause, rows: list[IndexRow], expected: bool) -> None:
    assert check(clause, rows) is expected


# --- uris ------------------------------------------------------------------------------------------

VS = ("uri", "url", "http://acme.org/fhir/ValueSet/123", None, None)


def u(uri: str, modifier: str | None = None) -> Clause:
    return Clause("url", "uri", (UriValue(uri),), modifier)


URI_CASES = [
    pytest.param(u("http://acme.org/fhir/ValueSet/123"), [VS], True, id="uri-equal"),
    pytest.param(u("http://acme.org/fhir/ValueSet/12"), [VS], False, id="uri-prefix-is-not-equal"),
    pytest.param(u("HTTP://acme.org/fhir/ValueSet/123"), [VS], False, id="uri-case-sensitive"),
    pytest.param(u("http://acme.org/fhir/", "below"), [VS], True, id="uri-below-value-is-prefix"),
    pytest.param(u("http://acme.org/fhir/ValueSet/123", "below"), [VS], True, id="uri-below-equal"),
    pytest.param(u("http://acme.org/other/", "below"), [VS], False, id="uri-below-elsewhere"),
    pytest.param(u("http://acme.org/fhir/ValueSet/123/_history/5", "above"), [VS], True,
                 id="uri-above-row-is-prefix"),
    pytest.param(u("http://acme.org/fhir/ValueSet/123", "above"), [VS], True, id="uri-above-equal"),
    pytest.param(u("http://acme.org/fhir/", "above"), [VS], False, id="uri-above-value-shorter"),
]


@pytest.mark.parametrize(("clause", "rows", "expected"), URI_CASES)
def test_uri(clause: Clause, rows: list[IndexRow], expected: bool) -> None:
    assert check(clause, rows) is expected


# --- :missing --------------------------------------------------------------------------------------

#: (param, type, what the resource has, its rows, whether it counts as having the parameter)
MISSING_ROWS = [
    ("name", "string", "with-value", [NGUYEN], True),
    ("name", "string", "without", [], False),
    ("code", "token", "with-value", [BP], True),
    ("code", "token", "without", [], False),
    ("code", "token", "only-text-rows", [BP_TEXT], False),  # derived rows do not count
    ("identifier", "token", "only-of-type-rows", [ID_TYPE], False),
    ("subject", "reference", "with-value", [P1], True),
    ("subject", "reference", "only-identifier-rows", [BY_ID], False),
    ("date", "date", "with-value", [date_row(at("2024"))], True),
    ("date", "date", "only-other-params", [string_row("x")], False),
    ("probability", "number", "with-value", [("number", "probability", 1.0, None, None)], True),
    ("value-quantity", "quantity", "with-value", [MG], True),
    ("value-quantity", "quantity", "without", [], False),
    ("url", "uri", "with-value", [VS], True),
    ("url", "uri", "without", [], False),
]
MISSING_CASES = [
    pytest.param(param, kind, rows, missing, has is not missing, id=f"missing-{str(missing).lower()}-{kind}-{name}")
    for param, kind, name, rows, has in MISSING_ROWS
    for missing in (True, False)
]


@pytest.mark.parametrize(("param", "kind", "rows", "missing", "expected"), MISSING_CASES)
def test_missing(param: str, kind: str, rows: list[IndexRow], missing: bool, expected: bool) -> None:
    assert check(Clause(param, kind, (), "missing", missing), rows) is expected


# --- composites ------------------------------------------------------------------------------------

# Observation with two components: (LOINC 8480-6, 120 mmHg) and (LOINC 8462-4, 80 mmHg).
SYSTOLIC: list[list[IndexRow]] = [[("token", "code", LOINC, "8480-6", None)],
                                  [("quantity", "value-quantity", UCUM, "mm[Hg]", 120.0)]]
DIASTOLIC: list[list[IndexRow]] = [[("token", "code", LOINC, "8462-4", None)],
                                   [("quantity", "value-quantity", UCUM, "mm[Hg]", 80.0)]]
BP_ELEMENTS: ElementRows = [SYSTOLIC, DIASTOLIC]


def cv(code: str, prefix: Prefix, value: float) -> CompositeValue:
    return CompositeValue((TokenValue(LOINC, code), q(prefix, value, value - 0.5, value + 0.5, UCUM, "mm[Hg]")))


def comp(*values: CompositeValue) -> Clause:
    return Clause("component-code-value-quantity", "composite", values)


COMPOSITE_CASES = [
    pytest.param(comp(cv("8480-6", "eq", 120)), BP_ELEMENTS, True, id="composite-same-element"),
    pytest.param(comp(cv("8480-6", "gt", 100)), BP_ELEMENTS, True, id="composite-same-element-prefix"),
    pytest.param(comp(cv("8480-6", "eq", 80)), BP_ELEMENTS, False, id="composite-parts-on-different-elements"),
    pytest.param(comp(cv("8462-4", "lt", 90)), BP_ELEMENTS, True, id="composite-second-element"),
    pytest.param(comp(cv("8480-6", "eq", 80), cv("8462-4", "eq", 80)), BP_ELEMENTS, True, id="composite-or"),
    pytest.param(comp(cv("8480-6", "eq", 120)), [], False, id="composite-no-elements"),
    pytest.param(comp(cv("8480-6", "eq", 120)), [[SYSTOLIC[0], []]], False, id="composite-component-absent"),
    pytest.param(Clause("component-code-value-quantity", "composite", (), "missing", True), [], True,
                 id="composite-missing-true"),
    pytest.param(Clause("component-code-value-quantity", "composite", (), "missing", False), [], False,
                 id="composite-missing-false"),
]


@pytest.mark.parametrize(("clause", "elements", "expected"), COMPOSITE_CASES)
def test_composite(clause: Clause, elements: ElementRows, expected: bool) -> None:
    assert composite_matches(clause, elements, NOW) is expected


def _component_rows(rtype: str, code: str, resource: Mapping[str, Any]) -> ElementRows:
    """A stand-in for extraction's hook: this test's resources carry their element rows."""
    assert (rtype, code) == ("Observation", "component-code-value-quantity")
    rows: ElementRows = resource["_elements"]
    return rows


def test_composite_through_the_hook() -> None:
    obs = {"resourceType": "Observation", "id": "bp", "_elements": BP_ELEMENTS}
    assert matches_composite(comp(cv("8480-6", "eq", 120)), obs, _component_rows, NOW)
    assert not matches_composite(comp(cv("8480-6", "eq", 80)), obs, _component_rows, NOW)
    subject = Indexed("Observation/bp", group([BP]), obs)
    env = Env(component_rows=_component_rows, now=NOW)
    assert matches([comp(cv("8462-4", "eq", 80)), t(TokenValue(None, "85354-9"))], subject, env)
    assert not matches([comp(cv("8462-4", "eq", 120))], subject, env)


# --- AND, chains and _has --------------------------------------------------------------------------

Store = dict[str, Indexed]


def indexed(ref: str, *rows: IndexRow) -> Indexed:
    return Indexed(ref, group(rows))


def store_env(store: Store) -> Env:
    """Store access backed by a dict, as the server's would be by its tables."""

    def sources(source_type: str, param: str, target: str) -> list[Indexed]:
        return [x for ref, x in store.items() if ref.startswith(source_type + "/")
                and any(row[2] == target for row in x.rows.get(param, ()))]

    return Env(resolve=store.get, sources=sources, now=NOW)


STORE: Store = {x.ref: x for x in [
    indexed("Organization/bm", string_row("Bệnh viện Bạch Mai")),
    indexed("Organization/cr", string_row("Bệnh viện Chợ Rẫy")),
    indexed("Patient/p1", string_row("Nguyễn Văn Đức"), ("reference", "organization", "Organization/bm", None, None),
            ("token", "gender", "http://hl7.org/fhir/administrative-gender", "male", None)),
    indexed("Patient/p2", string_row("Trần Thị Lan"), ("reference", "organization", "Organization/cr", None, None)),
    indexed("Patient/p3", string_row("Lê Văn Nam"), ("reference", "organization", "Organization/gone", None, None)),
    indexed("Group/g1", string_row("Nguyễn family")),
    indexed("Encounter/e1", ("reference", "subject", "Patient/p1", None, None)),
    indexed("Encounter/e2", ("reference", "subject", "Patient/p2", None, None)),
    indexed("Observation/o1", ("reference", "subject", "Patient/p1", None, None),
            ("reference", "encounter", "Encounter/e1", None, None), BP),
    indexed("Observation/o2", ("reference", "subject", "Patient/p2", None, None),
            ("reference", "encounter", "Encounter/e2", None, None), LOCAL),
    indexed("Observation/o3", ("reference", "subject", "Group/g1", None, None), BP),
    indexed("Observation/o4", ("reference", "subject", "Patient/p3", None, None), BP),
]}
ENV = store_env(STORE)
NAME_BACH_MAI = Clause("name", "string", (StringValue("benh vien bach"),))


def chain2(clause: Clause) -> Chain:
    """``subject:Patient.organization:Organization.<clause>``."""
    return Chain("subject", "Patient", Chain("organization", "Organization", clause))


CRITERIA_CASES = [
    pytest.param("Observation/o1", [t(TokenValue(LOINC, "85354-9")), r(ReferenceValue("Patient/p1"))], True,
                 id="and-both-match"),
    pytest.param("Observation/o1", [t(TokenValue(LOINC, "85354-9")), r(ReferenceValue("Patient/p2"))], False,
                 id="and-second-fails"),
    pytest.param("Observation/o1", [], True, id="and-empty-matches-all"),
    pytest.param("Observation/o1", [Chain("subject", "Patient", s("nguyen"))], True, id="chain-one-level"),
    pytest.param("Observation/o2", [Chain("subject", "Patient", s("nguyen"))], False, id="chain-one-level-no-match"),
    pytest.param("Observation/o3", [Chain("subject", "Patient", s("nguyen"))], False,
                 id="chain-target-of-other-type-ignored"),
    pytest.param("Observation/o3", [Chain("subject", "Group", s("nguyen"))], True, id="chain-typed-group"),
    pytest.param("Observation/o1", [chain2(NAME_BACH_MAI)], True, id="chain-two-levels"),
    pytest.param("Observation/o2", [chain2(NAME_BACH_MAI)], False, id="chain-two-levels-other-organization"),
    pytest.param("Observation/o4", [chain2(NAME_BACH_MAI)], False, id="chain-two-levels-dangling-reference"),
    pytest.param("Observation/o1", [chain2(Clause("name", "string", (), "missing", False))], True,
                 id="chain-two-levels-missing-false"),
    pytest.param("Patient/p1", [Has("Observation", "subject", t(TokenValue(LOINC, "85354-9")))], True,
                 id="has-one-level"),
    pytest.param("Patient/p2", [Has("Observation", "subject", t(TokenValue(LOINC, "85354-9")))], False,
                 id="has-one-level-source-does-not-match"),
    pytest.param("Organization/bm", [Has("Patient", "organization", Has("Observation", "subject",
                                      t(TokenValue(LOINC, "85354-9"))))], True, id="has-nested"),
    pytest.param("Organization/cr", [Has("Patient", "organization", Has("Observation", "subject",
                                      t(TokenValue(LOINC, "85354-9"))))], False, id="has-nested-no-match"),
    pytest.param("Patient/p1", [Has("Encounter", "subject", Has("Observation", "encounter",
                                 t(TokenValue("", "HA"))))], False, id="has-nested-other-encounter"),
    pytest.param("Patient/p2", [Has("Encounter", "subject", Has("Observation", "encounter",
                                 t(TokenValue("", "HA"))))], True, id="has-nested-through-encounter"),
    pytest.param("Encounter/e1", [Has("Observation", "encounter", chain2(NAME_BACH_MAI))], True,
                 id="has-with-chain-inside"),
    pytest.param("Observation/o1", [Chain("subject", "Patient", Has("Encounter", "subject",
                                     r(ReferenceValue("Patient/p1"))))], True, id="chain-with-has-inside"),
    pytest.param("Patient/p1", [Has("Observation", "subject", t(TokenValue(LOINC, "85354-9"))),
                                Clause("gender", "token", (TokenValue(None, "male"),))], True, id="and-has-and-clause"),
    pytest.param("Patient/p1", [Has("Observation", "subject", t(TokenValue(LOINC, "85354-9"))),
                                Clause("gender", "token", (TokenValue(None, "female"),))], False,
                 id="and-has-and-failing-clause"),
]


@pytest.mark.parametrize(("ref", "criteria", "expected"), CRITERIA_CASES)
def test_criteria(ref: str, criteria: Sequence[Clause | Chain | Has], expected: bool) -> None:
    assert matches(criteria, STORE[ref], ENV) is expected


# --- contract: what the matcher refuses ------------------------------------------------------------


@pytest.mark.parametrize(("clause", "what"), [
    pytest.param(t(TokenValue(None, "x"), modifier="in"), "modifier", id="refuses-token-in"),
    pytest.param(t(TokenValue(None, "x"), modifier="below"), "modifier", id="refuses-token-below"),
    pytest.param(Clause("name", "string", (StringValue("x"),), "text"), "modifier", id="refuses-string-text"),
    pytest.param(comp(cv("8480-6", "eq", 120)), "composite", id="refuses-composite-without-elements"),
    pytest.param(Clause("_text", "special", (StringValue("x"),)), "special", id="refuses-special"),
])
def test_refuses(clause: Clause, what: str) -> None:
    with pytest.raises(ValueError, match=what):
        check(clause, [])


def test_a_composite_value_is_not_one_rows_value() -> None:
    with pytest.raises(ValueError, match="matches_composite"):
        value_matches(cv("8480-6", "eq", 120), [BP])


def test_missing_callbacks_are_errors_not_non_matches() -> None:
    with pytest.raises(ValueError, match="resolve"):
        matches([Chain("subject", "Patient", s("x"))], STORE["Observation/o1"])
    with pytest.raises(ValueError, match="sources"):
        matches([Has("Observation", "subject", s("x"))], STORE["Patient/p1"])
    with pytest.raises(ValueError, match="component_rows"):
        matches([comp(cv("8480-6", "eq", 120))], STORE["Observation/o1"])


def test_group() -> None:
    rows = [BP, NGUYEN, LOCAL, BP_TEXT]
    assert group(rows) == {"code": [BP, LOCAL], "name": [NGUYEN], "code:text": [BP_TEXT]}


def test_ap_reads_the_clock_when_not_given() -> None:
    """Without ``now``, ``ap`` widens from the real clock: today matches ``ap`` today."""
    from fhir_hub.search.matcher import now_us

    today = now_us()
    clause = Clause("date", "date", (DateValue("ap", today - 1, today + 1),))
    assert matches_clause(clause, group([date_row((today, today))]))
    assert matches([clause], Indexed("Observation/x", group([date_row((today, today))])))


# --- properties ------------------------------------------------------------------------------------

US = st.integers(min_value=-(2**50), max_value=2**50)
ranges = st.tuples(US, US).map(sorted).map(tuple)
prefixes = st.sampled_from(PREFIXES)
finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False)


@given(ranges, ranges, US)
def test_date_ne_is_exactly_not_eq(target: tuple[int, int], value: tuple[int, int], now: int) -> None:
    assert date_matches("ne", *target, *value, now) is not date_matches("eq", *target, *value, now)


@given(ranges, ranges, US)
def test_date_prefix_relations(target: tuple[int, int], value: tuple[int, int], now: int) -> None:
    def m(p: Prefix) -> bool:
        return date_matches(p, *target, *value, now)

    assert m("ge") == (m("gt") or m("eq"))
    assert m("le") == (m("lt") or m("eq"))
    assert not m("sa") or (m("gt") and m("ne"))  # starting after implies greater and not equal
    assert not m("eb") or (m("lt") and m("ne"))
    assert not m("eq") or m("ap")  # ap never narrower than eq


@given(US, ranges)
def test_date_on_a_point(x: int, value: tuple[int, int]) -> None:
    """On an instant, the range rules reduce to plain comparisons."""
    vlo, vhi = value
    assert date_matches("eq", x, x, vlo, vhi, 0) == (vlo <= x <= vhi)
    assert date_matches("ge", x, x, vlo, vhi, 0) == (x >= vlo)
    assert date_matches("le", x, x, vlo, vhi, 0) == (x <= vhi)
    assert date_matches("gt", x, x, vlo, vhi, 0) == date_matches("sa", x, x, vlo, vhi, 0) == (x > vhi)
    assert date_matches("lt", x, x, vlo, vhi, 0) == date_matches("eb", x, x, vlo, vhi, 0) == (x < vlo)


@given(finite, finite, st.floats(min_value=0, max_value=1e3, allow_nan=False), prefixes)
def test_number_rules(x: float, v: float, half: float, prefix: Prefix) -> None:
    lo, hi = v - half, v + half
    eq = number_matches("eq", x, v, lo, hi)
    assert eq == (lo <= x <= hi)
    assert number_matches("ne", x, v, lo, hi) is not eq
    assert not eq or number_matches("ap", x, v, lo, hi)
    assert number_matches("ge", x, v, lo, hi) == (number_matches("gt", x, v, lo, hi) or x == v)
    # a value's clause agrees with the pure rule on every row
    clause = Clause("n", "number", (NumberValue(prefix, v, lo, hi),))
    assert check(clause, [("number", "n", x, None, None)]) == number_matches(prefix, x, v, lo, hi)


@given(st.lists(st.sampled_from([BP, LOCAL, BP_TEXT, NGUYEN, DUC, ID_ROW]), max_size=6), st.randoms())
def test_row_order_does_not_matter(rows: list[IndexRow], rnd: Any) -> None:
    shuffled = list(rows)
    rnd.shuffle(shuffled)
    for clause in (t(TokenValue(None, "HA")), t(TokenValue(LOINC, "85354-9"), modifier="not"),
                   t(StringValue("huyet"), modifier="text"), s("duc"), Clause("code", "token", (), "missing", True)):
        assert check(clause, rows) == check(clause, shuffled)


VIETNAMESE = "aăâbcdđeêghiklmnoôơpqrstuưvxyàảãáạằẳẵắặầẩẫấậèẻẽéẹềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợùủũúụừửữứựỳỷỹýỵ "


@given(st.text(alphabet=VIETNAMESE, min_size=1, max_size=12))
def test_vietnamese_names_found_unaccented(text: str) -> None:
    """Any Vietnamese name, even upper-cased, is found by its plain-ASCII lower-case prefixes."""
    folded = normalise(text)
    assert folded.isascii()
    row = string_row(text.upper())
    assert check(s(folded), [row])
    assert check(s(folded[:3]), [row])
