"""The security suite's items that ``test_smart_e2e.py`` does not already try, over the same kind of
real server (auth on, two patients, backend clients): the patient summary and ``$everything`` of
another patient, paging links presented with another token, and search values and ``_sort``
crafted as SQL.

Already tried in ``test_smart_e2e.py`` (each with the status and no protected byte asserted):
another patient by id, vread and history (``test_another_patients_resource_by_id_is_hidden``); by
search (``..._by_search_are_not_found``); ``_include``, ``_revinclude``, ``:iterate``, chains,
``_has``, system/type history, ``Patient/$everything`` (``test_what_this_slice_cannot_restrict_is_refused``);
GETs inside a batch (``test_batch_entries_are_checked_each``); expired, tampered, ``alg=none``,
wrong-audience, wrong-issuer tokens (``test_bad_tokens_are_401``); a replayed client assertion
(``test_assertion_refusals``), a revoked token presented again (``test_introspect_and_revoke``);
PKCE missing or ``plain`` and a wrong verifier; an unregistered redirect URI; a reused code
(which also kills its tokens); a refresh token reused after rotation.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.auth.smart import bearer, patient_token
from tests.auth.test_smart_e2e import World, _get, alice, world  # noqa: F401  (fixtures)

SQL = ["' OR '1'='1", "x'; DROP TABLE resources; --", '" OR ""="', "1) OR (1=1", "%' --", "\\'; SELECT 1; --"]


def _protected(w: World, text: str) -> None:
    """Nothing of the other patient (Trần, Patient b and b's observation) is in ``text``."""
    assert "Trần" not in text
    assert f'"{w.ids["b-vital"]}"' not in text and f'"{w.ids["b"]}"' not in text
    assert f"Observation/{w.ids['b-vital']}" not in text


@pytest.fixture(scope="module")
def bob(world: World) -> dict[str, Any]:  # noqa: F811
    return patient_token(world.srv, "001090000002")


def _system(w: World) -> str:
    r = w.rs.token(w.srv)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


# --- $summary ----------------------------------------------------------------------------------------


def test_own_summary_is_readable(world: World, alice: dict[str, Any]) -> None:  # noqa: F811
    r = _get(world, alice["access_token"], f"Patient/{world.ids['a']}/$summary")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["type"] == "document" and doc["entry"][0]["resource"]["resourceType"] == "Composition"
    ids = {e["resource"].get("id") for e in doc["entry"]}
    assert {world.ids["a"], world.ids["a-vital"], world.ids["a-lab"]} <= ids
    _protected(world, r.text)


def test_another_patients_summary_is_hidden(world: World, alice: dict[str, Any]) -> None:  # noqa: F811
    r = _get(world, alice["access_token"], f"Patient/{world.ids['b']}/$summary")
    assert r.status_code == 404 and r.json()["issue"][0]["code"] == "not-found"
    _protected(world, r.text)
    missing = _get(world, alice["access_token"], "Patient/not-a-patient/$summary")
    assert missing.status_code == 404  # the same answer as for one that does not exist


def test_summary_needs_a_wildcard_read_scope(world: World) -> None:  # noqa: F811
    t = patient_token(world.srv, "001090000001", "patient/Observation.rs")
    r = _get(world, t["access_token"], f"Patient/{world.ids['a']}/$summary")
    assert r.status_code == 403 and r.json()["issue"][0]["code"] == "forbidden"
    narrow = world.narrow.token(world.srv, scope="system/Observation.rs").json()["access_token"]
    r = _get(world, narrow, f"Patient/{world.ids['b']}/$summary")
    assert r.status_code == 403 and "Trần" not in r.text
    r = _get(world, _system(world), f"Patient/{world.ids['b']}/$summary")
    assert r.status_code == 200 and "Trần" in r.text  # the control: a system/*.cruds token may


def test_type_level_summary_is_the_tokens_own(world: World, alice: dict[str, Any]) -> None:  # noqa: F811
    r = _get(world, alice["access_token"], "Patient/$summary")
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{world.ids['a']}"
    _protected(world, r.text)
    r = _get(world, alice["access_token"], "Patient/$summary", identifier="urn:x|anything")
    assert r.status_code == 403
    _protected(world, r.text)


def test_another_patients_summary_inside_a_batch(world: World, alice: dict[str, Any]) -> None:  # noqa: F811
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{world.ids['b']}/$summary"}}]}
    r = httpx.post(world.srv.base, content=orjson.dumps(bundle), headers=bearer(alice["access_token"]))
    assert r.status_code == 403
    _protected(world, r.text)


# --- $everything ---------------------------------------------------------------------------------------


def test_own_everything_and_not_another_patients(world: World, alice: dict[str, Any]) -> None:  # noqa: F811
    a = alice["access_token"]
    own = _get(world, a, f"Patient/{world.ids['a']}/$everything")
    assert own.status_code == 200, own.text
    ids = {e["resource"]["id"] for e in own.json()["entry"]}
    assert ids == {world.ids["a"], world.ids["a-vital"], world.ids["a-lab"]}
    _protected(world, own.text)
    other = _get(world, a, f"Patient/{world.ids['b']}/$everything")
    assert other.status_code == 404
    _protected(world, other.text)
    assert _get(world, a, "Patient/$everything").status_code == 403  # every patient's: never
    narrow = patient_token(world.srv, "001090000001", "patient/Observation.rs")["access_token"]
    assert _get(world, narrow, f"Patient/{world.ids['a']}/$everything").status_code == 403


def test_everything_paging_link_from_another_patient(world: World, alice: dict[str, Any],  # noqa: F811
                                                     bob: dict[str, Any]) -> None:
    first = _get(world, bob["access_token"], f"Patient/{world.ids['b']}/$everything", _count="1")
    nxt = next(link["url"] for link in first.json()["link"] if link["relation"] == "next")
    assert httpx.get(nxt, headers=bearer(bob["access_token"])).status_code == 200  # the control
    r = httpx.get(nxt, headers=bearer(alice["access_token"]))
    assert r.status_code == 404
    _protected(world, r.text)


# --- paging links --------------------------------------------------------------------------------------


def test_a_paging_link_is_authorized_anew_for_the_token_presenting_it(world: World, alice: dict[str, Any],  # noqa: F811
                                                                       bob: dict[str, Any]) -> None:
    first = _get(world, alice["access_token"], "Observation", _count="1")
    assert first.status_code == 200
    nxt = next(link["url"] for link in first.json()["link"] if link["relation"] == "next")
    own = httpx.get(nxt, headers=bearer(alice["access_token"]))
    assert own.status_code == 200 and len(own.json()["entry"]) == 1  # the control: the owner pages on
    # the link names Alice's compartment: refused to Bob, with nothing of Alice's in the answer
    r = httpx.get(nxt, headers=bearer(bob["access_token"]))
    assert r.status_code == 403 and r.json()["issue"][0]["code"] == "forbidden"
    assert "Nguyễn" not in r.text and world.ids["a-lab"] not in r.text and world.ids["a-vital"] not in r.text
    # a system token's link to every Observation is cut to the presenting patient's compartment
    system = _get(world, _system(world), "Observation", _count="1")
    link = next(x["url"] for x in system.json()["link"] if x["relation"] == "next")
    r = httpx.get(link, headers=bearer(alice["access_token"]))
    assert r.status_code == 200
    _protected(world, r.text)
    assert {e["resource"]["subject"]["reference"] for e in r.json().get("entry", [])} <= \
        {f"Patient/{world.ids['a']}"}


def test_a_paging_link_without_a_token_is_401(world: World, alice: dict[str, Any]) -> None:  # noqa: F811
    first = _get(world, alice["access_token"], "Observation", _count="1")
    nxt = next(link["url"] for link in first.json()["link"] if link["relation"] == "next")
    r = httpx.get(nxt)
    assert r.status_code == 401 and "Nguyễn" not in r.text and world.ids["a-lab"] not in r.text


# --- values crafted as SQL -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", SQL)
def test_search_values_crafted_as_sql(world: World, alice: dict[str, Any], value: str) -> None:  # noqa: F811
    a = alice["access_token"]
    for path, name in (("Observation", "_id"), ("Observation", "code"), ("Observation", "subject"),
                       ("Patient", "name"), ("Patient", "_id"), ("Observation", "category")):
        r = _get(world, a, path, **{name: value})
        assert r.status_code in (200, 400), (name, value, r.status_code)
        assert r.json()["resourceType"] in ("Bundle", "OperationOutcome")
        if r.status_code == 200:
            assert "entry" not in r.json(), (name, value)
        _protected(world, r.text)
    r = _get(world, a, f"Observation/{value}")
    assert r.status_code in (400, 404) and r.json()["resourceType"] == "OperationOutcome"
    _protected(world, r.text)


@pytest.mark.parametrize("value", [*SQL, "name;DROP TABLE resources", "-_id,(SELECT 1)", "family desc"])
def test_sort_crafted_as_sql(world: World, alice: dict[str, Any], value: str) -> None:  # noqa: F811
    for access in (alice["access_token"], _system(world)):
        r = _get(world, access, "Patient", _sort=value)
        assert 400 <= r.status_code < 500, (value, r.status_code, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
        _protected(world, r.text)
    # the store is intact: both patients still there for a system token, each alone for its patient
    r = _get(world, _system(world), "Patient", _id=f"{world.ids['a']},{world.ids['b']}")
    assert r.json()["total"] == 2
    assert _get(world, alice["access_token"], "Patient").json()["total"] == 1
