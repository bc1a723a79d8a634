"""Claims files mapped by several processes: every HOSO is a visit of its own.

A HOSO's bundle depends on the envelope's header (facility, NGAYLAP, signature, the file's hash)
and on its own bytes only, so after the envelope is opened here, runs of HOSO go to worker
processes as the bytes the file holds for them, each parses its run and maps it with the same
code as :func:`~fhir_hub.mapping.claims_xml.map_file`, and the results come back in file order.
One process maps about 250 HOSO per CPU-second; the mapping is pure Python, so threads would
share one core.

Only an envelope that expat's C parser reads as the safe parser would (UTF-8, no DOCTYPE:
:func:`~.claims_xml.plain_utf8`), and whose HOSO bytes line up with its parsed HOSO, is cut up: a
HOSO's bytes then parse alone to the same element.  Anything else, a file of fewer HOSO than two
runs, or ``jobs`` 1, is mapped here, HOSO by HOSO.  A run whose bytes fail to parse alone, or a
worker that dies, leaves those HOSO to this process: the output is the same either way.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import orjson

from fhir_hub.mapping.claims_xml import (
    FileResult,
    HosoResult,
    OpenedFile,
    _Envelope,
    gc_paused,
    map_hoso,
    map_opened,
    open_file,
    plain_utf8,
)
from fhir_hub.mapping.engine import Problem, Spec, load_spec

#: HOSO per task: large enough that a task's overhead (pickling its bytes and results, a pipe
#: round trip) is small against mapping it (about 4 ms of CPU per HOSO), small enough that the
#: workers finish close together and the first results come back early.
RUN = 16
log = logging.getLogger("fhir_hub")


#: A HOSO's result as a worker sends it: the bundle as JSON bytes (orjson writes and reads a bundle
#: in about half the time pickle takes: 0.16 + 0.27 ms against 0.43 + 0.53 ms for 38 resources).
_Sent = tuple[int, str | None, bytes | None, list[Problem], dict[str, list[str]]]


def _map_run(fmt: str | None, envelope: _Envelope, recorded: str, run: list[tuple[int, bytes]]
             ) -> list[_Sent | None]:
    """In a worker: map each HOSO of ``run`` from its bytes; ``None`` for one whose bytes do not
    parse alone (the parent maps it from the envelope's element)."""
    spec = load_spec(fmt) if fmt is not None else None
    opened = OpenedFile(envelope, recorded, [], None)
    out: list[_Sent | None] = []
    with gc_paused():
        for index, raw in run:
            try:
                hoso = ET.fromstring(raw)
            except ET.ParseError:
                out.append(None)
                continue
            h = map_hoso(index, hoso, raw, opened, spec)
            out.append((h.index, h.ma_lk, None if h.bundle is None else orjson.dumps(h.bundle), h.problems,
                        h.unmapped))
    return out


def _received(sent: _Sent) -> HosoResult:
    index, ma_lk, bundle, problems, unmapped = sent
    return HosoResult(index, ma_lk, None if bundle is None else orjson.loads(bundle), problems, unmapped)


def _ready() -> None:
    """A first task, so the workers are forked before the caller starts threads of its own."""


class ClaimsMapper:
    """Maps claims files with ``jobs`` worker processes; this process opens each envelope and
    collects the workers' results (it mostly waits, so it takes no core of its own).  Use as a
    context manager, or call :meth:`close`."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs
        #: HOSO mapped by the workers and by this process so far (what the tests and benches check).
        self.in_workers = 0
        self.here = 0
        self._pool: ProcessPoolExecutor | None = None
        if jobs > 1:
            # forked, so the workers start with the specs and the R4 definitions this process
            # loaded; started now, before the caller's threads. A process that already runs
            # other threads spawns them instead: a fork copies only the forking thread, and a
            # lock another one held at that moment would stay held in the child for ever
            for fmt in ("qd130", "qd4210"):
                load_spec(fmt)
            method = "fork" if threading.active_count() == 1 else "spawn"
            self._pool = ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context(method))
            self._pool.submit(_ready).result()

    def __enter__(self) -> ClaimsMapper:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def map_file(self, data: bytes, name: str = "GIAMDINHHS.xml", recorded: str | None = None,
                 spec: Spec | None = None) -> FileResult:
        """What :func:`~.claims_xml.map_file` returns for the same arguments."""
        result = FileResult(name)
        for _ in self.stream_file(result, data, recorded, spec):
            pass
        return result

    def stream_file(self, result: FileResult, data: bytes, recorded: str | None = None,
                    spec: Spec | None = None) -> Iterator[HosoResult]:
        """:func:`~.claims_xml.stream_file`: each HOSO's result appended to ``result.hosos`` and
        yielded in file order, the collector paused until the iterator ends."""
        with gc_paused():
            opened = open_file(result, data, recorded)
            if opened is None:
                return
            hosos, slices = opened.hosos, opened.slices
            if self._pool is None or slices is None or len(hosos) < 2 * RUN or not plain_utf8(data):
                for done in map_opened(result, opened, spec):
                    self.here += 1
                    yield done
                return
            fmt = spec.format if spec is not None else None
            runs: list[Future[list[_Sent | None]] | None] = []
            for start in range(0, len(hosos), RUN):
                run = [(i + 1, slices[i]) for i in range(start, min(start + RUN, len(hosos)))]
                runs.append(self._submit(fmt, opened, run))
            for n, future in enumerate(runs):
                mapped = self._collect(future)
                for k in range(n * RUN, min((n + 1) * RUN, len(hosos))):
                    sent = mapped[k - n * RUN] if mapped is not None else None
                    if sent is None:
                        done = map_hoso(k + 1, hosos[k], slices[k], opened, spec)
                        self.here += 1
                    else:
                        done = _received(sent)
                        self.in_workers += 1
                    result.hosos.append(done)
                    yield done

    def _submit(self, fmt: str | None, opened: OpenedFile, run: list[tuple[int, bytes]]
                ) -> Future[list[_Sent | None]] | None:
        if self._pool is None:
            return None
        try:
            return self._pool.submit(_map_run, fmt, opened.envelope, opened.recorded, run)
        except BrokenProcessPool:
            self._broken()
            return None

    def _collect(self, future: Future[list[_Sent | None]] | None) -> list[_Sent | None] | None:
        """A run's results, or ``None`` when its worker died (this process maps the run then)."""
        if future is None:
            return None
        try:
            return future.result()
        except BrokenProcessPool:
            self._broken()
            return None

    def _broken(self) -> None:
        """A worker died (killed, out of memory): the rest is mapped here, and said once."""
        if self._pool is not None:
            log.warning("a mapping worker process died; the remaining HOSO are mapped in this process")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


__all__ = ["RUN", "ClaimsMapper"]
