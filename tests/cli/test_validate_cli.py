"""``fhir-hub validate`` over files, Bundles, ndjson and folders: output, languages and exit codes."""

from __future__ import annotations

from pathlib import Path

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
    assert runner.invoke(app, ["validate", str(tmp_path / "missing-folder")]).exit_code == 1
    (tmp_path / "broken.ndjson").write_text('{"resourceType": "Patient"}\n{oops\n')
    result = runner.invoke(app, ["validate", str(tmp_path / "broken.ndjson"), "--format", "json"])
    assert result.exit_code == 1
    lines = [(r["line"], r["outcome"]["issue"][0]["severity"]) for r in orjson.loads(result.stdout)["results"]]
    assert lines[1] == (2, "error")
