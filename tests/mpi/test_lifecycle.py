"""A source Patient's life after its first link, over uvicorn and SQLite with reconciliation on:
an update that changes what matching compares re-evaluates the link (moved, or sent to review,
with the golden record it left recorded so that unlink or accepting the review puts it back); a
delete takes it out of its golden record (recomputed, or retired with the last source) and
writing it again brings both back exactly; golden records are not the clients' to delete."""

from __future__ import annotations

from typing import Any

import httpx

from fhir_hub.mpi.features import NATIONAL_ID
from fhir_hub.mpi.service import link_id
from tests.mpi.conftest import patient
from tests.mpi.test_server import cccd, content, golden_of, goldens, live, params, sources


def put(c: httpx.Client, rid: str, resource: dict[str, Any]) -> None:
    if not resource["identifier"]:
        del resource["identifier"]
    r = c.put(f"/Patient/{rid}", json={**resource, "id": rid})
    assert r.status_code in (200, 201), r.text


def link_state(c: httpx.Client, sid: str) -> dict[str, Any]:
    record = c.get(f"/Basic/{link_id(sid)}").json()
    parts = record["extension"][0]["extension"]
    out: dict[str, Any] = {"state": record["code"]["coding"][0]["code"], "version": record["meta"]["versionId"],
                           "reason": [p["valueString"] for p in parts if p["url"] == "reason"]}
    out.update({p["url"]: p.get("valueCode", p.get("valueReference", {}).get("reference"))
                for p in parts if p["url"] in ("rule", "outcome", "linkSource", "previous", "golden")})
    return out


def audits(c: httpx.Client, sid: str) -> list[str]:
    r = c.get("/AuditEvent", params={"entity": f"Patient/{sid}", "_count": "100"}).json()
    return sorted(e["resource"]["subtype"][0]["code"] for e in r.get("entry", []))


def test_a_personal_id_corrected_to_another_persons_moves_the_source_and_unlink_undoes_it(c: httpx.Client) -> None:
    x, y = cccd(1975), cccd(1975)
    put(c, "lc-a1", patient(name="Trịnh Văn Quý", cccd=x, card=None, birth="1975-01-02", phone=None))
    alone = live(c, golden_of(c, "lc-a1")["id"])
    put(c, "lc-b1", patient(name="Trịnh Văn Quý", cccd=x, card=None, birth="1975-01-02", phone=None))
    put(c, "lc-q", patient(name="Mai Văn Tú", cccd=y, card=None, birth="1975-06-07", phone=None))
    gp, gq = golden_of(c, "lc-a1")["id"], golden_of(c, "lc-q")["id"]
    assert sorted(sources(golden_of(c, "lc-b1"))) == ["lc-a1", "lc-b1"]
    q_before = live(c, gq)
    # site B corrects its copy: it was Mai Văn Tú all along
    put(c, "lc-b1", patient(name="Mai Văn Tú", cccd=y, card=None, birth="1975-06-07", phone=None))
    assert golden_of(c, "lc-b1")["id"] == gq
    assert sorted(sources(golden_of(c, "lc-q"))) == ["lc-b1", "lc-q"]
    assert live(c, gp) == alone  # the person it left is what it was before the copy joined
    state = link_state(c, "lc-b1")
    assert (state["rule"], state["linkSource"], state["previous"]) == ("national-id", "auto", f"Patient/{gp}")
    assert any("re-matched after an update of Patient/lc-b1" in r for r in state["reason"])
    # undo: back into the person it left; the other is exactly as before the update
    r = c.post("/Patient/$mpi-unlink", json=params(source="Patient/lc-b1"))
    assert r.status_code == 200, r.text
    assert golden_of(c, "lc-b1")["id"] == gp
    assert live(c, gq) == q_before


def test_a_birth_year_that_now_conflicts_sends_the_link_to_review(c: httpx.Client) -> None:
    x = cccd(1981)
    put(c, "lc-a2", patient(name="Lý Thị Hoa", cccd=x, card=None, birth="1981-04-05", phone=None))
    put(c, "lc-b2", patient(name="Lý Thị Hoa", cccd=x, card=None, birth="1981-04-05", phone=None))
    gid = golden_of(c, "lc-a2")["id"]
    assert golden_of(c, "lc-b2")["id"] == gid
    put(c, "lc-b2", patient(name="Lý Thị Hoa", cccd=x, card=None, birth="2011-04-05", phone=None))
    own = golden_of(c, "lc-b2")["id"]
    assert own != gid and sources(golden_of(c, "lc-a2")) == ["lc-a2"]
    queue = [e["resource"] for e in c.get("/$mpi-review", params={"_count": "500"}).json().get("entry", [])]
    item = next(q for q in queue if q["subject"]["reference"] == "Patient/lc-b2")
    assert item["identifier"][0]["value"] == gid
    reasons = [p["valueString"] for p in item["extension"][0]["extension"] if p["url"] == "reason"]
    assert any("birth year 2011 != 1981" in r for r in reasons)
    assert any(f"no longer matches Patient/{gid}" in r for r in reasons)
    # accepting the review puts it back; its own golden record goes
    r = c.post("/Patient/$mpi-link", json=params(source="Patient/lc-b2", golden=f"Patient/{gid}"))
    assert r.status_code == 200, r.text
    assert sorted(sources(golden_of(c, "lc-a2"))) == ["lc-a2", "lc-b2"]
    assert c.get(f"/Patient/{own}").status_code == 410


