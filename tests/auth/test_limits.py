"""Per-client rate limits weighted by cost: the buckets on a fake clock, then a real server with
``FHIR_HUB_RATE_LIMIT`` set (429, ``Retry-After``, an OperationOutcome; other clients unaffected)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from fhir_hub.auth.limits import RateLimits, cost
from fhir_hub.errors import FhirError
from tests.auth.smart import bearer, make_backend
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
