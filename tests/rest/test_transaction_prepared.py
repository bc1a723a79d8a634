"""Creates the writer need not look anything up for: plain creates prepared before it runs
(``transaction._prepare_creates``: which entries are, that their bytes are the writer's own, that a
transaction means the same either way), and conditional PUTs that match nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
from hypothesis import given
from hypothesis import strategies as st

from fhir_hub.rest.transaction import Entry, parse_entries
from fhir_hub.search.extract import Indexer
from fhir_hub.storage.port import prepare_body, stamp
from fhir_hub.storage.sqlite.rows import TableForm, unpacked
from fhir_hub.storage.sqlite.schema import param_key
from tests.rest.test_transaction import bundle, obs, post_entry, urn

BASE = "http://hub.test/fhir"
NID = "http://fhir.ehealth.gov.vn/core/sid/national_id"


def parsed(entries: list[dict[str, Any]]) -> list[Entry]:
    return parse_entries(orjson.loads(orjson.dumps(entries)), BASE, True, Indexer(), "", TableForm())


def patient(nid: str = "1") -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": NID, "value": nid}]}


def put_entry(resource: dict[str, Any], url: str, full_url: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"resource": resource, "request": {"method": "PUT", "url": url}}
    if full_url:
        e["fullUrl"] = full_url
    return e


def stored(e: Entry) -> dict[str, Any]:
    assert e.prepared is not None
    loaded: dict[str, Any] = orjson.loads(e.prepared.at("2026-12-03T10:00:00.000001+00:00"))
    return loaded


# -- which entries are prepared, with what -------------------------------------------------------


def test_plain_creates_get_ids_bytes_and_rows_with_their_references_resolved() -> None:
    p_urn, enc_urn = urn(), urn()
    o = obs(p_urn)
    o["encounter"] = {"reference": enc_urn}
    o["performer"] = [{"reference": f"{BASE}/Practitioner/pr1"}, {"reference": "#c1"}]
    entries = parsed([
        post_entry(patient(), p_urn),
        put_entry({"resourceType": "Encounter", "id": "e1", "status": "finished",
                   "class": {"code": "AMB"}}, "Encounter/e1", enc_urn),
        post_entry(o),
    ])
    pat, enc, ob = entries
    assert pat.prepared is not None and ob.prepared is not None
    assert enc.prepared is None and enc.resource is not None  # a PUT's version is the writer's to know
    assert ob.resource is None and ob.holders is None
    assert pat.rid is not None and ob.rid is not None and pat.rid != ob.rid
    assert sorted(ob.prepared.refs) == sorted((f"Patient/{pat.rid}", "Encounter/e1", "Practitioner/pr1", "#c1"))
    body = stored(ob)
    assert body["id"] == ob.rid and body["meta"]["versionId"] == "1"
    assert body["subject"] == {"reference": f"Patient/{pat.rid}"}
    assert body["encounter"] == {"reference": "Encounter/e1"}
    assert body["performer"][0] == {"reference": "Practitioner/pr1"}
    refs = {tuple(r) for r in unpacked(ob.index_rows, "reference")}
    assert (param_key("Observation", "subject"), f"Patient/{pat.rid}") in refs
    assert (param_key("Observation", "patient"), f"Patient/{pat.rid}") in refs
    assert (param_key("Observation", "encounter"), "Encounter/e1") in refs


def test_a_relative_reference_to_an_absolute_fullurl_means_that_entry() -> None:
    entries = parsed([post_entry(patient(), "http://other.org/fhir/Patient/123"), post_entry(obs("Patient/123"))])
    assert entries[1].prepared is not None
    assert stored(entries[1])["subject"] == {"reference": f"Patient/{entries[0].rid}"}


def test_entries_whose_outcome_needs_the_store_are_left_to_the_writer() -> None:
    found_urn, cond_put_urn = urn(), urn()
    entries = parsed([
        post_entry(patient("7"), found_urn, ifNoneExist=f"identifier={NID}|7"),
        post_entry(obs(found_urn)),
        post_entry(obs(f"Patient?identifier={NID}|8")),
        put_entry({"resourceType": "Patient"}, f"Patient?identifier={NID}|9", cond_put_urn),
        post_entry(obs(cond_put_urn)),
        post_entry(obs("Patient/known-elsewhere")),
    ])
    assert [e.prepared is not None for e in entries] == [False, False, False, False, False, True]
    assert entries[0].rid is None  # ifNoneExist: the writer decides between the match and a new id
    for e in entries[:5]:
        if e.method == "POST":
            assert e.resource is not None and e.index_rows is not None  # rows with urn placeholders, as before


def test_a_fullurl_naming_two_entries_prepares_nothing() -> None:
    twice = urn()
    entries = parsed([post_entry(patient("1"), twice), post_entry(patient("2"), twice), post_entry(obs(twice))])
    assert all(e.prepared is None and e.resource is not None for e in entries)


def test_a_body_holding_the_placeholder_text_is_left_to_the_writer() -> None:
    odd = patient()
    odd["name"] = [{"text": "\x00fhir-hub:lastUpdated\x00"}]
    entries = parsed([post_entry(odd), post_entry(patient("2"))])
    assert entries[0].prepared is None and entries[0].resource is not None
    assert entries[1].prepared is not None


# -- the bytes are the writer's ------------------------------------------------------------------


_META_KEY = st.sampled_from(["profile", "versionId", "lastUpdated", "tag", "source", "security"])


@given(st.lists(st.tuples(_META_KEY, st.text(max_size=8)), max_size=5, unique_by=lambda kv: kv[0]),
       st.text(max_size=20), st.booleans())
def test_prepared_bytes_are_what_the_writer_would_store(meta: list[tuple[str, str]], text: str,
                                                        with_id: bool) -> None:
    resource: dict[str, Any] = {"status": "final", "resourceType": "Observation", "code": {"text": text}}
    if meta:
        resource["meta"] = dict(meta)
    if with_id:
        resource["id"] = "sent"
    when = "2026-12-03T10:00:00.123456+00:00"
    prepared = prepare_body("Observation", "o1", resource, ())
    assert prepared is not None  # the texts are too short to hold the placeholder
    assert prepared.at(when) == orjson.dumps(stamp("Observation", "o1", dict(resource), 1, when))


# -- over HTTP -------------------------------------------------------------------------------------


def test_prepared_creates_are_stored_indexed_and_checked(client: httpx.Client) -> None:
    p_urn = urn()
    nid = str(uuid.uuid4().int)[:12]
    r = client.post("", json=bundle("transaction", [post_entry(obs(p_urn)),
                                                   post_entry(patient(nid), p_urn)]))
    assert r.status_code == 200, r.text
    pid = r.json()["entry"][1]["response"]["location"].split("/")[1]
    oid = r.json()["entry"][0]["response"]["location"].split("/")[1]
    o = client.get(f"/Observation/{oid}").json()
    assert o["subject"] == {"reference": f"Patient/{pid}"}
    assert o["meta"] == {"versionId": "1", "lastUpdated": r.json()["entry"][0]["response"]["lastModified"]}
    found = client.get("/Observation", params={"patient": pid}).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [oid]

    missing = client.post("", json=bundle("transaction", [post_entry(patient()), post_entry(obs("Patient/no-such"))]))
    assert missing.status_code == 409, missing.text
    issue = missing.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[1].resource.subject.reference"]
    assert "Patient/no-such" in issue["diagnostics"]

    dangling = client.post("", json=bundle("transaction", [post_entry(obs(urn()))]))
    assert dangling.status_code == 400, dangling.text
    assert dangling.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.subject.reference"]


def test_a_conditional_put_that_matches_nothing_creates_and_one_with_an_id_updates_it(client: httpx.Client) -> None:
    rid = f"p{uuid.uuid4().hex[:12]}"
    nid, other = str(uuid.uuid4().int)[:12], str(uuid.uuid4().int)[:12]
    assert client.put(f"/Patient/{rid}", json={**patient(nid), "id": rid}).status_code == 201

    def cond_put(resource: dict[str, Any], value: str, **request: Any) -> httpx.Response:
        return client.post("", json=bundle("transaction", [{"resource": resource, "request": {
            "method": "PUT", "url": f"Patient?identifier={NID}|{value}", **request}}]))

    created = cond_put(patient(other), other)  # no match, no id: a create under a new id
    assert created.status_code == 200, created.text
    answer = created.json()["entry"][0]["response"]
    assert answer["status"] == "201 Created" and answer["etag"] == 'W/"1"'
    new_id = answer["location"].split("/")[1]
    assert client.get(f"/Patient/{new_id}/_history").json()["entry"][0]["request"]["method"] == "PUT"

    by_id = cond_put({**patient(nid), "id": rid}, str(uuid.uuid4().int)[:12])  # no match: the body's id
    assert by_id.status_code == 200, by_id.text
    assert by_id.json()["entry"][0]["response"]["etag"] == 'W/"2"'

    guarded = cond_put(patient(), str(uuid.uuid4().int)[:12], ifMatch='W/"1"')
    assert guarded.status_code == 412, guarded.text
