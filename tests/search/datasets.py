"""Data sets for the search tests that run a real store against the reference matcher.

* :func:`generated`: the sample generator's Vietnamese transaction bundles as plain resources
  with ids (``urn:uuid`` references rewritten to ``Type/id``, one Organization per facility, as
  the bundles' ``ifNoneExist`` would leave them), plus hand-made edge resources: open Periods,
  quantities in mg and g and in a non-UCUM unit, names with and without accents, a deleted
  Patient that others still reference, and an updated Patient whose old values must no longer
  match.
* :func:`load`: writes a :class:`Dataset` to a store and reads the stored versions back (with
  ``meta`` as the store set it, which ``_lastUpdated`` indexes).
* :func:`examples`: the official R4 examples of some types, by id.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from fhir_hub.sample import generator
from fhir_hub.storage.port import Store, Tx

#: The generator's visits fall in the three years before "today": pinned, so the data is the same
#: on every day.
TODAY = date(2025, 7, 1)
UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
_PREFIX = {"Organization": "org", "Patient": "pat", "Encounter": "enc", "Observation": "obs", "Condition": "cond"}


@dataclass
class Dataset:
    #: Current content of every live resource, by ``(type, id)``, as written (before the store's meta).
    live: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    #: Written in one unit, before :attr:`later`.
    bulk: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    #: Later units, one each: ``("put", type, id, resource)`` or ``("delete", type, id, None)``.
    later: list[tuple[str, str, str, dict[str, Any] | None]] = field(default_factory=list)
    #: Versions no longer current (overwritten or deleted): their values seed queries that must not
    #: find them.
    stale: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def put(self, rtype: str, rid: str, resource: dict[str, Any], *, later: bool = False) -> None:
        old = self.live.get((rtype, rid))
        if old is not None:
            self.stale.append((rtype, rid, old))
        resource = {**resource, "resourceType": rtype}
        self.live[rtype, rid] = resource
        if later:
            self.later.append(("put", rtype, rid, resource))
        else:
            self.bulk.append((rtype, rid, resource))

    def delete(self, rtype: str, rid: str) -> None:
        self.stale.append((rtype, rid, self.live.pop((rtype, rid))))
        self.later.append(("delete", rtype, rid, None))


def _rewrite(value: Any, urls: dict[str, str]) -> Any:
    """A copy of ``value`` with every ``reference`` to a bundle entry as ``Type/id``."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k == "reference" and isinstance(v, str) and v.startswith("urn:uuid:"):
                if v not in urls:
                    raise AssertionError(f"reference {v} to nothing in its bundle")
                out[k] = urls[v]
            else:
                out[k] = _rewrite(v, urls)
        return out
    if isinstance(value, list):
        return [_rewrite(v, urls) for v in value]
    return value


