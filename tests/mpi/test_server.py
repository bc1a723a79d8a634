"""Reconciliation on the server, end to end over HTTP with ``FHIR_HUB_MPI=on``: each rule on the
write paths, review items, the stewardship round trips, ``Patient/$match`` and concurrency."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_hub.mpi.features import NATIONAL_ID
from fhir_hub.mpi.service import GOLDEN_ID, LINK_STATE
from tests.conftest import Server, fhir_client, make_server
from tests.mpi.conftest import address, patient

GOLDEN = "urn:fhir-hub:mpi|golden"
_serial = itertools.count(101)


def cccd(year: int = 1985, sex_digit: int = 0) -> str:
    """A fresh valid personal ID (Hà Nội prefix; sex digit 0 male, 1 female, 1900s) for one
    test's person, at least two digits away from every other (one digit apart is a typo)."""
    serial = f"{next(_serial) % 1000:03d}"
    return f"001{sex_digit}{year % 100:02d}{serial}{serial}"


def facility(resource: dict[str, Any], system: str, mrn: str) -> dict[str, Any]:
    resource["identifier"].append({"system": system, "value": mrn})
    return resource


def create(c: httpx.Client, resource: dict[str, Any]) -> str:
    if not resource["identifier"]:
        del resource["identifier"]
    r = c.post("/Patient", json=resource)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def goldens(c: httpx.Client, national_id: str) -> list[dict[str, Any]]:
    r = c.get("/Patient", params={"identifier": f"{NATIONAL_ID}|{national_id}", "_tag": GOLDEN})
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def golden_of(c: httpx.Client, sid: str) -> dict[str, Any]:
    r = c.post("/Patient/$mpi-explain", json=params(patient=f"Patient/{sid}"))
    assert r.status_code == 200, r.text
    link = next(p for p in r.json()["parameter"] if p["name"] == "link")
    gid = next(p["valueString"] for p in link["part"] if p["name"] == "golden")
    body: dict[str, Any] = c.get(f"/Patient/{gid}").json()
    return body


def params(**values: str) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": k, "valueString": v} for k, v in values.items()]}


def sources(golden: dict[str, Any]) -> list[str]:
    return [ln["other"]["reference"].split("/")[1] for ln in golden.get("link", []) if ln["type"] == "seealso"]


def content(body: dict[str, Any]) -> dict[str, Any]:
    """A resource without its version metadata: what 'restored exactly' compares."""
    meta = {k: v for k, v in body.get("meta", {}).items() if k not in ("versionId", "lastUpdated")}
    return {**body, "meta": meta}


def live(c: httpx.Client, gid: str) -> dict[str, Any] | None:
    r = c.get(f"/Patient/{gid}")
    return content(r.json()) if r.status_code == 200 else None


# -------------------------------------------------------------------------- the rules on write


def test_two_facilities_copies_by_personal_id_make_one_golden_with_both_identifiers(c: httpx.Client) -> None:
    nid = cccd()
    a = create(c, facility(patient(name="Trần Văn Khoa", cccd=nid, card=None), "urn:oid:1.2.3.bvbm", "BM-1"))
    b = create(c, facility(patient(name="TRAN VAN KHOA", cccd=nid, card=None, phone=None), "urn:oid:1.2.3.bvcr",
                           "CR-9"))
    found = goldens(c, nid)
    assert len(found) == 1
    golden = found[0]
    assert sorted(sources(golden)) == sorted([a, b])
    systems = {(i["system"], i["value"]) for i in golden["identifier"]}
    assert {(NATIONAL_ID, nid), ("urn:oid:1.2.3.bvbm", "BM-1"), ("urn:oid:1.2.3.bvcr", "CR-9")} <= systems
    assert len(golden["identifier"]) == 3  # the shared personal ID once
    # sources are not rewritten: still their first version, no link added
    assert c.get(f"/Patient/{a}").json()["meta"]["versionId"] == "1"
    assert "link" not in c.get(f"/Patient/{b}").json()
    # without the tag, the search finds the sources too
    r = c.get("/Patient", params={"identifier": f"{NATIONAL_ID}|{nid}"}).json()
    assert r["total"] if "total" in r else len(r["entry"]) == 3
    # the link record says how the link was made
    explain = c.post("/Patient/$mpi-explain", json=params(patient=f"Patient/{b}")).json()
    link = {p["name"]: p.get("valueString", p.get("valueDecimal")) for p in
            next(p for p in explain["parameter"] if p["name"] == "link")["part"]}
    assert (link["state"], link["rule"], link["linkSource"], link["golden"]) == (
        "match", "national-id", "auto", golden["id"])
    assert link["actor"] and link["time"]
    records = c.get("/Basic", params={"identifier": f"{GOLDEN_ID}|{golden['id']}",
                                      "code": f"{LINK_STATE}|match"}).json()
    assert len(records["entry"]) == 2


