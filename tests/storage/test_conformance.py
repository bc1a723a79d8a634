"""The storage port's contract. Every backend runs this one suite unchanged.

A backend joins ``tests/backends.py``'s ``store_factory`` fixture: each test gets a fresh, empty
store of every backend (SQLite in a temp dir, PostgreSQL in a database of the session's own
cluster), which may be closed and reopened on the same data (``reopen``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_hub.search import parameters
from fhir_hub.search.dates import instant
from fhir_hub.search.extract import Indexer
from fhir_hub.search.query import Clause, StringValue, TokenValue
from fhir_hub.storage.port import HistoryQuery, Store, StoredVersion, Tx, prepare_body
from tests.backends import StoreFactory


class Opened:
    def __init__(self, factory: StoreFactory, tmp: Path):
        self._factory = factory
        self._tmp = tmp
        self.store = factory(tmp, "store")

    async def reopen(self) -> Store:
        await self.store.close()
        self.store = self._factory(self._tmp, "store")
        await self.store.open()
        return self.store


@pytest.fixture
async def opened(store_factory: StoreFactory, tmp_path: Path) -> AsyncIterator[Opened]:
    o = Opened(store_factory, tmp_path)
    await o.store.open()
    yield o
    await o.store.close()


def patient(family: str, ident: str | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}]}
    if ident:
        p["identifier"] = [{"system": "urn:test", "value": ident}]
    return p


async def put(store: Store, rtype: str, rid: str, resource: dict[str, Any], method: str = "PUT") -> Any:
    return await store.transact(lambda tx: tx.put(rtype, rid, resource, method))


async def test_put_then_read_gives_the_stored_bytes_with_meta(opened: Opened) -> None:
    store = opened.store
    v = await put(store, "Patient", "a", patient("Nguyễn"))
    assert (v.vid, v.deleted) == (1, False)
    got = await store.read("Patient", "a")
    assert got is not None and got.body == v.body
    doc = orjson.loads(got.body)
    assert doc["id"] == "a" and doc["meta"]["versionId"] == "1" and doc["name"][0]["family"] == "Nguyễn"
    assert doc["meta"]["lastUpdated"].endswith("Z")


async def test_a_prepared_body_is_stored_as_made_with_the_commit_time_and_indexed(opened: Opened) -> None:
    store = opened.store
    sent = {**patient("Trần", "prep-1"), "meta": {"profile": ["urn:test:profile"]}}
    prepared = prepare_body("Patient", "prep", sent, ())
    assert prepared is not None
    rows = store.index_form.prepare("Patient", Indexer().rows("Patient", sent))
    v = await store.transact(lambda tx: tx.put("Patient", "prep", prepared, "POST", fresh=True, index=rows))
    unprepared = await store.transact(lambda tx: tx.put("Patient", "plain", dict(sent), "POST", fresh=True))
    assert v.vid == 1 and v.body == prepared.at(instant(v.ts))
    assert orjson.loads(v.body) == {**orjson.loads(unprepared.body), "id": "prep",
                                    "meta": {"profile": ["urn:test:profile"], "versionId": "1",
                                             "lastUpdated": instant(v.ts)}}
    assert (await store.read("Patient", "prep")) == v
    assert sorted(await store.find("Patient", [token("identifier", ("urn:test", "prep-1"))], 10)) == ["plain", "prep"]
    bare = prepare_body("Patient", "bare", patient("Lê", "prep-2"), ())
    assert bare is not None  # without prepared rows the store extracts them from the body
    await store.transact(lambda tx: tx.put("Patient", "bare", bare, "POST", fresh=True))
    assert await store.find("Patient", [token("identifier", ("urn:test", "prep-2"))], 10) == ["bare"]


async def test_every_version_is_kept_and_readable(opened: Opened) -> None:
    store = opened.store
    for i in range(3):
        await put(store, "Patient", "a", patient(f"v{i}"))
    assert (await store.read("Patient", "a")).vid == 3  # type: ignore[union-attr]
    for vid in (1, 2, 3):
        v = await store.vread("Patient", "a", vid)
        assert v is not None and orjson.loads(v.body or b"")["name"][0]["family"] == f"v{vid - 1}"
    assert await store.vread("Patient", "a", 4) is None
    assert await store.read("Patient", "nope") is None


async def test_delete_is_a_versioned_tombstone(opened: Opened) -> None:
    store = opened.store
    await put(store, "Patient", "a", patient("x"))
    gone = await store.transact(lambda tx: tx.delete("Patient", "a"))
    assert gone.vid == 2 and gone.deleted
    cur = await store.read("Patient", "a")
    assert cur is not None and cur.deleted and cur.vid == 2
    assert await store.transact(lambda tx: tx.delete("Patient", "a")) is None  # nothing live left
    assert (await store.vread("Patient", "a", 1)).body is not None  # type: ignore[union-attr]
    again = await put(store, "Patient", "a", patient("y"))
    assert again.vid == 3


async def test_a_failing_unit_leaves_nothing_behind(opened: Opened) -> None:
    store = opened.store
    await put(store, "Patient", "keep", patient("keep", "k1"))

    def half_then_fail(tx: Tx) -> None:
        tx.put("Patient", "b", patient("b", "b1"), "POST")
        tx.put("Patient", "keep", patient("changed"), "PUT")
        tx.delete("Patient", "keep")
        raise ValueError("boom")

    with pytest.raises(ValueError):
        await store.transact(half_then_fail)
    assert await store.read("Patient", "b") is None
    keep = await store.read("Patient", "keep")
    assert keep is not None and keep.vid == 1
    assert await store.find("Patient", [token("identifier", ("urn:test", "b1"))], 10) == []
    assert len(await store.history(HistoryQuery())) == 1


async def test_a_failing_unit_keeps_the_index_rows_it_replaced(opened: Opened) -> None:
    store = opened.store
    await put(store, "Patient", "keep", patient("keep", "k1"))

    def replace_then_fail(tx: Tx) -> None:
        tx.put("Patient", "keep", patient("keep", "k2"), "PUT")
        raise ValueError("boom")

    with pytest.raises(ValueError):
        await store.transact(replace_then_fail)
    assert await store.find("Patient", [token("identifier", ("urn:test", "k1"))], 10) == ["keep"]
    assert await store.find("Patient", [token("identifier", ("urn:test", "k2"))], 10) == []


async def test_searches_inside_a_unit_see_earlier_writes(opened: Opened) -> None:
    store = opened.store
    await put(store, "Patient", "first", patient("first", "f1"))

    await put(store, "Patient", "other", patient("other", "f1"))
    await put(store, "Patient", "other", patient("other", "o1"))  # no longer f1

    def unit(tx: Tx) -> list[list[str]]:
        tx.put("Patient", "second", patient("second", "s1"), "POST")
        return [tx.find("Patient", [token("identifier", ("urn:test", "f1"))], 10),
                tx.find("Patient", [token("identifier", (None, "s1"))], 10),
                tx.find("Patient", [token("identifier", ("urn:elsewhere", "s1"))], 10),
                tx.find("Patient", [token("identifier", ("urn:test", "s1"), ("urn:test", "f1"))], 10),
                tx.find("Patient", [token("identifier", ("urn:test", "s1"), ("urn:test", "f1"))], 1),
                tx.find("Patient", [Clause("family", "string", (StringValue("sec"),))], 10)]

    assert await store.transact(unit) == [["first"], ["second"], [], ["first", "second"], ["first"], ["second"]]


async def test_every_answered_write_is_found_by_the_next_search(opened: Opened) -> None:
    store = opened.store
    for i in range(30):
        await put(store, "Patient", f"p{i}", patient("x", f"id{i}"))
        assert await store.find("Patient", [token("identifier", ("urn:test", f"id{i}"))], 10) == [f"p{i}"]
        assert await store.count("Patient", [token("identifier", ("urn:test", None))]) == i + 1


async def test_units_see_their_own_writes(opened: Opened) -> None:
    def unit(tx: Tx) -> tuple[int, int]:
        tx.put("Patient", "s", patient("one"), "POST")
        cur = tx.current("Patient", "s")
        tx.put("Patient", "s", patient("two"), "PUT")
        return cur.vid if cur else 0, tx.current("Patient", "s").vid  # type: ignore[union-attr]

    assert await opened.store.transact(unit) == (1, 2)


async def test_concurrent_units_are_serialised_and_all_commit(opened: Opened) -> None:
    store = opened.store
    await put(store, "Patient", "counter", {"resourceType": "Patient", "multipleBirthInteger": 0})

    def increment(tx: Tx) -> int:
        cur = tx.current("Patient", "counter")
        assert cur is not None and cur.body is not None
        doc = orjson.loads(cur.body)
        doc["multipleBirthInteger"] += 1
        return tx.put("Patient", "counter", doc, "PUT").vid

    vids = await asyncio.gather(*(store.transact(increment) for _ in range(200)))
    assert sorted(vids) == list(range(2, 202))
    final = orjson.loads((await store.read("Patient", "counter")).body)  # type: ignore[union-attr, arg-type]
    assert final["multipleBirthInteger"] == 200


async def test_one_failing_unit_among_concurrent_ones_fails_alone(opened: Opened) -> None:
    store = opened.store

    def ok(i: int) -> Callable[[Tx], int]:
        return lambda tx: tx.put("Patient", f"p{i}", patient(str(i)), "POST").vid

    def bad(tx: Tx) -> None:
        tx.put("Patient", "bad", patient("bad"), "POST")
        raise KeyError("bad")

    results = await asyncio.gather(*(store.transact(ok(i)) for i in range(20)), store.transact(bad),
                                   *(store.transact(ok(i)) for i in range(20, 40)), return_exceptions=True)
    assert sum(1 for r in results if isinstance(r, KeyError)) == 1
    assert await store.read("Patient", "bad") is None
    for i in range(40):
        assert await store.read("Patient", f"p{i}") is not None


async def test_find_by_token_and_id_sees_only_live_current_versions(opened: Opened) -> None:
    store = opened.store
    await put(store, "Patient", "a", patient("a", "111"))
    await put(store, "Patient", "b", patient("b", "222"))
    await put(store, "Patient", "a", patient("a", "333"))  # a no longer has 111
    def by(system: str | None, code: str | None) -> list[Clause]:
        return [token("identifier", (system, code))]

    assert await store.find("Patient", by("urn:test", "111"), 10) == []
    assert await store.find("Patient", by("urn:test", "333"), 10) == ["a"]
    assert await store.find("Patient", by(None, "222"), 10) == ["b"]
    assert await store.find("Patient", by("urn:other", "222"), 10) == []
    assert sorted(await store.find("Patient", by("urn:test", None), 10)) == ["a", "b"]
    either = [token("identifier", ("urn:test", "222"), ("urn:test", "333"))]
    assert sorted(await store.find("Patient", either, 10)) == ["a", "b"]
    assert await store.find("Patient", by("urn:test", "222"), 10, ids=["b"]) == ["b"]
    assert await store.find("Patient", by("urn:test", "222"), 10, ids=["a"]) == []
    assert await store.count("Patient", either) == 2
    await store.transact(lambda tx: tx.delete("Patient", "b"))
    assert await store.find("Patient", by(None, "222"), 10) == []
    assert await store.count("Patient", either) == 1


def token(param: str, *pairs: tuple[str | None, str | None]) -> Clause:
    return Clause(param, "token", tuple(TokenValue(system, code) for system, code in pairs))


async def test_history_newest_first_with_since_and_cursor(opened: Opened) -> None:
    store = opened.store
    for i in range(5):
        await put(store, "Patient", "h", patient(str(i)))
    await put(store, "Observation", "o", {"resourceType": "Observation", "status": "final",
                                          "code": {"text": "x"}})
    inst = await store.history(HistoryQuery("Patient", "h", count=10))
    assert [v.vid for v in inst] == [5, 4, 3, 2, 1]
    page1 = await store.history(HistoryQuery("Patient", "h", count=2))
    page2 = await store.history(HistoryQuery("Patient", "h", before_seq=page1[-1].seq, count=2))
    assert [v.vid for v in page1 + page2] == [5, 4, 3, 2]
    since = await store.history(HistoryQuery(since=inst[1].ts, count=10))
    assert [(v.rtype, v.vid) for v in since] == [("Observation", 1), ("Patient", 5), ("Patient", 4)]
    assert await store.history_total(HistoryQuery("Patient")) == 5
    at = await store.history(HistoryQuery("Patient", "h", at=(inst[2].ts, inst[2].ts), count=10))
    assert [v.vid for v in at] == [3]


async def test_writes_survive_reopen(opened: Opened) -> None:
    await put(opened.store, "Patient", "durable", patient("d", "dd"))
    store = await opened.reopen()
    v = await store.read("Patient", "durable")
    assert v is not None and v.vid == 1
    later = await put(store, "Patient", "durable", patient("e"))
    assert later.vid == 2 and later.ts > v.ts


def _moved(rid: str, vid: int, ts: int, ident: str) -> bytes:
    """A body as another store wrote it: its own key order and spacing, which must survive."""
    doc = {"resourceType": "Patient", "id": rid, "meta": {"lastUpdated": instant(ts), "versionId": str(vid)},
           "identifier": [{"system": "urn:test", "value": ident}], "name": [{"family": "Trần"}]}
    return orjson.dumps(doc).replace(b",", b", ")


async def test_restore_writes_versions_as_given_and_indexes_them(opened: Opened) -> None:
    store = opened.store
    ts1, ts3, ts4 = 1_600_000_000_000_001, 1_600_000_100_000_002, 1_600_000_200_000_003
    v1 = StoredVersion("Patient", "m", 1, ts1, "POST", _moved("m", 1, ts1, "old"))
    v3 = StoredVersion("Patient", "m", 3, ts3, "PUT", _moved("m", 3, ts3, "new"))  # gaps are allowed
    n2 = StoredVersion("Patient", "n", 2, ts1, "PATCH", _moved("n", 2, ts1, "n"))
    got = await store.transact(lambda tx: [tx.restore(v1), tx.restore(v3)])
    assert [(v.vid, v.ts, v.method, v.body) for v in got] == [(1, ts1, "POST", v1.body), (3, ts3, "PUT", v3.body)]
    await store.transact(lambda tx: tx.restore(n2))

    cur = await store.read("Patient", "m")
    assert cur is not None and (cur.vid, cur.ts, cur.method, cur.body) == (3, ts3, "PUT", v3.body)
    assert (await store.vread("Patient", "m", 1)).body == v1.body  # type: ignore[union-attr]
    assert await store.vread("Patient", "m", 2) is None
    assert [(v.vid, v.ts, v.method) for v in await store.history(HistoryQuery("Patient", "m"))] == \
        [(3, ts3, "PUT"), (1, ts1, "POST")]
    assert await store.find("Patient", [token("identifier", ("urn:test", "new"))], 10) == ["m"]
    assert await store.find("Patient", [token("identifier", ("urn:test", "old"))], 10) == []
    assert await store.find("Patient", [Clause("name", "string", (StringValue("tran"),))], 10) == ["m", "n"]
    by_time = await store.find_sorted("Patient", [], [("_lastUpdated", "date", False)], 10)
    assert [rid for rid, _key in by_time] == ["n", "m"]  # indexed at the kept lastUpdated, not today

    def not_after(tx: Tx) -> None:  # a version not after the latest fails its unit, which leaves nothing
        tx.restore(StoredVersion("Patient", "n", 5, ts4, "PUT", _moved("n", 5, ts4, "n5")))
        tx.restore(v3)

    with pytest.raises(ValueError):
        await store.transact(not_after)
    assert (await store.read("Patient", "n")).vid == 2  # type: ignore[union-attr]

    gone = await store.transact(lambda tx: tx.restore(StoredVersion("Patient", "m", 4, ts4, "DELETE", None)))
    assert gone.deleted and (gone.vid, gone.ts) == (4, ts4)
    assert await store.find("Patient", [token("identifier", ("urn:test", "new"))], 10) == []
    store = await opened.reopen()
    later = await put(store, "Patient", "m", patient("later"))
    assert later.vid == 5 and later.ts > ts4
    assert (await store.read("Patient", "n")).body == n2.body  # type: ignore[union-attr]


_NICKNAME = "urn:test:SearchParameter/nickname"


async def test_reindex_rewrites_index_rows_with_the_current_parameters(opened: Opened) -> None:
    store = opened.store
    nick = {"resourceType": "Patient", "extension": [{"url": "urn:test:nickname", "valueString": "Bông"}]}
    await put(store, "Patient", "n", nick)
    await put(store, "Patient", "gone", nick)
    await store.transact(lambda tx: tx.delete("Patient", "gone"))
    by_nickname = [token("nickname", (None, "Bông"))]
    parameters.register({"resourceType": "SearchParameter", "url": _NICKNAME, "status": "active", "code": "nickname",
                         "base": ["Patient"], "type": "token",
                         "expression": "Patient.extension('urn:test:nickname').value"})
    try:
        assert await store.find("Patient", by_nickname, 10) == []  # written before the parameter existed
        assert await store.transact(lambda tx: (tx.reindex("Patient", "n"), tx.reindex("Patient", "gone"),
                                                tx.reindex("Patient", "never"))) == (True, False, False)
        assert await store.find("Patient", by_nickname, 10) == ["n"]
        assert (await store.read("Patient", "n")).vid == 1  # type: ignore[union-attr]  # no new version
    finally:
        parameters.unregister(_NICKNAME)
    assert await store.transact(lambda tx: tx.reindex("Patient", "n")) is True
    assert await store.find("Patient", by_nickname, 10) == []


@pytest.mark.parametrize("keys", [
    [("family", "string", False)], [("family", "string", True)],
    [("birthdate", "date", True), ("family", "string", False)],
    [("birthdate", "date", False), ("family", "string", True)], [("_id", "special", True)],
])
async def test_sorted_pages_follow_the_order_with_ties_and_missing_values(opened: Opened,
                                                                           keys: list[tuple[str, str, bool]]) -> None:
    store = opened.store
    families = ["Lê", "Bùi", None, "Trần", "Lê", "An", None, "Bùi", "Đặng", "Võ"]
    births = ["1990", None, "1985-02-03", "1990", "2001-01-01", None, "1990", "1985-02-03", None, "1970"]
    for i, (family, born) in enumerate(zip(families, births, strict=True)):
        p: dict[str, Any] = {"resourceType": "Patient"}
        if family:
            p["name"] = [{"family": family}]
        if born:
            p["birthDate"] = born
        await put(store, "Patient", f"s{i}", p)
    from fhir_hub.search.text import normalise

    def value(i: int, key: tuple[str, str, bool]) -> Any:
        param, _kind, _desc = key
        if param == "_id":
            return f"s{i}"
        raw = families[i] if param == "family" else births[i]
        return None if raw is None else (normalise(raw) if param == "family" else raw)

    def sort_key(i: int) -> list[Any]:
        out: list[Any] = []
        for key in keys:
            v = value(i, key)
            out.append(v is None)
            out.append(_Reverse(v) if key[2] and v is not None else v if v is not None else 0)
        return out

    expected = [f"s{i}" for i in sorted(range(len(families)), key=lambda i: (*sort_key(i), i))]
    seen: list[str] = []
    after = None
    while True:
        rows = await store.find_sorted("Patient", [], keys, 3, after)
        seen += [rid for rid, _ in rows]
        if len(rows) < 3:
            break
        after = list(rows[-1][1])
    assert seen == expected


class _Reverse:
    """Sorts in reverse: a descending key inside an ascending tuple sort."""

    def __init__(self, v: Any):
        self.v = v

    def __lt__(self, other: _Reverse) -> bool:
        return bool(self.v > other.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reverse) and self.v == other.v
