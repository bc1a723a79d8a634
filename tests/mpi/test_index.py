"""The candidate index and the blocking keys."""

from __future__ import annotations

from fhir_hub.mpi import blocking
from fhir_hub.mpi.features import extract
from fhir_hub.mpi.index import CandidateIndex
from tests.mpi.conftest import address, patient


def test_add_lookup_remove() -> None:
    index = CandidateIndex()
    index.add("a", ["k1", "k2"])
    index.add("b", ["k2", "k3"])
    assert index.lookup(["k2"]).ids == {"a", "b"}
    assert index.lookup(["k1", "k3", "nope"]).ids == {"a", "b"}
    assert len(index) == 2 and "a" in index and index.key_count == 3
    index.remove("a")
    assert index.lookup(["k1", "k2"]).ids == {"b"} and index.block_size("k1") == 0 and index.key_count == 2
    index.remove("a")  # unknown: nothing happens
    assert len(index) == 1


def test_add_again_replaces_the_keys() -> None:
    index = CandidateIndex()
    index.add("a", ["k1"])
    index.add("a", ["k2", "k2"])
    assert index.lookup(["k1"]).ids == frozenset() and index.keys_of("a") == ("k2",)


def test_lookup_skips_blocks_over_the_cap() -> None:
    index = CandidateIndex()
    for n in range(5):
        index.add(f"p{n}", ["common", f"own{n}"])
    found = index.lookup(["common", "own1"], max_block=4)
    assert found.ids == {"p1"} and found.skipped == ("common",)
    assert index.lookup(["common"]).ids == {f"p{n}" for n in range(5)}


def test_blocking_keys_are_diacritic_free() -> None:
    a = blocking.keys(extract(patient()))
    b = blocking.keys(extract(patient(name="NGUYEN VAN HUNG")))
    assert a == b
    assert "nid:001085012345" in a and "ins:0123456789" in a and "ph:0912345678" in a
    assert "gfy:hung|nguyen|1985" in a and "gmy:hung|van|1985" in a and "fmi:nguyen|van|h|1985" in a
    assert "cy:00004|1985" in a


def test_blocking_keys_survive_each_single_fault() -> None:
    base = set(blocking.probabilistic_keys(extract(patient())))
    for faulty in (patient(name="Nguyễn Văn Hùnq"), patient(name="Nguyễn Vân Hùng"), patient(name="Ngyễn Văn Hùng"),
                   patient(birth="1985-04-03"), patient(addr=address("01", "00013", old=True)), patient(phone=None)):
        assert base & set(blocking.probabilistic_keys(extract(faulty)))


def test_no_birth_year_blocks_on_the_full_name() -> None:
    keys = blocking.probabilistic_keys(extract(patient(birth=None, phone=None)))
    assert keys == ["fn:nguyen van hung"]


def test_single_and_shared_blocks_round_trip() -> None:
    index = CandidateIndex()
    index.add("a", ["k"])
    assert index.block_size("k") == 1
    index.add("b", ["k"])
    index.add("c", ["k"])
    index.remove("b")
    index.remove("c")
    assert index.lookup(["k"]).ids == {"a"} and index.block_size("k") == 1
    index.remove("a")
    assert index.key_count == 0 and index.lookup(["k"]).ids == frozenset()
