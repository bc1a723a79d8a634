"""The documented errata of the official R4 examples (``data/r4-example-errata.json``) and the check that
the issues of a whole run are exactly those: nothing unexplained, every erratum in exactly its files."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from fhir_hub.errors import Issue

_DATA = orjson.loads((Path(__file__).parent / "data" / "r4-example-errata.json").read_bytes())["errata"]


def errata(kind: str) -> list[dict[str, Any]]:
    """The errata of one pass: ``structure`` or ``core``."""
    return [e for e in _DATA if e["pass"] == kind]


def _match(found: list[dict[str, Any]], file: str, issue: Issue) -> int | None:
    for k, e in enumerate(found):
        if (fnmatch.fnmatch(file, e["files"]) and issue.code == e["code"] and issue.diagnostics.startswith(e["message"])
                and re.search(e["location"], issue.expression[0])):
            return k
    return None


def check(kind: str, results: Iterable[tuple[str, list[Issue]]]) -> set[str]:
    """Assert that the errors of ``results`` ((file name, issues) per example) are exactly the errata of
    ``kind``; the names of the files that have them."""
    found = errata(kind)
    unexplained: dict[str, list[str]] = {}
    matched: list[set[str]] = [set() for _ in found]
    for name, issues in results:
        for issue in issues:
            if issue.severity != "error":
                continue
            k = _match(found, name, issue)
            if k is None:
                unexplained.setdefault(name, []).append(f"{issue.code} {issue.expression} {issue.diagnostics}")
            else:
                matched[k].add(name)
    assert not unexplained, unexplained
    # each erratum is still there, in exactly the files it names: one fixed or added shows up here
    assert [len(m) for m in matched] == [e["count"] for e in found], [(e["files"], e["message"]) for e in found]
    return set().union(*matched)