def test_personal_id_with_birth_year_conflict_is_a_review_item_not_a_link(c: httpx.Client) -> None:
    nid = cccd()
    a = create(c, patient(name="Lê Thị Mai", cccd=nid, card=None, sex="male"))
    b = create(c, patient(name="Lê Thị Mai", cccd=nid, card=None, sex="male", birth="2012-05-06"))  # a child
    assert len(goldens(c, nid)) == 2  # not merged
    ga, gb = golden_of(c, a), golden_of(c, b)
    assert ga["id"] != gb["id"]
    queue = c.get("/$mpi-review").json()
    item = next(e["resource"] for e in queue["entry"] if e["resource"]["subject"]["reference"] == f"Patient/{b}")
    assert item["identifier"][0]["value"] == ga["id"]
    reasons = [p["valueString"] for p in item["extension"][0]["extension"] if p["url"] == "reason"]
    assert any("birth year 2012 != 1985" in r for r in reasons)
    # accepting the review links them; b's own golden record goes away
    r = c.post("/Patient/$mpi-link", json=params(source=f"Patient/{b}", golden=f"Patient/{ga['id']}",
                                                  actor="steward-1"))
    assert r.status_code == 200, r.text
    assert c.get(f"/Patient/{gb['id']}").status_code == 410
    assert sorted(sources(golden_of(c, b))) == sorted([a, b])
    assert all(e["resource"]["id"] != item["id"] for e in c.get("/$mpi-review").json().get("entry", []))


def test_rejecting_a_review_keeps_two_persons(c: httpx.Client) -> None:
    nid = cccd()
    a = create(c, patient(name="Phạm Quốc Bảo", cccd=nid, card=None))
    b = create(c, patient(name="Phạm Quốc Bảo", cccd=nid, card=None, sex="female"))
    ga = golden_of(c, a)
    r = c.post("/Patient/$mpi-unlink", json=params(source=f"Patient/{b}", golden=f"Patient/{ga['id']}"))
    assert r.status_code == 200, r.text
    assert len(goldens(c, nid)) == 2
    subjects = [e["resource"]["subject"]["reference"] for e in c.get("/$mpi-review").json().get("entry", [])]
    assert f"Patient/{b}" not in subjects


def test_insurance_number_links_without_a_personal_id(c: httpx.Client) -> None:
    card = f"DN40101{next(_serial):08d}"
    a = create(c, patient(name="Đỗ Minh Tâm", cccd=None, card=card))
    b = create(c, patient(name="Do Minh Tam", cccd=None, card="HC4" + card[3:], phone=None))
    golden = golden_of(c, a)
    assert sorted(sources(golden)) == sorted([a, b])


