"""Shared fixtures: a real fhir-hub server (uvicorn on loopback, real SQLite file) per need."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.backends import pg_cluster, pg_databases, pg_url, store_factory  # noqa: F401  (fixtures)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
EXAMPLES = SHARED / "fhir-r4" / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A fhir-hub process started for a test; ``base`` is its FHIR base URL."""

    db: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    #: Extra ``fhir-hub serve`` flags.
    args: tuple[str, ...] = ()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def start(self, timeout: float = 20.0) -> Server:
        cmd = [sys.executable, "-m", "fhir_hub", "serve", "--port", str(self.port), "--db", str(self.db), *self.args]
        self.proc = subprocess.Popen(cmd, env={**os.environ, **self.env}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"fhir-hub exited with {self.proc.returncode}: {err}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("fhir-hub did not become ready")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def make_server(tmp: Path, **env: str) -> Server:
    return Server(tmp / "hub.db", free_port(), {f"FHIR_HUB_{k.upper()}": v for k, v in env.items()})


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared server for tests that do not care what else is in the store."""
    srv = make_server(tmp_path_factory.mktemp("hub")).start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server with an empty store, for tests that compare whole-store states."""
    srv = make_server(tmp_path).start()
    yield srv
    srv.stop()


def fhir_client(srv: Server) -> httpx.Client:
    """An HTTP client speaking FHIR JSON to ``srv``."""
    return httpx.Client(base_url=srv.base, timeout=30,
                        headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"})


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with fhir_client(server) as c:
        yield c
