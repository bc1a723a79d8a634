"""Canonical UCUM units, so ``5 mg`` and ``0.005 g`` meet in a quantity search.

search.html#quantity lets a server match quantities in comparable units. Each UCUM quantity is
indexed twice: as written, and in the canonical unit of its dimension; a query value is
converted the same way (``search/parse.py``).

This is a hand-written **subset**: a table of the common clinical units (mass, volume, length,
time, substance and mass concentrations, cell counts, pressure, temperature, rates, ``%``), not
the full UCUM grammar (no prefix arithmetic, no parsing of arbitrary unit terms). A unit not in
the table has no canonical form and is indexed as written only.
"""

from __future__ import annotations

__all__ = ["SYSTEM", "canonical"]

SYSTEM = "http://unitsofmeasure.org"

_MASS = {"kg": 1e3, "g": 1.0, "mg": 1e-3, "ug": 1e-6, "ng": 1e-9, "pg": 1e-12}
_VOLUME = {"L": 1.0, "dL": 1e-1, "cL": 1e-2, "mL": 1e-3, "uL": 1e-6, "fL": 1e-15, "l": 1.0, "ml": 1e-3}
_LENGTH = {"km": 1e3, "m": 1.0, "cm": 1e-2, "mm": 1e-3, "um": 1e-6, "nm": 1e-9,
           "[in_i]": 0.0254, "[ft_i]": 0.3048}
_TIME = {"s": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0, "d": 86400.0, "wk": 604800.0,
         "mo": 2629800.0, "a": 31557600.0}  # UCUM mo and a are the mean Julian month and year
_SUBSTANCE = {"mol": 1.0, "mmol": 1e-3, "umol": 1e-6, "nmol": 1e-9, "pmol": 1e-12}


def _table() -> dict[str, tuple[float, str]]:
    units: dict[str, tuple[float, str]] = {}
    for code, f in _MASS.items():
        units[code] = (f, "g")
    units["[lb_av]"] = (453.59237, "g")
    units["[oz_av]"] = (28.349523125, "g")
    for code, f in _VOLUME.items():
        units[code] = (f, "L")
    for code, f in _LENGTH.items():
        units[code] = (f, "m")
    for code, f in _TIME.items():
        units[code] = (f, "s")
    for code, f in _SUBSTANCE.items():
        units[code] = (f, "mol")
        for vol in ("L", "dL", "mL"):
            units[f"{code}/{vol}"] = (f / _VOLUME[vol], "mol/L")
    for code, f in _MASS.items():
        for vol in ("L", "dL", "mL"):
            units[f"{code}/{vol}"] = (f / _VOLUME[vol], "g/L")
    for code, f in (("kg/m2", 1e3), ("g/m2", 1.0)):
        units[code] = (f, "g/m2")
    # Cell counts: 10*9/L and 10*3/uL are the same concentration.
    for code, f in (("/L", 1.0), ("10*9/L", 1e9), ("10*12/L", 1e12), ("10*3/uL", 1e9),
                    ("10*6/uL", 1e12), ("/uL", 1e6), ("/mm3", 1e6), ("10*3/mm3", 1e9)):
        units[code] = (f, "/L")
    # Pressure, in the UCUM base units g/(m.s2): 1 Pa = 1000 g/(m.s2).
    for code, f in (("g/(m.s2)", 1.0), ("Pa", 1e3), ("kPa", 1e6), ("mm[Hg]", 133322.387415), ("cm[H2O]", 98066.5)):
        units[code] = (f, "g/(m.s2)")
    # Rates (heart and respiratory rates come as /min, with or without an annotation).
    for code, f in (("/s", 1.0), ("/min", 1 / 60), ("/h", 1 / 3600), ("/d", 1 / 86400),
                    ("{beats}/min", 1 / 60), ("{breaths}/min", 1 / 60)):
        units[code] = (f, "/s")
    units["%"] = (1e-2, "1")
    units["1"] = (1.0, "1")
    return units


_UNITS = _table()
#: Temperatures convert with an offset: kelvin = value * factor + offset.
_AFFINE = {"K": (1.0, 0.0), "Cel": (1.0, 273.15), "[degF]": (5 / 9, 273.15 - 32 * 5 / 9)}


def canonical(value: float, code: str) -> tuple[float, str] | None:
    """``(value, unit)`` in the canonical unit of ``code``'s dimension, or ``None`` if the unit is
    not in the table. ``canonical(5, "mg") == (0.005, "g")``."""
    known = _UNITS.get(code)
    if known is not None:
        factor, unit = known
        return _round(value * factor), unit
    affine = _AFFINE.get(code)
    if affine is not None:
        return _round(value * affine[0] + affine[1]), "K"
    return None


def _round(x: float) -> float:
    """Drop the binary noise of the factor (``5 * 1e-3`` is ``0.005``, not ``0.005000000000000001``)."""
    return float(f"{x:.15g}")
