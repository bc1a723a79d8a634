"""Every write path goes through matching, end to end over uvicorn and SQLite with reconciliation
on: a claims import, a bulk load of facility copies (ndjson and transaction bundles), an ndjson
import below the REST layer (``fhir-hub import --db``, then ``fhir-hub mpi reconcile``; a reconciled
store moved as it is), batch
entries and PATCH — each ends with one golden record per person."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from fhir_hub.cli.main import app
from fhir_hub.mapping.systems import INSURANCE_NUMBER, NATIONAL_ID
from fhir_hub.mpi.service import SERVER_CONFIG, link_id
from tests.conftest import Server, fhir_client, make_server
from tests.mapping.conftest import sample_files
from tests.mpi.conftest import patient

runner = CliRunner()
GOLDEN = "urn:fhir-hub:mpi|golden"
SITE_A, SITE_B = "urn:oid:1.2.3.site-a", "urn:oid:1.2.3.site-b"
#: (name, sex): the given names all differ, so no two persons match each other
PEOPLE = [("Nguyễn Văn An", "male"), ("Trần Thị Bích", "female"), ("Lê Văn Cường", "male"),
          ("Phạm Thị Dung", "female"), ("Hoàng Văn Em", "male"), ("Vũ Thị Giang", "female"),
          ("Đặng Văn Hải", "male"), ("Bùi Thị Khánh", "female"), ("Đỗ Văn Long", "male")]


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Server]:
    srv = make_server(tmp_path, mpi="on").start()
    yield srv
    srv.stop()


def fold(text: str) -> str:
    import unicodedata

    return "".join(ch for ch in unicodedata.normalize("NFD", text.replace("Đ", "D").replace("đ", "d"))
                   if unicodedata.category(ch) != "Mn")


def copies(i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Person ``i`` as site A sends it (complete) and as site B does, with a fault by ``i % 3``:
    lost diacritics (same personal ID), no personal ID (same BHYT number, another card prefix),
    neither ID (matched on name, birth date, sex, address and phone)."""
    name, sex = PEOPLE[i]
    nid = f"001{0 if sex == 'male' else 1}{80 + i:02d}{i:03d}{i:03d}"
    card = f"DN4010{i:09d}"
    birth, phone = f"19{80 + i}-0{1 + i % 9}-1{i % 10}", f"09{i:08d}"
    a = patient(name=name, birth=birth, sex=sex, cccd=nid, card=card, phone=phone)
    a["identifier"].append({"system": SITE_A, "value": f"A-{i}"})
    a["id"] = f"site-a-{i}"
    fault = i % 3
    b = patient(name=fold(name) if fault == 0 else name, birth=birth, sex=sex, cccd=nid if fault == 0 else None,
                card=("HC4" + card[3:]) if fault == 1 else None, phone=phone)
    b["identifier"].append({"system": SITE_B, "value": f"B-{i}"})
    return a, b


def goldens(c: httpx.Client, system: str, value: str) -> list[dict[str, Any]]:
    r = c.get("/Patient", params={"identifier": f"{system}|{value}", "_tag": GOLDEN})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def count(c: httpx.Client, rtype: str, **params: str) -> int:
    r = c.get(f"/{rtype}", params={**params, "_summary": "count"})
    assert r.status_code == 200, r.text
    return int(r.json()["total"])


def sources(golden: dict[str, Any]) -> list[str]:
    return sorted(ln["other"]["reference"] for ln in golden.get("link", []) if ln["type"] == "seealso")


def one_golden_per_person(c: httpx.Client) -> None:
    assert count(c, "Patient", _tag=GOLDEN) == len(PEOPLE)
    for i in range(len(PEOPLE)):
        found = goldens(c, SITE_A, f"A-{i}")
        assert len(found) == 1, f"person {i}"
        assert {(SITE_A, f"A-{i}"), (SITE_B, f"B-{i}")} <= {(x["system"], x["value"]) for x in found[0]["identifier"]}
        assert len(sources(found[0])) == 2, f"person {i}"


# -------------------------------------------------------------------------- fhir-hub load


