"""Query strings → neutral queries: values normalised once, errors naming the parameter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_hub.errors import FhirError
from fhir_hub.search import dates
from fhir_hub.search.parse import conditions, parse, split_or
from fhir_hub.search.query import (
    Chain,
    Clause,
    CompositeValue,
    DateValue,
    Has,
    Include,
    NumberValue,
    OfTypeValue,
    QuantityValue,
    ReferenceValue,
    SortKey,
    StringValue,
    TokenValue,
)


def one(rtype: str, name: str, value: str) -> Clause | Chain | Has:
    q = parse([rtype], [(name, value)], base_url="http://hub/fhir", strict=True)
    assert len(q.criteria) == 1
    return q.criteria[0]


def test_escaping_and_or() -> None:
    assert split_or(r"a,b\,c,d\\") == ["a", "b,c", "d\\"]
    c = one("Patient", "identifier", r"urn:x|a\|b,c")
    assert isinstance(c, Clause)
    assert c.values == (TokenValue("urn:x", "a|b"), TokenValue(None, "c"))


def test_string_is_normalised_unless_exact() -> None:
    assert one("Patient", "name", "Nguyễn  VĂN").values == (StringValue("nguyen van"),)  # type: ignore[union-attr]
    assert one("Patient", "family", "Nguyễn").values == (StringValue("nguyen"),)  # type: ignore[union-attr]
    exact = parse(["Patient"], [("family:exact", "Nguyễn")]).criteria[0]
    assert isinstance(exact, Clause) and exact.modifier == "exact" and exact.values == (StringValue("Nguyễn"),)


@pytest.mark.parametrize("raw,system,code", [
    ("a|b", "a", "b"), ("|b", "", "b"), ("b", None, "b"), ("a|", "a", None),
])
def test_token_forms(raw: str, system: str | None, code: str | None) -> None:
    assert one("Observation", "code", raw).values == (TokenValue(system, code),)  # type: ignore[union-attr]


def test_of_type_and_text() -> None:
    c = parse(["Patient"], [("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|446")])
    assert c.criteria[0].values == (OfTypeValue("http://terminology.hl7.org/CodeSystem/v2-0203", "MR",  # type: ignore
                                                "446"),)
    t = parse(["Observation"], [("code:text", "Nhịp Tim")]).criteria[0]
    assert isinstance(t, Clause) and t.modifier == "text" and t.values == (StringValue("nhip tim"),)


def test_dates_are_ranges_at_their_precision() -> None:
    d = one("Patient", "birthdate", "ge2024-02")
    lo, hi = dates.period("2024-02") or (0, 0)
    assert d.values == (DateValue("ge", lo, hi),)  # type: ignore[union-attr]
    assert hi - lo + 1 == 29 * 86_400_000_000


@pytest.mark.parametrize("raw,prefix,value,low,high", [
    ("100", "eq", 100, 99.5, 100.5), ("100.0", "eq", 100, 99.95, 100.05), ("gt5.4", "gt", 5.4, 5.35, 5.45),
    ("1e2", "eq", 100, 50, 150),
])
def test_numbers_carry_their_significant_range(raw: str, prefix: str, value: float, low: float, high: float) -> None:
    c = one("RiskAssessment", "probability", raw)
    (v,) = c.values  # type: ignore[union-attr]
    assert isinstance(v, NumberValue) and v.prefix == prefix
    assert v.value == pytest.approx(value) and v.low == pytest.approx(low) and v.high == pytest.approx(high)


def test_quantity_forms() -> None:
    (v,) = one("Observation", "value-quantity", "le5.4||mg").values  # type: ignore[union-attr]
    assert isinstance(v, QuantityValue) and (v.prefix, v.value, v.system, v.code) == ("le", 5.4, None, "mg")
    (v,) = one("Observation", "value-quantity", "5").values  # type: ignore[union-attr]
    assert isinstance(v, QuantityValue) and v.system is None and v.code is None


def test_references() -> None:
    assert one("Observation", "subject", "Patient/1").values == (ReferenceValue("Patient/1"),)  # type: ignore
    assert one("Observation", "subject", "http://hub/fhir/Patient/1").values == (  # type: ignore[union-attr]
        ReferenceValue("Patient/1"),)
    assert one("Observation", "subject", "http://other/fhir/Patient/1").values == (  # type: ignore[union-attr]
        ReferenceValue("http://other/fhir/Patient/1"),)
    typed = parse(["Observation"], [("subject:Patient", "1")]).criteria[0]
    assert isinstance(typed, Clause) and typed.values == (ReferenceValue("Patient/1"),)
    bare = one("Observation", "subject", "1")
    (v,) = bare.values  # type: ignore[union-attr]
    assert isinstance(v, ReferenceValue) and "Patient" in v.types and "Group" in v.types
    ident = parse(["Observation"], [("subject:identifier", "urn:x|1")]).criteria[0]
    assert isinstance(ident, Clause) and ident.values == (TokenValue("urn:x", "1"),)


def test_chain_and_has_nest() -> None:
    c = one("Observation", "subject:Patient.general-practitioner:Practitioner.name", "lan")
    assert isinstance(c, Chain) and c.target_type == "Patient"
    assert isinstance(c.clause, Chain) and c.clause.target_type == "Practitioner"
    assert c.clause.clause == Clause("name", "string", (StringValue("lan"),))
    h = one("Patient", "_has:Observation:patient:_has:Provenance:target:agent", "Practitioner/1")
    assert isinstance(h, Has) and h.source_type == "Observation" and isinstance(h.clause, Has)


def test_composite() -> None:
    c = one("Observation", "code-value-quantity", "http://loinc.org|8480-6$gt150")
    assert isinstance(c, Clause) and c.type == "composite"
    (v,) = c.values
    assert isinstance(v, CompositeValue) and v.parts[0] == TokenValue("http://loinc.org", "8480-6")
    assert isinstance(v.parts[1], QuantityValue) and v.parts[1].prefix == "gt"


def test_result_parameters() -> None:
    q = parse(["Observation"], [("_sort", "-date,code"), ("_count", "5000"), ("_include", "Observation:subject"),
                                ("_revinclude:iterate", "Provenance:target"), ("_total", "accurate"),
                                ("_id", "a,b"), ("_summary", "count"), ("zzz", "1")], max_count=100)
    assert q.sort == (SortKey("date", True), SortKey("code"))
    assert q.count == 100 and q.total == "accurate" and q.summary == "count" and q.ids == ("a", "b")
    assert q.includes == (Include("Observation", "subject"), Include("Provenance", "target", None, True, True))
    assert q.ignored == ("zzz",) and q.criteria == ()


@pytest.mark.parametrize("name,value,where", [
    ("birthdate", "2024-13-01", "birthdate"), ("gender:contains", "x", "gender"), ("code:in", "http://vs", "code"),
    ("subject.name", "x", "subject.name"), ("_has:Observation:nope:code", "1", "_has"),
    ("zzz", "1", "zzz"), ("_count", "-1", "_count"), ("_summary", "maybe", "_summary"),
    ("value-quantity", "1|2", "value-quantity"), ("code-value-quantity", "a|b", "code-value-quantity"),
])
def test_errors_name_the_parameter(name: str, value: str, where: str) -> None:
    with pytest.raises(FhirError) as info:
        parse(["Observation" if "code" in name or "subject" in name or "value" in name else "Patient"],
              [(name, value)], strict=True)
    assert info.value.status == 400
    assert where.split(".")[0].split(":")[0] in str(info.value.outcome())


def test_conditions_are_strict_and_not_empty() -> None:
    c = conditions("Patient", [("identifier", "urn:x|1"), ("_id", "p")], "If-None-Exist")
    assert c.ids == ("p",) and len(c.criteria) == 1
    for pairs in ([], [("zzz", "1")], [("_count", "1")]):
        with pytest.raises(FhirError):
            conditions("Patient", pairs, "If-None-Exist")


def _split_by_hand(raw: str, sep: str) -> list[str]:
    """The escaping rule, one character at a time (search.html#escaping): ``\\x`` never splits."""
    parts, start, i = [], 0, 0
    while i < len(raw):
        if raw[i] == "\\":
            i += 2
            continue
        if raw[i] == sep:
            parts.append(raw[start:i])
            start = i + 1
        i += 1
    return [*parts, raw[start:]]


@given(st.text(alphabet="ab|,$\\", max_size=12), st.sampled_from(["|", ",", "$"]))
def test_split_honours_escapes_with_or_without_a_backslash(raw: str, sep: str) -> None:
    from fhir_hub.search.parse import _split

    assert _split(raw, sep) == _split_by_hand(raw, sep)
