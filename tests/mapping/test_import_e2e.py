"""``fhir-hub import-claims`` end to end: the synthetic samples into a real server (uvicorn, SQLite),
found again by identifier, and imported twice without duplicates; a generated file with injected
faults imports its good HOSO (twice, without duplicates) and ``--strict`` stops at the first bad one."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from fhir_hub.cli.main import app
from fhir_hub.mapping import map_file
from fhir_hub.mapping.generate import FAULT_KINDS, Fault, generate
from fhir_hub.mapping.systems import NATIONAL_ID, PATIENT_INTERNAL_ID, PRACTITIONER_LICENCE, VISIT_NUMBER
from tests.conftest import Server, fhir_client
from tests.mapping.conftest import RECORDED, envelope, sample_files

runner = CliRunner()


def _count(srv: Server, query: str) -> int:
    with fhir_client(srv) as c:
        r = c.get(query, params={"_summary": "count"})
        assert r.status_code == 200, r.text
        return int(r.json()["total"])


def test_a_bundle_posts_and_the_patient_is_found_by_identifier(fresh_server: Server) -> None:
    h = map_file(sample_files()[0].read_bytes(), "sample.xml", recorded=RECORDED).hosos[0]
    assert h.bundle is not None
    with fhir_client(fresh_server) as c:
        r = c.post("", content=orjson.dumps(h.bundle))
        assert r.status_code == 200, r.text
        assert all(e["response"]["status"].startswith("20") for e in r.json()["entry"])
        found = c.get("Patient", params={"identifier": f"{NATIONAL_ID}|079168864770"}).json()
        assert found["total"] == 1
        patient = found["entry"][0]["resource"]
        assert patient["name"][0]["text"] == "Nguyễn Thị Mẫu"
        enc = c.get("Encounter", params={"identifier": f"{VISIT_NUMBER}|00999/00999.2025.NT.000101",
                                         "_revinclude": "Provenance:target"}).json()
        types = sorted(e["resource"]["resourceType"] for e in enc["entry"])
        assert types == ["Encounter", "Provenance"]
        assert enc["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{patient['id']}"


def test_cli_imports_twice_without_duplicates(fresh_server: Server, tmp_path: Path) -> None:
    files = [str(p) for p in sample_files()]
    for _ in range(2):
        result = runner.invoke(app, ["import-claims", *files, "--base", fresh_server.base])
        assert result.exit_code == 0, result.output
        assert "HOSO posted" in result.output
    assert _count(fresh_server, "Patient") == 6
    assert _count(fresh_server, "Encounter") == 6
    assert _count(fresh_server, "Organization") == 2
    assert _count(fresh_server, "Observation") == 50  # 20 results and weights, 30 vital signs of XML5
    assert _count(fresh_server, "Composition") == 3
    assert _count(fresh_server, "Appointment") == 2
    assert _count(fresh_server, "Provenance") == 6
    bundles = [h.bundle for p in sample_files() for h in map_file(p.read_bytes(), p.name, recorded=RECORDED).hosos]
    entries = [e["resource"] for b in bundles if b is not None for e in b["entry"]]
    licences = {r["identifier"][0]["value"] for r in entries if r["resourceType"] == "Practitioner"}
    assert len(licences) > 1 and _count(fresh_server, "Practitioner") == len(licences)  # one per number
    assert _count(fresh_server, "MedicationDispense") == sum(r["resourceType"] == "MedicationDispense" for r in entries)
    assert _count(fresh_server, "ChargeItem") == sum(r["resourceType"] == "ChargeItem" for r in entries) > 0
    with fhir_client(fresh_server) as c:
        found = c.get("ClinicalImpression", params={
            "assessor:Practitioner.identifier": f"{PRACTITIONER_LICENCE}|004567/HNO-CCHN", "_summary": "count"})
        assert found.status_code == 200, found.text
        urls = {e["fullUrl"] for b in bundles if b is not None for e in b["entry"]
                if e["resource"]["resourceType"] == "Practitioner"
                and e["resource"]["identifier"][0]["value"] == "004567/HNO-CCHN"}
        assert found.json()["total"] == sum(r["resourceType"] == "ClinicalImpression" and r["assessor"]["reference"]
                                            in urls for r in entries) > 1  # the XML5 entries that doctor wrote


def test_cli_writes_bundles_and_outcomes(tmp_path: Path) -> None:
    result = runner.invoke(app, ["import-claims", str(sample_files()[0]), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    stem = sample_files()[0].stem
    assert names == [f"{stem}.hoso1.json", f"{stem}.hoso2.json", f"{stem}.hoso3.json", f"{stem}.outcome.json"]
    assert orjson.loads((tmp_path / f"{stem}.hoso1.json").read_bytes())["type"] == "transaction"


def test_cli_reports_a_bad_file_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_bytes(b"<GIAMDINHHS><THONGTINHOSO><SOLUONGHOSO>1</SOLUONGHOSO><DANHSACHHOSO><HOSO><FILEHOSO>"
                    b"<LOAIHOSO>XML1</LOAIHOSO><NOIDUNGFILE>!!!</NOIDUNGFILE></FILEHOSO></HOSO></DANHSACHHOSO>"
                    b"</THONGTINHOSO></GIAMDINHHS>")
    result = runner.invoke(app, ["import-claims", str(bad), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "not valid base64" in " ".join(result.output.split())
    assert runner.invoke(app, ["import-claims", str(bad)]).exit_code != 0  # neither --out nor --base


def test_cli_import_hl7v2_and_csv_into_the_server(fresh_server: Server) -> None:
    data = Path(__file__).parent / "data"
    hl7 = sorted(str(p) for p in (data / "hl7v2").glob("*.hl7") if p.stem not in ("faults", "adt_a40"))
    result = runner.invoke(app, ["import", *hl7, "--format", "hl7v2", "--base", fresh_server.base])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["import", str(data / "csv" / "patients.csv"), "--format", "csv", "--spec",
                                 "patients", "--base", fresh_server.base])
    assert result.exit_code == 0, result.output  # faulty rows are reported, the others posted
    result = runner.invoke(app, ["import", str(data / "csv" / "vitals.csv"), "--format", "csv", "--spec", "vitals",
                                 "--base", fresh_server.base])
    assert result.exit_code == 0, result.output
    assert _count(fresh_server, "Encounter") == 2  # A01 and A08 are one visit
    assert _count(fresh_server, "Observation") == 4 + 6


def test_cli_import_reports_failed_messages_and_exits_1(tmp_path: Path) -> None:
    faults = Path(__file__).parent / "data" / "hl7v2" / "faults.hl7"
    result = runner.invoke(app, ["import", str(faults), "--format", "hl7v2", "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "ADT^A02" in " ".join(result.output.split())
    assert (tmp_path / "faults.outcome.json").exists() and (tmp_path / "faults.msg1.json").exists()
    assert runner.invoke(app, ["import", str(faults), "--format", "csv", "--out", str(tmp_path)]).exit_code != 0


def _faulty_file(tmp_path: Path) -> tuple[Path, list[Fault]]:
    generated = generate(12, seed=7, faults={kind: 1 for kind in FAULT_KINDS})
    path = tmp_path / "faulty.xml"
    path.write_bytes(generated.data)
    return path, generated.faults


def test_a_faulty_file_imports_every_good_hoso_twice_without_duplicates(fresh_server: Server, tmp_path: Path) -> None:
    path, faults = _faulty_file(tmp_path)
    imported = 12 - sum(not f.imported for f in faults)
    for _ in range(2):
        result = runner.invoke(app, ["import-claims", str(path), "--base", fresh_server.base])
        assert result.exit_code == 1, result.output  # some HOSO could not be imported
        output = " ".join(result.output.split())
        for f in faults:
            assert f"HOSO {f.hoso} (MA_LK {f.ma_lk})" in output
        assert _count(fresh_server, "Encounter") == imported
        assert _count(fresh_server, "Patient") == imported
        assert _count(fresh_server, "Provenance") == imported
        assert _count(fresh_server, "Organization") == 1


def test_strict_stops_at_the_first_bad_hoso(fresh_server: Server, tmp_path: Path) -> None:
    path, faults = _faulty_file(tmp_path)
    first = min(f.hoso for f in faults)
    assert first > 1
    result = runner.invoke(app, ["import-claims", str(path), "--base", fresh_server.base, "--strict"])
    assert result.exit_code == 1
    assert f"--strict: stopped at faulty.xml, HOSO {first}" in " ".join(result.output.split())
    assert _count(fresh_server, "Encounter") == first - 1


def test_adt_a40_merges_the_prior_record_into_the_survivor(fresh_server: Server) -> None:
    prior = {"resourceType": "Patient", "active": True, "name": [{"text": "Nguyễn Thị Mẫu"}],
             "identifier": [{"system": PATIENT_INTERNAL_ID, "value": "BN2025009999"}]}
    with fhir_client(fresh_server) as c:
        assert c.post("Patient", content=orjson.dumps(prior)).status_code == 201
    a40 = Path(__file__).parent / "data" / "hl7v2" / "adt_a40.hl7"
    for _ in range(2):  # a repeated merge changes nothing more
        result = runner.invoke(app, ["import", str(a40), "--format", "hl7v2", "--base", fresh_server.base])
        assert result.exit_code == 0, result.output
    with fhir_client(fresh_server) as c:
        survivor = c.get("Patient", params={"identifier": f"{NATIONAL_ID}|079168003456"}).json()["entry"]
        old = c.get("Patient", params={"identifier": f"{PATIENT_INTERNAL_ID}|BN2025009999"}).json()["entry"]
    assert len(survivor) == 1 and len(old) == 1
    retired = old[0]["resource"]
    assert retired["active"] is False and retired["name"] == prior["name"]
    assert retired["link"] == [{"other": {"identifier": {"system": NATIONAL_ID, "value": "079168003456"}},
                                "type": "replaced-by"}]  # once, though merged twice


def test_adt_a40_whose_prior_record_is_unknown_is_refused_whole(fresh_server: Server) -> None:
    a40 = Path(__file__).parent / "data" / "hl7v2" / "adt_a40.hl7"
    result = runner.invoke(app, ["import", str(a40), "--format", "hl7v2", "--base", fresh_server.base])
    assert result.exit_code == 1
    assert "404" in result.output
    assert _count(fresh_server, "Patient") == 0  # all or nothing: the survivor was not written either


def _without_recorded(raw: bytes) -> object:
    """A written bundle or outcome without Provenance.recorded (the time of the command)."""
    doc = orjson.loads(raw)
    for entry in doc.get("entry", []):
        entry["resource"].pop("recorded", None)
    return doc


def test_mapping_workers_write_what_one_process_writes(tmp_path: Path) -> None:
    generated = generate(40, seed=11, faults={kind: 1 for kind in FAULT_KINDS})
    path = tmp_path / "many.xml"
    path.write_bytes(generated.data)
    written = []
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}"
        result = runner.invoke(app, ["import-claims", str(path), "--out", str(out), "--jobs", jobs])
        assert result.exit_code == 1, result.output  # the faulty HOSO
        written.append({p.name: _without_recorded(p.read_bytes()) for p in sorted(out.iterdir())})
    assert len(written[0]) == 40 - sum(not f.imported for f in generated.faults) + 1  # + the outcome
    assert written[0] == written[1]


def test_mapping_workers_post_every_good_hoso(fresh_server: Server, tmp_path: Path) -> None:
    generated = generate(40, seed=12, faults={kind: 1 for kind in FAULT_KINDS})
    path = tmp_path / "many.xml"
    path.write_bytes(generated.data)
    result = runner.invoke(app, ["import-claims", str(path), "--base", fresh_server.base, "--jobs", "2"])
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    for f in generated.faults:
        assert f"HOSO {f.hoso} (MA_LK {f.ma_lk})" in output
    imported = 40 - sum(not f.imported for f in generated.faults)
    assert _count(fresh_server, "Encounter") == imported
    assert _count(fresh_server, "Provenance") == imported


def test_map_command_takes_the_format_first(fresh_server: Server, tmp_path: Path) -> None:
    tables = {p.stem: p.read_bytes() for p in sorted((Path(__file__).parent / "data" / "qd4210").glob("XML*.xml"))}
    old = tmp_path / "old.xml"
    old.write_bytes(envelope([tables], facility="00997"))
    result = runner.invoke(app, ["map", "qd4210", str(old), "--post", fresh_server.base])
    assert result.exit_code == 0, result.output
    assert _count(fresh_server, "Encounter") == 1
    # read as QĐ 130 (the layout said wrongly), the same file does not map cleanly
    wrong = runner.invoke(app, ["map", "qd130", str(old), "--out", str(tmp_path / "wrong")])
    assert wrong.exit_code == 1, wrong.output
    written = runner.invoke(app, ["map", "qd130", str(sample_files()[0]), "--out", str(tmp_path / "out")])
    assert written.exit_code == 0, written.output
    assert len(list((tmp_path / "out").glob("*.hoso*.json"))) == 3
    bad = runner.invoke(app, ["map", "xml9", str(old), "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown format" in bad.output
