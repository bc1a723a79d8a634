"""The CLI: demo-data writes bundles, load posts them to a real server, serve --sample seeds a store."""

from __future__ import annotations

from pathlib import Path

import httpx
from typer.testing import CliRunner

from fhir_hub.cli.main import app
from tests.conftest import Server, make_server

runner = CliRunner()


def test_demo_data_then_load_into_a_real_server(tmp_path: Path, server: Server) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo-data", "--patients", "3", "--seed", "42", "--out", str(out)])
    assert result.exit_code == 0, result.output
    files = sorted(out.glob("*.json"))
    assert len(files) == 3 and "Observation" in result.output
    (tmp_path / "bad.json").write_text("{oops")
    ndjson = tmp_path / "one.ndjson"
    ndjson.write_text('{"resourceType":"Patient","id":"nd-1"}\n{"resourceType":"Patient"}\n')
    ok = runner.invoke(app, ["load", str(out), str(ndjson), "--base", server.base])
    assert ok.exit_code == 0, ok.output
    assert httpx.get(f"{server.base}/Patient/nd-1").status_code == 200
    bad = runner.invoke(app, ["load", str(tmp_path / "bad.json"), "--base", server.base])
    assert bad.exit_code == 1 and "not valid JSON" in " ".join(bad.output.split())


def test_serve_with_sample_data(tmp_path: Path) -> None:
    srv = make_server(tmp_path)
    srv.args = ("--sample", "2")
    srv.start()
    try:
        hist = httpx.get(f"{srv.base}/Patient/_history?_total=accurate").json()
        assert hist["total"] == 2
        orgs = httpx.get(f"{srv.base}/Organization/_history?_total=accurate").json()
        assert 1 <= orgs["total"] <= 2
    finally:
        srv.stop()
