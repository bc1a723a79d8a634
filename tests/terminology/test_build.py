"""The committed JSON is exactly what tools/build_terminology.py makes from ../shared (skipped without it)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "fhir_hub" / "terminology" / "data"
CODE_LISTS = REPO.parent / "shared" / "vn" / "code-lists"


@pytest.mark.skipif(not CODE_LISTS.is_dir(), reason="../shared/vn/code-lists not present")
def test_committed_json_matches_a_rebuild() -> None:
    spec = importlib.util.spec_from_file_location("build_terminology", REPO / "tools" / "build_terminology.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    built = module.build(CODE_LISTS)
    assert sorted(built) == sorted(p.name for p in DATA.glob("*.json"))
    for name, data in built.items():
        assert (DATA / name).read_bytes() == data, f"{name} is stale: run tools/build_terminology.py"


def test_data_is_shipped_as_package_data() -> None:
    assert '"terminology/data/*.json"' in (REPO / "pyproject.toml").read_text()
