"""The legacy formats by the names ``fhir-hub map`` and ``$import-legacy`` take, and the mapper of each.

``qd130`` and ``qd4210`` are claims XML read in that layout; ``claims`` reads each HOSO as
whichever it is; ``hl7v2`` and ``csv`` (with a column spec) have their own adapters. Each mapper
takes a file's bytes and its name and returns the file's result (``records``, ``problems``,
``outcome()``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fhir_hub.mapping.engine import Spec, load_spec

FORMATS = ("qd130", "qd4210", "claims", "hl7v2", "csv")
_LAYOUTS = ("qd130", "qd4210")


def layout(fmt: str) -> Spec | None:
    """The claims layout a format forces (``None``: each HOSO is read as either)."""
    return load_spec(fmt) if fmt in _LAYOUTS else None


def is_claims(fmt: str) -> bool:
    return fmt == "claims" or fmt in _LAYOUTS


def refusal(fmt: str | None, spec: str | None, allowed: tuple[str, ...] = FORMATS) -> tuple[str, str] | None:
    """Why ``fmt`` (with the csv column ``spec``) cannot be mapped, and which parameter is wrong
    (``format`` or ``spec``); ``None`` when it can."""
    from fhir_hub.mapping.csv_import import SPECS

    if fmt not in allowed:
        return f"unknown format {fmt!r}: {', '.join(allowed)}", "format"
    if fmt == "csv" and spec not in SPECS:
        return f"csv needs spec {' | '.join(SPECS)}", "spec"
    return None


def mapper(fmt: str, spec: str | None) -> Callable[[bytes, str], Any]:
    """The function that maps a file of ``fmt`` (checked by :func:`refusal` first)."""
    if fmt == "hl7v2":
        from fhir_hub.mapping.hl7v2 import map_messages

        return map_messages
    if fmt == "csv":
        from fhir_hub.mapping.csv_import import map_csv

        assert spec is not None
        return lambda data, name: map_csv(data, name, spec)
    from fhir_hub.mapping import map_file

    forced = layout(fmt)
    return lambda data, name: map_file(data, name, spec=forced)
