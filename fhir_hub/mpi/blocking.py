"""Blocking keys: which persons are worth comparing with an incoming patient at all.

Comparing an incoming patient with a million persons is too slow and needless: a true match
almost always shares one of a few cheap keys with it. Keys are built from the *folded* forms
(no diacritics, no case), so a record that lost its diacritics still meets its person; the
scorer then compares with diacritics. Each key is a string with a kind prefix:

=========  =================================================  what a true match survives with
``nid:``   personal ID                                        (deterministic rule)
``ins:``   social-insurance number                            (deterministic rule)
``gfy:``   tên + họ + birth year                              typo in the middle name, day/month swapped
``gmy:``   tên + đệm + birth year                             typo in the family name
``fmi:``   họ + đệm + first letter of tên + birth year        typo in the given name
``cy:``    2025 commune + birth year (each possible commune)  any name typo, if the address is kept
``ph:``    phone                                              anything but a changed phone
``fn:``    full folded name, only without a birth year        no birth date at all
=========  =================================================  ====================================

A person with the common "Nguyễn Văn Hùng" born in 1970 shares ``gfy:`` with a few hundred
others at a million persons; :class:`~fhir_hub.mpi.index.CandidateIndex` skips a key whose block
is larger than ``max_block``.
"""

from __future__ import annotations

from fhir_hub.mpi.features import Features

#: a person's address may convert to several 2025 communes (a split commune); beyond this many
#: the commune says little and is not used as a key
_MAX_COMMUNE_KEYS = 3


def deterministic_keys(f: Features) -> list[str]:
    keys = [f"nid:{f.national_id}"] if f.national_id else []
    keys.extend(f"ins:{n}" for n in sorted(f.insurance_numbers))
    return keys


def probabilistic_keys(f: Features) -> list[str]:
    keys: list[str] = []
    year = f.birth_year
    given = f.given.folded if f.given else None
    family = f.family.folded if f.family else None
    middle = f.middle.folded if f.middle else None
    if year is not None:
        if given and family:
            keys.append(f"gfy:{given}|{family}|{year}")
        if given and middle:
            keys.append(f"gmy:{given}|{middle}|{year}")
        if family and middle and given:
            keys.append(f"fmi:{family}|{middle}|{given[0]}|{year}")
        if 0 < len(f.communes) <= _MAX_COMMUNE_KEYS:
            keys.extend(f"cy:{c}|{year}" for c in sorted(f.communes))
    elif f.folded_name:
        keys.append(f"fn:{f.folded_name}")
    keys.extend(f"ph:{p}" for p in sorted(f.phones))
    return keys


def keys(f: Features) -> list[str]:
    """Every blocking key of ``f``, deterministic ones first."""
    return deterministic_keys(f) + probabilistic_keys(f)
