"""Claims files mapped by worker processes give what one process gives, whatever goes wrong."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import orjson
import pytest

from fhir_hub.mapping import FileResult, map_file
from fhir_hub.mapping.engine import load_spec
from fhir_hub.mapping.generate import generate
from fhir_hub.mapping.parallel import RUN, ClaimsMapper
from tests.mapping.conftest import RECORDED


def _wire(result: FileResult) -> bytes:
    """Everything a caller sees of a result, as bytes."""
    hosos: list[Any] = [[h.index, h.ma_lk, h.bundle, [repr(p) for p in h.problems], h.unmapped]
                        for h in result.hosos]
    return orjson.dumps([result.facility, [repr(p) for p in result.problems], hosos, result.outcome()])


@pytest.fixture(scope="module")
def mapper() -> Any:
    with ClaimsMapper(2) as m:
        yield m


@pytest.fixture(scope="module")
def faulty() -> bytes:
    # more HOSO than two runs, with a fault of every kind
    return generate(3 * RUN + 5, seed=7, faults={"base64": 2, "date": 2, "code": 2, "ma_lk": 2, "number": 2}).data


def test_workers_give_the_single_process_result(mapper: ClaimsMapper, faulty: bytes) -> None:
    expected = map_file(faulty, "f.xml", RECORDED)
    before = mapper.in_workers, mapper.here
    got = mapper.map_file(faulty, "f.xml", RECORDED)
    assert (mapper.in_workers - before[0], mapper.here - before[1]) == (3 * RUN + 5, 0)
    assert len(got.hosos) == 3 * RUN + 5
    assert [h.index for h in got.hosos] == list(range(1, 3 * RUN + 6))
    assert sum(1 for h in got.hosos if h.bundle is None) >= 2  # the faults are there
    assert _wire(got) == _wire(expected)


def test_stream_yields_in_file_order(mapper: ClaimsMapper, faulty: bytes) -> None:
    result = FileResult("f.xml")
    seen = [h.index for h in mapper.stream_file(result, faulty, RECORDED)]
    assert seen == list(range(1, 3 * RUN + 6))
    assert [h.index for h in result.hosos] == seen


def test_a_hoso_whose_bytes_do_not_parse_alone_is_mapped_here(mapper: ClaimsMapper) -> None:
    # a prefix declared on the root: the HOSO's own bytes use it, so alone they are not well formed
    data = generate(2 * RUN + 3, seed=3).data
    data = data.replace(b"<GIAMDINHHS>", b'<GIAMDINHHS xmlns:x="urn:x">', 1)
    data = data.replace(b"<HOSO>", b"<HOSO><x:NOTE>kept</x:NOTE>", 1)
    before = mapper.in_workers, mapper.here
    assert _wire(mapper.map_file(data, "f.xml", RECORDED)) == _wire(map_file(data, "f.xml", RECORDED))
    assert (mapper.in_workers - before[0], mapper.here - before[1]) == (2 * RUN + 2, 1)


def test_a_file_the_c_parser_does_not_take_is_mapped_here(mapper: ClaimsMapper) -> None:
    data = generate(2 * RUN + 1, seed=4).data
    latin = data.replace(b'encoding="utf-8"', b'encoding="ISO-8859-1"', 1)
    assert latin != data
    before = mapper.in_workers
    assert _wire(mapper.map_file(latin, "f.xml", RECORDED)) == _wire(map_file(latin, "f.xml", RECORDED))
    assert mapper.in_workers == before


def test_an_unreadable_envelope_is_reported_as_in_one_process(mapper: ClaimsMapper) -> None:
    for data in (b"<GIAMDINHHS><THONGTINHOSO>", b"<OTHER/>", b'<!DOCTYPE x [<!ENTITY a "b">]><GIAMDINHHS/>'):
        got = mapper.map_file(data, "f.xml", RECORDED)
        assert got.problems and got.problems[0].severity == "fatal"
        assert _wire(got) == _wire(map_file(data, "f.xml", RECORDED))


def test_a_killed_worker_leaves_its_hoso_to_this_process(faulty: bytes) -> None:
    expected = _wire(map_file(faulty, "f.xml", RECORDED))
    with ClaimsMapper(2) as m:
        pool = m._pool
        assert pool is not None
        pids = list(pool._processes)  # the pool's worker processes
        assert pids  # forked: both; spawned (other threads run here): started as needed
        os.kill(pids[0], signal.SIGKILL)
        time.sleep(0.5)
        assert _wire(m.map_file(faulty, "f.xml", RECORDED)) == expected
        assert m.here == 3 * RUN + 5 and m._pool is None
        # and the next file too: the broken pool is not used again
        assert _wire(m.map_file(faulty, "f.xml", RECORDED)) == expected


def test_a_layout_given_reaches_the_workers(mapper: ClaimsMapper) -> None:
    data = generate(2 * RUN + 2, seed=8).data
    for layout in ("qd130", "qd4210"):  # the generated file is QĐ 130: read as QĐ 4210 it maps otherwise
        spec = load_spec(layout)
        before = mapper.in_workers
        got = _wire(mapper.map_file(data, "f.xml", RECORDED, spec))
        assert mapper.in_workers - before == 2 * RUN + 2
        assert got == _wire(map_file(data, "f.xml", RECORDED, spec))


def test_with_other_threads_running_the_workers_are_spawned(faulty: bytes) -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        with ClaimsMapper(2) as m:
            assert m._pool is not None and m._pool._mp_context.get_start_method() == "spawn"
            assert _wire(m.map_file(faulty, "f.xml", RECORDED)) == _wire(map_file(faulty, "f.xml", RECORDED))
            assert m.in_workers == 3 * RUN + 5
    finally:
        stop.set()
        other.join()


def test_one_job_starts_no_worker() -> None:
    with ClaimsMapper(1) as m:
        assert m._pool is None
        data = generate(2 * RUN, seed=5).data
        assert _wire(m.map_file(data, "f.xml", RECORDED)) == _wire(map_file(data, "f.xml", RECORDED))
