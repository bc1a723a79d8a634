"""HL7 v2 ADT^A40 (merge patient) into the MPI, end to end: messages imported with ``fhir-hub
import --format hl7v2`` into a real server (uvicorn, SQLite) with reconciliation on; the prior
record's person is merged into the survivor's, ``$mpi-unmerge`` undoes it, and a re-sent
message does not redo what a steward undid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from fhir_hub.cli.main import app
from fhir_hub.mapping.systems import NATIONAL_ID
from fhir_hub.mpi.service import REPLACED_ACTOR
from tests.conftest import Server, fhir_client, make_server

runner = CliRunner()
GOLDEN = "urn:fhir-hub:mpi|golden"
MSH = "MSH|^~\\&|HIS_SYNTH|00999|FHIRHUB|HUB|{ts}||{kind}|{mid}|P|2.5"
#: The facility's duplicate registration: its own number only, no diacritics, another birth date,
#: so matching makes it a person of its own.
PRIOR = "\r".join([MSH.format(ts="202503011000", kind="ADT^A04", mid="MSG0041"), "EVN|A04|202503011000",
                   "PID|1||BN2025009999^^^00999^PI||Nguyen^Mau^Thi||19690513|F",
                   "PV1|1|O|PK01||||||||||||||||00999.2025.NGT.009999"]) + "\r"
SURVIVOR_NID = "079168003456"
#: The survivor (personal ID and a newer number) and the merge of BN2025009999 into it.
A40 = "\r".join([MSH.format(ts="202503081000", kind="ADT^A40^ADT_A39", mid="MSG0040"), "EVN|A40|202503081000",
                 f"PID|1||{SURVIVOR_NID}^^^BCA^NI~BN2025000101^^^00999^PI||Nguyễn^Mẫu^Thị||19680315|F",
                 "MRG|BN2025009999^^^00999^PI"]) + "\r"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Server]:
    srv = make_server(tmp_path, mpi="on").start()
    yield srv
    srv.stop()


def _import(hub: Server, path: Path, text: str) -> None:
    path.write_bytes(text.encode())
    result = runner.invoke(app, ["import", str(path), "--format", "hl7v2", "--base", hub.base])
    assert result.exit_code == 0, result.output


def _patient_by(c: httpx.Client, value: str) -> dict[str, Any]:
    found = c.get("/Patient", params={"identifier": value, "_tag:not": GOLDEN}).json().get("entry", [])
    assert len(found) == 1, value
    return dict(found[0]["resource"])


def _golden_of(c: httpx.Client, sid: str) -> str:
    link = c.get("/Basic", params={"subject": f"Patient/{sid}", "code": "urn:fhir-hub:mpi-link|match"}).json()
    entries = link.get("entry", [])
    assert len(entries) == 1, sid
    return str(entries[0]["resource"]["identifier"][0]["value"])


def _sources(c: httpx.Client, gid: str) -> set[str]:
    body = c.get(f"/Patient/{gid}").json()
    return {ln["other"]["reference"] for ln in body.get("link", []) if ln["type"] == "seealso"}


def test_adt_a40_merges_the_prior_person_into_the_survivor_and_unmerge_undoes_it(hub: Server, tmp_path: Path) -> None:
    with fhir_client(hub) as c:
        _import(hub, tmp_path / "prior.hl7", PRIOR)
        prior = _patient_by(c, "BN2025009999")
        prior_golden = _golden_of(c, prior["id"])
        assert _sources(c, prior_golden) == {f"Patient/{prior['id']}"}

        _import(hub, tmp_path / "a40.hl7", A40)
        survivor = _patient_by(c, f"{NATIONAL_ID}|{SURVIVOR_NID}")
        into = _golden_of(c, survivor["id"])
        assert into != prior_golden
        # the prior record is retired as before, and its person is now the survivor's
        patched = c.get(f"/Patient/{prior['id']}").json()
        assert patched["active"] is False
        assert _golden_of(c, prior["id"]) == into
        assert _sources(c, into) == {f"Patient/{prior['id']}", f"Patient/{survivor['id']}"}
        gone = c.get(f"/Patient/{prior_golden}").json()
        assert gone["active"] is False
        assert gone["link"] == [{"other": {"reference": f"Patient/{into}"}, "type": "replaced-by"}]
        assert {"other": {"reference": f"Patient/{prior_golden}"}, "type": "replaces"} in c.get(
            f"/Patient/{into}").json()["link"]
        golden = c.get("/Patient", params={"identifier": "BN2025009999", "_tag": GOLDEN}).json()["entry"]
        assert [e["resource"]["id"] for e in golden] == [into]
        record = c.get(f"/Basic?subject=Patient/{prior['id']}&code=urn:fhir-hub:mpi-link|match").json()
        ext = {p["url"]: p for p in record["entry"][0]["resource"]["extension"][0]["extension"]}
        assert ext["rule"]["valueCode"] == "merge" and ext["actor"]["valueString"] == REPLACED_ACTOR
        assert ext["previous"]["valueReference"]["reference"] == f"Patient/{prior_golden}"
        assert "replaced-by" in ext["reason"]["valueString"]
        audits = c.get("/AuditEvent", params={"subtype": "urn:fhir-hub:mpi-audit|merge"}).json().get("entry", [])
        assert len(audits) == 1

        # the steward undoes it: both persons as they were
        r = c.post("/Patient/$mpi-unmerge", json={"resourceType": "Parameters", "parameter": [
            {"name": "from", "valueString": prior_golden}]})
        assert r.status_code == 200, r.text
        assert _golden_of(c, prior["id"]) == prior_golden
        assert _sources(c, prior_golden) == {f"Patient/{prior['id']}"}
        assert _sources(c, into) == {f"Patient/{survivor['id']}"}

        # the same message again changes nothing of the MPI: the prior already said replaced-by
        _import(hub, tmp_path / "a40-again.hl7", A40)
        assert _golden_of(c, prior["id"]) == prior_golden
        assert _sources(c, into) == {f"Patient/{survivor['id']}"}
        assert len(c.get("/AuditEvent", params={"subtype": "urn:fhir-hub:mpi-audit|merge"}).json().get("entry", [])) == 1


def test_a_rest_patient_replaced_by_a_literal_reference_merges_and_a_plain_write_does_not(hub: Server) -> None:
    """The same through REST: a PUT of a source Patient with ``link`` ``replaced-by`` a literal
    reference merges the persons; a link to an identifier no Patient has merges nothing."""
    with fhir_client(hub) as c:
        a = {"resourceType": "Patient", "id": "dup-a", "name": [{"family": "Lê", "given": ["Văn", "Sơn"]}],
             "gender": "male", "birthDate": "1990-01-02"}
        b = {"resourceType": "Patient", "id": "dup-b", "name": [{"family": "Phạm", "given": ["Thị", "Hoa"]}],
             "gender": "female", "birthDate": "1975-06-07"}
        for p in (a, b):
            assert c.put(f"/Patient/{p['id']}", json=p).status_code == 201
        ga, gb = _golden_of(c, "dup-a"), _golden_of(c, "dup-b")
        assert ga != gb
        unknown = {**a, "link": [{"other": {"identifier": {"system": "urn:oid:1.2.3", "value": "none"}},
                                  "type": "replaced-by"}]}
        assert c.put("/Patient/dup-a", json=unknown).status_code == 200
        assert _golden_of(c, "dup-a") == ga
        merged = {**a, "active": False, "link": [{"other": {"reference": "Patient/dup-b"}, "type": "replaced-by"}]}
        assert c.put("/Patient/dup-a", json=merged).status_code == 200
        assert _golden_of(c, "dup-a") == gb
        assert _sources(c, gb) == {"Patient/dup-a", "Patient/dup-b"}
