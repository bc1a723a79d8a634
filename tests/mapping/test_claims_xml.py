"""Claims XML envelopes → bundles: the synthetic samples against golden bundles, every resource
structurally valid, the original bytes kept, and faulty input reported HOSO by HOSO.

Run with ``FHIR_HUB_UPDATE_GOLDEN=1`` to rewrite ``tests/golden/mapping/`` after an intended change.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_hub.mapping import map_file
from fhir_hub.mapping.claims_xml import FileResult
from fhir_hub.validation.structure import validate
from tests.mapping.conftest import RECORDED, decoded_tables, envelope, sample_files

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "mapping"


def _golden_form(bundle: dict[str, Any]) -> dict[str, Any]:
    """The bundle with each Binary's data replaced by its sha256 (the bytes are checked apart)."""
    out: dict[str, Any] = orjson.loads(orjson.dumps(bundle))
    for e in out["entry"]:
        if e["resource"]["resourceType"] == "Binary":
            data = base64.b64decode(e["resource"]["data"])
            e["resource"]["data"] = f"sha256:{hashlib.sha256(data).hexdigest()}"
    return out


def _check_golden(name: str, doc: Any) -> None:
    path = GOLDEN / name
    if os.environ.get("FHIR_HUB_UPDATE_GOLDEN") or not path.exists():
        path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    assert doc == orjson.loads(path.read_bytes()), f"{name} differs from {path}"


def _map(data: bytes, name: str = "test.xml") -> FileResult:
    return map_file(data, name, recorded=RECORDED)


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.stem)
def test_samples_match_the_golden_bundles(path: Path) -> None:
    result = _map(path.read_bytes(), path.name)
    assert len(result.hosos) == 3 and all(h.bundle is not None for h in result.hosos)
    for h in result.hosos:
        assert h.bundle is not None
        _check_golden(f"{path.stem}.hoso{h.index}.json", _golden_form(h.bundle))
    _check_golden(f"{path.stem}.outcome.json", result.outcome())
    # nothing but "table not mapped yet" notes on the clean samples
    assert {i["severity"] for i in result.outcome()["issue"]} == {"information"}


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.stem)
def test_every_resource_passes_structural_validation(path: Path) -> None:
    for h in _map(path.read_bytes(), path.name).hosos:
        assert h.bundle is not None
        assert validate(h.bundle) == []
        for e in h.bundle["entry"]:
            assert validate(e["resource"]) == [], e["resource"]["resourceType"]


def test_the_same_input_gives_the_same_bundles() -> None:
    data = sample_files()[0].read_bytes()
    assert orjson.dumps([h.bundle for h in _map(data).hosos]) == orjson.dumps([h.bundle for h in _map(data).hosos])


def test_binary_holds_the_hosos_original_bytes_and_provenance_points_at_it() -> None:
    path = sample_files()[0]
    data = path.read_bytes()
    for h in _map(data, path.name).hosos:
        assert h.bundle is not None
        entries = h.bundle["entry"]
        binary = next(e for e in entries if e["resource"]["resourceType"] == "Binary")
        raw = base64.b64decode(binary["resource"]["data"])
        assert raw.startswith(b"<HOSO>") and raw.endswith(b"</HOSO>") and raw in data
        provenance = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "Provenance")
        assert provenance["entity"][0]["what"]["reference"] == binary["fullUrl"]
        assert provenance["entity"][1]["what"]["identifier"]["value"] == hashlib.sha256(data).hexdigest()
        targets = {t["reference"] for t in provenance["target"]}
        assert targets == {e["fullUrl"] for e in entries if e["resource"]["resourceType"] not in
                           ("Binary", "Provenance")}


