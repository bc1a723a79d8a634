"""``fhir-hub reindex`` on the database file of a stopped server: custom parameters loaded from
the file, every resource's index rewritten, a summary table; a missing file is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fhir_hub.cli.main import app
from fhir_hub.search import parameters
from tests.conftest import fhir_client, make_server
from tests.rest.test_search_parameters import create, found, nickname_parameter, nicknamed

runner = CliRunner()


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(autouse=True)
def _registry_restored() -> Iterator[None]:
    """The CLI runs in this process and registers the file's custom parameters: forget them after."""
    before = {p.url for t in ("Patient",) for p in parameters.params_for(t).values()}
    yield
    for p in list(parameters.params_for("Patient").values()):
        if p.url not in before:
            parameters.unregister(p.url)


def test_reindex_a_stopped_servers_file(tmp_path: Path) -> None:
    srv = make_server(tmp_path).start()
    try:
        with fhir_client(srv) as c:
            old = create(c, nicknamed("Bông"))
            create(c, {"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
            create(c, nickname_parameter())
            assert found(c, "/Patient?nickname=bong") == set()
        srv.stop()

        result = runner.invoke(app, ["reindex", "--db", str(srv.db), "--type", "Patient"])
        assert result.exit_code == 0, result.output
        out = flat(result.output)
        assert "Patient │ 1" in out and "total │ 1" in out and "Observation" not in out
        assert "1 custom search parameter(s)" in out
        everything = runner.invoke(app, ["reindex", "--db", str(srv.db)])
        assert everything.exit_code == 0, everything.output
        assert "total │ 3" in flat(everything.output)

        srv.start()
        with fhir_client(srv) as c:
            assert found(c, "/Patient?nickname=bong") == {old}
    finally:
        srv.stop()


def test_reindex_refuses_a_missing_file_and_unknown_types(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    result = runner.invoke(app, ["reindex", "--db", str(missing)])
    assert result.exit_code == 2 and "no database file at" in flat(result.output)
    assert not missing.exists()  # not created by the attempt
    (tmp_path / "hub.db").touch()
    bad = runner.invoke(app, ["reindex", "--db", str(tmp_path / "hub.db"), "--type", "Patiant"])
    assert bad.exit_code == 2 and "'Patiant' is not an R4 resource type" in flat(bad.output)
