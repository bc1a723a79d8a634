"""Abuse limits: per-client rate limits weighted by cost and the lock on guessed passwords, on a
fake clock, then on a real server (``FHIR_HUB_RATE_LIMIT`` set: 429, ``Retry-After``, an
OperationOutcome, other clients unaffected; five wrong passwords lock that national id)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from fhir_hub.auth.limits import FailedLogins, RateLimits, cost
from fhir_hub.errors import FhirError
from tests.auth.smart import (
    PASSWORD,
    REDIRECT,
    authorize_params,
    bearer,
    cli,
    hidden,
    make_backend,
    origin,
    pkce,
)
from tests.conftest import make_server


@pytest.mark.parametrize(("method", "path", "query", "body", "expected"), [
    ("GET", "Patient/1", [], b"", 1),
    ("GET", "Patient/1/_history/2", [], b"", 1),
    ("POST", "Observation", [], b"{}", 2),
    ("PUT", "Observation/1", [], b"{}", 2),
    ("GET", "Observation", [("code", "x")], b"", 5),
    ("GET", "Observation", [("_include", "Observation:subject"), ("_revinclude:iterate", "x")], b"", 15),
    ("GET", "Patient/1/_history", [], b"", 5),
    ("GET", "Patient/1/$everything", [], b"", 20),
    ("GET", "Patient/1/$summary", [], b"", 20),
    ("POST", "", [], b'{"entry":[{"request":{}},{"request":{}},{"request":{}}]}', 4),
])
def test_cost(method: str, path: str, query: list[tuple[str, str]], body: bytes, expected: int) -> None:
    assert cost(method, [s for s in path.split("/") if s], query, body) == expected


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_bucket_burst_refill_and_retry_after() -> None:
    clock = Clock()
    limits = RateLimits(2, clock)  # 2 units/s, a burst of 10
    for _ in range(10):
        limits.take("a", 1)
    with pytest.raises(FhirError) as over:
        limits.take("a", 1)
    assert over.value.status == 429 and over.value.headers["Retry-After"] == "1"
    assert over.value.issues[0].code == "throttled"
    limits.take("b", 5)  # another client has its own bucket
    clock.t += 0.5  # one unit back
    limits.take("a", 1)
    with pytest.raises(FhirError) as costly:
        limits.take("a", 5)
    assert costly.value.headers["Retry-After"] == "3"  # 5 units at 2/s
    clock.t += 60
    limits.take("a", 50)  # more than a bucket holds: let through when it is full
    with pytest.raises(FhirError):
        limits.take("a", 1)


def test_a_refused_request_takes_nothing() -> None:
    clock = Clock()
    limits = RateLimits(1, clock)
    limits.take("a", 4)
    with pytest.raises(FhirError):
        limits.take("a", 2)  # 1 left: refused, still 1 left
    limits.take("a", 1)


def test_over_the_limit_over_the_server(tmp_path: Path) -> None:
    srv = make_server(tmp_path, auth="smart", rate_limit="2").start()
    try:
        busy = make_backend(srv.db, tmp_path, "busy", "ES384")
        calm = make_backend(srv.db, tmp_path, "calm", "ES384")
        access = busy.token(srv).json()["access_token"]
        statuses = [httpx.get(f"{srv.base}/Patient", headers=bearer(access)).status_code for _ in range(3)]
        assert statuses[:2] == [200, 200]  # 5 each from a bucket of 10
        r = httpx.get(f"{srv.base}/Patient/$everything", headers=bearer(access))
        assert r.status_code == 429, r.text
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["resourceType"] == "OperationOutcome" and r.json()["issue"][0]["code"] == "throttled"
        other = calm.token(srv).json()["access_token"]
        assert httpx.get(f"{srv.base}/Patient", headers=bearer(other)).status_code == 200
    finally:
        srv.stop()


def test_failed_logins_lock_an_id_for_the_window() -> None:
    clock = Clock()
    logins = FailedLogins(attempts=3, window=60, clock=clock)
    for _ in range(2):
        logins.failed("001")
    assert logins.locked("001") == 0
    logins.failed("001")
    assert logins.locked("001") == 60 and logins.locked("002") == 0
    clock.t += 59.5
    assert logins.locked("001") == 1
    clock.t += 1
    assert logins.locked("001") == 0  # the oldest failure left the window
    logins.failed("001")
    logins.succeeded("001")
    assert logins.locked("001") == 0


def test_guessing_a_password_over_the_server(tmp_path: Path) -> None:
    srv = make_server(tmp_path, auth="smart").start()
    try:
        cli(srv.db, "clients", "add", "app", "--redirect-uri", REDIRECT)
        backend = make_backend(srv.db, tmp_path, "emr", "ES384")
        access = backend.token(srv).json()["access_token"]
        pid = httpx.post(f"{srv.base}/Patient", content=b'{"resourceType":"Patient"}', headers=bearer(access)).json()["id"]
        cli(srv.db, "users", "add", "--national-id", "001090000099", "--patient", pid, "--password", PASSWORD)
        _, challenge = pkce()
        page = httpx.get(f"{origin(srv)}/auth/authorize", params=authorize_params(srv, challenge))
        txn = hidden(page.text, "txn")

        def login(password: str) -> httpx.Response:
            return httpx.post(f"{origin(srv)}/auth/login", data={"txn": txn, "national_id": "001090000099",
                                                                 "password": password})

        assert [login(f"guess-{i}").status_code for i in range(5)] == [401] * 5
        locked = login(PASSWORD)  # the right one, too late
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        assert "thử lại sau" in locked.text and 'name="txn"' not in locked.text
    finally:
        srv.stop()
