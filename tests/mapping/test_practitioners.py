"""Staff named by licence number become one Practitioner each per bundle, created only when the
server has none with that number, and every reference to the number points at it."""

from __future__ import annotations

from typing import Any

from fhir_hub.mapping import map_file
from fhir_hub.mapping.functions import practitioner as logical
from fhir_hub.mapping.practitioners import link_practitioners
from fhir_hub.mapping.systems import PRACTITIONER_LICENCE
from fhir_hub.validation.profile import validate_resource
from tests.mapping.conftest import RECORDED, sample_files


def _entry(rtype: str, **fields: Any) -> dict[str, Any]:
    return {"fullUrl": f"urn:uuid:{rtype}", "resource": {"resourceType": rtype, **fields}}


def test_one_practitioner_per_number_and_references_rewritten() -> None:
    entries = [
        _entry("MedicationRequest", requester=logical("001/HNO-CCHN")),
        _entry("Procedure", performer=[{"actor": logical("002/HNO-CCHN")}, {"actor": logical("001/HNO-CCHN")}]),
        _entry("Appointment", participant=[{"actor": {"identifier": {"system": "urn:x", "value": "001/HNO-CCHN"}}}]),
    ]
    added = link_practitioners(entries)
    assert [a["resource"]["identifier"][0]["value"] for a in added] == ["001/HNO-CCHN", "002/HNO-CCHN"]
    first, second = (a["fullUrl"] for a in added)
    assert entries[0]["resource"]["requester"] == {"reference": first}
    assert [p["actor"] for p in entries[1]["resource"]["performer"]] == [{"reference": second}, {"reference": first}]
    # a reference by another identifier system (a signer's BHXH number) is not a licence: left alone
    assert entries[2]["resource"]["participant"][0]["actor"]["identifier"]["system"] == "urn:x"
    assert added[0]["request"] == {"method": "POST", "url": "Practitioner",
                                   "ifNoneExist": f"identifier={PRACTITIONER_LICENCE}|001%2FHNO-CCHN"}
    assert link_practitioners([_entry("MedicationRequest", requester=logical("001/HNO-CCHN"))])[0]["fullUrl"] == first


def test_sample_bundles_refer_to_practitioners_that_meet_the_vn_profile() -> None:
    for path in sample_files():
        for h in map_file(path.read_bytes(), path.name, recorded=RECORDED).hosos:
            assert h.bundle is not None
            staff = [e for e in h.bundle["entry"] if e["resource"]["resourceType"] == "Practitioner"]
            assert staff and len({s["fullUrl"] for s in staff}) == len(staff)
            for s in staff:
                assert [i for i in validate_resource(s["resource"]) if i.severity in ("error", "fatal")] == []
                assert s["resource"]["name"] == [{"use": "anonymous",
                                                  "text": f"CCHN {s['resource']['identifier'][0]['value']}"}]
            text = str([e["resource"] for e in h.bundle["entry"] if e["resource"]["resourceType"] != "Practitioner"])
            assert "'code': 'LN'" not in text  # no logical reference by licence number is left