def test_bulk_load_of_two_sites_copies_ends_with_one_golden_per_person(hub: Server, tmp_path: Path) -> None:
    site_a, site_b = tmp_path / "a", tmp_path / "b"
    site_a.mkdir()
    site_b.mkdir()
    pairs = [copies(i) for i in range(len(PEOPLE))]
    (site_a / "Patient.ndjson").write_bytes(b"\n".join(orjson.dumps(a) for a, _ in pairs))
    for i, (_, b) in enumerate(pairs):  # site B: one transaction per visit, the Patient with an Observation
        uuid = f"urn:uuid:00000000-0000-0000-0000-{i:012d}"
        obs = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
               "subject": {"reference": uuid}, "valueQuantity": {"value": 60 + i, "unit": "kg"}}
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": uuid, "resource": b, "request": {"method": "POST", "url": "Patient"}},
            {"resource": obs, "request": {"method": "POST", "url": "Observation"}}]}
        (site_b / f"visit-{i}.json").write_bytes(orjson.dumps(bundle))
    result = runner.invoke(app, ["load", str(site_a), str(site_b), "--base", hub.base, "--concurrency", "4"])
    assert result.exit_code == 0, result.output
    with fhir_client(hub) as c:
        one_golden_per_person(c)
        # a person's record covers what either site sent
        golden = goldens(c, SITE_A, "A-4")[0]
        everything = c.get(f"/Patient/{golden['id']}/$everything").json()
        assert "Observation" in {e["resource"]["resourceType"] for e in everything["entry"]}
    # loading the same files again changes no person
    result = runner.invoke(app, ["load", str(site_a), "--base", hub.base])
    assert result.exit_code == 0, result.output
    with fhir_client(hub) as c:
        assert count(c, "Patient", _tag=GOLDEN) == len(PEOPLE)


# -------------------------------------------------------------------------- fhir-hub import-claims


def test_claims_import_joins_the_persons_the_hub_has_and_imports_twice_without_duplicates(hub: Server) -> None:
    """Sample 1's first patient is known from an EMR copy without a personal ID (same BHYT
    number): the claim's copy links to it. Its second one is known with the personal ID: the
    claim's ``ifNoneExist`` finds that source, not its golden record (which carries the ID too)."""
    with fhir_client(hub) as c:
        emr = [{"resourceType": "Patient", "name": [{"text": "Nguyen Thi Mau", "family": "Nguyen", "given": ["Thi", "Mau"]}],
                "gender": "female", "birthDate": "1968-03-15",
                "identifier": [{"system": INSURANCE_NUMBER, "value": "HC4795395358183"},
                               {"system": SITE_A, "value": "EMR-1"}]},
               {"resourceType": "Patient", "name": [{"text": "Trần Văn Thử"}], "gender": "male",
                "birthDate": "1955-11-20", "identifier": [{"system": NATIONAL_ID, "value": "001055506052"},
                                                          {"system": SITE_A, "value": "EMR-2"}]}]
        known = [c.post("/Patient", json=p).json()["id"] for p in emr]
    files = [str(p) for p in sample_files()]
    for _ in range(2):
        result = runner.invoke(app, ["import-claims", *files, "--base", hub.base])
        assert result.exit_code == 0, result.output
    with fhir_client(hub) as c:
        assert count(c, "Patient", _tag=GOLDEN) == 6  # six persons in the samples
        for nid in ("079168864770", "001055506052", "048048888282", "001322661582", "079050463322", "031190058009"):
            assert len(goldens(c, NATIONAL_ID, nid)) == 1, nid
        mau = goldens(c, NATIONAL_ID, "079168864770")[0]
        assert len(sources(mau)) == 2 and f"Patient/{known[0]}" in sources(mau)
        assert (SITE_A, "EMR-1") in {(x["system"], x["value"]) for x in mau["identifier"]}
        thu = goldens(c, NATIONAL_ID, "001055506052")[0]
        assert sources(thu) == [f"Patient/{known[1]}"]
        # the claim's encounter is on the source it found, and in the golden record's $everything
        enc = c.get("/Encounter", params={"subject": f"Patient/{known[1]}"}).json()
        assert len(enc["entry"]) == 1
        everything = c.get(f"/Patient/{thu['id']}/$everything").json()
        assert enc["entry"][0]["resource"]["id"] in {e["resource"]["id"] for e in everything["entry"]}
        assert count(c, "Encounter") == 6


