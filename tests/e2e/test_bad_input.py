"""Bad input never gets a 500: random JSON, random bundles and random headers against a real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Server

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
fhir_keys = st.sampled_from(["resourceType", "id", "meta", "name", "identifier", "status", "code", "subject",
                             "reference", "entry", "request", "method", "url", "resource", "fullUrl", "type",
                             "valueQuantity", "value", "_birthDate", "contained", "extension", "ifNoneExist"])
fhirish = st.recursive(
    json_values,
    lambda children: st.dictionaries(fhir_keys, children, max_size=6) | st.lists(children, max_size=3),
    max_leaves=30,
)
resource_types = st.sampled_from(["Patient", "Observation", "Bundle", "Encounter", "Nope", ""])


@pytest.fixture(scope="module")
def c(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=30, headers={"Content-Type": "application/fhir+json"}) as client:
        yield client


def _dumps(value: Any) -> bytes:
    """The client side uses the stdlib: it writes what orjson will not (integers beyond 64 bits)."""
    return json.dumps(value, ensure_ascii=False).encode()


def _no_500(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text[:500]
    if r.status_code >= 400:
        assert r.json()["resourceType"] == "OperationOutcome"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rtype=resource_types, body=fhirish)
def test_random_resources(c: httpx.Client, rtype: str, body: Any) -> None:
    if isinstance(body, dict) and rtype:
        body = {"resourceType": rtype, **body}
    _no_500(c.post(f"/{rtype or 'Patient'}", content=_dumps(body)))
    _no_500(c.put(f"/{rtype or 'Patient'}/x1", content=_dumps(body)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["transaction", "batch", "searchset", 3]), entries=st.lists(fhirish, max_size=4),
       method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "X"]),
       url=st.sampled_from(["Patient", "Patient/1", "Patient?identifier=a|b", "Patient/1/_history/x", "", "/",
                            "http://other/fhir/Patient/9", "Patient?nope=1", "Nope/1", "Patient/1/extra/deep"]))
def test_random_bundles(c: httpx.Client, kind: Any, entries: list[Any], method: str, url: str) -> None:
    shaped = [{"request": {"method": method, "url": url}, "resource": e} if isinstance(e, dict) else e
              for e in entries]
    _no_500(c.post("", content=_dumps({"resourceType": "Bundle", "type": kind, "entry": shaped})))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["If-Match", "If-None-Match", "If-Modified-Since", "If-None-Exist", "Prefer",
                             "Accept", "Content-Type"]),
       value=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
       path=st.sampled_from(["/Patient", "/Patient/x1", "/Patient/x1/_history", "/_history", "/metadata"]),
       query=st.sampled_from(["", "?_count=-1", "?_since=x", "?_at=2020", "?_summary=x", "?_elements=",
                              "?_cursor=abc", "?_format=foo", "?identifier=", "?_pretty=true"]))
def test_random_headers_and_queries(c: httpx.Client, name: str, value: str, path: str, query: str) -> None:
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
        r = c.request(method, path + query, headers={name: value},
                      content=_dumps({"resourceType": "Patient", "id": "x1"}))
        _no_500(r)


_SEARCH_NAMES = ["name", "family:exact", "birthdate", "identifier:of-type", "subject", "subject:Patient.name",
                 "code:text", "value-quantity", "component-code-value-quantity", "combo-code:not", "_has:Observation:patient:code",
                 "_sort", "_count", "_include", "_revinclude:iterate", "_total", "_summary", "_cursor", "_type", "_since",
                 "_lastUpdated", "general-practitioner.name", "zzz", "_contained", "_elements"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/Patient", "/Observation", "/Patient/x1/Observation", "/Patient/x1/*",
                             "/Patient/x1/$everything", "/Patient/$everything", "/", "/Nope/x/Observation"]),
       pairs=st.lists(st.tuples(st.sampled_from(_SEARCH_NAMES),
                                st.text(st.characters(min_codepoint=32, max_codepoint=0x1EF9), max_size=20)),
                      max_size=3),
       strict=st.booleans())
def test_random_searches(c: httpx.Client, path: str, pairs: list[tuple[str, str]], strict: bool) -> None:
    headers = {"Prefer": "handling=strict"} if strict else {}
    _no_500(c.get(path, params=pairs, headers=headers))
    _no_500(c.post(path.rstrip("/") + "/_search" if not path.endswith("$everything") else path,
                   content="&".join(f"{k}={v}" for k, v in pairs).encode(),
                   headers={**headers, "Content-Type": "application/x-www-form-urlencoded"}))
