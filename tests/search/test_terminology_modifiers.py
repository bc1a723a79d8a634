"""``:in``, ``:not-in``, ``:below`` and ``:above`` on tokens become the codes they stand for."""

from __future__ import annotations

import pytest

from fhir_hub.errors import FhirError
from fhir_hub.search.parse import parse
from fhir_hub.search.query import Clause, TokenValue

ICD = "http://fhir.ehealth.gov.vn/core/CodeSystem/vn-icd10"
KCB = "http://fhir.ehealth.gov.vn/core/CodeSystem/vn-qd130-ma-loai-kcb"
KCB_VS = "http://fhir.ehealth.gov.vn/core/ValueSet/vn-qd130-ma-loai-kcb"


def clause(rtype: str, name: str, raw: str) -> Clause:
    (c,) = parse([rtype], [(name, raw)], strict=True).criteria
    assert isinstance(c, Clause)
    return c


def codes(c: Clause) -> set[str]:
    return {v.code for v in c.values if isinstance(v, TokenValue) and v.code is not None}


def test_below_is_the_code_and_every_code_it_subsumes() -> None:
    c = clause("Condition", "code:below", f"{ICD}|E11")
    assert c.modifier is None and c.type == "token"
    assert {"E11", "E11.0", "E11.9", "E11.2†", "E11.2"} <= codes(c)  # marked codes also stand bare
    assert not any(code.startswith(("E10", "E12")) for code in codes(c))
    assert all(isinstance(v, TokenValue) and v.system == ICD for v in c.values)


def test_above_is_the_code_and_its_ancestors() -> None:
    assert codes(clause("Condition", "code:above", f"{ICD}|E11.9")) == {"E11.9", "E11"}
    assert codes(clause("Condition", "code:above", f"{ICD}|E11.2")) == {"E11.2", "E11.2†", "E11"}


def test_a_code_the_system_lacks_stands_for_itself() -> None:
    assert codes(clause("Condition", "code:below", f"{ICD}|Z99.999")) == {"Z99.999"}


def test_in_and_not_in_take_the_value_sets_codes() -> None:
    c = clause("Encounter", "type:in", KCB_VS)
    assert c.modifier is None and codes(c) == {f"{i:02d}" for i in range(1, 11)}
    assert clause("Encounter", "type:not-in", KCB_VS).modifier == "not"
    assert len(clause("Encounter", "type:in", f"{KCB_VS},{KCB_VS}").values) == 10  # duplicates once


@pytest.mark.parametrize(("name", "raw", "status", "code", "text"), [
    ("code:in", "http://example.org/ValueSet/none", 400, "not-supported", "is not known"),
    ("code:in", "http://fhir.ehealth.gov.vn/core/ValueSet/vn-icd10", 400, "too-costly", "12,218 codes"),
    ("code:below", "E11", 400, "invalid", "system|code"),
    ("code:below", "http://example.org/cs|E11", 400, "not-supported", "http://example.org/cs"),
    ("code:above", "", 400, "invalid", "non-empty"),
    ("subject:below", "Patient/1", 400, "not-supported", "reference"),
])
def test_what_cannot_be_evaluated_is_a_400_naming_it(name: str, raw: str, status: int, code: str, text: str) -> None:
    with pytest.raises(FhirError) as err:
        parse(["Condition"], [(name, raw)], strict=True)
    issue = err.value.outcome()["issue"][0]
    assert err.value.status == status and issue["code"] == code and text in issue["diagnostics"]
    assert issue["expression"] == [name]