@pytest.mark.parametrize(("year", "incoming", "band"), [
    # same name, full date, sex, commune, phone: above the link threshold
    (1990, {"name": "Vũ Thị Hạnh", "birth": "1990-07-21"}, "link"),
    # same name, another month of the same year, no phone: between the thresholds
    (1991, {"name": "Vũ Thị Hạnh", "birth": "1991-02-03", "phone": None}, "review"),
    # another given name, no phone, another province: below the review threshold
    (1992, {"name": "Vũ Thị Lan", "birth": "1992-07-21", "phone": None, "addr": address("79", "26734")}, "new"),
])
def test_probabilistic_bands(c: httpx.Client, year: int, incoming: dict[str, Any], band: str) -> None:
    phone = f"09{next(_serial):08d}"
    a = create(c, patient(name="Vũ Thị Hạnh", birth=f"{year}-07-21", sex="female", cccd=None, card=None, phone=phone))
    b = create(c, patient(**{"sex": "female", "cccd": None, "card": None, "phone": phone, **incoming}))
    ga, gb = golden_of(c, a), golden_of(c, b)
    assert (ga["id"] == gb["id"]) is (band == "link")
    queue = [e["resource"] for e in c.get("/$mpi-review", params={"_count": "500"}).json().get("entry", [])]
    under_review = [q for q in queue if q["subject"]["reference"] == f"Patient/{b}"]
    assert bool(under_review) is (band == "review")
    if under_review:
        assert under_review[0]["identifier"][0]["value"] == ga["id"]


def test_update_of_a_linked_source_updates_its_golden_record(c: httpx.Client) -> None:
    nid = cccd()
    a = create(c, patient(name="Hoàng Văn Nam", cccd=nid, card=None))
    body = c.get(f"/Patient/{a}").json()
    body["identifier"].append({"system": "urn:oid:1.2.3.bvk", "value": "K-77"})
    assert c.put(f"/Patient/{a}", json=body).status_code == 200
    golden = golden_of(c, a)
    assert {"system": "urn:oid:1.2.3.bvk", "value": "K-77"} in golden["identifier"]
    assert len(goldens(c, nid)) == 1


# -------------------------------------------------------------------------- transactions