def test_conditional_writes_never_target_a_golden_record(hub: Server) -> None:
    a, _ = copies(0)
    nid = next(x["value"] for x in a["identifier"] if x["system"] == NATIONAL_ID)
    token = f"{NATIONAL_ID}|{nid}"
    with fhir_client(hub) as c:
        source = c.put("/Patient/site-a-0", json=a).json()["id"]
        golden = goldens(c, NATIONAL_ID, nid)[0]
        # the golden record carries the ID too, yet If-None-Exist finds the one source
        r = c.post("/Patient", json=copies(0)[1], headers={"If-None-Exist": f"identifier={token}"})
        assert (r.status_code, r.json()["id"]) == (200, source)
        # a conditional update updates the source; the golden record follows it
        b = {**a, "telecom": [{"system": "phone", "value": "0987654321"}]}
        r = c.put("/Patient", params={"identifier": token}, json=b)
        assert (r.status_code, r.json()["id"]) == (200, source)
        after = c.get(f"/Patient/{golden['id']}").json()
        assert after["telecom"] == [{"system": "phone", "value": "0987654321"}]
        # a conditional reference resolves to the source
        obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
               "subject": {"reference": f"Patient?identifier={token}"}}
        r = c.post("/", json={"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": obs, "request": {"method": "POST", "url": "Observation"}}]})
        assert r.status_code == 200, r.text
        made = r.json()["entry"][0]["response"]["location"].split("/")[1]
        assert c.get(f"/Observation/{made}").json()["subject"]["reference"] == f"Patient/{source}"
        # a conditional delete deletes the source; the golden record, left with none, is retired
        assert c.delete("/Patient", params={"identifier": token}).status_code == 200
        assert c.get(f"/Patient/{source}").status_code == 410
        assert c.get(f"/Patient/{golden['id']}").status_code == 410


# -------------------------------------------------------------------------- batch, PATCH


def test_batch_entries_and_patch_go_through_matching(hub: Server) -> None:
    with fhir_client(hub) as c:
        a, b = copies(3)
        r = c.post("/", json={"resourceType": "Bundle", "type": "batch", "entry": [
            {"resource": a, "request": {"method": "PUT", "url": "Patient/site-a-3"}},
            {"resource": b, "request": {"method": "POST", "url": "Patient"}}]})
        assert r.status_code == 200, r.text
        assert [e["response"]["status"][:3] for e in r.json()["entry"]] == ["201", "201"]
        golden = goldens(c, SITE_A, "A-3")[0]
        assert len(sources(golden)) == 2
        # site B's copy of person 4 without any identifier that matches, then PATCHed with the personal ID
        a4, b4 = copies(4)
        assert c.put("/Patient/site-a-4", json=a4).status_code == 201
        b4["identifier"] = [{"system": SITE_B, "value": "B-4"}]
        b4["name"] = [{"text": "Someone Else"}]
        b4.pop("telecom")
        made = c.post("/Patient", json=b4).json()["id"]
        assert len(goldens(c, SITE_B, "B-4")) == 1 and goldens(c, SITE_B, "B-4") != goldens(c, SITE_A, "A-4")
        nid = next(x for x in a4["identifier"] if x["system"] == NATIONAL_ID)
        r = c.patch(f"/Patient/{made}", content=orjson.dumps([{"op": "add", "path": "/identifier/-", "value": nid}]),
                    headers={"Content-Type": "application/json-patch+json"})
        assert r.status_code == 200, r.text
        found = goldens(c, SITE_A, "A-4")
        assert len(found) == 1 and f"Patient/{made}" in sources(found[0])
        assert count(c, "Patient", _tag=GOLDEN) == 2  # b4's own golden record was retired when it moved


# -------------------------------------------------------------------------- fhir-hub import --db


