"""The per-type profile policy on every write path, end to end: ``fhir-hub serve --require-profile``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server, fhir_client, make_server
from tests.validation import vn_samples

PATIENT = f"{vn_samples.SD}/vn-core-patient"


@pytest.fixture(scope="module")
def policed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    srv = make_server(tmp_path_factory.mktemp("policy"))
    srv.args = ("--require-profile", f"Patient={PATIENT}")
    srv.start()
    with fhir_client(srv) as c:
        yield c
    srv.stop()


def _unclaimed(national_id: str = "001190012345", **changes: Any) -> dict[str, Any]:
    p = vn_samples.patient()
    del p["meta"]  # claims nothing: only the policy asks for VN Core
    p["identifier"][0]["value"] = national_id
    p.update(changes)
    return p


def _broken(national_id: str) -> dict[str, Any]:
    p = _unclaimed(national_id)
    del p["name"][0]["text"]  # VN Core Patient requires the name's text
    return p


def _issues(r: httpx.Response) -> list[tuple[str, str]]:
    body = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [(i["severity"], i["expression"][0]) for i in body["issue"]]


def _count(c: httpx.Client, national_id: str) -> int:
    r = c.get("/Patient", params={"identifier": f"{vn_samples.CORE}/sid/national_id|{national_id}", "_summary": "count"})
    total: int = r.json()["total"]
    return total


def test_create_and_update_of_a_non_conforming_patient_are_422(policed: httpx.Client) -> None:
    r = policed.post("/Patient", json=_broken("001190000001"))
    assert r.status_code == 422, r.text
    assert ("error", "Patient.name[0].text") in _issues(r)
    r = policed.put("/Patient/pol-1", json={**_broken("001190000001"), "id": "pol-1"})
    assert r.status_code == 422 and ("error", "Patient.name[0].text") in _issues(r)
    assert _count(policed, "001190000001") == 0
    assert policed.post("/Patient", json=_unclaimed("001190000001")).status_code == 201
    warned = _unclaimed("001190000002", birthDate="1991-04-12")  # vn-pat-1 warning only: accepted
    assert policed.put("/Patient/pol-2", json={**warned, "id": "pol-2"}).status_code == 201


def test_a_patch_that_breaks_the_profile_is_422(policed: httpx.Client) -> None:
    assert policed.put("/Patient/pol-3", json={**_unclaimed("001190000003"), "id": "pol-3"}).status_code == 201
    r = policed.patch("/Patient/pol-3", json=[{"op": "remove", "path": "/name/0/text"}],
                      headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 422, r.text
    assert ("error", "Patient.name[0].text") in _issues(r)
    assert policed.get("/Patient/pol-3").json()["name"][0]["text"] == "Trần Thị Lan"


def test_a_transaction_with_one_non_conforming_entry_writes_nothing(policed: httpx.Client) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _unclaimed("001190000004"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": _broken("001190000005"), "request": {"method": "POST", "url": "Patient"}}]}
    r = policed.post("", json=bundle)
    assert r.status_code == 422, r.text
    assert ("error", "Bundle.entry[1].resource.name[0].text") in _issues(r)
    assert _count(policed, "001190000004") == 0
    bundle["type"] = "batch"
    r = policed.post("", json=bundle)
    assert r.status_code == 200
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses[0].startswith("201") and statuses[1] == "422"
    assert _count(policed, "001190000004") == 1 and _count(policed, "001190000005") == 0


def test_other_types_are_not_held_to_the_policy(policed: httpx.Client) -> None:
    assert policed.put("/Patient/pol-6", json={**_unclaimed("001190000006"), "id": "pol-6"}).status_code == 201
    o = vn_samples.vital_sign()
    del o["meta"]
    o["subject"] = {"reference": "Patient/pol-6"}
    o["valueQuantity"]["code"] = "[lb_av]x"  # would break VN vital signs, which nobody asks for here
    assert policed.post("/Observation", json=o).status_code == 201


def test_validate_in_create_mode_predicts_the_refusal(policed: httpx.Client) -> None:
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": _broken("001190000007")}, {"name": "mode", "valueCode": "create"}]}
    r = policed.post("/Patient/$validate", json=body)
    assert r.status_code == 200 and ("error", "Patient.name[0].text") in _issues(r)
    # without a mode, the resource alone: it claims nothing, so R4 decides
    plain = policed.post("/Patient/$validate", json=_broken("001190000007")).json()
    assert [i["severity"] for i in plain["issue"]] == ["information"]


def test_a_bad_policy_stops_the_server_at_start(tmp_path: Path) -> None:
    srv: Server = make_server(tmp_path, require_profile="Patient=http://example.org/StructureDefinition/nope")
    with pytest.raises(RuntimeError, match="exited with 2: fhir-hub serve: FHIR_HUB_REQUIRE_PROFILE: profile .* is not known"):
        srv.start()


def test_validate_reports_a_profile_both_claimed_and_required_once(policed: httpx.Client) -> None:
    claimed = {**_broken("001190000008"), "meta": {"profile": [PATIENT]}}
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": claimed}, {"name": "mode", "valueCode": "create"}]}
    found = _issues(policed.post("/Patient/$validate", json=body))
    assert found.count(("error", "Patient.name[0].text")) == 1, found
