"""``fhir-hub validate --jobs N`` (worker processes, results in input order) and the start-up path that
reads the options without typer (:func:`fhir_hub.cli.validate.fast`)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from fhir_hub.cli import validate
from fhir_hub.cli.main import app
from tests.validation import vn_samples

runner = CliRunner()


def _late_condition(pid: str) -> dict[str, Any]:
    return {"resourceType": "Condition", "id": f"c-{pid}", "subject": {"reference": f"Patient/{pid}"},
            "recordedDate": "2025-03-01",
            "code": {"coding": [{"system": f"{vn_samples.CORE}/CodeSystem/vn-icd10", "code": "P59.9"}]}}


def _inputs(tmp_path: Path) -> list[Path]:
    """A folder of small files (some with an error), and an ndjson file large enough to be cut into
    parts, whose last line is a Condition of a Patient on its first line (the ICD-10 rules need it)."""
    folder = tmp_path / "files"
    folder.mkdir()
    base = vn_samples.patient()
    for i in range(40):
        p = {**copy.deepcopy(base), "id": f"f{i}"}
        if i % 7 == 3:
            p["identifier"][0]["value"] = "12345"
        (folder / f"p{i:03d}.json").write_bytes(orjson.dumps(p))
    girl = {**copy.deepcopy(base), "id": "girl", "birthDate": "2025-01-01"}
    del girl["identifier"]
    lines = [girl] + [{**copy.deepcopy(base), "id": f"n{i}"} for i in range(1200)] + [_late_condition("girl")]
    lines[600]["gender"] = "unknown-gender"
    big = tmp_path / "big.ndjson"
    big.write_bytes(b"".join(orjson.dumps(r) + (b"\r\n" if i % 3 else b"\n") for i, r in enumerate(lines)))
    assert big.stat().st_size > validate._PART
    return [folder, big]


def test_jobs_give_the_results_of_one_process_in_input_order(tmp_path: Path) -> None:
    paths = [str(p) for p in _inputs(tmp_path)]
    one = runner.invoke(app, ["validate", *paths, "--format", "json", "--jobs", "1"])
    two = runner.invoke(app, ["validate", *paths, "--format", "json", "--jobs", "2"])
    assert one.exit_code == two.exit_code == 1, two.output
    assert two.stdout == one.stdout
    doc = orjson.loads(two.stdout)
    assert doc["summary"]["files"] == 41 and doc["summary"]["resources"] == 40 + 1202
    lines = [r["line"] for r in doc["results"] if r["file"].endswith("big.ndjson")]
    assert lines == list(range(1, 1203))
    last = doc["results"][-1]
    assert last["resource"] == "Condition/c-girl"
    assert any("icd10-age-perinatal" in i["diagnostics"] for i in last["outcome"]["issue"])
    errors = [r["resource"] for r in doc["results"] if any(i["severity"] == "error" for i in r["outcome"]["issue"])]
    assert errors == ["Patient/f3", "Patient/f10", "Patient/f17", "Patient/f24", "Patient/f31", "Patient/f38",
                      "Patient/girl", "Patient/n599", "Condition/c-girl"]  # the girl has no identifier


def test_tasks_cut_a_large_ndjson_file_into_whole_lines(tmp_path: Path) -> None:
    folder, big = _inputs(tmp_path)
    files = [big, *sorted(folder.iterdir())]
    sizes = [p.stat().st_size for p in files]
    assert validate._tasks(files, sizes, 1) == [(str(p), None, n) for p, n in zip(files, sizes, strict=True)]
    tasks = validate._tasks(files, sizes, 2)
    parts = [t[1] for t in tasks if t[0] == str(big)]
    assert len(parts) > 2 and len(tasks) == len(parts) + 40
    data = big.read_bytes()
    assert parts[0] is not None and parts[0][:2] == (0, 0) and parts[-1] is not None and parts[-1][2] == len(data)
    lines: list[bytes] = []
    for part in parts:
        assert part is not None and part[0] == len(lines) and part[3]  # the file has a Condition
        assert data[part[2] - 1:part[2]] == b"\n"
        lines.extend(data[part[1]:part[2]].splitlines())
    assert lines == data.splitlines()


def test_a_negative_jobs_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_bytes(orjson.dumps(vn_samples.patient()))
    assert runner.invoke(app, ["validate", str(path), "--jobs", "-1"]).exit_code == 2


def test_fast_reads_the_options_and_leaves_help_and_bad_options_to_typer(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.json"
    bad = vn_samples.patient()
    bad["identifier"][0]["value"] = "12345"
    path.write_bytes(orjson.dumps(bad))
    assert validate.fast([str(path), "--format", "json", "--fail-on=warning", "-j", "1"]) == 1
    doc = orjson.loads(capsys.readouterr().out)
    assert doc["summary"]["error"] == 1
    assert validate.fast([str(path), "--lang", "vi", "--format", "outcome"]) == 1
    assert "12 chữ số" in capsys.readouterr().out
    for argv in (["--help"], [str(path), "-h"], [str(path), "--nope"], [str(path), "--jobs", "x"], [],
                 [str(path), "--format"]):
        assert validate.fast(argv) is None, argv
    assert validate.fast([str(tmp_path / "missing.json")]) == 2


def test_the_process_answers_as_typer_does(tmp_path: Path) -> None:
    """The console script's path (``python -m fhir_hub validate``, through :func:`validate.fast`)
    prints what typer's runner prints, with the same exit code; ``--help`` is typer's."""
    paths = [str(p) for p in _inputs(tmp_path)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-m", "fhir_hub", "validate", *paths, "--format", "json", "--jobs", "2"],
                          capture_output=True, env=env, timeout=300)
    inner = runner.invoke(app, ["validate", *paths, "--format", "json", "--jobs", "1"])
    assert done.returncode == inner.exit_code == 1, done.stderr.decode()[-2000:]
    assert done.stdout.decode() == inner.stdout
    shown = subprocess.run([sys.executable, "-m", "fhir_hub", "validate", "--help"], capture_output=True, env=env,
                           timeout=300)
    assert shown.returncode == 0 and b"--jobs" in shown.stdout and b"--profile" in shown.stdout