def test_an_update_matching_rules_do_not_read_keeps_the_link_without_a_new_decision(c: httpx.Client) -> None:
    x = cccd(1990)
    body = patient(name="Tạ Minh Đức", cccd=x, card=None, birth="1990-09-09")
    put(c, "lc-a3", body)
    put(c, "lc-b3", patient(name="Ta Minh Duc", cccd=x, card=None, birth="1990-09-09"))
    before = link_state(c, "lc-b3")
    events = audits(c, "lc-b3")
    put(c, "lc-b3", {**patient(name="Ta Minh Duc", cccd=x, card=None, birth="1990-09-09"),
                     "communication": [{"language": {"text": "Vietnamese"}}]})
    assert link_state(c, "lc-b3") == before  # same version of the link record
    assert audits(c, "lc-b3") == events
    assert sorted(sources(golden_of(c, "lc-b3"))) == ["lc-a3", "lc-b3"]


def test_the_only_source_moving_retires_its_golden_record_and_unlink_brings_it_back(c: httpx.Client) -> None:
    x, y = cccd(1966), cccd(1966)
    put(c, "lc-p", patient(name="Hồ Văn Lâm", cccd=x, card=None, birth="1966-02-02", phone=None))
    put(c, "lc-s", patient(name="Hồ Văn Lăm", cccd=y, card=None, birth="1966-03-03", phone=None))
    gp, gs = golden_of(c, "lc-p")["id"], golden_of(c, "lc-s")["id"]
    s_before = live(c, gs)
    p_before = live(c, gp)
    s_copy = patient(name="Hồ Văn Lâm", cccd=x, card=None, birth="1966-02-02", phone=None)
    put(c, "lc-s", s_copy)  # it was the other person's copy with a wrong ID
    assert golden_of(c, "lc-s")["id"] == gp
    assert c.get(f"/Patient/{gs}").status_code == 410
    r = c.post("/Patient/$mpi-unlink", json=params(source="Patient/lc-s"))
    assert r.status_code == 200, r.text
    assert golden_of(c, "lc-s")["id"] == gs  # back under its own id
    assert live(c, gp) == p_before
    assert live(c, gs) is not None and live(c, gs) != s_before  # the source's content changed, not undone
    assert sources(golden_of(c, "lc-s")) == ["lc-s"]


def test_deleting_a_source_recomputes_its_golden_record_and_writing_it_again_restores_it(c: httpx.Client) -> None:
    x = cccd(1977, sex_digit=1)
    a = patient(name="Kiều Thị Nga", cccd=x, card=None, birth="1977-07-07", sex="female")
    b = patient(name="Kieu Thi Nga", cccd=x, card=None, birth="1977-07-07", sex="female", phone="0911111111")
    b["identifier"].append({"system": "urn:oid:1.2.3.site-b", "value": "B-77"})
    put(c, "lc-a4", a)
    gid = golden_of(c, "lc-a4")["id"]
    alone = live(c, gid)
    put(c, "lc-b4", b)
    both = live(c, gid)
    assert both != alone
    assert c.delete("/Patient/lc-b4").status_code == 200
    assert live(c, gid) == alone  # recomputed from the remaining source
    state = link_state(c, "lc-b4")
    assert (state["state"], state["outcome"], state["golden"]) == ("deleted", "source-deleted", f"Patient/{gid}")
    assert "delete" in audits(c, "lc-b4")
    explained = c.post("/Patient/$mpi-explain", json=params(patient="Patient/lc-b4"))
    assert explained.status_code == 200, explained.text
    link = {p["name"]: p.get("valueString") for p in
            next(p for p in explained.json()["parameter"] if p["name"] == "link")["part"]}
    assert (link["state"], link["golden"]) == ("deleted", gid)
    put(c, "lc-b4", b)  # the facility sends it again
    assert live(c, gid) == both
    assert link_state(c, "lc-b4")["state"] == "match"
    assert len(goldens(c, x)) == 1