def bundle(*patients: dict[str, Any], broken: bool = False) -> dict[str, Any]:
    for p in patients:
        if not p["identifier"]:
            del p["identifier"]
    entries: list[dict[str, Any]] = [{"fullUrl": f"urn:uuid:00000000-0000-0000-0000-{i:012d}", "resource": p,
                                      "request": {"method": "POST", "url": "Patient"}}
                                     for i, p in enumerate(patients)]
    if broken:
        entries.append({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                     "subject": {"reference": "Patient/does-not-exist"}},
                        "request": {"method": "POST", "url": "Observation"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def test_two_copies_in_one_transaction_make_one_golden(c: httpx.Client) -> None:
    nid = cccd(sex_digit=1)
    r = c.post("/", json=bundle(patient(name="Bùi Thu Trang", cccd=nid, card=None, sex="female", birth="1985-01-01"),
                                patient(name="Bui Thu Trang", cccd=nid, card=None, sex="female", birth="1985-01-01")))
    assert r.status_code == 200, r.text
    assert len(goldens(c, nid)) == 1


def test_a_failed_transaction_leaves_no_golden_record(c: httpx.Client) -> None:
    nid = cccd()
    records = c.get("/Basic", params={"_summary": "count"}).json()["total"]
    r = c.post("/", json=bundle(patient(name="Ngô Gia Huy", cccd=nid, card=None), broken=True))
    assert r.status_code == 409, r.text
    assert goldens(c, nid) == []
    assert c.get("/Basic", params={"_summary": "count"}).json()["total"] == records


def test_concurrent_transactions_of_one_new_person_end_with_one_golden(c: httpx.Client, srv: Server) -> None:
    people = [cccd() for _ in range(6)]
    barrier = threading.Barrier(2 * len(people))
    statuses: list[int] = []

    def send(nid: str, side: int) -> None:
        with fhir_client(srv) as client:
            body = bundle(facility(patient(name="Đặng Hữu Phước", cccd=nid, card=None, phone=None),
                                   f"urn:oid:1.2.3.site{side}", f"S{side}-{nid[-4:]}"))
            barrier.wait()
            statuses.append(client.post("/", json=body).status_code)

    threads = [threading.Thread(target=send, args=(nid, side)) for nid in people for side in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * len(threads)
    for nid in people:
        found = goldens(c, nid)
        assert len(found) == 1
        assert len(sources(found[0])) == 2
        assert {i["system"] for i in found[0]["identifier"]} >= {"urn:oid:1.2.3.site1", "urn:oid:1.2.3.site2"}


def test_one_new_person_sent_at_once_by_every_write_path_ends_with_one_golden(c: httpx.Client, srv: Server) -> None:
    """Four facilities send the same new person at the same moment, each its own way: a
    transaction, a create-on-update PUT, a batch entry (BHYT card only, no personal ID, no
    diacritics) and a conditional create; whatever order the writer takes them in, one person."""
    given = {"Thịnh": "Thinh", "Phúc": "Phuc", "Lộc": "Loc", "Tài": "Tai"}  # four persons, as unlike as names go
    people = [(cccd(1979), f"DN40101{next(_serial):08d}", g) for g in given]

    def copy(nid: str | None, card: str, site: int, name: str) -> dict[str, Any]:
        return facility(patient(name=name, birth="1979-05-06", cccd=nid, card=card, phone=None),
                        f"urn:oid:1.2.3.site{site}", f"S{site}-{card[-4:]}")

    def requests(nid: str, card: str, g: str) -> list[tuple[str, str, dict[str, Any], dict[str, str]]]:
        name = f"Quách Văn {g}"
        single = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"resource": copy(None, "HC4" + card[3:], 3, f"Quach Van {given[g]}"),
             "request": {"method": "POST", "url": "Patient"}}]}
        return [("POST", "/", bundle(copy(nid, card, 1, name)), {}),
                ("PUT", f"/Patient/put-{card[-6:]}", {**copy(nid, card, 2, name), "id": f"put-{card[-6:]}"}, {}),
                ("POST", "/", single, {}),
                ("POST", "/Patient", copy(nid, card, 4, name),
                 {"If-None-Exist": f"identifier=urn:oid:1.2.3.site4|S4-{card[-4:]}"})]

    work = [r for nid, card, g in people for r in requests(nid, card, g)]
    barrier = threading.Barrier(len(work))
    statuses: list[int] = []

    def send(method: str, path: str, body: dict[str, Any], headers: dict[str, str]) -> None:
        with fhir_client(srv) as client:
            barrier.wait()
            r = client.request(method, path, json=body, headers=headers)
            entries = r.json().get("entry", []) if path == "/" else []
            statuses.append(max([r.status_code, *(int(e["response"]["status"][:3]) for e in entries)]))

    threads = [threading.Thread(target=send, args=w) for w in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [201] * len(work)  # every entry created
    queue = c.get("/$mpi-review", params={"_count": "500"}).json().get("entry", [])
    for nid, _, _ in people:
        found = goldens(c, nid)
        assert len(found) == 1
        assert len(sources(found[0])) == 4
        assert {f"urn:oid:1.2.3.site{n}" for n in range(1, 5)} <= {i["system"] for i in found[0]["identifier"]}
        assert all(q["resource"]["identifier"][0]["value"] != found[0]["id"] for q in queue)  # nothing left unsure


# -------------------------------------------------------------------------- round trips


def test_link_then_unlink_restores_both_golden_records_exactly(c: httpx.Client) -> None:
    a = create(c, patient(name="Lý Thanh Tùng", cccd=cccd(1970), card=None, birth="1970-01-01"))
    b = create(c, patient(name="Mai Anh Đức", cccd=cccd(1971), card=None, birth="1971-01-01"))
    ga, gb = golden_of(c, a)["id"], golden_of(c, b)["id"]
    before = (live(c, ga), live(c, gb))
    assert c.post("/Patient/$mpi-link", json=params(source=f"Patient/{b}", golden=f"Patient/{ga}")).status_code == 200
    assert live(c, gb) is None and sorted(sources(c.get(f"/Patient/{ga}").json())) == sorted([a, b])
    r = c.post("/Patient/$mpi-unlink", json=params(source=f"Patient/{b}"))
    assert r.status_code == 200, r.text
    assert (live(c, ga), live(c, gb)) == before


def test_unlink_then_link_restores_exactly(c: httpx.Client) -> None:
    nid = cccd()
    a = create(c, patient(name="Tạ Quang Vinh", cccd=nid, card=None))
    b = create(c, patient(name="Tạ Quang Vinh", cccd=nid, card=None, phone=None))
    gid = golden_of(c, a)["id"]
    before = live(c, gid)
    r = c.post("/Patient/$mpi-unlink", json=params(source=f"Patient/{b}")).json()
    new = next(p["valueString"] for p in r["parameter"] if p["name"] == "golden")
    assert new != gid and sources(c.get(f"/Patient/{new}").json()) == [b]
    assert len(goldens(c, nid)) == 2
    assert c.post("/Patient/$mpi-link", json=params(source=f"Patient/{b}", golden=f"Patient/{gid}")).status_code == 200
    assert live(c, gid) == before and live(c, new) is None


def test_merge_then_unmerge_restores_exactly(c: httpx.Client) -> None:
    n1, n2 = cccd(1960), cccd(1961)
    a = create(c, patient(name="Cao Văn Lực", cccd=n1, card=None, birth="1960-05-05"))
    b = create(c, patient(name="Cao Văn Lực", cccd=n2, card=None, birth="1961-05-05"))
    g1, g2 = golden_of(c, a)["id"], golden_of(c, b)["id"]
    before = (live(c, g1), live(c, g2))
    r = c.post("/Patient/$mpi-merge", json=params(**{"from": f"Patient/{g1}", "into": f"Patient/{g2}"}))
    assert r.status_code == 200, r.text
    merged, survivor = c.get(f"/Patient/{g1}").json(), c.get(f"/Patient/{g2}").json()
    assert merged["active"] is False and merged["link"] == [{"other": {"reference": f"Patient/{g2}"},
                                                             "type": "replaced-by"}]
    assert sorted(sources(survivor)) == sorted([a, b])
    assert {"other": {"reference": f"Patient/{g1}"}, "type": "replaces"} in survivor["link"]
    assert goldens(c, n1)[0]["id"] == g2  # the merged-away record no longer answers
    r = c.post("/Patient/$mpi-unmerge", json=params(**{"from": f"Patient/{g1}"}))
    assert r.status_code == 200, r.text
    assert (live(c, g1), live(c, g2)) == before


def test_stewardship_refusals(c: httpx.Client) -> None:
    a = create(c, patient(name="Kiều Thị Nga", cccd=cccd(sex_digit=1), card=None, sex="female"))
    g = golden_of(c, a)["id"]
    assert c.post("/Patient/$mpi-link", json=params(source=f"Patient/{g}", golden=f"Patient/{g}")).status_code == 400
    assert c.post("/Patient/$mpi-link", json=params(source=f"Patient/{a}", golden=f"Patient/{a}")).status_code == 404
    assert c.post("/Patient/$mpi-unmerge", json=params(**{"from": f"Patient/{g}"})).status_code == 409
    assert c.post("/Patient/$mpi-merge", json=params(**{"from": f"Patient/{g}", "into": f"Patient/{g}"})
                  ).status_code == 400
    assert c.post("/Patient/$mpi-link", json={"resourceType": "Patient"}).status_code == 400
    assert c.post("/Patient/$mpi-link", json=params(source=f"Patient/{a}")).status_code == 400


# -------------------------------------------------------------------------- $match


def test_match_scores_grades_and_only_certain(c: httpx.Client) -> None:
    nid = cccd(1977)
    phone = f"09{next(_serial):08d}"
    a = create(c, patient(name="Quách Tuấn Anh", cccd=nid, card=None, birth="1977-09-09", phone=phone))
    gid = golden_of(c, a)["id"]

    def run(resource: dict[str, Any], **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": resource}]}
        for k, v in extra.items():
            body["parameter"].append({"name": k, **v})
        r = c.post("/Patient/$match", json=body)
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    certain = run(patient(name="Quach Tuan Anh", cccd=nid, card=None, birth="1977-09-09", phone=None))
    top = certain["entry"][0]
    assert top["resource"]["id"] == gid and top["search"]["score"] == 1.0
    assert top["search"]["extension"] == [{"url": "http://hl7.org/fhir/StructureDefinition/match-grade",
                                           "valueCode": "certain"}]
    probable = run(patient(name="Quách Tuấn Anh", cccd=None, card=None, birth="1977-03-03", phone=None))
    hit = next(e for e in probable["entry"] if e["resource"]["id"] == gid)
    assert hit["search"]["extension"][0]["valueCode"] == "probable"
    assert 0 < hit["search"]["score"] < 1
    only = run(patient(name="Quách Tuấn Anh", cccd=None, card=None, birth="1977-03-03", phone=None),
               onlyCertainMatches={"valueBoolean": True})
    assert all(e["resource"]["id"] != gid for e in only.get("entry", []))
    one = run(patient(name="Quách Tuấn Anh", cccd=nid, card=None, birth="1977-09-09", phone=phone),
              count={"valueInteger": 1})
    assert len(one["entry"]) == 1
    assert c.post("/Patient/$match", json={"resourceType": "Parameters", "parameter": []}).status_code == 400


def test_operations_are_404_when_reconciliation_is_off(tmp_path: Path) -> None:
    off = make_server(tmp_path).start()
    try:
        with fhir_client(off) as client:
            client.post("/Patient", json=patient(cccd=cccd()))
            assert client.get("/Patient", params={"_tag": GOLDEN}).json().get("entry") is None
            assert client.get("/$mpi-review").status_code == 404
            assert client.post("/Patient/$match", json=params()).status_code == 404
    finally:
        off.stop()


# -------------------------------------------------------------------------- CLI


def test_cli_review_explain_link_unlink(c: httpx.Client, srv: Server) -> None:
    from typer.testing import CliRunner

    from fhir_hub.cli.main import app

    nid = cccd()
    a = create(c, patient(name="Lương Bá Thắng", cccd=nid, card=None))
    b = create(c, patient(name="Lương Bá Thắng", cccd=nid, card=None, birth="2010-01-01"))
    ga = golden_of(c, a)["id"]
    runner = CliRunner()
    out = runner.invoke(app, ["mpi", "review", "--base", srv.base, "--count", "500"], env={"COLUMNS": "400"})
    assert out.exit_code == 0, out.output
    assert f"Patient/{b}" in out.output and "national-id" in out.output
    out = runner.invoke(app, ["mpi", "explain", b, "--base", srv.base], env={"COLUMNS": "400"})
    assert out.exit_code == 0 and "reviews.reason" in out.output
    out = runner.invoke(app, ["mpi", "link", b, ga, "--base", srv.base, "--actor", "cli-steward"])
    assert out.exit_code == 0, out.output
    assert sorted(sources(golden_of(c, b))) == sorted([a, b])
    out = runner.invoke(app, ["mpi", "unlink", b, "--base", srv.base])
    assert out.exit_code == 0, out.output
    assert sources(golden_of(c, a)) == [a]
    out = runner.invoke(app, ["mpi", "merge", ga, ga, "--base", srv.base])
    assert out.exit_code == 1 and "itself" in out.output
