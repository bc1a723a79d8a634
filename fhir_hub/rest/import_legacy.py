"""``POST [base]/$import-legacy?format=…``: a legacy export imported as an asynchronous job.

The body is the file as exported (a claims ``GIAMDINHHS`` envelope, HL7 v2 messages, a CSV
export); ``format`` is ``claims`` (QĐ 130 or QĐ 4210, read per HOSO), ``qd130``, ``qd4210``,
``hl7v2`` or ``csv`` (with ``spec=patients|vitals``); ``name`` names the file in problems. The
answer is 202 with ``Content-Location: [base]/$import-legacy/<job>``, bulk-data style: polling
that URL answers 202 (``X-Progress``) while the job runs, then 200 with the job's result (JSON):
the resources created and updated, each record that failed with its OperationOutcome, and the
OperationOutcome of the whole file. Each record (HOSO, message, part of a CSV) is mapped by
:mod:`fhir_hub.mapping` and committed as its own transaction, as ``fhir-hub import`` posts it.

Nothing accepted is lost: before the 202 the body is written and synced to the jobs folder
(``FHIR_HUB_JOBS_DIR``; :func:`jobs_folder`), and a server that starts
runs again every job that has no result yet. Running again is safe because importing is
idempotent (conditional references and identifiers: the same file updates, it does not
duplicate). The job that runs holds a lock on its folder entry, so ``serve --workers N`` runs
each once; any worker answers the poll from the folder.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fhir_hub.errors import FhirError, error
from fhir_hub.rest.wire import Request, Response, dumps
from fhir_hub.search.dates import instant

log = logging.getLogger("fhir_hub")

#: Records committed at once (claims and CSV; HL7 v2 messages are events in order, one at a time).
CONCURRENCY = 4
_JSON = [(b"content-type", b"application/json")]


@dataclass
class _Running:
    done: int = 0
    total: int | None = None


def jobs_folder(db: str, configured: str) -> Path:
    """Where jobs are kept: the setting, else beside the SQLite file, else in the user's cache
    under a name of the database's URL (a server resumes only its own database's jobs)."""
    if configured:
        return Path(configured)
    if "://" not in db:
        return Path(db + ".jobs")
    return Path.home() / ".cache" / "fhir-hub" / "jobs" / hashlib.sha256(db.encode()).hexdigest()[:16]


def _check(req: Request) -> tuple[str, str | None, str]:
    from fhir_hub.mapping import formats

    fmt, spec = req.param("format"), req.param("spec")
    refused = formats.refusal(fmt, spec)
    if refused is not None:
        raise FhirError(400, error("required" if fmt is None else "value", refused[0], refused[1]))
    assert fmt is not None
    if not req.body.strip():
        raise FhirError(400, error("required", "the body is empty: send the exported file as the body"))
    name = req.param("name") or "upload"
    if not name.replace(".", "").replace("-", "").replace("_", "").isalnum() or len(name) > 200:
        raise FhirError(400, error("value", "name may hold letters, digits, '.', '-' and '_' only", "name"))
    return fmt, spec, name


class Jobs:
    """The jobs of one server process: accepted ones on disk, running ones here."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._running: dict[str, _Running] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # -- accepting -------------------------------------------------------------------------

    async def submit(self, hub: Any, req: Request) -> Response:
        fmt, spec, name = _check(req)
        job = secrets.token_hex(8)
        meta = {"format": fmt, "spec": spec, "name": name, "base_url": req.base_url,
                "request": f"{req.base_url}/$import-legacy?{req.raw_query}",
                "accepted": instant(time.time_ns() // 1000)}
        await asyncio.to_thread(self._accept, job, req.body, meta)
        self._start(hub, job)
        where = f"{req.base_url}/$import-legacy/{job}"
        body = dumps({"resourceType": "OperationOutcome", "issue": [{
            "severity": "information", "code": "informational",
            "diagnostics": f"import job {job} accepted ({fmt}, {len(req.body)} bytes); poll {where}"}]})
        return Response(202, body, [(b"content-type", b"application/fhir+json"),
                                    (b"content-location", where.encode())])

    def _accept(self, job: str, body: bytes, meta: dict[str, Any]) -> None:
        """The body and the job's description, synced to disk, before anything is acknowledged."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for suffix, data in ((".in", body), (".meta", orjson.dumps(meta))):
            tmp = self.folder / f"{job}{suffix}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            tmp.rename(self.folder / f"{job}{suffix}")
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)  # the renames themselves
        finally:
            os.close(fd)

    def resume(self, hub: Any) -> int:
        """Start every job accepted earlier that has no result (the server stopped meanwhile)."""
        if not self.folder.is_dir():
            return 0
        started = 0
        for meta in sorted(self.folder.glob("*.meta")):
            job = meta.name[: -len(".meta")]
            if not (self.folder / f"{job}.result").exists():
                self._start(hub, job)
                started += 1
        return started

    def _start(self, hub: Any, job: str) -> None:
        task = asyncio.get_running_loop().create_task(self._run(hub, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- polling ---------------------------------------------------------------------------

    async def status(self, job: str) -> Response:
        if not (len(job) == 16 and all(c in "0123456789abcdef" for c in job)):
            raise FhirError(404, error("not-found", f"no import job {job!r}"))
        result = self.folder / f"{job}.result"
        if result.exists():
            return Response(200, await asyncio.to_thread(result.read_bytes), list(_JSON))
        if not (self.folder / f"{job}.meta").exists():
            raise FhirError(404, error("not-found", f"no import job {job!r}"))
        running = self._running.get(job)
        progress = "running" if running is None or running.total is None else \
            f"{running.done} of {running.total} records committed"
        return Response(202, b"", [(b"x-progress", progress.encode()), (b"retry-after", b"1")])

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- running ---------------------------------------------------------------------------

    async def _run(self, hub: Any, job: str) -> None:
        lock = await asyncio.to_thread(self._lock, job)
        if lock is None:
            return  # another server process runs it
        try:
            if (self.folder / f"{job}.result").exists():
                return
            meta = orjson.loads((self.folder / f"{job}.meta").read_bytes())
            data = await asyncio.to_thread((self.folder / f"{job}.in").read_bytes)
            running = self._running[job] = _Running()
            outcome = await self._import(hub, meta, data, running)
            outcome["transactionTime"] = meta["accepted"]
            outcome["request"] = meta["request"]
            await asyncio.to_thread(self._finish, job, outcome)
        except asyncio.CancelledError:
            raise  # the server stops: the job runs again at the next start
        except Exception:  # a bug: the job reports it rather than staying "running" for ever
            log.exception("import job %s failed", job)
            await asyncio.to_thread(self._finish, job, {"error": "internal error; see the server log"})
        finally:
            self._running.pop(job, None)
            os.close(lock)

    def _lock(self, job: str) -> int | None:
        fd = os.open(self.folder / f"{job}.meta", os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    def _finish(self, job: str, outcome: dict[str, Any]) -> None:
        tmp = self.folder / f"{job}.result.tmp"
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(outcome, option=orjson.OPT_INDENT_2))
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(self.folder / f"{job}.result")
        (self.folder / f"{job}.in").unlink(missing_ok=True)  # the file itself is no longer needed

    async def _import(self, hub: Any, meta: dict[str, Any], data: bytes, running: _Running) -> dict[str, Any]:
        from fhir_hub.mapping import formats
        from fhir_hub.mapping.claims_xml import gc_paused
        from fhir_hub.rest import transaction

        fmt, name = meta["format"], meta["name"]
        mapper = formats.mapper(fmt, meta.get("spec"))

        def mapped() -> Any:
            with gc_paused():  # a file's result is one large tree (mapping/claims_xml.py)
                return mapper(data, name)

        result = await asyncio.to_thread(mapped)
        records = list(result.records)
        todo = [r for r in records if r.bundle is not None]
        running.total = len(todo)
        created: list[str] = []
        updated: list[str] = []
        failed: list[dict[str, Any]] = []
        # with the resources back: an update's entry has no location, only the resource says which it is
        headers = {"content-type": "application/fhir+json", "accept": "application/fhir+json",
                   "prefer": "return=representation"}
        gate = asyncio.Semaphore(1 if fmt == "hl7v2" else CONCURRENCY)

        async def commit(record: Any) -> None:
            async with gate:
                req = Request("POST", [], [], headers, orjson.dumps(record.bundle), meta["base_url"], "")
                try:
                    answer = await transaction.handle_bundle(hub, req)
                except FhirError as exc:
                    failed.append({"record": record.where, "outcome": exc.outcome()})
                    return
                finally:
                    running.done += 1
                for entry in orjson.loads(answer.body).get("entry", []):
                    status = str(entry.get("response", {}).get("status", ""))
                    resource = entry.get("resource")
                    if resource is None or not status.startswith(("200", "201")):
                        continue
                    where = f"{resource['resourceType']}/{resource['id']}/_history/{resource['meta']['versionId']}"
                    (created if status.startswith("201") else updated).append(where)

        await asyncio.gather(*(commit(r) for r in todo))
        unmapped = [{"record": r.where, "outcome": result.record_outcome(r)} for r in records if r.bundle is None]
        return {
            "format": fmt, "file": name, "records": len(records),
            "imported": len(todo) - len(failed), "failed": len(unmapped) + len(failed),
            "created": created, "updated": updated,
            "errors": unmapped + failed,
            "outcome": result.outcome(),
        }


async def handle(hub: Any, req: Request, job: str | None) -> Response:
    jobs: Jobs | None = hub.jobs
    if jobs is None:
        raise FhirError(503, error("transient", "import jobs are not ready yet; retry shortly"))
    if job is None:
        return await jobs.submit(hub, req)
    return await jobs.status(job)


__all__ = ["Jobs", "handle", "jobs_folder"]
