"""Index extraction (``search/extract.py``): hand-checked rows, and the compiled fast path against
fhirpathpy evaluating the official expressions on every official example."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import fhirpathpy
import orjson
import pytest
from fhirpathpy.models import models

from fhir_hub import definitions
from fhir_hub.search import convert, expressions, extract, parameters, ucum
from fhir_hub.search.extract import DATE_MAX, DATE_MIN, Indexer, index_rows, unsupported
from fhir_hub.search.text import normalise
from tests.conftest import EXAMPLES

UCUM = ucum.SYSTEM


def us(*parts: int, precision_us: int = 1_000_000) -> tuple[int, int]:
    """Inclusive µs range of a UTC instant given to the second (or another precision)."""
    start = int(datetime(*parts, tzinfo=UTC).timestamp()) * 1_000_000
    return start, start + precision_us - 1


DAY = 86_400_000_000


def day(y: int, m: int, d: int) -> tuple[int, int]:
    return us(y, m, d, precision_us=DAY)


def rows_of(rtype: str, resource: dict[str, Any], *codes: str) -> set[tuple[Any, ...]]:
    """The rows of the given parameters (their ``:modifier`` rows included)."""
    found = set(index_rows(rtype, resource))
    if not codes:
        return found
    return {r for r in found if r[1] in codes or r[1].split(":", 1)[0] in codes}


# --- hand-checked rows ----------------------------------------------------------------------

NATIONAL_ID = "http://fhir.ehealth.gov.vn/core/sid/national_id"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "vn1",
    "meta": {"lastUpdated": "2024-03-01T08:00:00Z",
             "tag": [{"system": "http://fhir.ehealth.gov.vn/tag", "code": "demo"}]},
    "identifier": [{"type": {"coding": [{"system": V2_0203, "code": "NI"}], "text": "Căn cước công dân"},
                    "system": NATIONAL_ID, "value": "001085012345"}],
    "active": True,
    "name": [{"use": "official", "text": "Nguyễn Văn An", "family": "Nguyễn", "given": ["Văn", "An"]}],
    "telecom": [{"system": "phone", "value": "0912345678", "use": "mobile"}],
    "gender": "male",
    "birthDate": "1985-04-12",
    "_birthDate": {"extension": [{"url": "http://example.org/x", "valueString": "from a paper record"}]},
    "address": [{"line": ["12 Phố Huế"], "district": "Đống Đa", "city": "Hà Nội", "country": "VN"}],
    "managingOrganization": {"reference": "Organization/bv-bach-mai"},
    "generalPractitioner": [{"reference": "http://fhir.example.vn/fhir/Practitioner/p1/_history/3"}],
}


def test_vietnamese_patient() -> None:
    def s(code: str, exact: str, norm: str) -> tuple[Any, ...]:
        return ("string", code, norm, exact, None)

    name_parts = [("Nguyễn Văn An", "nguyen van an"), ("Nguyễn", "nguyen"), ("Văn", "van"), ("An", "an")]
    address_parts = [("12 Phố Huế", "12 pho hue"), ("Đống Đa", "dong da"), ("Hà Nội", "ha noi"), ("VN", "vn")]
    assert rows_of("Patient", PATIENT) == {
        ("date", "_lastUpdated", *us(2024, 3, 1, 8), None),
        ("token", "_tag", "http://fhir.ehealth.gov.vn/tag", "demo", None),
        ("token", "identifier", NATIONAL_ID, "001085012345", None),
        ("token", "identifier:of-type", f"{V2_0203}|NI", "001085012345", None),
        s("identifier:text", "Căn cước công dân", "can cuoc cong dan"),
        ("token", "active", "", "true", None),
        *(s("name", exact, norm) for exact, norm in name_parts),
        *(s("phonetic", exact, norm) for exact, norm in name_parts),
        s("family", "Nguyễn", "nguyen"),
        s("given", "Văn", "van"),
        s("given", "An", "an"),
        ("token", "telecom", "", "0912345678", None),
        ("token", "phone", "", "0912345678", None),
        ("token", "gender", "", "male", None),
        ("date", "birthdate", *day(1985, 4, 12), None),
        *(s("address", exact, norm) for exact, norm in address_parts),
        s("address-city", "Hà Nội", "ha noi"),
        s("address-country", "VN", "vn"),
        ("reference", "organization", "Organization/bv-bach-mai", None, None),
        ("reference", "general-practitioner", "http://fhir.example.vn/fhir/Practitioner/p1/_history/3", None, None),
        ("reference", "general-practitioner", "Practitioner/p1", None, None),
        ("token", "deceased", "", "false", None),
    }


def test_rows_have_no_duplicates_and_the_indexer_agrees() -> None:
    rows = index_rows("Patient", PATIENT)
    assert len(rows) == len(set(rows))
    assert Indexer().rows("Patient", PATIENT) == rows


def test_malformed_values_are_skipped() -> None:
    """Extraction also runs with validation off: values of the wrong shape give no rows, no error."""
    patient = {"resourceType": "Patient", "name": "Nguyễn", "identifier": [None, {"system": {}, "value": "1"}],
               "telecom": {"value": 5}, "birthDate": "1985-13-40", "managingOrganization": {"reference": 7},
               "address": [{"line": [None, 3, "Phố Huế"]}], "active": "yes"}
    assert rows_of("Patient", patient) == {
        ("token", "identifier", "", "1", None),
        ("string", "address", "pho hue", "Phố Huế", None),
        ("token", "deceased", "", "false", None)}
    obs = {"resourceType": "Observation", "valueQuantity": {"value": "12", "code": "mg"},
           "effectivePeriod": {"start": 2024}, "code": {"coding": "x"}}
    assert rows_of("Observation", obs) == set()


def test_custom_parameter_shadows_a_core_one(custom: Any) -> None:
    custom(_custom("name", "Patient.name.family", "string"))
    assert rows_of("Patient", PATIENT, "name") == {("string", "name", "nguyen", "Nguyễn", None)}
    parameters.unregister("http://fhir.ehealth.gov.vn/SearchParameter/name")
    assert len(rows_of("Patient", PATIENT, "name")) == 4


def test_deceased() -> None:
    assert rows_of("Patient", {"resourceType": "Patient", "deceasedBoolean": True}, "deceased", "death-date") == {
        ("token", "deceased", "", "true", None)}
    assert rows_of("Patient", {"resourceType": "Patient", "deceasedDateTime": "2020-05"}, "deceased", "death-date") == {
        ("token", "deceased", "", "true", None),
        ("date", "death-date", us(2020, 5, 1)[0], us(2020, 6, 1)[0] - 1, None)}


OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                              "code": "laboratory"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "1988-5", "display": "C reactive protein"}],
             "text": "CRP"},
    "subject": {"reference": "Patient/vn1"},
    "encounter": {"reference": "Encounter/e1"},
    "effectivePeriod": {"start": "2024-03-01T08:00:00+07:00", "end": "2024-03-01T09:30:00+07:00"},
    "performer": [{"reference": "Practitioner/p1"}, {"reference": "#lab"}],
    "valueQuantity": {"value": 12.5, "unit": "mg", "system": UCUM, "code": "mg"},
}


def test_observation_with_quantity_and_period() -> None:
    # combo-* parameters are unions of others (extract.aliases): searched through them, not indexed
    code = [("token", "code", "http://loinc.org", "1988-5", None)]
    text = [("string", "code:text", n, e, None)
            for e, n in (("C reactive protein", "c reactive protein"), ("CRP", "crp"))]
    quantity = [("quantity", "value-quantity", UCUM, "mg", 12.5),
                ("quantity", "value-quantity:canonical", UCUM, "g", 0.0125)]
    assert rows_of("Observation", OBSERVATION) == {
        ("token", "status", "", "final", None),
        ("token", "category", "http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", None),
        *code, *text,
        ("reference", "subject", "Patient/vn1", None, None),
        ("reference", "patient", "Patient/vn1", None, None),
        ("reference", "encounter", "Encounter/e1", None, None),
        # 08:00+07:00 is 01:00Z; the end is its whole second
        ("date", "date", us(2024, 3, 1, 1)[0], us(2024, 3, 1, 2, 30)[1], None),
        ("reference", "performer", "Practitioner/p1", None, None),  # the contained #lab is not indexed
        *quantity,
    }


def test_choice_as_filters_each_item_of_a_list() -> None:
    """``Observation.component.value as Quantity`` on several components (strict FHIRPath would
    make ``as`` on a list an error)."""
    obs = {"resourceType": "Observation", "component": [
        {"code": {"text": "systolic"}, "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"}},
        {"code": {"text": "note"}, "valueString": "ok"},
        {"code": {"text": "diastolic"}, "valueQuantity": {"value": 80, "unit": "mmHg"}}]}
    assert rows_of("Observation", obs, "component-value-quantity") == {
        ("quantity", "component-value-quantity", UCUM, "mm[Hg]", 120.0),
        ("quantity", "component-value-quantity:canonical", UCUM, "g/(m.s2)", 15998686.4898),
        ("quantity", "component-value-quantity", "", "mmHg", 80.0)}


BLOOD_PRESSURE: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
    "component": [
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
         "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"}},
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
         "valueQuantity": {"value": 80, "system": UCUM, "code": "mm[Hg]"}}],
}


def test_union_parameters_are_aliases() -> None:
    assert extract.aliases("Observation") == {
        "combo-code": ("code", "component-code"),
        "combo-data-absent-reason": ("component-data-absent-reason", "data-absent-reason"),
        "combo-value-concept": ("component-value-concept", "value-concept"),
        "combo-value-quantity": ("component-value-quantity", "value-quantity")}
    assert extract.aliases("Patient") == {}


def test_component_rows_keep_each_component_apart() -> None:
    def element(loinc: str, value: float, canonical: float) -> list[list[tuple[Any, ...]]]:
        return [[("token", "component-code", "http://loinc.org", loinc, None)],
                [("quantity", "component-value-quantity", UCUM, "mm[Hg]", value),
                 ("quantity", "component-value-quantity:canonical", UCUM, "g/(m.s2)", canonical)]]

    assert extract.component_rows("Observation", "component-code-value-quantity", BLOOD_PRESSURE) == [
        element("8480-6", 120.0, 15998686.4898), element("8462-4", 80.0, 10665790.9932)]
    # code-value-quantity is on the Observation itself: its code, and no value of its own
    assert extract.component_rows("Observation", "code-value-quantity", BLOOD_PRESSURE) == [
        [[("token", "code", "http://loinc.org", "85354-9", None)], []]]
    # combo-: the Observation and each component
    assert len(extract.component_rows("Observation", "combo-code-value-quantity", BLOOD_PRESSURE)) == 3
    assert not any(r[1].startswith("component-code-value") for r in index_rows("Observation", BLOOD_PRESSURE))


def test_component_read_from_the_resource() -> None:
    """``%resource.referenceSeq.chromosome``: a component read from the resource, not the element."""
    seq = {"resourceType": "MolecularSequence", "type": "dna", "coordinateSystem": 0,
           "referenceSeq": {"chromosome": {"coding": [{"system": "http://example.org/chr", "code": "1"}]}},
           "variant": [{"start": 10, "end": 11}]}
    assert extract.component_rows("MolecularSequence", "chromosome-variant-coordinate", seq) == [[
        [("token", "chromosome", "http://example.org/chr", "1", None)],
        [("number", "variant-start", 10.0, None, None)],
        [("number", "variant-end", 11.0, None, None)]]]


ENCOUNTER: dict[str, Any] = {
    "resourceType": "Encounter",
    "id": "e1",
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
    "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "11429006", "display": "Consultation"}]}],
    "subject": {"reference": "Patient/vn1"},
    "participant": [
        {"individual": {"reference": "Practitioner/p1"}},
        {"individual": {"type": "Practitioner",
                        "identifier": {"system": "http://fhir.ehealth.gov.vn/core/sid/provider-code", "value": "BS001"}}},
        {"individual": {"reference": "RelatedPerson/r1"}}],
    "period": {"start": "2024-03-01T08:00:00+07:00"},
    "length": {"value": 30, "unit": "min", "system": UCUM, "code": "min"},
    "reasonCode": [{"text": "Đau đầu"}],
    "serviceProvider": {"reference": "Organization/bv-bach-mai"},
    "location": [{"location": {"reference": "Location/l1"},
                  "period": {"start": "2024-03-01T08:00:00+07:00", "end": "2024-03-01T08:30:00+07:00"}}],
}


def test_encounter() -> None:
    provider = ("http://fhir.ehealth.gov.vn/core/sid/provider-code", "BS001")
    assert rows_of("Encounter", ENCOUNTER) == {
        ("token", "status", "", "finished", None),
        ("token", "class", "http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB", None),
        ("string", "class:text", "ambulatory", "ambulatory", None),
        ("token", "type", "http://snomed.info/sct", "11429006", None),
        ("string", "type:text", "consultation", "Consultation", None),
        ("reference", "subject", "Patient/vn1", None, None),
        ("reference", "patient", "Patient/vn1", None, None),
        ("reference", "participant", "Practitioner/p1", None, None),
        ("reference", "participant", "RelatedPerson/r1", None, None),
        ("token", "participant:identifier", *provider, None),
        # where(resolve() is Practitioner): the reference's type, or Reference.type without one
        ("reference", "practitioner", "Practitioner/p1", None, None),
        ("token", "practitioner:identifier", *provider, None),
        ("date", "date", us(2024, 3, 1, 1)[0], DATE_MAX, None),
        ("quantity", "length", UCUM, "min", 30.0),
        ("quantity", "length:canonical", UCUM, "s", 1800.0),
        ("string", "reason-code:text", "dau dau", "Đau đầu", None),
        ("reference", "service-provider", "Organization/bv-bach-mai", None, None),
        ("reference", "location", "Location/l1", None, None),
        ("date", "location-period", us(2024, 3, 1, 1)[0], us(2024, 3, 1, 1, 30)[1], None),
    }


def test_open_period_and_timing() -> None:
    plan = {"resourceType": "CarePlan", "period": {"end": "2024"},
            "activity": [{"detail": {"scheduledTiming": {"event": ["2024-01-02", "2024-01-03"],
                                                         "repeat": {"boundsPeriod": {"start": "2024-01-01"}}}}}]}
    assert rows_of("CarePlan", plan, "date", "activity-date") == {
        ("date", "date", DATE_MIN, us(2025, 1, 1)[0] - 1, None),
        ("date", "activity-date", *day(2024, 1, 2), None),
        ("date", "activity-date", *day(2024, 1, 3), None),
        ("date", "activity-date", day(2024, 1, 1)[0], DATE_MAX, None)}


def test_money_number_and_canonical() -> None:
    item = {"resourceType": "ChargeItem", "priceOverride": {"value": 150000, "currency": "VND"},
            "factorOverride": 0.8, "definitionCanonical": ["http://example.org/ChargeItemDefinition/x|2.0"]}
    assert rows_of("ChargeItem", item, "price-override", "factor-override") == {
        ("quantity", "price-override", "urn:iso:std:iso:4217", "VND", 150000.0),
        ("number", "factor-override", 0.8, None, None)}
    measure_report = {"resourceType": "MeasureReport", "measure": "http://example.org/Measure/m|1"}
    assert rows_of("MeasureReport", measure_report, "measure") == {
        ("reference", "measure", "http://example.org/Measure/m", None, None)}


@pytest.mark.parametrize(("ref", "targets"), [
    ("Patient/1", ("Patient/1",)),
    ("Patient/1/_history/2", ("Patient/1",)),
    ("http://x.vn/fhir/Patient/1", ("http://x.vn/fhir/Patient/1", "Patient/1")),
    ("http://x.vn/fhir/Patient/1/_history/2", ("http://x.vn/fhir/Patient/1/_history/2", "Patient/1")),
    ("http://x.vn/fhir/Nothing/1", ("http://x.vn/fhir/Nothing/1",)),
    ("urn:uuid:0b8f2a7e-8f4c-4f7a-9d1b-2f6f1d8c9e01", ("urn:uuid:0b8f2a7e-8f4c-4f7a-9d1b-2f6f1d8c9e01",)),
    ("#p1", ()),
])
def test_reference_targets(ref: str, targets: tuple[str, ...]) -> None:
    assert convert.reference_targets(ref) == targets


def test_ucum_subset() -> None:
    assert ucum.canonical(5, "mg") == (0.005, "g")
    assert ucum.canonical(100, "mg/dL") == (1.0, "g/L")
    assert ucum.canonical(5.5, "mmol/L") == (0.0055, "mol/L")
    assert ucum.canonical(4.5, "10*3/uL") == ucum.canonical(4.5, "10*9/L") == (4.5e9, "/L")
    assert ucum.canonical(37, "Cel") == ucum.canonical(98.6, "[degF]") == (310.15, "K")
    assert ucum.canonical(1, "[arb'U]") is None


# --- the registry, custom parameters, fallbacks ---------------------------------------------

ETHNICITY = "http://fhir.ehealth.gov.vn/core/StructureDefinition/ethnicity"


def _custom(code: str, expression: str, kind: str = "token") -> dict[str, Any]:
    return {"resourceType": "SearchParameter", "url": f"http://fhir.ehealth.gov.vn/SearchParameter/{code}",
            "name": code, "status": "active", "code": code, "base": ["Patient"], "type": kind,
            "expression": expression}


@pytest.fixture
def custom() -> Any:
    urls: list[str] = []

    def add(resource: dict[str, Any]) -> parameters.SearchParam:
        param = parameters.register(resource)
        urls.append(param.url)
        return param
    yield add
    for url in urls:
        parameters.unregister(url)


def test_registry() -> None:
    assert len(parameters.params_for("Patient")) == 32
    name = parameters.lookup("Patient", "name")
    assert name is not None and name.url == "http://hl7.org/fhir/SearchParameter/Patient-name"
    assert parameters.by_url(name.url + "|4.0.1") is name
    tag = parameters.lookup("Bundle", "_tag")
    assert tag is not None and tag.base == ("Resource",)
    assert parameters.lookup("Bundle", "_text") is None  # DomainResource only
    assert parameters.lookup("Patient", "_text") is not None
    given = parameters.by_url("http://hl7.org/fhir/SearchParameter/individual-given|4.0.1")
    assert given is not None and given.code == "given" and "Patient" in given.base
    composite = parameters.lookup("Observation", "code-value-quantity")
    assert composite is not None and composite.components == (
        ("http://hl7.org/fhir/SearchParameter/clinical-code", "code"),
        ("http://hl7.org/fhir/SearchParameter/Observation-value-quantity", "value.as(Quantity)"))
    with pytest.raises(ValueError):
        parameters.register({"resourceType": "SearchParameter", "code": "x"})


def test_custom_parameter_on_an_extension(custom: Any) -> None:
    patient = {**PATIENT, "extension": [{"url": ETHNICITY, "valueCoding": {
        "system": "http://fhir.ehealth.gov.vn/core/CodeSystem/ethnic-group", "code": "01", "display": "Kinh"}}]}
    assert rows_of("Patient", patient, "ethnicity") == set()
    custom(_custom("ethnicity", f"Patient.extension('{ETHNICITY}').value"))
    assert rows_of("Patient", patient, "ethnicity") == {
        ("token", "ethnicity", "http://fhir.ehealth.gov.vn/core/CodeSystem/ethnic-group", "01", None),
        ("string", "ethnicity:text", "kinh", "Kinh", None)}
    assert extract.plan("Patient").slow == frozenset()
    parameters.unregister("http://fhir.ehealth.gov.vn/SearchParameter/ethnicity")
    assert rows_of("Patient", patient, "ethnicity") == set()


def test_custom_parameter_through_fhirpathpy(custom: Any) -> None:
    custom(_custom("official-family", "Patient.name.where(use = 'official' and family.exists()).family", "string"))
    assert extract.plan("Patient").slow == {"official-family"}
    patient = {**PATIENT, "name": [*PATIENT["name"], {"use": "maiden", "family": "Trần"}]}
    assert rows_of("Patient", patient, "official-family") == {("string", "official-family", "nguyen", "Nguyễn", None)}


def test_custom_parameter_that_cannot_be_indexed(custom: Any) -> None:
    custom(_custom("shoe-size", "Patient.shoeSize", "number"))
    custom(_custom("broken", "Patient.name.where(", "string"))
    assert {"shoe-size", "broken"} <= unsupported("Patient")
    assert not rows_of("Patient", PATIENT, "shoe-size", "broken")


def test_expression_subset() -> None:
    routes = expressions.routes("Observation.effective", "Observation")
    assert {r.type for r in routes} == {"dateTime", "Period", "Timing", "instant"}
    assert expressions.routes("Patient.name | Person.name", "Person")[0].steps == (expressions.Key("name"),)
    assert expressions.routes("(Condition.onset as Age) | Condition.onset.as(Range)", "Condition") == (
        expressions.Route((expressions.Key("onsetAge"),), "Age", "Condition"),
        expressions.Route((expressions.Key("onsetRange"),), "Range", "Condition"))
    with pytest.raises(expressions.NotSupported):
        expressions.routes("Patient.name.select(given)", "Patient")
    with pytest.raises(expressions.NotIndexable):
        expressions.routes("Patient.nombre", "Patient")


# --- what stays unsupported -----------------------------------------------------------------

#: No expression (``_text``, ``_content``, ``_query``), a ``special`` parameter (``near``),
#: ``Bundle.entry[0].resource`` (a resource where a reference parameter wants a reference), and a
#: composite whose R4 definition swaps its components' expressions (``relationship``).
UNSUPPORTED_EVERYWHERE = {"_content", "_query"}
UNSUPPORTED_EXTRA = {"Bundle": {"composition", "message"}, "Location": {"near"},
                     "DocumentReference": {"relationship"}}


def test_unsupported_is_exactly_this() -> None:
    for rtype in sorted(definitions.resource_types()):
        expected = UNSUPPORTED_EVERYWHERE | UNSUPPORTED_EXTRA.get(rtype, set())
        if rtype not in parameters.NOT_DOMAIN_RESOURCES:
            expected |= {"_text"}
        assert unsupported(rtype) == expected, rtype
        assert extract.plan(rtype).slow == frozenset(), rtype  # every R4 core parameter on the fast path


# --- differential: the fast path against fhirpathpy on the official examples ------------------

def _example_types() -> list[str]:
    if not EXAMPLES.is_dir():
        return []
    return sorted({p.name.split("-", 1)[0] for p in EXAMPLES.glob("*.json")} & definitions.resource_types())


_ROOT = re.compile(r"\b(?:Domain)?Resource\.")


@cache
def _official(expression: str, rtype: str) -> Callable[[dict[str, Any]], list[Any]]:
    """The official expression in fhirpathpy, with two changes for fhirpathpy's sake: ``as`` is
    ``ofType`` (fhirpathpy, strictly, refuses ``as`` on several items) and a ``Resource.`` root is
    the resource's own type (fhirpathpy only takes the latter)."""
    text = _ROOT.sub(rtype + ".", expression).replace(".as(", ".ofType(")
    while (rewritten := re.sub(r"\(([^()]+?) as (\w+)\)", r"(\1.ofType(\2))", text)) != text:
        text = rewritten
    fn = fhirpathpy.compile(text, model=models["r4"], options=extract.FHIRPATH_OPTIONS)
    return lambda resource: fn(resource, {})


