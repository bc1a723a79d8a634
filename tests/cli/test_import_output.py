"""``fhir-hub import-claims`` output rule: errors (a record that failed, a bundle the server
refused) are printed before any warning, on their own budget, so no number of warnings hides one;
the summary table comes last and counts both."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import fhir_hub.cli.import_claims as import_claims
from fhir_hub.cli.main import app
from fhir_hub.mapping.generate import generate
from tests.conftest import Server
from tests.mapping.conftest import decoded_tables, envelope, sample_files

runner = CliRunner()


def _lines(output: str) -> list[str]:
    return output.splitlines()


def _first(lines: list[str], prefix: str) -> int:
    return next(i for i, line in enumerate(lines) if line.startswith(prefix))


def _table_row(lines: list[str], label: str) -> str:
    row = next(line for line in lines if label in line)
    return row.replace("│", " ").split()[-1]


def test_a_mapping_error_is_printed_before_warnings_past_their_limit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(import_claims, "_SHOW", 1)  # one warning shown: the rest are only counted
    # facility 00998's three visits in an envelope of 00999: a warning each (MA_CSKCB differs)
    warns = tmp_path / "warns.xml"
    warns.write_bytes(envelope([decoded_tables("GIAMDINHHS_synthetic_02_00998", i) for i in (1, 2, 3)]))
    faulty = tmp_path / "faulty.xml"
    faulty.write_bytes(generate(4, seed=3, faults={"ma_lk": 1}).data)
    files = [str(warns), str(faulty)]  # the warnings come first
    result = runner.invoke(app, ["import-claims", *files, "--out", str(tmp_path / "out")], env={"COLUMNS": "250"})
    assert result.exit_code == 1, result.output
    lines = _lines(result.output)
    errors = [line for line in lines if line.startswith(("[error]", "[fatal]"))]
    warnings = [line for line in lines if line.startswith("[warning]")]
    assert errors and any("faulty.xml" in e and "MA_LK" in e for e in errors)
    assert len(warnings) == 1
    assert lines.index(errors[-1]) < _first(lines, "[warning]")
    more = next(line for line in lines if line.startswith("… and ") and "more warnings" in line)
    assert _first(lines, "[warning]") < lines.index(more)
    table = _first(lines, "fhir-hub import (claims)")
    assert table > lines.index(more)  # the table is the last thing printed
    listed_warnings = int(_table_row(lines, "warnings (listed above)"))
    assert listed_warnings == 1 + int(more.split()[2])  # shown + counted = every warning
    assert int(_table_row(lines, "errors (listed above)")) == len(errors)


def test_a_server_refusal_is_printed_before_warnings(fresh_server: Server, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(import_claims, "_SHOW", 0)
    # a base URL where the server answers 404 with an OperationOutcome: every bundle refused
    wrong = fresh_server.base.rstrip("/") + "/Patient/no-such/extra/steps"
    warns = tmp_path / "warns.xml"
    warns.write_bytes(envelope([decoded_tables("GIAMDINHHS_synthetic_02_00998", i) for i in (1, 2, 3)]))
    result = runner.invoke(app, ["import-claims", str(warns), *[str(p) for p in sample_files()], "--base", wrong],
                           env={"COLUMNS": "250"})
    assert result.exit_code == 1, result.output
    lines = _lines(result.output)
    refusals = [line for line in lines if line.startswith("[error]") and "the server answered" in line]
    hosos = int(_table_row(lines, "HOSO mapped"))
    assert len(refusals) == hosos > 0  # every refusal printed, each with the server's diagnostics
    assert all(" 4" in r.split("answered", 1)[1][:4] for r in refusals)
    assert int(_table_row(lines, "HOSO refused by or not sent to the server")) == hosos
    assert int(_table_row(lines, "HOSO posted")) == 0
    assert not any(line.startswith("[warning]") for line in lines)  # none shown, all counted
    assert int(_table_row(lines, "warnings (listed above)")) > 0
    assert lines.index(refusals[-1]) < _first(lines, "fhir-hub import (claims)")


def test_the_collector_stays_paused_until_a_files_bundles_are_posted(fresh_server: Server, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """While a file's bundles are posted the cyclic collector is off (back on, it walked every
    live bundle of the file again), and it is back on once the command is done."""
    import gc

    seen: list[bool] = []
    submit = import_claims._Poster.submit

    def watched(self: import_claims._Poster, bundle: dict[str, object], where: str) -> None:
        seen.append(gc.isenabled())
        submit(self, bundle, where)

    monkeypatch.setattr(import_claims._Poster, "submit", watched)
    assert gc.isenabled()
    files = [str(p) for p in sample_files()]
    result = runner.invoke(app, ["import-claims", *files, "--base", fresh_server.base], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert len(seen) == int(_table_row(_lines(result.output), "HOSO posted")) > 3 and not any(seen)
    assert gc.isenabled()
