"""``fhir-hub demo-data``: one transaction bundle per file, the same files for the same seed."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from fhir_hub.cli.main import app

runner = CliRunner()


def flat(text: str) -> str:
    """Rich wraps at the terminal width; compare text with whitespace collapsed."""
    return " ".join(text.split())


def test_demo_data_writes_one_bundle_per_patient(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo-data", "--patients", "3", "--seed", "42", "--out", str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.json"))
    assert [f.name for f in files] == ["patient-0001.json", "patient-0002.json", "patient-0003.json"]
    total = 0
    for f in files:
        bundle = orjson.loads(f.read_bytes())
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
        assert sum(e["resource"]["resourceType"] == "Patient" for e in bundle["entry"]) == 1
        total += len(bundle["entry"])
    text = flat(result.output)
    assert f"Wrote 3 bundles to {out} ({total} resources:" in text
    for rtype in ("Patient", "Encounter", "Observation", "Condition", "Organization"):
        assert rtype in text


def test_same_seed_same_files_and_options(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        result = runner.invoke(app, ["demo-data", "-n", "2", "--seed", "5", "-o", str(out), "--encounters", "2"])
        assert result.exit_code == 0, result.output
    assert [p.read_bytes() for p in sorted(a.iterdir())] == [p.read_bytes() for p in sorted(b.iterdir())]
    bundle = orjson.loads((a / "patient-0001.json").read_bytes())
    assert sum(e["resource"]["resourceType"] == "Encounter" for e in bundle["entry"]) == 2
    pretty = runner.invoke(app, ["demo-data", "-n", "1", "--seed", "5", "-o", str(a), "--encounters", "2", "--pretty"])
    assert pretty.exit_code == 0
    text = (a / "patient-0001.json").read_text(encoding="utf-8")
    assert text.startswith("{\n  ") and orjson.loads(text) == bundle
    # the second file was not rewritten: the command says so instead of deleting it
    assert "also holds 1 other .json file" in flat(pretty.output)


def test_out_must_be_a_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(app, ["demo-data", "-n", "1", "--out", str(blocker)])
    assert result.exit_code != 0
