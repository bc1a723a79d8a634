"""The golden record an automatic link writes is the one :func:`compose` makes of all its sources.

On an automatic link the write path takes the other sources' blocking keys from the stored golden
record's key tags instead of extracting every source again; these tests check, on a real SQLite
store with the server's indexer, that the record stays exactly the pure function of its sources
(so an undo still restores it), and that the link record of a first-time source is written."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson

from fhir_hub.mpi import blocking
from fhir_hub.mpi.features import extract
from fhir_hub.mpi.service import KEY_SYSTEM, Golden, Reconciler, compose, current_golden, link_id
from fhir_hub.search.extract import Indexer
from fhir_hub.storage.port import Tx
from fhir_hub.storage.sqlite.store import SQLiteStore
from tests.mpi.conftest import address, patient


def _without_version(body: dict[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in body["meta"].items() if k not in ("versionId", "lastUpdated")}
    return {**body, "meta": meta}


def _copies() -> list[tuple[str, dict[str, Any]]]:
    """Three facilities' copies of one person (same personal ID) with different phones and
    communes, so that each brings blocking keys the others do not have."""
    return [("gc-a", patient(phone="0912345678", addr=address("01", "00004"))),
            ("gc-b", patient(phone="0987654321", addr=address("79", "26734"))),
            ("gc-c", patient(name="Nguyen Van Hung", phone=None, card=None))]


def _unit(sid: str, body: dict[str, Any]) -> Any:
    """One unit as ``rest/write.py``'s create makes it: the source, then reconciliation."""
    def unit(tx: Tx) -> None:
        written = dict(body)
        tx.put("Patient", sid, written, "POST", fresh=True)
        Reconciler().on_patient(tx, sid, written)
    return unit


async def _write_then(store: SQLiteStore, check: Any) -> Any:
    await store.open()
    try:
        for sid, body in _copies():
            await store.transact(_unit(sid, body))
        return await store.transact(check)
    finally:
        await store.close()


def test_auto_linked_golden_is_compose_of_all_its_sources(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "gc.db"), synchronous="NORMAL", indexer=Indexer())

    def check(tx: Tx) -> tuple[dict[str, Any], dict[str, Any], list[str], bool]:
        gid = current_golden(tx, "gc-a")
        assert gid is not None and current_golden(tx, "gc-b") == gid and current_golden(tx, "gc-c") == gid
        stored = tx.current("Patient", gid)
        assert stored is not None and stored.body is not None
        golden = orjson.loads(stored.body)
        sources = []
        for sid in Golden.of(gid, golden).sources:
            v = tx.current("Patient", sid)
            assert v is not None and v.body is not None
            sources.append((sid, orjson.loads(v.body)))
        expected = compose(gid, sources)
        keys = sorted({k for _sid, b in sources for k in blocking.keys(extract(b))})
        link = tx.current("Basic", link_id("gc-c"))
        return golden, expected, keys, link is not None and link.vid == 1

    golden, expected, keys, first_link = asyncio.run(_write_then(store, check))
    assert sorted(s for s, _ in _copies()) == sorted(Golden.of(golden["id"], golden).sources)
    assert _without_version(golden) == expected
    tags = sorted(t["code"] for t in golden["meta"]["tag"] if t["system"] == KEY_SYSTEM)
    assert tags == keys
    assert any(k.startswith("ph:0987654321") for k in tags) and any(k.startswith("ph:0912345678") for k in tags)
    assert first_link  # a source's first link record is version 1, written without a look-up


def _stored(gid: str, sources: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """A golden record as read back from the store: composed, with a version."""
    body = orjson.loads(orjson.dumps(compose(gid, sources)))
    body["meta"] |= {"versionId": "3", "lastUpdated": "2026-12-03T00:00:00.000Z"}
    return body


def _added_cases() -> list[list[tuple[str, dict[str, Any]]]]:
    """Sources in id order, the last one joining the others: elements the first sources lack
    (telecom, address, name, birth date), identifiers repeated and new, identifiers that are not
    objects, a facility copy with old codes, and persons of the bench population."""
    from bench.mpi_population import Population

    bare = patient(phone=None, card=None, birth=None, sex=None)
    bare.pop("address")
    nameless = {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "1"}, "junk"]}
    cases = [[("a1", bare), ("a2", patient(addr=address("01", "00013", old=True)))],
             [("b1", nameless), ("b2", patient()), ("b3", patient(name="Nguyen Van Hung", phone="0987654321"))],
             [("c1", patient(cccd=None)), ("c2", nameless)],
             [("d1", patient(card=None)), ("d2", patient(cccd=None, sex="female"))]]
    pop = Population(50)
    for i in range(0, 50, 5):
        people = [pop.golden(pop.person(i + k)) for k in range(3)]
        cases.append([(f"p{i}-{k}", {**body, "id": f"p{i}-{k}"}) for k, body in enumerate(people)])
    return cases


