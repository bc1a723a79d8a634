"""Two server processes on one SQLite file: writes stay serialised, conditional creates unique."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.conftest import make_server

NID = "http://fhir.ehealth.gov.vn/core/sid/national_id"


def test_two_workers_share_one_store_safely(tmp_path: Path) -> None:
    srv = make_server(tmp_path)
    srv.args = ("--workers", "2")
    srv.start()

    async def run() -> tuple[list[int], int, int]:
        limits = httpx.Limits(max_keepalive_connections=0)  # new connections: spread over both workers
        async with httpx.AsyncClient(base_url=srv.base, timeout=30, limits=limits,
                                     headers={"Content-Type": "application/fhir+json"}) as c:
            patient = {"resourceType": "Patient", "identifier": [{"system": NID, "value": "079203000001"}]}
            statuses = await asyncio.gather(*(
                c.post("/Patient", json=patient, headers={"If-None-Exist": f"identifier={NID}|079203000001"})
                for _ in range(40)))
            found = (await c.get(f"/Patient?identifier={NID}|079203000001")).json().get("entry", [])
            await c.put("/Patient/n", json={"resourceType": "Patient", "id": "n", "multipleBirthInteger": 0})

            async def bump() -> None:
                for _ in range(10):
                    while True:
                        cur = await c.get("/Patient/n")
                        body = cur.json()
                        body["multipleBirthInteger"] += 1
                        r = await c.put("/Patient/n", json=body, headers={"If-Match": cur.headers["etag"]})
                        if r.status_code == 200:
                            break
                        assert r.status_code == 412, f"{r.status_code}: {r.text}"

            await asyncio.gather(*(bump() for _ in range(6)))
            final = (await c.get("/Patient/n")).json()["multipleBirthInteger"]
            return [r.status_code for r in statuses], len(found), final

    try:
        statuses, matches, final = asyncio.run(run())
    finally:
        srv.stop()
    assert sorted(set(statuses)) == [200, 201] and statuses.count(201) == 1, statuses
    assert matches == 1
    assert final == 60
