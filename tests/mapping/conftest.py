"""Helpers for the claims-XML tests: the synthetic samples in ``shared/vn/bhyt-xml`` and a builder of
envelopes from decoded tables (to inject faults)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from tests.conftest import SHARED

SAMPLES = SHARED / "vn" / "bhyt-xml" / "sample-synthetic"
DECODED = SAMPLES / "decoded"
#: Provenance.recorded in every test: the output then depends on the input only.
RECORDED = "2026-01-01T00:00:00+07:00"


def sample_files() -> list[Path]:
    return sorted(SAMPLES.glob("GIAMDINHHS_*.xml"))


def decoded_tables(file_stem: str, hoso: int) -> dict[str, bytes]:
    """The inner tables of one HOSO of a sample file, as bytes, by LOAIHOSO."""
    folder = next((DECODED / file_stem).glob(f"HOSO{hoso:02d}_*"))
    return {p.stem: p.read_bytes() for p in sorted(folder.glob("XML*.xml"))}


def envelope(hosos: Sequence[Mapping[str, bytes | str]], facility: str = "00999", count: int | None = None,
             signature: str = "") -> bytes:
    """A GIAMDINHHS file; a ``str`` table value is put in NOIDUNGFILE as is (broken base64)."""
    parts = []
    for tables in hosos:
        files = "".join(
            f"<FILEHOSO><LOAIHOSO>{kind}</LOAIHOSO><NOIDUNGFILE>"
            f"{content if isinstance(content, str) else base64.b64encode(content).decode()}"
            f"</NOIDUNGFILE></FILEHOSO>" for kind, content in tables.items())
        parts.append(f"<HOSO>{files}</HOSO>")
    n = len(hosos) if count is None else count
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<GIAMDINHHS><THONGTINDONVI><MACSKCB>{facility}</MACSKCB>'
            f"</THONGTINDONVI><THONGTINHOSO><NGAYLAP>20250701</NGAYLAP><SOLUONGHOSO>{n}</SOLUONGHOSO>"
            f"<DANHSACHHOSO>{''.join(parts)}</DANHSACHHOSO></THONGTINHOSO>"
            f"<CHUKYDONVI>{signature}</CHUKYDONVI></GIAMDINHHS>").encode()


@pytest.fixture(scope="session", autouse=True)
def _samples_present() -> None:
    if not sample_files():
        pytest.skip(f"no synthetic claims samples under {SAMPLES}")
