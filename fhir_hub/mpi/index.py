"""An in-memory candidate index: blocking key → ids of the persons that have it.

The index knows keys and ids only, never Patients or features, so that a store-backed index (one
SQL table ``(key, person_id)`` with an index on ``key``) can take its place behind the same three
calls: :meth:`~CandidateIndex.add`, :meth:`~CandidateIndex.remove` and
:meth:`~CandidateIndex.lookup`. Keys come from :mod:`fhir_hub.mpi.blocking`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Lookup:
    """The persons found, and the keys skipped because their block was larger than the cap."""

    ids: frozenset[str]
    skipped: tuple[str, ...] = ()


class CandidateSource(Protocol):
    def add(self, person_id: str, keys: Iterable[str]) -> None: ...

    def remove(self, person_id: str) -> None: ...

    def lookup(self, keys: Iterable[str], max_block: int | None = None) -> Lookup: ...


class CandidateIndex:
    """Blocking keys of every person, in two dicts (key → ids, id → keys). Not thread-safe.

    Most keys (personal ID, phone, commune + year) have one person: such a block is held as the
    id itself rather than a one-element set, which halves the index's memory at a million persons.
    """

    def __init__(self) -> None:
        self._ids: dict[str, str | set[str]] = {}
        self._keys: dict[str, tuple[str, ...]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, person_id: object) -> bool:
        return person_id in self._keys

    def add(self, person_id: str, keys: Iterable[str]) -> None:
        """Index ``person_id`` under ``keys``, replacing the keys it had."""
        if person_id in self._keys:
            self.remove(person_id)
        own = tuple(dict.fromkeys(keys))
        self._keys[person_id] = own
        ids = self._ids
        for key in own:
            block = ids.get(key)
            if block is None:
                ids[key] = person_id
            elif isinstance(block, str):
                if block != person_id:
                    ids[key] = {block, person_id}
            else:
                block.add(person_id)

    def remove(self, person_id: str) -> None:
        """Forget ``person_id`` (nothing happens for an unknown one)."""
        ids = self._ids
        for key in self._keys.pop(person_id, ()):
            block = ids.get(key)
            if block == person_id:
                del ids[key]
            elif isinstance(block, set):
                block.discard(person_id)
                if len(block) == 1:
                    ids[key] = next(iter(block))

    @property
    def key_count(self) -> int:
        """How many distinct keys are indexed."""
        return len(self._ids)

    def keys_of(self, person_id: str) -> tuple[str, ...]:
        return self._keys.get(person_id, ())

    def block_size(self, key: str) -> int:
        block = self._ids.get(key)
        return 0 if block is None else 1 if isinstance(block, str) else len(block)

    def lookup(self, keys: Iterable[str], max_block: int | None = None) -> Lookup:
        """The persons sharing any of ``keys``; a key whose block holds more than ``max_block``
        persons is skipped (and named in the result)."""
        found: set[str] = set()
        skipped: list[str] = []
        for key in keys:
            block = self._ids.get(key)
            if block is None:
                continue
            if isinstance(block, str):
                found.add(block)
            elif max_block is not None and len(block) > max_block:
                skipped.append(key)
            else:
                found |= block
        return Lookup(frozenset(found), tuple(skipped))