def _reference_rows(param: parameters.SearchParam, rtype: str, resource: dict[str, Any]) -> set[tuple[Any, ...]]:
    out: convert.Out = {}
    extract.convert_nodes(param, _official(param.expression, rtype)(resource), out)
    return set(out)


def _check_shape(row: tuple[Any, ...]) -> None:
    kind, param, a, b, c = row
    assert isinstance(param, str) and param, row
    if kind in ("string", "token"):
        assert isinstance(a, str) and isinstance(b, str) and c is None, row
        if kind == "string":
            assert a == normalise(b), row
    elif kind == "date":
        assert isinstance(a, int) and isinstance(b, int) and DATE_MIN <= a <= b <= DATE_MAX and c is None, row
    elif kind == "number":
        assert isinstance(a, float) and b is None and c is None, row
    elif kind == "quantity":
        assert isinstance(a, str) and isinstance(b, str) and isinstance(c, float), row
    else:
        assert kind in ("reference", "uri") and isinstance(a, str) and a and b is None and c is None, row


def test_the_named_types_have_examples() -> None:
    if not EXAMPLES.is_dir():
        pytest.skip("shared R4 examples are not beside the checkout")
    assert {"Patient", "Encounter", "Observation", "Condition", "Organization", "Practitioner"} <= set(_example_types())


