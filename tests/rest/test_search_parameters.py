"""Custom SearchParameter resources against real servers: refused when search could not use them,
registered once committed (new writes indexed at once, older resources after ``$reindex``),
loaded again at start-up, forgotten on delete, and picked up by every worker of a shared file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import Server, fhir_client, make_server

NICKNAME = "http://example.org/fhir/StructureDefinition/nickname"
STRICT = {"Prefer": "handling=strict"}


def nickname_parameter(url: str = "http://example.org/fhir/SearchParameter/nickname",
                       code: str = "nickname", **changes: Any) -> dict[str, Any]:
    return {"resourceType": "SearchParameter", "url": url, "name": code, "status": "active",
            "description": "The patient's nickname (an extension)", "code": code, "base": ["Patient"],
            "type": "string", "expression": f"Patient.extension.where(url='{NICKNAME}').value.as(string)",
            **changes}


def nicknamed(nickname: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": "Trần"}],
            "extension": [{"url": NICKNAME, "valueString": nickname}]}


def create(c: httpx.Client, resource: dict[str, Any]) -> str:
    r = c.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    rid: str = r.json()["id"]
    return rid


def found(c: httpx.Client, query: str) -> set[str]:
    r = c.get(query, headers=STRICT)
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", [])}


def refused(c: httpx.Client, query: str) -> str:
    r = c.get(query, headers=STRICT)
    assert r.status_code == 400, r.text
    return str(r.json()["issue"][0]["diagnostics"])


def reindexed(c: httpx.Client, path: str = "/$reindex") -> dict[str, int]:
    r = c.post(path)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Parameters"
    counts = {p["part"][0]["valueCode"]: p["part"][1]["valueInteger"]
              for p in body["parameter"] if p["name"] == "reindexed"}
    assert body["parameter"][0] == {"name": "total", "valueInteger": sum(counts.values())}
    return counts


def issue(r: httpx.Response) -> tuple[str, list[str]]:
    assert r.status_code == 400, r.text
    first = r.json()["issue"][0]
    return first["diagnostics"], first.get("expression", [])


def test_a_custom_parameter_from_creation_to_deletion(tmp_path: Path) -> None:
    srv = make_server(tmp_path).start()
    try:
        with fhir_client(srv) as c:
            old = create(c, nicknamed("Bông"))
            create(c, nicknamed("Mít"))
            create(c, {"resourceType": "Patient", "name": [{"family": "Lê"}]})
            assert "no search parameter 'nickname'" in refused(c, "/Patient?nickname=bong")

            sp = create(c, nickname_parameter())
            # known at once, and written resources are indexed by it; older ones are not yet
            assert found(c, "/Patient?nickname=bong") == set()
            new = create(c, nicknamed("Bông Bông"))
            assert found(c, "/Patient?nickname=bong") == {new}

            assert reindexed(c) == {"Patient": 4, "SearchParameter": 1}
            assert found(c, "/Patient?nickname=bong") == {old, new}
            assert found(c, "/Patient?nickname:exact=Mít") != set()
            assert reindexed(c, "/Patient/$reindex") == {"Patient": 4}
            assert reindexed(c, "/Observation/$reindex") == {"Observation": 0}
            metadata = c.get("/metadata").json()["rest"][0]["resource"]
            patient = next(r for r in metadata if r["type"] == "Patient")
            assert {"name": "nickname", "type": "string",
                    "definition": "http://example.org/fhir/SearchParameter/nickname"} in patient["searchParam"]

        srv.stop()
        srv.start()  # the parameter comes back from the store
        with fhir_client(srv) as c:
            assert found(c, "/Patient?nickname=bong") == {old, new}
            later = create(c, nicknamed("Bông"))
            assert found(c, "/Patient?nickname=bong") == {old, new, later}

            assert c.delete(f"/SearchParameter/{sp}").status_code == 200
            assert "no search parameter 'nickname'" in refused(c, "/Patient?nickname=bong")
            assert len(found(c, "/Patient")) == 5  # lenient: an unknown parameter is ignored
        srv.stop()
        srv.start()
        with fhir_client(srv) as c:
            assert "no search parameter 'nickname'" in refused(c, "/Patient?nickname=bong")
    finally:
        srv.stop()


def test_transactions_updates_and_patches_move_the_registry(fresh_server: Server) -> None:
    with fhir_client(fresh_server) as c:
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "PUT", "url": "SearchParameter/nick"},
             "resource": {**nickname_parameter(), "id": "nick"}},
            {"request": {"method": "POST", "url": "Patient"}, "resource": nicknamed("Na")}]}
        r = c.post("", json=bundle)
        assert r.status_code == 200, r.text
        # the Patient's rows were made with the parameters known before the transaction
        assert found(c, "/Patient?nickname=na") == set()
        assert reindexed(c)["Patient"] == 1
        assert len(found(c, "/Patient?nickname=na")) == 1

        # a new expression: new writes use it, the old rows stay until a reindex
        moved = nickname_parameter(expression="Patient.name.family", id="nick")
        assert c.put("/SearchParameter/nick", json=moved).status_code == 200
        assert found(c, "/Patient?nickname=tran") == set()
        assert len(found(c, "/Patient?nickname=na")) == 1
        reindexed(c)
        assert len(found(c, "/Patient?nickname=tran")) == 1 and found(c, "/Patient?nickname=na") == set()

        retire = [{"op": "replace", "path": "/status", "value": "retired"}]
        r = c.patch("/SearchParameter/nick", content=httpx.Request("PATCH", "x", json=retire).content,
                    headers={"Content-Type": "application/json-patch+json"})
        assert r.status_code == 200, r.text
        refused(c, "/Patient?nickname=tran")
        revive = [{"op": "replace", "path": "/status", "value": "draft"}]
        r = c.patch("/SearchParameter/nick", content=httpx.Request("PATCH", "x", json=revive).content,
                    headers={"Content-Type": "application/json-patch+json"})
        assert r.status_code == 200, r.text
        assert len(found(c, "/Patient?nickname=tran")) == 1
        assert c.delete("/SearchParameter?url=http://example.org/fhir/SearchParameter/nickname").status_code == 200
        refused(c, "/Patient?nickname=tran")


def test_parameters_search_cannot_use_are_refused(client: httpx.Client) -> None:
    bad = nickname_parameter(url="urn:test:bad", code="bad", expression="Patient.name.where(")
    diagnostics, where = issue(client.post("/SearchParameter", json=bad))
    assert where == ["SearchParameter.expression"] and "cannot be indexed on Patient" in diagnostics
    no_values = nickname_parameter(url="urn:test:ext", code="ext", type="string",
                                   expression=f"Patient.extension('{NICKNAME}')")  # Extensions, not strings
    assert issue(client.post("/SearchParameter", json=no_values))[1] == ["SearchParameter.expression"]
    missing = nickname_parameter(url="urn:test:none", code="none")
    del missing["expression"]
    assert issue(client.post("/SearchParameter", json=missing))[1] == ["SearchParameter.expression"]
    reserved = nickname_parameter(url="urn:test:reserved", code="_nickname")
    assert issue(client.post("/SearchParameter", json=reserved))[1] == ["SearchParameter.code"]
    special = nickname_parameter(url="urn:test:special", code="near2", type="special")
    assert issue(client.post("/SearchParameter", json=special))[1] == ["SearchParameter.type"]
    in_bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Patient"}},
        {"request": {"method": "POST", "url": "SearchParameter"}, "resource": bad}]}
    assert issue(client.post("", json=in_bundle))[1] == ["Bundle.entry[1].resource.expression"]
    # not live: stored as it is, never searched by
    retired = {**missing, "status": "retired"}
    assert client.post("/SearchParameter", json=retired).status_code == 201
    refused(client, "/Patient?none=x")
    # the R4 definition of a core parameter, restated: nothing changes
    core = {"resourceType": "SearchParameter", "url": "http://hl7.org/fhir/SearchParameter/individual-family",
            "name": "family", "status": "draft", "description": "x", "code": "family",
            "base": ["Patient", "Practitioner"], "type": "string",
            "expression": "Patient.name.family | Practitioner.name.family"}
    assert client.post("/SearchParameter", json=core).status_code == 201


def test_every_worker_learns_a_new_parameter(tmp_path: Path) -> None:
    srv = make_server(tmp_path)
    srv.args = ("--workers", "2")
    srv.start()
    try:
        limits = httpx.Limits(max_keepalive_connections=0)  # new connections: spread over both workers
        with httpx.Client(base_url=srv.base, timeout=30, limits=limits,
                          headers={"Content-Type": "application/fhir+json"}) as c:
            pid = create(c, nicknamed("Su"))
            create(c, nickname_parameter())
            time.sleep(1.2)  # one poll interval: the other worker looks at the store on its next request
            for _ in range(20):
                assert found(c, "/Patient?nickname=su") == set()  # known everywhere, not yet reindexed
            reindexed(c)
            for _ in range(20):
                assert found(c, "/Patient?nickname=su") == {pid}
    finally:
        srv.stop()
