"""``fhir-hub validate`` over files, Bundles, ndjson and folders: output, languages and exit codes."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from fhir_hub.cli.main import app
from tests.validation import vn_samples

runner = CliRunner()


def _write(path: Path, doc: object) -> Path:
    path.write_bytes(orjson.dumps(doc))
    return path


def test_valid_files_bundles_and_ndjson_exit_0(tmp_path: Path) -> None:
    _write(tmp_path / "patient.json", vn_samples.patient())
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": vn_samples.encounter()}, {"resource": vn_samples.vital_sign()}]}
    (tmp_path / "sub").mkdir()
    _write(tmp_path / "sub" / "bundle.json", bundle)
    (tmp_path / "labs.ndjson").write_bytes(orjson.dumps(vn_samples.lab()) + b"\n\n" + orjson.dumps(vn_samples.lab()))
    result = runner.invoke(app, ["validate", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = orjson.loads(result.stdout)
    assert doc["summary"] == {"files": 3, "resources": 6, "with_errors": 0, "fatal": 0, "error": 0, "warning": 0,
                              "information": 0}
    assert {r["resource"] for r in doc["results"]} == {"Patient", "Bundle", "Observation"}


def test_errors_exit_1_with_locations_in_the_chosen_language(tmp_path: Path) -> None:
    p = vn_samples.patient()
    p["identifier"][0]["value"] = "12345"
    p["gender"] = "male"
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": p}]}
    path = _write(tmp_path / "bad.json", bundle)
    result = runner.invoke(app, ["validate", str(path), "--lang", "vi"])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "Bundle.entry[0].resource.identifier[0].value" in text
    assert "Số định danh cá nhân (CCCD) gồm 12 chữ số" in text and "lỗi" in text
    result = runner.invoke(app, ["validate", str(path), "--format", "json"])
    [res] = orjson.loads(result.stdout)["results"]
    assert [i["severity"] for i in res["outcome"]["issue"]] == ["error"]


def test_profile_option_and_bad_input(tmp_path: Path) -> None:
    e = vn_samples.encounter()
    del e["meta"]
    e["class"]["code"] = "IMP"
    path = _write(tmp_path / "enc.json", e)
    assert runner.invoke(app, ["validate", str(path)]).exit_code == 0  # the general Encounter profile
    outpatient = f"{vn_samples.SD}/vn-core-encounter-outpatient"
    assert runner.invoke(app, ["validate", str(path), "--profile", outpatient]).exit_code == 1
    assert runner.invoke(app, ["validate", str(path), "--profile", "http://example.org/x"]).exit_code == 2
    assert runner.invoke(app, ["validate", str(tmp_path / "missing-folder")]).exit_code == 2
    (tmp_path / "broken.ndjson").write_text('{"resourceType": "Patient"}\n{oops\n')
    result = runner.invoke(app, ["validate", str(tmp_path / "broken.ndjson"), "--format", "json"])
    assert result.exit_code == 1
    lines = [(r["line"], r["outcome"]["issue"][0]["severity"]) for r in orjson.loads(result.stdout)["results"]]
    assert lines[1] == (2, "error")


def test_fail_on_warning_and_the_outcome_format(tmp_path: Path) -> None:
    p = vn_samples.patient()
    p["birthDate"] = "1991-04-12"  # the personal ID says 1990: a warning (vn-pat-1)
    path = _write(tmp_path / "warned.json", p)
    assert runner.invoke(app, ["validate", str(path)]).exit_code == 0
    assert runner.invoke(app, ["validate", str(path), "--fail-on", "error"]).exit_code == 0
    assert runner.invoke(app, ["validate", str(path), "--fail-on", "warning"]).exit_code == 1
    assert runner.invoke(app, ["validate", str(path), "--fail-on", "information"]).exit_code == 2
    (tmp_path / "two.ndjson").write_bytes(orjson.dumps(vn_samples.patient()) + b"\n" + orjson.dumps(p) + b"\n")
    result = runner.invoke(app, ["validate", str(tmp_path / "two.ndjson"), "--format", "outcome", "--lang", "vi"])
    assert result.exit_code == 0, result.output
    outcomes = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [o["resourceType"] for o in outcomes] == ["OperationOutcome", "OperationOutcome"]
    assert [[i["severity"] for i in o["issue"]] for o in outcomes] == [["information"], ["warning"]]
    assert outcomes[1]["issue"][0]["diagnostics"].startswith("Ràng buộc vn-pat-1")


def test_icd10_rules_on_the_conditions_of_a_bundle(tmp_path: Path) -> None:
    man = {**vn_samples.patient(), "id": "p1", "gender": "male"}
    condition = {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}, "onsetDateTime": "2025-08-01",
                 "code": {"coding": [{"system": f"{vn_samples.CORE}/CodeSystem/vn-icd10", "code": "O80"}]}}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": man}, {"resource": condition}]}
    result = runner.invoke(app, ["validate", str(_write(tmp_path / "b.json", bundle)), "--format", "json"])
    assert result.exit_code == 1
    [res] = orjson.loads(result.stdout)["results"]
    icd = [i for i in res["outcome"]["issue"] if i["code"] == "business-rule"]
    assert [(i["severity"], i["expression"]) for i in icd] == [("error", ["Bundle.entry[1].resource.code.coding[0]"])]
    assert "icd10-sex-pregnancy" in icd[0]["diagnostics"] and "Patient/p1 is male" in icd[0]["diagnostics"]


_IG = "http://example.org/fhir/ig"


def _ig_resources() -> list[dict[str, Any]]:
    """A facility profile on VN Core Patient (a phone number required, marital status from its own
    ValueSet) with no snapshot, and that ValueSet and its CodeSystem (nested concepts)."""
    sd = {"resourceType": "StructureDefinition", "url": f"{_IG}/StructureDefinition/clinic-patient",
          "name": "ClinicPatient", "status": "draft", "kind": "resource", "abstract": False, "type": "Patient",
          "fhirVersion": "4.0.1", "baseDefinition": f"{vn_samples.SD}/vn-core-patient", "derivation": "constraint",
          "differential": {"element": [
              {"id": "Patient.telecom", "path": "Patient.telecom", "min": 1},
              {"id": "Patient.maritalStatus", "path": "Patient.maritalStatus",
               "binding": {"strength": "required", "valueSet": f"{_IG}/ValueSet/clinic-marital"}}]}}
    cs = {"resourceType": "CodeSystem", "url": f"{_IG}/CodeSystem/clinic-marital", "status": "draft",
          "content": "complete", "concept": [{"code": "single", "display": "Độc thân"},
                                             {"code": "ever", "display": "Đã kết hôn",
                                              "concept": [{"code": "widowed", "display": "Góa"}]}]}
    vs = {"resourceType": "ValueSet", "url": f"{_IG}/ValueSet/clinic-marital", "status": "draft",
          "compose": {"include": [{"system": f"{_IG}/CodeSystem/clinic-marital"}]}}
    return [sd, cs, vs]


def _clinic_patient(code: str) -> dict[str, Any]:
    p = vn_samples.patient()
    p["meta"] = {"profile": [f"{_IG}/StructureDefinition/clinic-patient"]}
    p["maritalStatus"] = {"coding": [{"system": f"{_IG}/CodeSystem/clinic-marital", "code": code}]}
    return p


def test_ig_folder_and_package_add_profiles_value_sets_and_code_systems(tmp_path: Path) -> None:
    folder = tmp_path / "ig"
    folder.mkdir()
    for r in _ig_resources():
        _write(folder / f"{r['resourceType']}-{r['url'].rsplit('/', 1)[-1]}.json", r)
    good = _write(tmp_path / "good.json", {**_clinic_patient("widowed"), "telecom": [{"system": "phone",
                                                                                       "value": "0912345678"}]})
    bad = _write(tmp_path / "bad.json", _clinic_patient("married"))
    assert runner.invoke(app, ["validate", str(good), "--ig", str(folder)]).exit_code == 0
    result = runner.invoke(app, ["validate", str(bad), "--ig", str(folder), "--format", "json"])
    assert result.exit_code == 1, result.output
    [res] = orjson.loads(result.stdout)["results"]
    found = {(i["severity"], tuple(i.get("expression", ()))) for i in res["outcome"]["issue"]}
    assert ("error", ("Patient.telecom",)) in found and ("error", ("Patient.maritalStatus",)) in found
    # the same resources as a FHIR NPM package
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for r in [{"name": "example.clinic", "version": "0.1.0"}, *_ig_resources()]:
            data = orjson.dumps(r)
            info = tarfile.TarInfo(f"package/{r.get('resourceType', 'package')}-{len(data)}.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    package = tmp_path / "example.clinic-0.1.0.tgz"
    package.write_bytes(raw.getvalue())
    profile = f"{_IG}/StructureDefinition/clinic-patient"
    result = runner.invoke(app, ["validate", str(bad), "--ig", str(package), "--profile", profile])
    assert result.exit_code == 1
    assert "1 StructureDefinition(s), 1 ValueSet(s), 1 CodeSystem(s) loaded" in " ".join(result.output.split())
    # the run over, the shipped registries are as they were
    from fhir_hub import profiles, terminology

    assert profiles.structure_definition(profile) is None and profile not in profiles.urls()
    assert terminology.value_set(f"{_IG}/ValueSet/clinic-marital") is None
    assert terminology.code_system(f"{_IG}/CodeSystem/clinic-marital") is None
    assert runner.invoke(app, ["validate", str(bad), "--profile", profile]).exit_code == 2


def test_an_unusable_ig_exits_2(tmp_path: Path) -> None:
    path = _write(tmp_path / "p.json", vn_samples.patient())
    assert runner.invoke(app, ["validate", str(path), "--ig", str(tmp_path / "nope.tgz")]).exit_code == 2
    (tmp_path / "broken.tgz").write_bytes(b"not a tarball")
    assert runner.invoke(app, ["validate", str(path), "--ig", str(tmp_path / "broken.tgz")]).exit_code == 2
    folder = tmp_path / "orphan"
    folder.mkdir()
    sd = {**_ig_resources()[0], "url": f"{_IG}/StructureDefinition/orphan",
          "baseDefinition": "http://example.org/StructureDefinition/unknown-base"}
    _write(folder / "sd.json", sd)
    result = runner.invoke(app, ["validate", str(path), "--ig", str(folder)])
    assert result.exit_code == 2 and "no snapshot" in " ".join(result.output.split())
    _write(folder / "sd.json", {k: v for k, v in _ig_resources()[0].items() if k != "kind"})
    result = runner.invoke(app, ["validate", str(path), "--ig", str(folder)])
    assert result.exit_code == 2 and "has no kind" in " ".join(result.output.split())


def test_icd10_rules_on_the_conditions_of_an_ndjson_file(tmp_path: Path) -> None:
    girl = {**vn_samples.patient(), "id": "p7", "birthDate": "2025-01-01"}
    del girl["identifier"]  # no personal ID to disagree with the birth date
    late = {"resourceType": "Condition", "subject": {"reference": "Patient/p7"}, "recordedDate": "2025-03-01",
            "code": {"coding": [{"system": f"{vn_samples.CORE}/CodeSystem/vn-icd10", "code": "P59.9"}]}}
    path = tmp_path / "export.ndjson"
    path.write_bytes(orjson.dumps(late) + b"\n" + orjson.dumps(girl) + b"\n")
    result = runner.invoke(app, ["validate", str(path), "--format", "json"])
    first = orjson.loads(result.stdout)["results"][0]
    icd = [i for i in first["outcome"]["issue"] if i["code"] == "business-rule"]
    assert [(i["severity"], i["expression"]) for i in icd] == [("warning", ["Condition.code.coding[0]"])]
    assert "icd10-age-perinatal" in icd[0]["diagnostics"] and "59 days" in icd[0]["diagnostics"]


def test_the_package_profiles_build_writes_loads_as_an_ig(tmp_path: Path) -> None:
    from fhir_hub.profiles import build

    package = build.write_package(tmp_path)
    sds = sum(1 for r in build.read_package(package).values() if r.get("resourceType") == "StructureDefinition")
    path = _write(tmp_path / "p.json", vn_samples.patient())
    result = runner.invoke(app, ["validate", str(path), "--ig", str(package)])
    assert result.exit_code == 0, result.output
    assert f"{sds} StructureDefinition(s)" in " ".join(result.output.split())
    broken = vn_samples.patient()
    del broken["name"][0]["text"]
    assert runner.invoke(app, ["validate", str(_write(tmp_path / "b.json", broken)), "--ig", str(package)]
                         ).exit_code == 1
