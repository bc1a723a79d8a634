"""A citizen's token over reconciled records (``FHIR_HUB_MPI=on``, auth on, a real server): the
user is linked to the golden record, and what two facilities hold about the person is the
citizen's, alike by search, by id and in ``$summary``; another person's stays hidden.
Reconciliation's operations need unrestricted Patient scopes, record the client as the actor,
and an unlink takes the source's data out of the citizen's reach at once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.auth.smart import PASSWORD, REDIRECT, bearer, cli, make_backend, patient_token
from tests.conftest import Server, make_server
from tests.mpi.conftest import patient
from tests.mpi.test_server import cccd, create, facility, params


class Person:
    def __init__(self, srv: Server, national_id: str, golden: str, sources: list[str], obs: list[str],
                 stranger_obs: str, emr: Any, steward: Any, narrow: Any):
        self.srv, self.national_id, self.golden, self.sources = srv, national_id, golden, sources
        self.obs, self.stranger_obs = obs, stranger_obs
        self.emr, self.steward, self.narrow = emr, steward, narrow


def _observation(c: httpx.Client, pid: str, text: str) -> str:
    r = c.post("/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": text},
                                     "subject": {"reference": f"Patient/{pid}"}})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


@pytest.fixture(scope="module")
def person(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Person]:
    tmp = tmp_path_factory.mktemp("mpi-auth")
    srv = make_server(tmp, auth="smart", mpi="on").start()
    try:
        cli(srv.db, "clients", "add", "app", "--redirect-uri", REDIRECT)
        emr = make_backend(srv.db, tmp, "emr", "ES384")
        steward = make_backend(srv.db, tmp, "steward", "ES384", scope="system/AuditEvent.rs")
        narrow = make_backend(srv.db, tmp, "lab", "ES384", scope="system/Observation.rs system/Patient.rs")
        headers = {**bearer(emr.token(srv).json()["access_token"])}
        with httpx.Client(base_url=srv.base, headers=headers, timeout=30) as c:
            nid = cccd(year=1961, sex_digit=1)
            a = create(c, facility(patient(name="Trần Thị Mai", birth="1961-05-06", sex="female", cccd=nid,
                                           card=None), "urn:oid:1.2.3.bvbm", "M-1"))
            b = create(c, facility(patient(name="TRAN THI MAI", birth="1961-05-06", sex="female", cccd=nid,
                                           card=None, phone=None), "urn:oid:1.2.3.bvcr", "M-1"))
            found = c.get("/Patient", params={"link": f"Patient/{a}"}).json()
            (golden,) = [e["resource"]["id"] for e in found["entry"]]
            stranger = create(c, facility(patient(name="Lê Văn Nam", birth="1970-01-02", cccd=cccd(1970, 0),
                                                  card=None, phone="0988000111"), "urn:oid:1.2.3.bvbm", "M-9"))
            obs = [_observation(c, a, "ở Bạch Mai"), _observation(c, b, "ở Chợ Rẫy")]
            stranger_obs = _observation(c, stranger, "của người khác")
        cli(srv.db, "users", "add", "--national-id", nid, "--patient", golden, "--password", PASSWORD)
        yield Person(srv, nid, golden, [a, b], obs, stranger_obs, emr, steward, narrow)
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def citizen(person: Person) -> dict[str, Any]:
    return patient_token(person.srv, person.national_id, "launch/patient patient/*.rs")


def test_search_and_read_by_id_agree_across_the_person(person: Person, citizen: dict[str, Any]) -> None:
    a = citizen["access_token"]
    assert citizen["patient"] == person.golden
    found = httpx.get(f"{person.srv.base}/Observation", headers=bearer(a)).json()
    assert sorted(e["resource"]["id"] for e in found["entry"]) == sorted(person.obs)
    for oid in person.obs:  # each search result can be read by its own URL
        assert httpx.get(f"{person.srv.base}/Observation/{oid}", headers=bearer(a)).status_code == 200
    for sid in person.sources:  # the facilities' records of the person
        assert httpx.get(f"{person.srv.base}/Patient/{sid}", headers=bearer(a)).status_code == 200
    r = httpx.get(f"{person.srv.base}/Observation/{person.stranger_obs}", headers=bearer(a))
    assert r.status_code == 404 and "người khác" not in r.text


def test_the_citizens_summary_covers_both_facilities(person: Person, citizen: dict[str, Any]) -> None:
    r = httpx.get(f"{person.srv.base}/Patient/{person.golden}/$summary", headers=bearer(citizen["access_token"]))
    assert r.status_code == 200, r.text
    assert "ở Bạch Mai" in r.text and "ở Chợ Rẫy" in r.text and "người khác" not in r.text
    other = httpx.get(f"{person.srv.base}/Patient/{person.sources[0]}/$summary",
                      headers=bearer(citizen["access_token"]))
    assert other.status_code == 404  # the token's patient is the golden record: ask for that one


def _op(person: Person, access: str, name: str, **values: str) -> httpx.Response:
    return httpx.post(f"{person.srv.base}/Patient/{name}", content=orjson.dumps(params(**values)),
                      headers=bearer(access), timeout=30)


def test_reconciliation_operations_need_patient_scopes(person: Person, citizen: dict[str, Any]) -> None:
    emr = person.emr.token(person.srv).json()["access_token"]
    assert _op(person, emr, "$mpi-explain", patient=f"Patient/{person.sources[0]}").status_code == 200
    narrow = person.narrow.token(person.srv, scope="system/Observation.rs system/Patient.rs").json()["access_token"]
    assert _op(person, narrow, "$mpi-explain", patient=f"Patient/{person.sources[0]}").status_code == 200
    r = _op(person, narrow, "$mpi-unlink", source=f"Patient/{person.sources[1]}")
    assert r.status_code == 403 and "update" in r.json()["issue"][0]["diagnostics"]
    r = _op(person, citizen["access_token"], "$mpi-explain", patient=f"Patient/{person.sources[0]}")
    assert r.status_code == 403
    review = httpx.get(f"{person.srv.base}/$mpi-review", headers=bearer(citizen["access_token"]))
    assert review.status_code == 403
    assert httpx.get(f"{person.srv.base}/$mpi-review", headers=bearer(emr)).status_code == 200


def test_an_unlink_by_a_client_is_recorded_as_that_client_and_takes_effect_at_once(
        person: Person, citizen: dict[str, Any]) -> None:
    emr = person.emr.token(person.srv).json()["access_token"]
    gone = person.sources[1]
    r = _op(person, emr, "$mpi-unlink", source=f"Patient/{gone}", actor="someone else entirely")
    assert r.status_code == 200, r.text
    a = citizen["access_token"]
    found = httpx.get(f"{person.srv.base}/Observation", headers=bearer(a)).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [person.obs[0]]
    assert httpx.get(f"{person.srv.base}/Observation/{person.obs[1]}", headers=bearer(a)).status_code == 404
    steward = person.steward.token(person.srv, scope="system/AuditEvent.rs").json()["access_token"]
    events = httpx.get(f"{person.srv.base}/AuditEvent", params={"entity": f"Patient/{gone}"},
                       headers=bearer(steward)).json()
    unlink = [e["resource"] for e in events["entry"] if e["resource"]["subtype"][0]["code"] == "unlink"]
    assert [e["agent"][0]["name"] for e in unlink] == ["client emr"]
