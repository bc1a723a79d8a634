"""Transaction bundles parsed and checked in another process, so the event loop and the writer
keep the GIL.

Ingest is bound by one interpreter lock: per resource, JSON parsing, structural and profile
validation and search-index extraction took about half of the process's GIL time, and the
writer (SQL, group commit) waited for the loop to give it up. None of that work depends on
stored state (``transaction.parse_entry``), so a worker process does it for bundles of some
size and sends back the parsed entries; what needs the store (conditional references,
``ifNoneExist``, versions) stays on the writer.

The pool starts on the first large bundle, not at start-up (a server that never ingests pays
nothing), and bundles are parsed in the server process until the worker answers its first
job. A worker that dies breaks the pool: the bundle is parsed here instead, and a new pool
starts with the next one. Custom SearchParameters travel with each job (their registry's
generation and state), so a worker indexes with the parameters the server has at that moment.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from fhir_hub.errors import FhirError
from fhir_hub.search import parameters
from fhir_hub.storage.port import IndexForm

log = logging.getLogger("fhir_hub.parsers")

#: Bodies smaller than this are parsed in the server process: below a few dozen entries the
#: round trip to the worker costs about what it saves.
MIN_BYTES = 24 * 1024

#: What a job answers: ``("ok", kind, entries)``, ``("batch", ...)`` for a batch bundle (the
#: server handles those itself), or ``("error", status, issues, headers)``.
Answer = tuple[Any, ...]


def _start(parent: int) -> None:
    """Worker initialiser: go when the server goes, and compile the validators once, before the
    first job. A server killed with SIGKILL closes no pipe the worker would notice (the worker
    holds both ends of its job queue), so a thread watches the parent process instead."""
    import os
    import threading
    import time

    from fhir_hub import collector
    from fhir_hub.validation import structure

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    structure.warm_up()
    collector.settle()


_generation = -1


def _adopt(generation: int, custom: Any) -> None:
    global _generation
    if generation != _generation:
        parameters.adopt(custom)
        _generation = generation


def parse(body: bytes, base_url: str, validate: bool, required: str, form: IndexForm | None,
          generation: int, custom: Any) -> Answer:
    """The job: a transaction body to its entries, as ``transaction.parse_entry`` makes them."""
    from fhir_hub.rest import transaction
    from fhir_hub.search.extract import Indexer

    _adopt(generation, custom)
    try:
        kind, raw_entries = transaction.bundle_of(transaction.parse_json(body))
        if kind != "transaction":
            return ("batch",)
        indexer = Indexer() if form is not None else None
        entries = transaction.parse_entries(raw_entries, base_url, validate, indexer, required, form)
    except FhirError as exc:
        return ("error", exc.status, exc.issues, exc.headers)
    return ("ok", kind, entries)


def _ping() -> bool:
    return True


class Parsers:
    """A pool of ``workers`` processes parsing transaction bundles (see module docstring)."""

    def __init__(self, workers: int):
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._ready = False

    def wants(self, body: bytes) -> bool:
        """Whether to send this body to a worker: large enough, and a worker is up. The first
        call starts the pool; until its worker answers, bodies are parsed in the server."""
        if self.workers <= 0 or len(body) < MIN_BYTES:
            return False
        if self._pool is None:
            self._spawn()
        return self._ready

    def _spawn(self) -> None:
        # spawn, not fork: the server has threads (the writer, searchers) whose locks a forked
        # child would inherit held
        pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start, initargs=(os.getpid(),))
        self._pool, self._ready = pool, False

        def up(future: Future[bool]) -> None:
            if self._pool is pool and future.exception() is None:
                self._ready = True

        try:
            pool.submit(_ping).add_done_callback(up)
        except (BrokenProcessPool, RuntimeError) as exc:
            log.warning("could not start the parser processes: %s", exc)
            self._pool = None
            self.workers = 0

    async def parse(self, body: bytes, base_url: str, validate: bool, required: str,
                    form: IndexForm | None) -> Answer | None:
        """The worker's answer, or ``None`` when the pool broke (the caller parses the body itself).
        ``form`` is the store's, to prepare index rows in (``None``: the store keeps no index)."""
        pool = self._pool
        assert pool is not None
        generation, custom = parameters.state()
        try:
            future = pool.submit(parse, body, base_url, validate, required, form, generation, custom)
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            log.warning("a parser process died; parsing in the server until a new one is up")
            if self._pool is pool:
                self._pool, self._ready = None, False
                pool.shutdown(wait=False, cancel_futures=True)
            return None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool, self._ready = None, False