def test_outpatient_visit_mapping() -> None:
    """HOSO 2 of file 01: outpatient diabetes + hypertension, MA_LOAI_KCB 02."""
    h = _map(sample_files()[0].read_bytes()).hosos[1]
    assert h.bundle is not None
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in h.bundle["entry"]:
        by_type.setdefault(e["resource"]["resourceType"], []).append(e)
    enc = by_type["Encounter"][0]["resource"]
    assert enc["class"]["code"] == "AMB"
    assert enc["identifier"][0]["value"] == "00999/00999.2025.NGT.000102"
    assert enc["period"] == {"start": "2025-04-10T07:45:00+07:00", "end": "2025-04-10T09:45:00+07:00"}
    patient = by_type["Patient"][0]
    assert patient["request"]["ifNoneExist"].endswith("national_id|001055506052")
    assert {i["system"].rsplit("/", 1)[1] for i in patient["resource"]["identifier"]} == {
        "national_id", "insurance_number", "patient-internal-id"}
    codes = sorted(c["resource"]["code"]["coding"][0]["code"] for c in by_type["Condition"]
                   if "coding" in c["resource"]["code"])
    assert codes == ["E11.9", "I10"]
    weight = next(o["resource"] for o in by_type["Observation"] if o["resource"]["code"]["coding"][0]["code"]
                  == "29463-7")
    assert weight["valueQuantity"] == {"value": 68.0, "unit": "kg", "system": "http://unitsofmeasure.org",
                                       "code": "kg"}
    report = by_type["DiagnosticReport"][0]["resource"]
    assert report["result"] and all(r["reference"].startswith("urn:uuid:") for r in report["result"])
    assert by_type["Organization"][0]["request"]["ifNoneExist"].endswith("provider-code|00999")


