"""``fhir-hub serve --db postgresql://…``: the real server (uvicorn on loopback) on the PostgreSQL
store of the session's throwaway cluster: a transaction bundle, searches, reads, and conditional
creates that stay unique under concurrent requests, also across two server processes."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import psycopg

from tests.conftest import Server, free_port

NID = "http://fhir.ehealth.gov.vn/core/sid/national_id"


def _server(url: str, *args: str) -> Server:
    # ``db`` is a URL here: Server hands it to ``--db`` as it is
    return Server(url, free_port(), {}, args=args)  # type: ignore[arg-type]


def _bundle() -> dict[str, object]:
    patient = {"resourceType": "Patient", "identifier": [{"system": NID, "value": "001090000123"}],
               "name": [{"family": "Nguyễn", "given": ["Thị", "Lan"]}], "gender": "female", "birthDate": "1990-05-17"}
    obs = {"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
           "subject": {"reference": "urn:uuid:3f0c9a52-5d1b-4a8e-9d47-0d3f4b1c2a10"}, "effectiveDateTime": "2025-03-01",
           "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:3f0c9a52-5d1b-4a8e-9d47-0d3f4b1c2a10", "resource": patient,
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={NID}|001090000123"}},
        {"fullUrl": "urn:uuid:9b1e7d3c-0a4f-4f6e-8c2b-5e7a1d9c3b20", "resource": obs,
         "request": {"method": "POST", "url": "Observation"}},
    ]}


def test_transaction_search_and_read_through_postgres(pg_url: str) -> None:
    srv = _server(pg_url).start()
    try:
        with httpx.Client(base_url=srv.base, timeout=30, headers={"Content-Type": "application/fhir+json"}) as c:
            r = c.post("", content=orjson.dumps(_bundle()))
            assert r.status_code == 200, r.text
            locations = [e["response"]["location"] for e in r.json()["entry"]]
            assert [e["response"]["status"] for e in r.json()["entry"]] == ["201 Created", "201 Created"]
            pid = locations[0].split("/")[1]
            again = c.post("", content=orjson.dumps(_bundle()))  # ifNoneExist: the Patient is not made twice
            assert again.status_code == 200 and again.json()["entry"][0]["response"]["status"] == "200 OK"

            found = c.get("/Patient", params={"identifier": f"{NID}|001090000123", "name": "nguyen"}).json()
            assert [e["resource"]["id"] for e in found.get("entry", [])] == [pid]
            obs = c.get("/Observation", params={"subject": f"Patient/{pid}", "code": "http://loinc.org|8867-4",
                                                "value-quantity": "gt70", "_include": "Observation:subject"}).json()
            kinds = sorted((e["resource"]["resourceType"], e["search"]["mode"]) for e in obs["entry"])
            assert kinds == [("Observation", "match"), ("Observation", "match"), ("Patient", "include")]

            read = c.get(f"/Patient/{pid}")
            assert read.status_code == 200 and read.headers["etag"] == 'W/"1"'
            assert read.json()["name"][0]["family"] == "Nguyễn"
            assert c.get(f"/Patient/{pid}", headers={"If-None-Match": 'W/"1"'}).status_code == 304
            assert c.get("/Patient/not-there").status_code == 404
    finally:
        srv.stop()
    with psycopg.connect(pg_url) as conn:  # what was served is what PostgreSQL holds, byte for byte
        body = conn.execute("SELECT v.body FROM current c JOIN version v ON v.seq = c.seq "
                            "WHERE c.rtype = 'Patient' AND c.rid = %s", (pid,)).fetchone()
    assert body is not None and bytes(body[0]) == read.content


def test_conditional_creates_stay_unique_across_two_workers(pg_url: str) -> None:
    srv = _server(pg_url, "--workers", "2").start()

    async def run() -> tuple[list[int], int]:
        limits = httpx.Limits(max_keepalive_connections=0)  # new connections: spread over both workers
        async with httpx.AsyncClient(base_url=srv.base, timeout=30, limits=limits,
                                     headers={"Content-Type": "application/fhir+json"}) as c:
            patient = {"resourceType": "Patient", "identifier": [{"system": NID, "value": "079203000001"}]}
            statuses = await asyncio.gather(*(
                c.post("/Patient", json=patient, headers={"If-None-Exist": f"identifier={NID}|079203000001"})
                for _ in range(30)))
            found = (await c.get(f"/Patient?identifier={NID}|079203000001")).json().get("entry", [])
            return [r.status_code for r in statuses], len(found)

    try:
        statuses, matches = asyncio.run(run())
    finally:
        srv.stop()
    assert sorted(set(statuses)) == [200, 201] and statuses.count(201) == 1, statuses
    assert matches == 1
