"""Reads across a person's records and the AuditEvents of reconciliation, over real uvicorn: a
golden record's ``$everything`` and compartment include its sources' data, ``:mpi`` expands a
reference search (refused with reconciliation off), every decision leaves an AuditEvent the API
cannot write."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from fhir_hub.mpi.expand import MAX_CHAINED
from fhir_hub.mpi.features import INSURANCE_NUMBER, NATIONAL_ID
from fhir_hub.mpi.service import AUDIT_SUBTYPE, link_id
from tests.conftest import Server, fhir_client
from tests.mpi.conftest import patient
from tests.mpi.test_server import cccd, create, facility, golden_of, params, sources

STRICT = {"Prefer": "handling=strict"}
_GIVEN = [("Lan", "LAN"), ("Huệ", "HUE"), ("Ngọc", "NGOC"), ("Thảo", "THAO"), ("Vy", "VY"), ("Quyên", "QUYEN"),
          ("Trâm", "TRAM"), ("Yến", "YEN"), ("Nhung", "NHUNG"), ("Diệp", "DIEP")]
_people = itertools.count(1)


def observation(c: httpx.Client, pid: str, text: str) -> str:
    body = {"resourceType": "Observation", "status": "final", "code": {"text": text},
            "subject": {"reference": f"Patient/{pid}"}, "valueString": text}
    r = c.post("/Observation", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def ids(bundle: dict[str, Any], rtype: str = "Observation") -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == rtype}


def get(c: httpx.Client, path: str, **query: str) -> dict[str, Any]:
    r = c.get(path, params=query)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def person(c: httpx.Client) -> tuple[str, str, str, set[str], set[str]]:
    """Two facilities' copies of one person (linked by personal ID), two observations each:
    (golden, source a, source b, a's observations, b's observations)."""
    n = next(_people)
    given, plain = _GIVEN[n % len(_GIVEN)]
    year = 1940 + n
    nid = cccd(year=year, sex_digit=1)
    birth, phone = f"{year}-05-06", f"09{n:08d}"
    a = create(c, facility(patient(name=f"Trần Thị {given}", birth=birth, sex="female", cccd=nid, card=None,
                                   phone=phone), "urn:oid:1.2.3.bvbm", f"L-{n}"))
    b = create(c, facility(patient(name=f"TRAN THI {plain}", birth=birth, sex="female", cccd=nid, card=None,
                                   phone=None), "urn:oid:1.2.3.bvcr", f"L-{n}"))
    golden = golden_of(c, a)
    assert sorted(sources(golden)) == sorted([a, b])
    obs_a = {observation(c, a, "a1"), observation(c, a, "a2")}
    obs_b = {observation(c, b, "b1"), observation(c, b, "b2")}
    return golden["id"], a, b, obs_a, obs_b


def audits(c: httpx.Client, **query: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in get(c, "/AuditEvent", **query).get("entry", [])]


def entity(event: dict[str, Any], name: str) -> str | None:
    found = [e["what"]["reference"] for e in event["entity"] if e.get("name") == name]
    return found[0] if found else None


def detail(event: dict[str, Any]) -> dict[str, str]:
    source = next(e for e in event["entity"] if e.get("name") == "source")
    return {d["type"]: d["valueString"] for d in source.get("detail", [])}


# ------------------------------------------------------------------------------ expansion


def test_golden_everything_and_compartment_cover_every_source(c: httpx.Client) -> None:
    gid, a, b, obs_a, obs_b = person(c)
    everything = get(c, f"/Patient/{gid}/$everything", _count="100")
    assert ids(everything) == obs_a | obs_b
    assert ids(everything, "Patient") == {gid, a, b}
    assert ids(get(c, f"/Patient/{gid}/Observation")) == obs_a | obs_b
    assert get(c, f"/Patient/{gid}/Observation", _summary="count")["total"] == 4
    assert ids(get(c, f"/Patient/{gid}/Patient"), "Patient") == {gid, a, b}
    # a source's own stay its own
    assert ids(get(c, f"/Patient/{a}/$everything", _count="100")) == obs_a
    # (the golden record is in a's compartment by the R4 CompartmentDefinition: its link names a)
    assert ids(get(c, f"/Patient/{a}/$everything", _count="100"), "Patient") == {a, gid}
    assert ids(get(c, f"/Patient/{b}/Observation")) == obs_b


def test_reference_search_is_literal_unless_mpi_is_asked(c: httpx.Client) -> None:
    gid, a, b, obs_a, obs_b = person(c)
    assert ids(get(c, "/Observation", subject=f"Patient/{gid}")) == set()
    assert ids(get(c, "/Observation", subject=f"Patient/{a}")) == obs_a
    for value in (f"Patient/{gid}", gid, f"Patient/{b}"):  # the golden record or any source: the person
        r = c.get("/Observation", params={"subject:mpi": value}, headers=STRICT)
        assert r.status_code == 200, r.text
        assert ids(r.json()) == obs_a | obs_b
        assert any("subject%3Ampi" in ln["url"] for ln in r.json()["link"] if ln["relation"] == "self")
    assert ids(get(c, "/Observation", **{"patient:mpi": f"Patient/{gid}", "code:text": "a1"})) == {
        o for o in obs_a if get(c, f"/Observation/{o}")["code"]["text"] == "a1"}
    r = c.get("/Observation", params={"code:mpi": "x"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_mpi_in_a_chain_finds_the_person_then_every_record_of_it(c: httpx.Client) -> None:
    """Site B's copy carries no personal ID (linked by its BHYT card): a plain chain on the ID
    misses its data, ``subject:mpi.identifier`` does not."""
    nid, card = cccd(year=1962), f"DN40101{next(_people) + 50_000_000:08d}"
    a = create(c, patient(name="Lâm Văn Trọng", birth="1962-02-03", cccd=nid, card=card))
    b = create(c, patient(name="Lam Van Trong", birth="1962-02-03", cccd=None, card="HC4" + card[3:], phone=None))
    assert sorted(sources(golden_of(c, a))) == sorted([a, b])
    obs_a, obs_b = {observation(c, a, "a")}, {observation(c, b, "b")}
    token = f"{NATIONAL_ID}|{nid}"
    assert ids(get(c, "/Observation", **{"subject:Patient.identifier": token})) == obs_a
    r = c.get("/Observation", params={"subject:mpi.identifier": token}, headers=STRICT)
    assert r.status_code == 200, r.text
    assert ids(r.json()) == obs_a | obs_b
    assert ids(get(c, "/Observation", **{"patient:mpi.identifier": f"{INSURANCE_NUMBER}|HC4{card[3:]}"})) == obs_a | obs_b
    assert get(c, "/Observation", **{"subject:mpi.identifier": f"{NATIONAL_ID}|079099000000"}).get("entry") is None
    for bad in ({"subject:mpi.": token}, {"subject:mpi.nonsense": "x"}, {"code:mpi.identifier": token}):
        r = c.get("/Observation", params=bad, headers=STRICT)
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", (bad, r.text)


def test_mpi_chain_matching_too_many_patients_is_refused(c: httpx.Client) -> None:
    entries = [{"resource": {"resourceType": "Patient", "name": [{"family": "Xyzzy", "given": [f"Q{n:03d}"]}]},
                "request": {"method": "POST", "url": "Patient"}} for n in range(MAX_CHAINED + 1)]
    r = c.post("/", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 200, r.text
    r = c.get("/Observation", params={"subject:mpi.family": "Xyzzy"})
    assert r.status_code == 400
    assert f"more than {MAX_CHAINED} Patients" in r.json()["issue"][0]["diagnostics"]


def test_mpi_modifier_is_refused_with_reconciliation_off(server: Server) -> None:
    with fhir_client(server) as off:
        for headers in (STRICT, {}):
            for name in ("subject:mpi", "subject:mpi.identifier"):
                r = off.get("/Observation", params={name: "Patient/x"}, headers=headers)
                assert r.status_code == 400, r.text
                assert r.json()["resourceType"] == "OperationOutcome"
        # and AuditEvents stay ordinary resources there
        event = {"resourceType": "AuditEvent", "type": {"code": "x"}, "recorded": "2025-01-01T00:00:00Z",
                 "agent": [{"requestor": True, "name": "n"}], "source": {"observer": {"display": "o"}}}
        assert off.post("/AuditEvent", json=event).status_code == 201


def test_unlink_takes_the_source_out_of_the_golden_everything(c: httpx.Client) -> None:
    gid, a, b, obs_a, obs_b = person(c)
    r = c.post("/Patient/$mpi-unlink", json=params(source=f"Patient/{b}", actor="steward-7"))
    assert r.status_code == 200, r.text
    new = next(p["valueString"] for p in r.json()["parameter"] if p["name"] == "golden")
    assert ids(get(c, f"/Patient/{gid}/$everything", _count="100")) == obs_a
    assert ids(get(c, f"/Patient/{gid}/Observation")) == obs_a
    assert ids(get(c, f"/Patient/{new}/$everything", _count="100")) == obs_b
    assert ids(get(c, "/Observation", **{"subject:mpi": f"Patient/{gid}"})) == obs_a

    # the unlink's AuditEvent: who, when, the rule, the source, the golden records
    events = [e for e in audits(c, entity=f"Patient/{b}", subtype=f"{AUDIT_SUBTYPE}|unlink")]
    assert len(events) == 1
    event = events[0]
    assert event["agent"][0]["name"] == "steward-7" and event["agent"][0]["requestor"] is True
    assert event["recorded"].endswith("Z")
    assert entity(event, "source") == f"Patient/{b}"
    assert entity(event, "golden") == f"Patient/{new}"
    assert entity(event, "previous golden") == f"Patient/{gid}"
    assert entity(event, "link record") == f"Basic/{link_id(b)}"
    assert detail(event)["rule"] == "manual"


def test_automatic_link_has_an_audit_event(c: httpx.Client) -> None:
    gid, a, b, _, _ = person(c)
    events = audits(c, entity=f"Patient/{b}")
    assert [e["subtype"][0]["code"] for e in events] == ["auto-link"]
    event = events[0]
    assert event["agent"][0]["requestor"] is False and event["agent"][0]["name"]
    assert event["recorded"]
    assert entity(event, "source") == f"Patient/{b}"
    assert entity(event, "golden") == f"Patient/{gid}"
    d = detail(event)
    assert d["rule"] == "national-id" and d["outcome"] == "auto-link" and float(d["score"]) > 0
    # the first copy made the person: its AuditEvent says so
    first = audits(c, entity=f"Patient/{a}")
    assert [e["subtype"][0]["code"] for e in first] == ["new"]
    assert entity(first[0], "golden") == f"Patient/{gid}"
    # searchable by the golden record and by the automatic actor's name
    assert {e["id"] for e in audits(c, entity=f"Patient/{gid}")} >= {event["id"], first[0]["id"]}


def test_audit_events_cannot_be_written_through_the_api(c: httpx.Client) -> None:
    gid, _, b, _, _ = person(c)
    event = audits(c, entity=f"Patient/{b}")[0]
    attempts = [
        c.post("/AuditEvent", json={**event, "id": None}),
        c.put(f"/AuditEvent/{event['id']}", json={**event, "outcomeDesc": "forged"}),
        c.delete(f"/AuditEvent/{event['id']}"),
        c.request("PATCH", f"/AuditEvent/{event['id']}", headers={"Content-Type": "application/json-patch+json"},
                  json=[{"op": "replace", "path": "/outcomeDesc", "value": "forged"}]),
        c.put("/AuditEvent", params={"_id": event["id"]}, json=event),
    ]
    for r in attempts:
        assert r.status_code == 405, r.text
        assert r.json()["resourceType"] == "OperationOutcome"
    for kind in ("transaction", "batch"):
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [
            {"resource": {**event, "id": None}, "request": {"method": "POST", "url": "AuditEvent"}}]}
        r = c.post("/", json=bundle)
        if kind == "transaction":
            assert r.status_code == 405, r.text
        else:
            assert r.json()["entry"][0]["response"]["status"].startswith("405"), r.text
    assert get(c, f"/AuditEvent/{event['id']}")["outcomeDesc"] == event["outcomeDesc"]
    # reads and searches still work, POST _search too
    r = c.post("/AuditEvent/_search", content=f"entity=Patient/{b}",
               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and ids(r.json(), "AuditEvent") == {event["id"]}


def test_steward_link_and_merge_leave_audit_events(c: httpx.Client) -> None:
    g1, a, _, _, _ = person(c)
    g2, x, _, _, _ = person(c)
    r = c.post("/Patient/$mpi-merge", json=params(**{"from": f"Patient/{g2}", "into": f"Patient/{g1}",
                                                     "actor": "steward-9"}))
    assert r.status_code == 200, r.text
    merges = audits(c, entity=f"Patient/{g2}", subtype=f"{AUDIT_SUBTYPE}|merge")
    assert len(merges) == 1
    assert entity(merges[0], "golden") == f"Patient/{g1}"
    assert f"Patient/{x}" in [e["what"]["reference"] for e in merges[0]["entity"] if e["name"] == "moved source"]
    # the merged person's observations are the survivor's now
    assert len(ids(get(c, f"/Patient/{g1}/$everything", _count="100"))) == 8
    r = c.post("/Patient/$mpi-unmerge", json=params(**{"from": f"Patient/{g2}", "actor": "steward-9"}))
    assert r.status_code == 200, r.text
    assert len(audits(c, entity=f"Patient/{g2}", subtype=f"{AUDIT_SUBTYPE}|unmerge")) == 1
    assert len(ids(get(c, f"/Patient/{g1}/$everything", _count="100"))) == 4
    r = c.post("/Patient/$mpi-link", json=params(source=f"Patient/{x}", golden=f"Patient/{g1}", actor="steward-9"))
    assert r.status_code == 200, r.text
    links = audits(c, entity=f"Patient/{x}", subtype=f"{AUDIT_SUBTYPE}|link")
    assert len(links) == 1 and entity(links[0], "previous golden") == f"Patient/{g2}"
    assert a  # the survivor's own source stays where it was
