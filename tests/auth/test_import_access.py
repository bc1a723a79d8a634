"""``$import-legacy`` under authorization (auth on, a real server): submitting a job and reading
its result need unrestricted system create and update scopes; a narrower system token, a
patient's token and no token are refused, and a refused poll shows nothing of the result."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.auth.smart import PASSWORD, REDIRECT, bearer, cli, make_backend, patient_token
from tests.conftest import Server, make_server
from tests.mapping.conftest import sample_files


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Any, Any]]:
    tmp = tmp_path_factory.mktemp("import-auth")
    srv = make_server(tmp, auth="smart").start()
    try:
        cli(srv.db, "clients", "add", "app", "--redirect-uri", REDIRECT)
        emr = make_backend(srv.db, tmp, "emr", "ES384")
        narrow = make_backend(srv.db, tmp, "lab", "ES384", scope="system/Patient.cu system/Encounter.cu")
        cli(srv.db, "users", "add", "--national-id", "079190000001", "--patient", "p1", "--password", PASSWORD)
        yield srv, emr, narrow
    finally:
        srv.stop()


def _post(srv: Server, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{srv.base}/$import-legacy", params={"format": "claims"}, timeout=30,
                      content=sample_files()[0].read_bytes(), headers={**headers, "Content-Type": "application/xml"})


def test_only_unrestricted_system_writers_import(hub: tuple[Server, Any, Any]) -> None:
    srv, emr, narrow = hub
    full = bearer(emr.token(srv).json()["access_token"])
    lab = bearer(narrow.token(srv, scope="system/Patient.cu system/Encounter.cu").json()["access_token"])
    citizen = bearer(patient_token(srv, "079190000001")["access_token"])
    assert _post(srv, {}).status_code == 401
    for refused in (lab, citizen):
        r = _post(srv, refused)
        assert r.status_code == 403, r.text
        assert "$import-legacy" in r.text
    accepted = _post(srv, full)
    assert accepted.status_code == 202, accepted.text
    url = accepted.headers["content-location"]
    for refused in (lab, citizen):
        r = httpx.get(url, headers=refused, timeout=30)
        assert r.status_code == 403 and "Encounter/" not in r.text
    assert httpx.get(url, timeout=30).status_code == 401
    deadline = time.monotonic() + 60
    while (r := httpx.get(url, headers=full, timeout=30)).status_code == 202 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert r.status_code == 200, r.text
    assert r.json()["imported"] == 3
