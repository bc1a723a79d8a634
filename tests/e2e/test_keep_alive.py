"""An idle kept-alive connection outlives uvicorn's 5-second default (``keep_alive_seconds``),
and the setting is what decides it."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.conftest import make_server

_REQUEST = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def _answered(sock: socket.socket) -> bool:
    """Send one request on ``sock``; whether a response came back (the server may have closed it)."""
    try:
        sock.sendall(_REQUEST)
        data = sock.recv(4096)
    except OSError:
        return False
    return data.startswith(b"HTTP/1.1 200")


def _after_idle(tmp: Path, seconds: float, **env: str) -> bool:
    srv = make_server(tmp, **env).start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            assert _answered(sock)
            time.sleep(seconds)
            return _answered(sock)
    finally:
        srv.stop()


def test_a_connection_idle_for_seven_seconds_is_still_open(tmp_path: Path) -> None:
    assert _after_idle(tmp_path, 7)


def test_the_setting_decides_how_long(tmp_path: Path) -> None:
    assert not _after_idle(tmp_path, 3, keep_alive_seconds="1")