def test_deleting_the_last_source_retires_the_golden_record_until_it_is_written_again(c: httpx.Client) -> None:
    x = cccd(1988)
    body = patient(name="Lục Văn Bình", cccd=x, card=None, birth="1988-08-08")
    put(c, "lc-a5", body)
    gid = golden_of(c, "lc-a5")["id"]
    before = live(c, gid)
    r = c.post("/", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": "Patient/lc-a5"}}]})
    assert r.status_code == 200, r.text
    assert c.get(f"/Patient/{gid}").status_code == 410
    assert goldens(c, x) == []
    put(c, "lc-a5", body)
    assert live(c, gid) == before
    assert golden_of(c, "lc-a5")["id"] == gid


def test_golden_records_cannot_be_deleted_or_written_by_clients(c: httpx.Client) -> None:
    x = cccd(1970)
    put(c, "lc-a6", patient(name="Chu Văn Sơn", cccd=x, card=None, birth="1970-01-01"))
    put(c, "lc-b6", patient(name="Chu Van Son", cccd=x, card=None, birth="1970-01-01"))
    gid = golden_of(c, "lc-a6")["id"]
    r = c.delete(f"/Patient/{gid}")
    assert r.status_code == 409
    assert "golden record" in r.json()["issue"][0]["diagnostics"]
    r = c.post("/", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": "Patient/lc-a6"}},
        {"request": {"method": "DELETE", "url": f"Patient/{gid}"}}]})
    assert r.status_code == 409
    assert c.get("/Patient/lc-a6").status_code == 200  # all or nothing
    assert content(c.get(f"/Patient/{gid}").json())["identifier"][0] == {"system": NATIONAL_ID, "value": x}
    # nor overwritten by a PUT that is not a golden record, nor edited, nor forged
    before = live(c, gid)
    r = c.put(f"/Patient/{gid}", json={**patient(name="Chu Văn Sơn", cccd=x, card=None), "id": gid})
    assert r.status_code == 409
    r = c.patch(f"/Patient/{gid}", content=b'[{"op": "replace", "path": "/gender", "value": "female"}]',
                headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 409 and r.json()["resourceType"] == "OperationOutcome"
    assert live(c, gid) == before
    forged = {**patient(name="Chu Văn Sơn", cccd=cccd(1970), card=None), "meta": {"tag": [{"system": "urn:fhir-hub:mpi",
                                                                                      "code": "golden"}]}}
    r = c.post("/Patient", json=forged)
    assert r.status_code == 409 and "golden record" in r.json()["issue"][0]["diagnostics"]


def test_a_stewards_link_stands_when_the_source_is_updated(c: httpx.Client) -> None:
    x, y = cccd(1984), cccd(1984)
    put(c, "lc-a7", patient(name="Ninh Văn Tùng", cccd=x, card=None, birth="1984-04-04", phone=None))
    put(c, "lc-b7", patient(name="Ninh Văn Tùng", cccd=y, card=None, birth="1984-04-04", phone=None))
    gid = golden_of(c, "lc-a7")["id"]
    assert golden_of(c, "lc-b7")["id"] != gid  # two IDs: two persons, until a steward says otherwise
    r = c.post("/Patient/$mpi-link", json=params(source="Patient/lc-b7", golden=f"Patient/{gid}", actor="steward-7"))
    assert r.status_code == 200, r.text
    # an update the rules alone would take out of the person (another name, another birth date)
    put(c, "lc-b7", patient(name="Lò Văn Pẩu", cccd=y, card=None, birth="1984-09-05", phone=None))
    assert golden_of(c, "lc-b7")["id"] == gid
    assert (link_state(c, "lc-b7")["linkSource"], link_state(c, "lc-b7")["rule"]) == ("manual", "manual")
    assert sorted(sources(golden_of(c, "lc-a7"))) == ["lc-a7", "lc-b7"]


def queued(c: httpx.Client, sid: str) -> list[str]:
    """The candidate golden records of ``sid``'s items in the review queue."""
    entries = c.get("/$mpi-review", params={"_count": "500"}).json().get("entry", [])
    return [e["resource"]["identifier"][0]["value"] for e in entries
            if e["resource"]["subject"]["reference"] == f"Patient/{sid}"]


def test_a_review_leaves_the_queue_while_its_source_or_candidate_is_deleted_and_comes_back(c: httpx.Client) -> None:
    x = cccd(1986)
    parent = patient(name="Giáp Văn Định", cccd=x, card=None, birth="1986-06-06", phone=None)
    child = patient(name="Giáp Văn Định", cccd=x, card=None, birth="2016-06-06", phone=None)  # the parent's ID
    put(c, "lc-a8", parent)
    put(c, "lc-b8", child)
    gid = golden_of(c, "lc-a8")["id"]
    assert queued(c, "lc-b8") == [gid]
    assert c.delete("/Patient/lc-a8").status_code == 200  # the candidate is retired with its source
    assert queued(c, "lc-b8") == []
    put(c, "lc-a8", parent)
    assert queued(c, "lc-b8") == [gid]
    assert c.delete("/Patient/lc-b8").status_code == 200
    assert queued(c, "lc-b8") == []
    put(c, "lc-b8", child)
    assert queued(c, "lc-b8") == [gid]
