"""Every transaction test again, on a server that streams every bundle (large-bundle path, ijson).

The fixtures below override those of ``tests/conftest.py`` for the tests imported here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import Server, fhir_client, make_server
from tests.rest.test_transaction import *  # noqa: F403


@pytest.fixture(scope="module")
def streamed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = make_server(tmp_path_factory.mktemp("streamed"), stream_bundle_bytes="0").start()
    yield srv
    srv.stop()


@pytest.fixture
def client(streamed: Server) -> Iterator[httpx.Client]:
    with fhir_client(streamed) as c:
        yield c


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    srv = make_server(tmp_path, stream_bundle_bytes="0").start()
    yield srv
    srv.stop()


def test_streamed_bundle_with_broken_json_is_400(client: httpx.Client) -> None:
    body = b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Patient"},'
    r = client.post("", content=body)
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "structure"
    r = client.post("", content=b'{"resourceType":"Patient"}')
    assert r.status_code == 400