def test_year_only_birth_date() -> None:
    h = _map(sample_files()[1].read_bytes()).hosos[1]
    assert h.bundle is not None
    patient = next(e["resource"] for e in h.bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient["birthDate"] == "1950"


# -- faults -------------------------------------------------------------------------------------


def _issues(result: FileResult) -> list[dict[str, Any]]:
    return [i for i in result.outcome()["issue"] if i["severity"] != "information"]


def test_broken_base64_is_reported_and_the_other_hoso_imports() -> None:
    good = decoded_tables("GIAMDINHHS_synthetic_01_00999", 2)
    bad: dict[str, bytes | str] = {**decoded_tables("GIAMDINHHS_synthetic_01_00999", 1), "XML1": "@@not base64@@"}
    result = _map(envelope([bad, good]))
    assert result.hosos[0].bundle is None and result.hosos[1].bundle is not None
    issues = _issues(result)
    assert any("HOSO 1" in i["diagnostics"] and "XML1.NOIDUNGFILE" in i["diagnostics"]
               and "not valid base64" in i["diagnostics"] for i in issues)
    assert all("HOSO 2" not in i["diagnostics"] for i in issues)


def test_broken_base64_in_a_detail_table_loses_that_table_only() -> None:
    tables: dict[str, bytes | str] = {**decoded_tables("GIAMDINHHS_synthetic_01_00999", 2), "XML2": "PD94bWwg!!"}
    h = _map(envelope([tables])).hosos[0]
    assert h.bundle is not None
    types = {e["resource"]["resourceType"] for e in h.bundle["entry"]}
    assert "MedicationRequest" not in types and "Observation" in types
    assert any(p.table == "XML2" and p.field == "NOIDUNGFILE" for p in h.problems)


def test_missing_ma_lk_is_fatal_for_its_hoso() -> None:
    tables = decoded_tables("GIAMDINHHS_synthetic_01_00999", 2)
    tables["XML1"] = tables["XML1"].replace(b"<MA_LK>00999.2025.NGT.000102</MA_LK>", b"<MA_LK />")
    result = _map(envelope([tables, decoded_tables("GIAMDINHHS_synthetic_01_00999", 3)]))
    assert result.hosos[0].bundle is None and result.hosos[1].bundle is not None
    issue = next(i for i in _issues(result) if "MA_LK" in i["diagnostics"])
    assert issue["severity"] == "fatal" and issue["code"] == "required"
    assert "HOSO 1" in issue["diagnostics"] and "XML1.MA_LK" in issue["diagnostics"]
    assert issue["location"] == ["/GIAMDINHHS/THONGTINHOSO/DANHSACHHOSO/HOSO[1]/FILEHOSO[LOAIHOSO='XML1']"
                                 "/NOIDUNGFILE//MA_LK"]


def test_invalid_date_names_hoso_table_field_and_value() -> None:
    tables = decoded_tables("GIAMDINHHS_synthetic_01_00999", 2)
    tables["XML2"] = tables["XML2"].replace(b"<NGAY_YL>202504100915</NGAY_YL>", b"<NGAY_YL>2025-04-10</NGAY_YL>", 1)
    tables["XML1"] = tables["XML1"].replace(b"<NGAY_RA>202504100945</NGAY_RA>", b"<NGAY_RA>202504319945</NGAY_RA>")
    h = _map(envelope([tables])).hosos[0]
    assert h.bundle is not None  # a bad value leaves that element out, the visit still imports
    diagnostics = [i["diagnostics"] for i in _issues(_map(envelope([tables])))]
    assert any("HOSO 1 (MA_LK 00999.2025.NGT.000102), XML2 STT 1.NGAY_YL = '2025-04-10'" in d
               and "yyyymmddHHMM" in d for d in diagnostics)
    assert sum("XML1 STT 1.NGAY_RA = '202504319945'" in d for d in diagnostics) == 1
    assert any("XML1 STT 1.NGAY_RA = '202504319945'" in d and "not a real calendar date" in d for d in diagnostics)
    enc = next(e["resource"] for e in h.bundle["entry"] if e["resource"]["resourceType"] == "Encounter")
    assert "end" not in enc["period"]


def test_unknown_visit_type_fails_its_hoso_with_the_reason() -> None:
    tables = decoded_tables("GIAMDINHHS_synthetic_01_00999", 2)
    tables["XML1"] = tables["XML1"].replace(b"<MA_LOAI_KCB>02</MA_LOAI_KCB>", b"<MA_LOAI_KCB>77</MA_LOAI_KCB>")
    h = _map(envelope([tables])).hosos[0]
    assert h.bundle is None
    assert any(p.field == "MA_LOAI_KCB" and p.code == "code-invalid" for p in h.problems)


def test_unknown_icd10_code_is_a_warning_and_kept() -> None:
    tables = decoded_tables("GIAMDINHHS_synthetic_01_00999", 2)
    tables["XML1"] = tables["XML1"].replace(b"<MA_BENH_KT>I10</MA_BENH_KT>", b"<MA_BENH_KT>I10;X99.99</MA_BENH_KT>")
    h = _map(envelope([tables])).hosos[0]
    assert h.bundle is not None
    codes = [c["code"] for e in h.bundle["entry"] if e["resource"]["resourceType"] == "Condition"
             for c in e["resource"]["code"].get("coding", [])]
    assert "X99.99" in codes
    assert any(p.field == "MA_BENH_KT" and p.severity == "warning" and p.value == "X99.99" for p in h.problems)


def test_count_mismatch_and_foreign_ma_lk() -> None:
    tables = decoded_tables("GIAMDINHHS_synthetic_01_00999", 2)
    tables["XML4"] = tables["XML4"].replace(b"<MA_LK>00999.2025.NGT.000102</MA_LK>", b"<MA_LK>OTHER</MA_LK>", 1)
    result = _map(envelope([tables], count=5))
    assert any(p.field == "SOLUONGHOSO" for p in result.problems)
    h = result.hosos[0]
    assert any(p.table == "XML4" and p.field == "MA_LK" and p.value == "OTHER" for p in h.problems)
    assert h.bundle is not None


@pytest.mark.parametrize("payload", [
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><GIAMDINHHS>&b;</GIAMDINHHS>',
    b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><GIAMDINHHS>&e;</GIAMDINHHS>',
])
def test_dtds_and_entities_are_refused(payload: bytes) -> None:
    result = _map(payload)
    assert not result.hosos and result.problems[0].code == "security" and result.problems[0].severity == "fatal"


def test_entities_inside_a_table_are_refused_too() -> None:
    tables = decoded_tables("GIAMDINHHS_synthetic_01_00999", 2)
    tables["XML3"] = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><CHITIEU_CHITIET_DVKT_VTYT/>'
    h = _map(envelope([tables])).hosos[0]
    assert h.bundle is not None and any(p.table == "XML3" and p.code == "security" for p in h.problems)


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_dtd_in_a_utf16_envelope_is_refused(codec: str) -> None:
    """The envelope's C-parser path looks for ``<!DOCTYPE`` in the bytes: a UTF-16 file (with or
    without its BOM), where those bytes are not there, must still go to defusedxml."""
    payload = ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY a "aaaa">'
               '<!ENTITY b "&a;&a;&a;">]><GIAMDINHHS>&b;</GIAMDINHHS>').encode(codec)
    result = _map(payload)
    assert not result.hosos and result.problems[0].code == "security" and result.problems[0].severity == "fatal"