def test_ndjson_import_below_the_rest_layer_is_reconciled(tmp_path: Path) -> None:
    lines = []
    for i in range(len(PEOPLE)):
        for n, copy in enumerate(copies(i)):
            copy.setdefault("id", f"site-b-{i}")
            copy["meta"] = {"versionId": "1", "lastUpdated": f"2025-07-01T10:{i:02d}:0{n}Z"}
            lines.append(orjson.dumps(copy))
    export = tmp_path / "export"
    export.mkdir()
    (export / "Patient.ndjson").write_bytes(b"\n".join(lines))
    srv = make_server(tmp_path, mpi="on")
    env = {"FHIR_HUB_MPI": "on"}
    result = runner.invoke(app, ["import", str(export), "--db", str(srv.db)], env=env)
    assert result.exit_code == 0, result.output
    assert "Counts verified." in result.output
    assert f"{2 * len(PEOPLE)} source Patient(s) matched" in " ".join(result.output.split())
    again = runner.invoke(app, ["mpi", "reconcile", "--db", str(srv.db)], env=env)
    assert again.exit_code == 0, again.output
    assert f"0 source Patient(s) matched, {2 * len(PEOPLE)} already linked" in " ".join(again.output.split())
    srv.start()
    try:
        with fhir_client(srv) as c:
            one_golden_per_person(c)
    finally:
        srv.stop()
    # a reconciled store moved with its golden and link records is taken as it is
    moved = tmp_path / "moved"
    assert runner.invoke(app, ["export", str(moved), "--db", str(srv.db)]).exit_code == 0
    result = runner.invoke(app, ["import", str(moved), "--db", str(tmp_path / "copy.db")], env=env)
    assert result.exit_code == 0, result.output
    assert f"0 source Patient(s) matched, {2 * len(PEOPLE)} already linked" in " ".join(result.output.split())


def test_hl7v2_and_csv_imports_twice_keep_one_golden_per_personal_id(hub: Server) -> None:
    data = Path(__file__).parents[1] / "mapping" / "data"
    hl7 = sorted(str(p) for p in (data / "hl7v2").glob("*.hl7") if p.stem not in ("faults", "adt_a40"))
    runs = [["import", *hl7, "--format", "hl7v2"],
            ["import", str(data / "csv" / "patients.csv"), "--format", "csv", "--spec", "patients"]]
    counts = []
    for _ in range(2):
        for args in runs:
            result = runner.invoke(app, [*args, "--base", hub.base])
            assert result.exit_code == 0, result.output
        with fhir_client(hub) as c:
            counts.append((count(c, "Patient", _tag=GOLDEN), count(c, "Patient", **{"_tag:not": GOLDEN})))
            found = c.get("/Patient", params={"_tag:not": GOLDEN, "_count": "500"}).json()
            ids = {i["value"] for e in found["entry"] for i in e["resource"].get("identifier", [])
                   if i.get("system") == NATIONAL_ID}
            assert ids  # the samples carry personal IDs
            for nid in ids:
                assert len(goldens(c, NATIONAL_ID, nid)) == 1, nid
    assert counts[0] == counts[1]  # the second import added no person and no copy
    assert counts[0][0] <= counts[0][1]


def test_a_blocking_key_shared_by_more_goldens_than_the_server_compares_is_skipped_and_said(hub: Server) -> None:
    """205 persons born in 1985 in one commune share the key ``cy:00004|1985``, more than the
    write path compares (``SERVER_CONFIG.max_block``): a copy without identifiers is still linked by
    its name keys, and its link record says which key was too common."""
    assert SERVER_CONFIG.max_block is not None and SERVER_CONFIG.max_block < 205
    rng = random.Random(6)  # given names of three random syllables: no two alike
    names = sorted({"".join(rng.choice("bcdghklmnpqrstvx") + rng.choice("aeiouy") for _ in range(3)).title()
                    for _ in range(400)})[:205]
    entries = []
    for i, name in enumerate(names):
        body = patient(name=f"Trịnh Văn {name}", birth=f"1985-{1 + i % 12:02d}-{1 + i % 28:02d}", cccd=None,
                       card=None, phone=f"08{i:08d}")
        del body["identifier"]  # none: only the probabilistic rule
        entries.append({"resource": {**body, "id": f"crowd-{i}"}, "request": {"method": "PUT", "url": f"Patient/crowd-{i}"}})
    with fhir_client(hub) as c:
        r = c.post("/", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
        assert r.status_code == 200, r.text
        assert count(c, "Patient", _tag=GOLDEN) == 205
        copy = {k: v for k, v in entries[150]["resource"].items() if k not in ("id", "telecom")}
        copy["name"] = [{"text": f"Trinh Van {fold(names[150])}"}]
        made = c.post("/Patient", json=copy).json()["id"]
        linked, crowd = (c.get(f"/Basic/{link_id(sid)}").json() for sid in (made, "crowd-150"))
        assert linked["identifier"] == crowd["identifier"]  # the same golden record
        reasons = [p["valueString"] for p in linked["extension"][0]["extension"] if p["url"] == "reason"]
        assert any(r.startswith("blocking keys too common to use: cy:00004|1985") for r in reasons), reasons
