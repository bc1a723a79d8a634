"""Search over HTTP against a real server: parameter types, chains, _has, includes, totals,
compartments, $everything, and the errors a client gets for what is refused."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

NID = "http://fhir.ehealth.gov.vn/core/sid/national_id"
LOINC = "http://loinc.org"


def uniq() -> str:
    return str(uuid.uuid4().int)[:12]


def ids(bundle: dict[str, Any], mode: str = "match") -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
            if e["search"]["mode"] == mode}


def make(client: httpx.Client, resource: dict[str, Any]) -> str:
    r = client.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return f"{resource['resourceType']}/{r.json()['id']}"


def search(client: httpx.Client, query: str, **kw: Any) -> dict[str, Any]:
    r = client.get(query, **kw)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    return body


def world(client: httpx.Client) -> dict[str, str]:
    """A patient with a practitioner, an encounter and three observations, all tagged by a marker."""
    tag = uniq()
    doc = make(client, {"resourceType": "Practitioner", "identifier": [{"system": "urn:t", "value": tag}],
                        "name": [{"family": "Lê", "given": ["Minh"]}]})
    pat = make(client, {"resourceType": "Patient", "identifier": [{"system": NID, "value": tag}],
                        "name": [{"family": "Nguyễn", "given": ["Văn", "Đức"]}], "gender": "male",
                        "birthDate": "1980-05-17", "generalPractitioner": [{"reference": doc}]})
    enc = make(client, {"resourceType": "Encounter", "status": "finished",
                        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                        "subject": {"reference": pat}, "period": {"start": "2024-03-01T08:00:00Z",
                                                                  "end": "2024-03-01T09:00:00Z"}})
    out = {"tag": tag, "doc": doc, "pat": pat, "enc": enc}
    for i, (code, value, when) in enumerate([("8867-4", 72, "2024-03-01T08:10:00Z"),
                                              ("8867-4", 95, "2024-06-01T08:10:00Z"),
                                              ("29463-7", 61.5, "2023-12-31")]):
        out[f"obs{i}"] = make(client, {
            "resourceType": "Observation", "status": "final", "identifier": [{"system": "urn:t", "value": tag}],
            "code": {"coding": [{"system": LOINC, "code": code}], "text": "heart rate" if code == "8867-4" else "wt"},
            "subject": {"reference": pat}, "encounter": {"reference": enc}, "performer": [{"reference": doc}],
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org",
                              "code": "/min" if code == "8867-4" else "kg", "unit": "x"}})
    return out


def test_string_token_date_number_reference(client: httpx.Client) -> None:
    w = world(client)
    t, pat = w["tag"], w["pat"]
    assert ids(search(client, f"/Patient?identifier={NID}|{t}")) == {pat}
    assert ids(search(client, f"/Patient?identifier={t}")) == {pat}
    assert ids(search(client, f"/Patient?identifier=urn:other|{t}")) == set()
    # accent- and case-insensitive prefix; exact needs the accents
    assert pat in ids(search(client, f"/Patient?name=nguyen&identifier={t}"))
    assert pat in ids(search(client, f"/Patient?name=DUC&identifier={t}"))
    assert ids(search(client, f"/Patient?family:exact=Nguyen&identifier={t}")) == set()
    assert ids(search(client, f"/Patient?family:exact=Nguyễn&identifier={t}")) == {pat}
    assert ids(search(client, f"/Patient?name:contains=uyễ&identifier={t}")) == {pat}
    for q, hit in [("1980", True), ("1980-05", True), ("eq1980-05-17", True), ("1980-05-18", False),
                   ("gt1980-01-01", True), ("lt1980-05-17", False), ("le1980-05-17", True), ("sa1979", True),
                   ("eb1980", False), ("ne1980-05-17", False)]:
        assert (pat in ids(search(client, f"/Patient?birthdate={q}&identifier={t}"))) is hit, q
    obs = ids(search(client, f"/Observation?identifier={t}&date=ge2024-01-01"))
    assert obs == {w["obs0"], w["obs1"]}
    assert ids(search(client, f"/Observation?identifier={t}&date=2024-03")) == {w["obs0"]}
    assert ids(search(client, f"/Observation?identifier={t}&value-quantity=gt80")) == {w["obs1"]}
    assert ids(search(client, f"/Observation?identifier={t}&value-quantity=61.5||kg")) == {w["obs2"]}
    assert ids(search(client, f"/Observation?identifier={t}&value-quantity=61.5|http://unitsofmeasure.org|g")) \
        == set()
    rid = pat.split("/")[1]
    for ref in (pat, rid, f"{str(client.base_url).rstrip('/')}/{pat}"):
        found = ids(search(client, f"/Observation?subject={ref}&code={LOINC}|8867-4&date=ge2024"))
        assert found == {w["obs0"], w["obs1"]}, ref
    assert ids(search(client, f"/Observation?subject:Patient={rid}&code:text=heart")) == {w["obs0"], w["obs1"]}
    assert ids(search(client, f"/Observation?subject={pat}&code:not={LOINC}|8867-4")) == {w["obs2"]}
    assert ids(search(client, f"/Encounter?subject={pat}&date=2024-03-01")) == {w["enc"]}
    assert ids(search(client, f"/Patient?identifier={t}&gender=male,female")) == {pat}
    assert ids(search(client, f"/Patient?identifier={t}&gender=male&gender=female")) == set()
    assert ids(search(client, f"/Patient?identifier={t}&email:missing=true")) == {pat}
    assert ids(search(client, f"/Patient?identifier={t}&birthdate:missing=true")) == set()


def test_chains_and_has(client: httpx.Client) -> None:
    w = world(client)
    t = w["tag"]
    hr = {w["obs0"], w["obs1"]}
    assert ids(search(client, f"/Observation?subject:Patient.identifier={NID}|{t}&code=8867-4")) == hr
    assert ids(search(client, f"/Observation?subject:Patient.name=nguyen&subject:Patient.identifier={t}")) \
        == hr | {w["obs2"]}
    # two levels: observations of patients whose general practitioner has this identifier
    assert ids(search(client, f"/Observation?subject:Patient.general-practitioner:Practitioner.identifier={t}")) \
        == hr | {w["obs2"]}
    assert ids(search(client, f"/Patient?_has:Observation:patient:code=29463-7&identifier={t}")) == {w["pat"]}
    assert ids(search(client, f"/Patient?_has:Observation:patient:code=0000-0&identifier={t}")) == set()
    nested = f"/Practitioner?_has:Patient:general-practitioner:_has:Observation:patient:identifier={t}"
    assert ids(search(client, nested)) == {w["doc"]}


def test_includes_revincludes_and_totals(client: httpx.Client) -> None:
    w = world(client)
    t = w["tag"]
    b = search(client, f"/Observation?identifier={t}&_include=Observation:subject&_include=Observation:encounter")
    assert ids(b) == {w["obs0"], w["obs1"], w["obs2"]}
    assert ids(b, "include") == {w["pat"], w["enc"]}
    b = search(client, f"/Patient?identifier={t}&_revinclude=Observation:subject&_revinclude=Encounter:subject")
    assert ids(b) == {w["pat"]} and ids(b, "include") == {w["obs0"], w["obs1"], w["obs2"], w["enc"]}
    b = search(client, f"/Encounter?subject={w['pat']}&_revinclude=Observation:encounter"
                       "&_include:iterate=Observation:performer")
    assert ids(b, "include") == {w["obs0"], w["obs1"], w["obs2"], w["doc"]}
    b = search(client, f"/Observation?identifier={t}&_summary=count")
    assert b["total"] == 3 and "entry" not in b
    b = search(client, f"/Observation?identifier={t}&_count=1&_total=accurate")
    assert b["total"] == 3 and len(b["entry"]) == 1
    assert any(lnk["relation"] == "next" for lnk in b["link"])
    b = search(client, f"/Observation?identifier={t}&_elements=status")
    assert all(set(e["resource"]) <= {"resourceType", "id", "meta", "status", "code", "subject"}
               for e in b["entry"]), b["entry"][0]


def test_compartment_and_everything(client: httpx.Client) -> None:
    w = world(client)
    pid = w["pat"].split("/")[1]
    b = search(client, f"/Patient/{pid}/Observation?code=8867-4")
    assert ids(b) == {w["obs0"], w["obs1"]}
    b = search(client, f"/Patient/{pid}/Encounter")
    assert ids(b) == {w["enc"]}
    every = {w["pat"], w["enc"], w["obs0"], w["obs1"], w["obs2"], w["doc"]}
    b = search(client, f"/Patient/{pid}/$everything")
    assert ids(b) == every and b["total"] == len(every)
    seen: set[str] = set()
    page = search(client, f"/Patient/{pid}/$everything?_count=2")
    while True:
        got = ids(page)
        assert len(got) <= 2 and not got & seen
        seen |= got
        nxt = [lnk["url"] for lnk in page["link"] if lnk["relation"] == "next"]
        if not nxt:
            break
        page = search(client, nxt[0])
    assert seen == every
    assert ids(search(client, f"/Patient/{pid}/$everything?_type=Observation")) == every & {
        w["obs0"], w["obs1"], w["obs2"]}


def test_system_search_and_post_search(client: httpx.Client) -> None:
    w = world(client)
    t = w["tag"]
    b = search(client, f"/?_type=Observation,Practitioner&identifier=urn:t|{t}")
    assert ids(b) == {w["obs0"], w["obs1"], w["obs2"], w["doc"]}
    r = client.post("/Patient/_search", content=f"identifier={t}",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and ids(r.json()) == {w["pat"]}


def test_unknown_parameters_lenient_and_strict(client: httpx.Client) -> None:
    w = world(client)
    b = search(client, f"/Patient?identifier={w['tag']}&foo=bar")
    assert ids(b) == {w["pat"]}
    assert "foo" not in b["link"][0]["url"]
    r = client.get(f"/Patient?identifier={w['tag']}&foo=bar", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400 and "foo" in r.text


def test_refused_queries_are_400_naming_the_parameter(client: httpx.Client) -> None:
    for query, where in [("/Patient?birthdate=notadate", "birthdate"), ("/Observation?value-quantity=abc", "value"),
                         ("/Observation?code:in=http://x/vs", "http://x/vs"), ("/Patient?gender:exact=male", "gender"),
                         ("/Patient?_contained=true", "_contained"), ("/Patient?_count=x", "_count"),
                         ("/Observation?subject.name=x", "subject"),
                         ("/Patient?_include=Observation:nope", "_include"), ("/Patient?_has:Nope:x:y=1", "_has")]:
        r = client.get(query)
        assert r.status_code == 400, (query, r.text)
        body = r.json()
        assert body["resourceType"] == "OperationOutcome"
        assert where in r.text, (query, r.text)


def test_composite_parameters_match_per_component(client: httpx.Client) -> None:
    tag = uniq()
    pat = make(client, {"resourceType": "Patient", "identifier": [{"system": NID, "value": tag}]})

    def bp(systolic: float, diastolic: float) -> str:
        return make(client, {
            "resourceType": "Observation", "status": "final", "subject": {"reference": pat},
            "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
            "component": [
                {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                 "valueQuantity": {"value": systolic, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                 "valueQuantity": {"value": diastolic, "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}}]})

    high, low = bp(150, 95), bp(110, 140)  # the second has a high value, but on the diastolic component
    # combo-code is code | component.code: searched as its members, not indexed on its own
    assert ids(search(client, f"/Observation?subject={pat}&combo-code=8480-6")) == {high, low}
    assert ids(search(client, f"/Observation?subject={pat}&combo-code={LOINC}|85354-9")) == {high, low}
    assert ids(search(client, f"/Observation?subject={pat}&combo-code:not=8480-6")) == set()
    assert ids(search(client, f"/Observation?subject={pat}&combo-value-quantity=gt145")) == {high}
    assert ids(search(client, f"/Observation?subject={pat}&combo-code:missing=true")) == set()
    q = f"/Observation?subject={pat}&component-code-value-quantity={LOINC}|8480-6$gt140"
    assert ids(search(client, q)) == {high}
    assert search(client, q + "&_summary=count")["total"] == 1
    assert ids(search(client, f"/Observation?subject={pat}&component-code-value-quantity=8462-4$gt130")) == {low}


def test_sort_by_several_keys_with_paging(client: httpx.Client) -> None:
    tag = uniq()
    made = {}
    for family, born in [("Trần", "1990-01-02"), ("Lê", "1985-07-01"), ("Nguyễn", "1990-01-02"), ("Bùi", None)]:
        p: dict[str, Any] = {"resourceType": "Patient", "identifier": [{"system": NID, "value": tag}],
                             "name": [{"family": family}]}
        if born:
            p["birthDate"] = born
        made[family] = make(client, p)

    def order(query: str) -> list[str]:
        return [f"Patient/{e['resource']['id']}" for e in search(client, query).get("entry", [])]

    base = f"/Patient?identifier={tag}"
    assert order(base + "&_sort=family") == [made[f] for f in ("Bùi", "Lê", "Nguyễn", "Trần")]
    assert order(base + "&_sort=-family") == [made[f] for f in ("Trần", "Nguyễn", "Lê", "Bùi")]
    # birthdate descending, ties by family; no birth date sorts last
    assert order(base + "&_sort=-birthdate,family") == [made[f] for f in ("Nguyễn", "Trần", "Lê", "Bùi")]
    assert order(base + "&_sort=birthdate,-family") == [made[f] for f in ("Lê", "Trần", "Nguyễn", "Bùi")]
    assert order(base + "&_sort=-_lastUpdated") == [made[f] for f in ("Bùi", "Nguyễn", "Lê", "Trần")]
    seen: list[str] = []
    page = search(client, base + "&_sort=family&_count=2")
    while True:
        seen += [f"Patient/{e['resource']['id']}" for e in page.get("entry", [])]
        nxt = [lnk["url"] for lnk in page["link"] if lnk["relation"] == "next"]
        if not nxt:
            break
        # a write that sorts before the cursor does not shift the next page (keyset, not offset)
        make(client, {"resourceType": "Patient", "identifier": [{"system": NID, "value": tag}],
                      "name": [{"family": "An"}]})
        page = search(client, nxt[0])
    assert seen == [made[f] for f in ("Bùi", "Lê", "Nguyễn", "Trần")]
    r = client.get(base + "&_sort=family&_cursor=garbage")
    assert r.status_code == 400 and "_cursor" in r.text
    r = client.get(base + "&_sort=combo-code")
    assert r.status_code == 400


def test_references_resolved_by_a_transaction_are_searchable(client: httpx.Client) -> None:
    tag, doc_tag = uniq(), uniq()
    doc = make(client, {"resourceType": "Practitioner", "identifier": [{"system": "urn:t", "value": doc_tag}]})
    pat, enc = "urn:uuid:" + str(uuid.uuid4()), "urn:uuid:" + str(uuid.uuid4())
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": pat, "resource": {"resourceType": "Patient", "identifier": [{"system": NID, "value": tag}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": enc, "resource": {"resourceType": "Encounter", "status": "finished",
                                      "class": {"code": "AMB"}, "subject": {"reference": pat}},
         "request": {"method": "POST", "url": "Encounter"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": pat}, "encounter": {"reference": enc},
                      "performer": [{"reference": f"Practitioner?identifier=urn:t|{doc_tag}"}]},
         "request": {"method": "POST", "url": "Observation"}}]}
    r = client.post("", json=bundle)
    assert r.status_code == 200, r.text
    pid = r.json()["entry"][0]["response"]["location"].split("/")[1]
    eid = r.json()["entry"][1]["response"]["location"].split("/")[1]
    assert len(ids(search(client, f"/Observation?subject=Patient/{pid}"))) == 1
    assert len(ids(search(client, f"/Observation?encounter=Encounter/{eid}&performer={doc}"))) == 1
    assert ids(search(client, f"/Encounter?subject=Patient/{pid}")) == {f"Encounter/{eid}"}
    assert ids(search(client, f"/Observation?subject=urn:uuid:{pat.split(':')[-1]}")) == set()


def test_type_filtered_references_in_a_transaction(client: httpx.Client) -> None:
    """``patient`` is ``subject.where(resolve() is Patient)``: it must see the type of an entry
    referenced by urn:uuid, and the compartment and $everything follow it."""
    pat = "urn:uuid:" + str(uuid.uuid4())
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": pat, "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Condition", "subject": {"reference": pat}, "code": {"text": "x"}},
         "request": {"method": "POST", "url": "Condition"}}]}
    r = client.post("", json=bundle)
    assert r.status_code == 200, r.text
    pid = r.json()["entry"][0]["response"]["location"].split("/")[1]
    cid = "Condition/" + r.json()["entry"][1]["response"]["location"].split("/")[1]
    assert ids(search(client, f"/Condition?patient={pid}")) == {cid}
    assert ids(search(client, f"/Patient/{pid}/Condition")) == {cid}
    assert ids(search(client, f"/Patient/{pid}/$everything")) == {f"Patient/{pid}", cid}


def test_last_updated_is_the_servers_time_whatever_meta_the_client_sent(client: httpx.Client) -> None:
    tag = uniq()
    stale = {"lastUpdated": "1999-01-01T00:00:00Z", "versionId": "7"}
    one = make(client, {"resourceType": "Patient", "identifier": [{"system": NID, "value": tag}], "meta": stale})
    r = client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [{"system": NID, "value": tag}], "meta": stale},
         "request": {"method": "POST", "url": "Patient"}}]})
    assert r.status_code == 200, r.text
    two = r.json()["entry"][0]["response"]["location"].rsplit("/_history", 1)[0]
    assert ids(search(client, f"/Patient?identifier={tag}&_lastUpdated=ge2020-01-01")) == {one, two}
    assert ids(search(client, f"/Patient?identifier={tag}&_lastUpdated=lt2000")) == set()


def test_terminology_modifiers_find_the_codes_they_stand_for(client: httpx.Client) -> None:
    icd = "http://fhir.ehealth.gov.vn/core/CodeSystem/vn-icd10"
    kcb = "http://fhir.ehealth.gov.vn/core/CodeSystem/vn-qd130-ma-loai-kcb"
    tag = uniq()
    pat = make(client, {"resourceType": "Patient", "identifier": [{"system": NID, "value": tag}]})

    def condition(code: str) -> str:
        return make(client, {"resourceType": "Condition", "subject": {"reference": pat},
                             "code": {"coding": [{"system": icd, "code": code}]}})

    e11, e119, e112, i10 = condition("E11"), condition("E11.9"), condition("E11.2"), condition("I10")
    within = f"/Condition?subject={pat}&code"
    assert ids(search(client, f"{within}:below={icd}|E11")) == {e11, e119, e112}
    assert ids(search(client, f"{within}:above={icd}|E11.9")) == {e11, e119}
    assert ids(search(client, f"{within}:below={icd}|I10")) == {i10}
    visit = make(client, {"resourceType": "Encounter", "status": "finished", "subject": {"reference": pat},
                          "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                          "type": [{"coding": [{"system": kcb, "code": "01"}]}]})
    other = make(client, {"resourceType": "Encounter", "status": "finished", "subject": {"reference": pat},
                          "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                          "type": [{"coding": [{"system": "urn:other", "code": "01"}]}]})
    vs = "http://fhir.ehealth.gov.vn/core/ValueSet/vn-qd130-ma-loai-kcb"
    assert ids(search(client, f"/Encounter?subject={pat}&type:in={vs}")) == {visit}
    assert ids(search(client, f"/Encounter?subject={pat}&type:not-in={vs}")) == {other}
    r = client.get("/Condition?code:in=http://fhir.ehealth.gov.vn/core/ValueSet/vn-icd10")
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "too-costly"