def _faulty_inputs() -> list[bytes]:
    """Envelopes whose tables take each way through the parsers: BOMs, declarations of UTF-8,
    ``utf8`` and Latin-1, an undefined entity, a broken tag after a BOM and Vietnamese text (so
    that the columns of the errors are compared), a table in UTF-16."""
    tables = decoded_tables("GIAMDINHHS_synthetic_01_00999", 2)
    xml1 = tables["XML1"].split(b"?>", 1)[1] if tables["XML1"].startswith(b"<?xml") else tables["XML1"]
    variants = {
        "XML1": b"\xef\xbb\xbf" + b'<?xml version="1.0" encoding="utf8"?>' + xml1,
        "XML2": b"\xef\xbb\xbf<CHITIEU_CHITIET_THUOC><A>Vi\xe1\xbb\x87t</B></CHITIEU_CHITIET_THUOC>",
        "XML3": tables["XML3"].replace(b"<MA_DICH_VU>", b"<MA_DICH_VU>&nbsp;", 1),
        "XML4": b'<?xml version="1.0" encoding="ISO-8859-1"?><CHITIEU_CHITIET_DICHVUCANLAMSANG/>',
        "XML5": tables["XML5"].decode("utf-8").encode("utf-16"),
    }
    latin = {**tables, "XML1": b'<?xml version="1.0" encoding="UTF-8"?>' + xml1}
    return [envelope([tables]), envelope([{**tables, **variants}]), b"\xef\xbb\xbf" + envelope([latin]),
            envelope([tables]).replace(b'encoding="utf-8"', b'encoding="ISO-8859-1"', 1),
            envelope([tables]).replace(b"</GIAMDINHHS>", b"</GIAMDINHHX>"), b" " + envelope([tables])]


def test_the_c_parser_paths_read_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    """Envelope and tables parsed by expat's C parser from their bytes where no DTD can be met:
    the same bundles, problems and error positions as before, when the envelope went to
    defusedxml and each table to the C parser as decoded text (which reads a table declaring
    ``utf8``, a name expat does not know) or, with a DTD or another encoding, to defusedxml."""
    import xml.etree.ElementTree as ET

    from fhir_hub.mapping import claims_xml

    def as_mapped(data: bytes) -> bytes:
        result = _map(data)
        return orjson.dumps([result.outcome(), [[h.bundle, h.unmapped] for h in result.hosos]])

    def text_path(data: bytes, text: str) -> ET.Element:
        declared = claims_xml._ENCODING.match(text)
        if "<!DOCTYPE" in text or (declared is not None and declared.group(1).lower() not in ("utf-8", "utf8")):
            return claims_xml._parse(data)
        return ET.fromstring(text)

    inputs = _faulty_inputs()
    fast = [as_mapped(data) for data in inputs]
    monkeypatch.setattr(claims_xml, "_parse_envelope", claims_xml._parse)
    monkeypatch.setattr(claims_xml, "_parse_text", text_path)
    for data, mine in zip(inputs, fast, strict=True):
        assert mine == as_mapped(data)
    assert b"undefined entity" in fast[1] and b"mismatched tag" in fast[1] and b"security" not in fast[1]


def test_not_xml_and_wrong_root() -> None:
    assert _map(b"not xml at all").problems[0].severity == "fatal"
    assert "GIAMDINHHS" in _map(b"<OTHER/>").problems[0].reason


def test_signature_is_kept_in_provenance() -> None:
    signature = "<Signature xmlns='http://www.w3.org/2000/09/xmldsig#'><SignatureValue>QUJD</SignatureValue></Signature>"
    h = _map(envelope([decoded_tables("GIAMDINHHS_synthetic_01_00999", 2)], signature=signature)).hosos[0]
    assert h.bundle is not None
    provenance = next(e["resource"] for e in h.bundle["entry"] if e["resource"]["resourceType"] == "Provenance")
    sig = provenance["signature"][0]
    assert base64.b64decode(sig["data"]).decode() == signature
    assert sig["sigFormat"] == "application/signature+xml" and sig["when"] == "2025-07-01T00:00:00+07:00"


def test_bom_and_cdata_are_handled() -> None:
    tables = decoded_tables("GIAMDINHHS_synthetic_01_00999", 2)
    tables["XML1"] = b"\xef\xbb\xbf" + tables["XML1"]
    h = _map(envelope([tables])).hosos[0]
    assert h.bundle is not None
    patient = next(e["resource"] for e in h.bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert patient["name"][0]["text"] == "Trần Văn Thử"