def test_record_derived_on_an_added_source_is_compose_of_all() -> None:
    """The automatic link's shortcut (the stored golden record plus the new source, no other
    source read) gives exactly the record :func:`compose` makes of all the sources."""
    from fhir_hub.mpi.service import _compose_added

    for sources in _added_cases():
        for n in range(1, len(sources)):
            before, (sid, body) = sources[:n], sources[n]
            current = _stored("g", before)
            golden = Golden("g", (*Golden.of("g", current).sources, sid), ())
            derived = _compose_added(current, golden, body, extract(body))
            assert derived == compose("g", [*before, (sid, body)]), (sid, [s for s, _ in before])
            merged = _stored("g", before) | {"link": [*current["link"], {"other": {"reference": "Patient/m1"},
                                                                           "type": "replaces"}]}
            assert _compose_added(merged, Golden("g", golden.sources, ("m1",)), body, extract(body)) == \
                compose("g", [*before, (sid, body)], merged=("m1",))


def test_added_source_sorting_first_is_composed_from_every_source() -> None:
    """A source whose id sorts before a stored one could give the record its name or address:
    the shortcut does not apply, and the write path reads the sources back."""
    from fhir_hub.mpi.service import _compose_added

    current = _stored("g", [("m", patient())])
    body = patient(phone="0987654321")
    assert _compose_added(current, Golden("g", ("m", "a")), body, extract(body)) is None
    assert _compose_added(current, Golden("g", ("m", "z"), ("x",)), body, extract(body)) is None  # merged differs


def test_copies_written_in_descending_id_order_compose_all_sources(tmp_path: Path) -> None:
    """Client-assigned ids need not grow: each copy here sorts before the stored sources."""
    store = SQLiteStore(str(tmp_path / "gc.db"), synchronous="NORMAL", indexer=Indexer())

    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        await store.open()
        try:
            copies = sorted(_copies(), reverse=True)
            for sid, body in copies:
                await store.transact(_unit(sid, body))

            def check(tx: Tx) -> tuple[dict[str, Any], dict[str, Any]]:
                gid = current_golden(tx, "gc-a")
                assert gid is not None
                stored = tx.current("Patient", gid)
                assert stored is not None and stored.body is not None
                sources = []
                for sid, _ in copies:
                    v = tx.current("Patient", sid)
                    assert v is not None and v.body is not None
                    sources.append((sid, orjson.loads(v.body)))
                return orjson.loads(stored.body), compose(gid, sources)
            return await store.transact(check)
        finally:
            await store.close()

    golden, expected = asyncio.run(run())
    assert _without_version(golden) == expected
    assert [link["other"]["reference"] for link in golden["link"]] == ["Patient/gc-a", "Patient/gc-b", "Patient/gc-c"]


class _Recording:
    """A unit's :class:`Tx` that records the reads ``on_patient`` makes."""

    def __init__(self, tx: Tx, reads: list[tuple[str, str]]) -> None:
        self._tx, self._reads, self.ts = tx, reads, tx.ts

    def current(self, rtype: str, rid: str) -> Any:
        self._reads.append((rtype, rid))
        return self._tx.current(rtype, rid)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


def test_first_version_auto_link_reads_only_its_candidate(tmp_path: Path) -> None:
    """A new source joining a person: the candidate golden record is the one read — no link
    record is looked up for a first version, no other source is read back to compose the
    golden record. An update (version 2) looks its link record up."""
    store = SQLiteStore(str(tmp_path / "gc.db"), synchronous="NORMAL", indexer=Indexer())
    reads: list[tuple[str, str]] = []

    def unit(sid: str, body: dict[str, Any], method: str = "POST") -> Any:
        def run(tx: Tx) -> None:
            written = dict(body)
            tx.put("Patient", sid, written, method, fresh=method == "POST")
            reads.clear()
            Reconciler().on_patient(_Recording(tx, reads), sid, written)  # type: ignore[arg-type]
        return run

    async def run() -> tuple[list[tuple[str, str]], list[tuple[str, str]], str | None]:
        await store.open()
        try:
            (a, body_a), (b, body_b), _ = _copies()
            await store.transact(unit(a, body_a))
            gid = await store.transact(lambda tx: current_golden(tx, a))
            await store.transact(unit(b, body_b))
            joined = list(reads)
            await store.transact(unit(b, {**body_b, "gender": "male"}, "PUT"))
            return joined, list(reads), gid
        finally:
            await store.close()

    joined, updated, gid = asyncio.run(run())
    assert gid is not None and joined == [("Patient", gid)]
    assert ("Basic", link_id("gc-b")) in updated
