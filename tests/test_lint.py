"""The conventions are enforced, not hoped for: ruff and mypy are clean on the package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    r = _run("ruff", "check", "fhir_hub", "tests", "bench", "tools")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_is_clean() -> None:
    r = _run("mypy", "fhir_hub")
    assert r.returncode == 0, r.stdout + r.stderr