def bundles(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """``generator.patient_bundles(n, seed)`` with the visit window pinned to :data:`TODAY`."""
    real = generator._today
    generator._today = lambda: TODAY  # type: ignore[assignment]
    try:
        yield from generator.patient_bundles(n, seed=seed)
    finally:
        generator._today = real  # type: ignore[assignment]


def generated(patients: int = 30, seed: int = 7) -> Dataset:
    data = Dataset()
    counters: dict[str, int] = {}
    for bundle in bundles(patients, seed):
        urls: dict[str, str] = {}
        for entry in bundle["entry"]:
            res = entry["resource"]
            rtype = res["resourceType"]
            if rtype == "Organization":  # ifNoneExist on the facility code: one per facility
                rid = "org-" + res["identifier"][0]["value"]
            else:
                counters[rtype] = counters.get(rtype, 0) + 1
                rid = f"{_PREFIX[rtype]}-{counters[rtype]}"
            urls[entry["fullUrl"]] = f"{rtype}/{rid}"
        for entry in bundle["entry"]:
            res = _rewrite(entry["resource"], urls)
            rtype, rid = urls[entry["fullUrl"]].split("/")
            if rtype == "Organization" and (rtype, rid) in data.live:
                continue
            _meta(res, rid, len(data.live))
            data.put(rtype, rid, res)
    _edges(data)
    return data


_TAGS = "http://fhir.ehealth.gov.vn/core/CodeSystem/edge-tags"
_PROFILE = "http://fhir.ehealth.gov.vn/core/StructureDefinition/vn-core-"


def _meta(resource: dict[str, Any], rid: str, n: int) -> None:
    """Tags, profiles, sources and security labels on some resources, for the ``_`` parameters."""
    meta: dict[str, Any] = {}
    if n % 3 == 0:
        meta["profile"] = [_PROFILE + resource["resourceType"].lower()]
    if n % 7 == 0:
        meta["tag"] = [{"system": _TAGS, "code": f"batch-{n % 4}", "display": f"Lô {n % 4}"}]
    if n % 11 == 0:
        meta["source"] = f"http://his.example.vn/{n % 5}#{rid}"
    if n % 13 == 0:
        meta["security"] = [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]
    if meta:
        resource["meta"] = meta


def _name(family: str, *given: str) -> list[dict[str, Any]]:
    return [{"family": family, "given": list(given), "text": " ".join((family, *given))}]


def _obs(subject: str, code: str, value: float, unit: str, when: str, system: str | None = UCUM,
         ucum_code: str | None = None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value, "unit": unit}
    if system is not None:
        q["system"] = system
        q["code"] = ucum_code or unit
    return {"status": "final", "code": {"coding": [{"system": LOINC, "code": code}], "text": "edge " + code},
            "subject": {"reference": subject}, "effectiveDateTime": when, "valueQuantity": q}


def _edges(data: Dataset) -> None:
    """Hand-made resources for the cases generated data does not have."""
    org = "Organization/org-edge"
    data.put("Organization", "org-edge", {"name": "Trạm Y tế Xã Đông Hòa", "active": False,
                                          "identifier": [{"system": "urn:edge", "value": "E-1"}]})
    data.put("Patient", "edge-accent", {"name": _name("Nguyễn", "Văn", "Đức"), "gender": "male",
                                        "birthDate": "1980-02", "managingOrganization": {"reference": org}})
    data.put("Patient", "edge-plain", {"name": _name("Nguyen", "Van", "Duc"), "gender": "male",
                                       "birthDate": "1980", "deceasedDateTime": "2024-12-31T23:59:59Z"})
    data.put("Patient", "edge-dang", {"name": _name("ĐẶNG", "thị", "Hồng"), "gender": "female",
                                      "birthDate": "1999-12-31", "active": True,
                                      "identifier": [{"system": "urn:edge", "value": "P,1|x$y\\z"}]})
    # written decomposed (NFD), as some systems send Vietnamese
    data.put("Patient", "edge-nfd", {"name": _name(unicodedata.normalize("NFD", "Nguyễn"),
                                                   unicodedata.normalize("NFD", "Thị"), "Hằng"), "gender": "female"})
    data.put("Patient", "edge-bare", {"gender": "unknown", "meta": {
        "profile": [_PROFILE + "patient", "http://hl7.org/fhir/StructureDefinition/Patient"],
        "tag": [{"code": "no-system"}]}})  # nothing else: every :missing=true
    # deleted, while an Observation and an Encounter still reference it
    data.put("Patient", "edge-deleted", {"name": _name("Xóa", "Bỏ"), "identifier": [
        {"system": "urn:edge", "value": "DEL-1"}], "birthDate": "1975-05-05"})
    data.delete("Patient", "edge-deleted")
    data.put("Observation", "edge-of-deleted", _obs("Patient/edge-deleted", "2345-7", 5.5, "mmol/L",
                                                    "2024-03-03T08:00:00+07:00"))
    data.put("Encounter", "edge-of-deleted", {"status": "finished", "subject": {"reference": "Patient/edge-deleted"},
                                              "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                                        "code": "AMB"}, "period": {"start": "2024-03-03"}})
    # deleted and created again: only the new values match
    data.put("Patient", "edge-reborn", {"name": _name("Trước", "Lan"), "birthDate": "1990-09-09",
                                        "identifier": [{"system": "urn:edge", "value": "REBORN-OLD"}]})
    data.delete("Patient", "edge-reborn")
    data.put("Patient", "edge-reborn", {"name": _name("Sau", "Lan"), "birthDate": "1991-10-10",
                                        "identifier": [{"system": "urn:edge", "value": "REBORN-NEW"}]}, later=True)
    # a resource whose old values must no longer match (and whose organization is gone)
    data.put("Patient", "edge-updated", {"name": _name("Cũ", "Tên"), "gender": "female", "birthDate": "1960-01-01",
                                         "identifier": [{"system": "urn:edge", "value": "OLD-1"}],
                                         "managingOrganization": {"reference": org}})
    data.put("Patient", "edge-updated", {"name": _name("Mới", "Tên"), "gender": "other", "birthDate": "1961-06-15",
                                         "identifier": [{"system": "urn:edge", "value": "NEW-1"}]}, later=True)
    data.put("Observation", "edge-updated", _obs("Patient/edge-updated", "29463-7", 61.5, "kg", "2023-01-01"))
    data.put("Observation", "edge-updated", _obs("Patient/edge-updated", "29463-7", 62.5, "kg", "2023-02-02",
                                                 ), later=True)
    # quantities: one mass in mg, the same in g, one in a unit that is not UCUM, one with no system
    subject = "Patient/edge-accent"
    data.put("Observation", "edge-mg", _obs(subject, "edge-dose", 500, "mg", "2024-05-05T10:00:00Z"))
    data.put("Observation", "edge-g", _obs(subject, "edge-dose", 0.5, "g", "2024-05-05T10:00:00.123Z"))
    data.put("Observation", "edge-g2", _obs(subject, "edge-dose", 1.25, "g", "2024-05-05"))
    data.put("Observation", "edge-tablet", _obs(subject, "edge-dose", 2, "viên", "2024-05", system="urn:vn:unit",
                                                ucum_code="vien"))
    data.put("Observation", "edge-unit-only", _obs(subject, "edge-dose", 500, "mg", "2024", system=None))
    data.put("Observation", "edge-negative", _obs(subject, "edge-temp", -1.5, "Cel", "2024-01-01T00:00:00+07:00"))
    mmhg = {"unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}
    data.put("Observation", "edge-bp", {
        "status": "final", "code": {"coding": [{"system": LOINC, "code": "85354-9"}], "text": "Huyết áp"},
        "subject": {"reference": subject}, "effectiveDateTime": "2024-05-05T10:05:00+07:00", "component": [
            {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": {"value": 150, **mmhg}},
            {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": {"value": 95, **mmhg}}]})
    # references by identifier only, to another server, and to a contained resource
    data.put("Observation", "edge-refs", {
        "status": "final", "code": {"coding": [{"system": LOINC, "code": "edge-refs"}]},
        "subject": {"reference": "http://other.example/fhir/Patient/pat-1"},
        "performer": [{"identifier": {"system": "urn:vn:cchn", "value": "CC-001"}, "display": "BS. Lan"},
                      {"reference": "#p1"}],
        "contained": [{"resourceType": "Practitioner", "id": "p1"}]})
    data.put("Observation", "edge-period", {
        "status": "final", "code": {"coding": [{"system": LOINC, "code": "edge-period"}]},
        "subject": {"reference": subject}, "effectivePeriod": {"start": "2024-02-10T08:00:00+07:00"},
        "valueString": "đang theo dõi"})
    data.put("Observation", "edge-period-end", {
        "status": "final", "code": {"coding": [{"system": LOINC, "code": "edge-period"}]},
        "subject": {"reference": subject}, "effectivePeriod": {"end": "2024-02-10"}})
    data.put("Observation", "edge-no-code-system", {
        "status": "preliminary", "code": {"coding": [{"code": "8867-4"}], "text": "Mạch"},
        "subject": {"reference": "Patient/edge-plain"}, "valueQuantity": {"value": 72}})
    # open-ended Periods on Encounter and Condition
    data.put("Encounter", "edge-open-start", {
        "status": "in-progress", "subject": {"reference": subject}, "period": {"start": "2025-06-30T22:00:00+07:00"},
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "serviceProvider": {"reference": org}, "length": {"value": 90, "unit": "min", "system": UCUM, "code": "min"}})
    data.put("Encounter", "edge-open-end", {
        "status": "finished", "subject": {"reference": subject}, "period": {"end": "2020-01-15"},
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "length": {"value": 1.5, "unit": "h", "system": UCUM, "code": "h"}})
    data.put("Condition", "edge-onset-period", {
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                       "code": "active"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11"}], "text": "Đái tháo đường"},
        "subject": {"reference": subject}, "onsetPeriod": {"start": "2019-03"},
        "abatementString": "chưa", "recordedDate": "2019-04-01"})
    data.put("Condition", "edge-onset-age", {
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "J45"}]},
        "subject": {"reference": "Patient/edge-dang"}, "onsetAge": {"value": 12, "unit": "a", "system": UCUM,
                                                                     "code": "a"},
        "abatementDateTime": "2015-06-01T12:00:00+07:00"})
    # RiskAssessment, for number parameters (probability), which the five types above have none of
    for i, p in enumerate((0.25, 0.031, 0.5, 1, 0.0, 0.125, 0.75, 0.333, 0.9, 0.05, 0.0049, 0.6)):
        prediction: list[dict[str, Any]] = [{"probabilityDecimal": p}]
        if i % 3 == 0:
            prediction.append({"probabilityDecimal": round(1 - p, 4)})
        if i % 4 == 1:
            prediction = [{"probabilityRange": {"low": {"value": p}, "high": {"value": p + 0.1}}}]
        data.put("RiskAssessment", f"risk-{i}", {
            "status": "final", "subject": {"reference": f"Patient/pat-{i + 1}"}, "prediction": prediction,
            "occurrenceDateTime": f"2024-{i % 12 + 1:02d}-15", "meta": {"source": f"urn:edge:risk:{i % 3}"}})


async def load(store: Store, data: Dataset) -> dict[tuple[str, str], dict[str, Any]]:
    """Write ``data`` to ``store``; the current resources as stored (with ``meta``), by ``(type, id)``."""
    def bulk(tx: Tx) -> None:
        for rtype, rid, resource in data.bulk:
            tx.put(rtype, rid, dict(resource), "PUT")

    await store.transact(bulk)
    for op, rtype, rid, resource in data.later:
        def unit(tx: Tx, t: str = rtype, i: str = rid, r: dict[str, Any] | None = resource) -> None:
            if r is None:
                tx.delete(t, i)
            else:
                tx.put(t, i, dict(r), "PUT")

        assert (op == "put") is (resource is not None)
        await store.transact(unit)
    return await read_back(store, data.live)


async def read_back(store: Store, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    by_type: dict[str, list[str]] = {}
    for rtype, rid in keys:
        by_type.setdefault(rtype, []).append(rid)
    stored: dict[tuple[str, str], dict[str, Any]] = {}
    for rtype, rids in by_type.items():
        for v in await store.read_many(rtype, rids):
            assert v.body is not None
            stored[rtype, v.rid] = orjson.loads(v.body)
    assert stored.keys() == set(keys), "the store lost or invented resources"
    return stored


def examples(folder: Path, types: Sequence[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(file name, type, resource)`` of every official example of ``types``, by file name."""
    out = []
    for rtype in types:
        for path in sorted(folder.glob(f"{rtype}-*.json")):
            resource = orjson.loads(path.read_bytes())
            if resource.get("resourceType") == rtype:
                out.append((path.name, rtype, resource))
    return out