@pytest.mark.skipif(not EXAMPLES.is_dir(), reason="shared R4 examples are not beside the checkout")
@pytest.mark.parametrize("rtype", _example_types())
def test_fast_path_agrees_with_fhirpathpy(rtype: str) -> None:
    """Every parameter of ``rtype`` on every example of it: the compiled routes select the same
    values as fhirpathpy on the official expression (both turned into rows by one converter)."""
    params = [p for code, p in parameters.params_for(rtype).items()
              if code != "_id" and p.type != "composite" and code not in unsupported(rtype)]
    checked = 0
    for path in sorted(EXAMPLES.glob(f"{rtype}-*.json")):
        resource = orjson.loads(path.read_bytes())
        if resource.get("resourceType") != rtype:
            continue
        rows = set(index_rows(rtype, resource))
        for row in rows:
            _check_shape(row)
        union = extract.aliases(rtype)
        for param in params:
            # a union parameter is answered by its members: their rows, under its name
            codes = union.get(param.code, (param.code,))
            fast = {(r[0], param.code + r[1][len(base):], *r[2:]) for r in rows for base in codes
                    if r[1] == base or r[1].startswith(base + ":")}
            assert fast == _reference_rows(param, rtype, resource), (path.name, param.code, param.expression)
            checked += 1
    assert checked
