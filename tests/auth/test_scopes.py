"""The SMART scope parser (fhir_hub/auth/scopes.py): v1, v2, query restrictions, coverage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_hub.auth.scopes import ResourceScope, ScopeError, narrow, parse_scope, parse_scopes

VITAL = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"


@pytest.mark.parametrize("text,context,rtype,perms,version", [
    ("patient/Observation.read", "patient", "Observation", "rs", 1),
    ("patient/*.read", "patient", "*", "rs", 1),
    ("user/Patient.write", "user", "Patient", "cud", 1),
    ("system/*.*", "system", "*", "cruds", 1),
    ("patient/Observation.rs", "patient", "Observation", "rs", 2),
    ("system/*.cruds", "system", "*", "cruds", 2),
    ("patient/Condition.s", "patient", "Condition", "s", 2),
    ("system/Encounter.cud", "system", "Encounter", "cud", 2),
])
def test_resource_scopes(text: str, context: str, rtype: str, perms: str, version: int) -> None:
    s = parse_scope(text)
    assert isinstance(s, ResourceScope)
    assert (s.context, s.rtype, s.permissions, s.version, s.query) == (context, rtype, perms, version, ())
    assert str(s) == text


def test_query_restriction() -> None:
    s = parse_scope(f"patient/Observation.rs?category={VITAL}")
    assert isinstance(s, ResourceScope)
    assert s.query == (("category", VITAL),)
    two = parse_scope("patient/Observation.rs?category=laboratory&code=http://loinc.org|2345-7")
    assert isinstance(two, ResourceScope) and two.query == (("category", "laboratory"),
                                                            ("code", "http://loinc.org|2345-7"))


@pytest.mark.parametrize("text", ["launch/patient", "launch", "offline_access", "openid", "fhirUser",
                                  "online_access", "something/else.rs"])
def test_other_scopes_are_kept_as_strings(text: str) -> None:
    assert parse_scope(text) == text


@pytest.mark.parametrize("text", [
    "patient/Observation.sr",       # order
    "patient/Observation.rrs",      # repeated
    "patient/Observation.x",        # unknown permission
    "patient/Observation.",         # none
    "patient/Observation",          # no dot
    "patient/observation.rs",       # not a type name
    "patient/Observation.read?category=x",  # restriction on v1
    "patient/Observation.rs?",      # empty restriction
    "patient/Observation.rs?category",  # no value
])
def test_malformed_resource_scopes(text: str) -> None:
    with pytest.raises(ScopeError):
        parse_scope(text)


def test_scopes_decide_permissions() -> None:
    s = parse_scopes(f"launch/patient patient/Observation.rs?category={VITAL} patient/Patient.r offline_access")
    assert s.other == {"launch/patient", "offline_access"}
    assert s.allows("patient", "Observation", "s") and s.allows("patient", "Patient", "r")
    assert not s.allows("patient", "Patient", "s") and not s.allows("system", "Observation", "r")
    assert s.restrictions("patient", "Observation", "r") == [(("category", VITAL),)]
    assert s.restrictions("patient", "Patient", "r") is None
    assert s.restrictions("patient", "Condition", "r") == []
    assert not s.wildcard("patient", "rs")
    assert parse_scopes("system/*.rs system/*.cud").wildcard("system", "cruds")


def test_an_unrestricted_scope_beats_a_restricted_one() -> None:
    s = parse_scopes(f"patient/Observation.rs?category={VITAL} patient/*.rs")
    assert s.restrictions("patient", "Observation", "s") is None


def test_narrow_to_what_the_client_may_have() -> None:
    allowed = [parse_scope(x) for x in ("launch/patient", "offline_access", "patient/*.rs", "system/Observation.rs")]
    asked = parse_scopes(f"launch/patient openid patient/Observation.read patient/Observation.rs?category={VITAL} "
                         "patient/Observation.c system/Observation.rs")
    got = narrow(asked, allowed, ("patient",))
    assert str(got) == f"patient/Observation.read patient/Observation.rs?category={VITAL} launch/patient"
    assert str(narrow(asked, allowed, ("system",))) == "system/Observation.rs launch/patient"


def test_restricted_registration_covers_only_the_same_restriction() -> None:
    reg = parse_scope(f"patient/Observation.rs?category={VITAL}")
    assert isinstance(reg, ResourceScope)
    assert reg.covers(parse_scope(f"patient/Observation.r?category={VITAL}"))  # type: ignore[arg-type]
    assert not reg.covers(parse_scope("patient/Observation.rs"))  # type: ignore[arg-type]


@given(st.sets(st.sampled_from("cruds"), min_size=1), st.sampled_from(["patient", "user", "system"]),
       st.sampled_from(["*", "Observation", "Patient"]))
def test_v2_round_trip(perms: set[str], context: str, rtype: str) -> None:
    letters = "".join(p for p in "cruds" if p in perms)
    s = parse_scope(f"{context}/{rtype}.{letters}")
    assert isinstance(s, ResourceScope)
    assert str(s) == f"{context}/{rtype}.{letters}" or s.version == 2
    assert all(s.grants(rtype if rtype != "*" else "Condition", p) for p in perms)
    assert not any(s.grants("Condition" if rtype == "*" else rtype, p) for p in set("cruds") - perms)
