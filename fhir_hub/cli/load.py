"""``fhir-hub load``: send FHIR JSON files to a running server.

Why a loader in the hub's CLI: demo data, exports from other systems and test fixtures come as
files — transaction/batch Bundles, single resources, or bulk ``.ndjson`` — and each kind has one
obvious REST interaction.  This command picks it, keeps a few requests in flight, and ends with a
table that says what was written and, for everything that was not, where it came from and what
the server said (the OperationOutcome diagnostics), so a failed load can be fixed and re-run.

Rules:

* a Bundle of type ``transaction`` or ``batch`` is POSTed to the base URL; for a batch every
  entry's own ``response.status`` is checked too (a batch answers 200 even when entries fail);
* any other resource is PUT to ``Type/id`` when it has an ``id`` (create-or-update, idempotent),
  else POSTed to ``Type``;
* ``.ndjson`` files hold one resource per line, sent by the same rules; blank lines are skipped;
* directories are walked recursively in sorted order, taking ``*.json`` and ``*.ndjson``;
* bad JSON, a non-resource, an unreadable file or a refused request is a failure of that item,
  never a crash; the exit code is 1 when anything failed.

Requests run concurrently (``--concurrency``), so the order in which independent files or
ndjson lines reach the server is not guaranteed: with resources that reference each other across
requests, use ``--concurrency 1``.  Transaction bundles (what ``demo-data`` writes) are
self-contained and load in any order.

With patient reconciliation on in the server (``FHIR_HUB_MPI=on``) every Patient sent is matched
as any REST write is, whatever the order or concurrency (the server's single writer decides one at
a time); golden records, link records and AuditEvents are the server's own, so a store with them
is moved with ``fhir-hub export`` / ``fhir-hub import --db``, not loaded.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fhir_hub.errors import described

DEFAULT_BASE = "http://127.0.0.1:8080/fhir"
HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json",
           "Prefer": "return=minimal"}
_SUFFIXES = (".json", ".ndjson")
_RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
#: Editors on Windows like to start UTF-8 files with one; JSON parsers do not.
_BOM = b"\xef\xbb\xbf"
#: Failures listed one by one after the summary; the rest are only counted.
_SHOW_FAILURES = 50


@dataclass
class Tally:
    """What happened, for the summary table and the exit code."""

    files: int = 0
    bundles: int = 0
    resources: int = 0
    #: (input order, where, why): requests finish out of order, the report lists them in input order
    problems: list[tuple[int, str, str]] = field(default_factory=list)
    #: documents read so far; the input order of the next one
    seq: int = 0

    def fail(self, where: str, why: str, seq: int | None = None) -> None:
        self.problems.append((self.seq if seq is None else seq, where, why))

    @property
    def failures(self) -> list[tuple[str, str]]:
        return [(where, why) for _, where, why in sorted(self.problems, key=lambda p: p[0])]


@dataclass(frozen=True)
class _Item:
    """One request to make: a parsed document and where it came from (``file`` or ``file:line``)."""

    doc: Any
    where: str
    size: int
    seq: int


def _walk(paths: list[Path], tally: Tally) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in _SUFFIXES and p.is_file())
            if not found:
                tally.fail(str(path), "no .json or .ndjson files in this directory")
            yield from found
        elif path.exists():
            yield path
        else:
            tally.fail(str(path), "no such file or directory")


def _parse(raw: bytes, where: str, tally: Tally) -> _Item | None:
    tally.seq += 1
    try:
        return _Item(orjson.loads(raw), where, len(raw), tally.seq)
    except orjson.JSONDecodeError as exc:
        tally.fail(where, f"not valid JSON: {exc}")
        return None


def _items(path: Path, tally: Tally) -> Iterator[_Item | int]:
    """Parsed documents of one file; a bare int is a count of bytes to skip on the progress bar."""
    try:
        if path.suffix.lower() == ".ndjson":
            with path.open("rb") as f:
                tally.files += 1
                for n, line in enumerate(f, 1):
                    if not line.strip():
                        yield len(line)
                        continue
                    item = _parse(line.removeprefix(_BOM), f"{path}:{n}", tally)
                    yield item if item is not None else len(line)
        else:
            raw = path.read_bytes()
            tally.files += 1
            item = _parse(raw.removeprefix(_BOM), str(path), tally)
            yield item if item is not None else len(raw)
    except OSError as exc:
        tally.seq += 1
        tally.fail(str(path), f"cannot read: {exc.strerror or exc}")


def _response_error(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        body = None
    detail = described(body) or r.text.strip()[:300] or r.reason_phrase
    return f"HTTP {r.status_code}: {detail}"


def _request(doc: dict[str, Any]) -> tuple[str, str, int, bool] | str:
    """(method, path, resources in it, is a batch) for a document, or why it cannot be sent."""
    rtype = doc.get("resourceType")
    if not isinstance(rtype, str) or not _RESOURCE_TYPE.match(rtype):
        return "not a FHIR resource (no valid resourceType)"
    if rtype == "Bundle" and doc.get("type") in ("transaction", "batch"):
        entries = doc.get("entry")
        return "POST", "", len(entries) if isinstance(entries, list) else 0, doc["type"] == "batch"
    rid = doc.get("id")
    if rid is None:
        return "POST", f"/{rtype}", 1, False
    if not isinstance(rid, str) or not _ID.match(rid):
        return f"invalid resource id {rid!r}"
    return "PUT", f"/{rtype}/{rid}", 1, False


async def _send(client: httpx.AsyncClient, base: str, item: _Item, tally: Tally) -> None:
    doc = item.doc
    if not isinstance(doc, dict):
        tally.fail(item.where, "not a FHIR resource (JSON is not an object)", item.seq)
        return
    plan = _request(doc)
    if isinstance(plan, str):
        tally.fail(item.where, plan, item.seq)
        return
    method, path, count, batch = plan
    # absolute URLs: a relative "" against base_url would become ".../fhir/", not the base itself
    r = await client.request(method, f"{base}{path}", content=orjson.dumps(doc))
    if r.status_code >= 400:
        tally.fail(item.where, _response_error(r), item.seq)
        return
    if path == "":
        tally.bundles += 1
    if not batch:
        tally.resources += count
        return
    try:
        entries = r.json().get("entry") or []
    except (ValueError, AttributeError):
        entries = []
    ok = 0
    for i, entry in enumerate(entries):
        response = entry.get("response") if isinstance(entry, dict) else None
        status = str((response or {}).get("status", ""))
        if status[:1] in ("4", "5"):
            why = described((response or {}).get("outcome")) or status
            detail = f"HTTP {status}: {why}" if why != status else f"HTTP {status}"
            tally.fail(f"{item.where} entry[{i}]", detail, item.seq)
        else:
            ok += 1
    tally.resources += ok if entries else count


async def _run(paths: list[Path], base: str, concurrency: int, timeout: float, progress: Progress) -> Tally:
    tally = Tally()
    files = list(_walk(paths, tally))
    total = 0
    for f in files:
        try:
            total += f.stat().st_size
        except OSError:
            pass
    task = progress.add_task("load", total=total or None, files=f"0/{len(files)}", sent=0, failed=0)
    queue: asyncio.Queue[_Item | None] = asyncio.Queue(maxsize=concurrency * 2)
    unreachable: list[str] = []

    def tick(size: int) -> None:
        progress.update(task, advance=size, sent=tally.resources, failed=len(tally.problems))

    base = base.rstrip("/")
    async with httpx.AsyncClient(headers=HEADERS, timeout=timeout) as client:

        async def worker() -> None:
            while (item := await queue.get()) is not None:
                if unreachable:
                    tally.fail(item.where, "not sent: server unreachable", item.seq)
                else:
                    try:
                        await _send(client, base, item, tally)
                    except httpx.ConnectError as exc:
                        unreachable.append(str(exc))
                        tally.fail(item.where, f"cannot connect to {base}: {exc}", item.seq)
                    except httpx.HTTPError as exc:
                        tally.fail(item.where, f"{type(exc).__name__}: {exc or 'no detail'}", item.seq)
                    except Exception as exc:  # a dead worker would stall the queue: record and go on
                        tally.fail(item.where, f"unexpected {type(exc).__name__}: {exc}", item.seq)
                tick(item.size)

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        try:
            for done, path in enumerate(files, 1):
                if unreachable:
                    tally.fail(f"{len(files) - done + 1} more file(s)", "not read: server unreachable")
                    break
                for item in _items(path, tally):
                    if isinstance(item, int):
                        tick(item)
                    else:
                        await queue.put(item)
                progress.update(task, files=f"{done}/{len(files)}")
        finally:
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
    return tally


def _report(console: Console, base: str, tally: Tally) -> None:
    table = Table(title=f"fhir-hub load → {base}", title_justify="left")
    table.add_column("files", justify="right")
    table.add_column("bundles", justify="right")
    table.add_column("resources sent", justify="right")
    table.add_column("failures", justify="right", style="red" if tally.problems else "green")
    table.add_row(str(tally.files), str(tally.bundles), str(tally.resources), str(len(tally.problems)))
    console.print(table)
    if not tally.failures:
        return
    # one line per failure, not a table: long paths and diagnostics stay whole and greppable
    console.print(f"[red]{len(tally.failures)} failure(s):[/]")
    for where, why in tally.failures[:_SHOW_FAILURES]:
        console.print(f"  [bold]{escape(where)}[/]: {escape(why)}", soft_wrap=True)
    if len(tally.failures) > _SHOW_FAILURES:
        console.print(f"  … and {len(tally.failures) - _SHOW_FAILURES} more.")


def load(
    paths: list[Path] = typer.Argument(..., help="Files (.json, .ndjson) or directories (walked, sorted)."),
    base: str = typer.Option(DEFAULT_BASE, "--base", help="FHIR base URL of the running server."),
    concurrency: int = typer.Option(4, "--concurrency", "-c", min=1, max=64,
                                    help="Requests in flight at once."),
    timeout: float = typer.Option(120.0, "--timeout", min=1.0, help="Seconds to wait for one response."),
) -> None:
    """Send FHIR bundles, resources and ndjson files to a running FHIR server."""
    console = Console()
    columns = (TextColumn("[bold]load[/]"), BarColumn(), DownloadColumn(),
               TextColumn("files {task.fields[files]}"), TextColumn("sent {task.fields[sent]}"),
               TextColumn("failed {task.fields[failed]}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        tally = asyncio.run(_run(paths, base, concurrency, timeout, progress))
    _report(console, base, tally)
    if tally.failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``load`` to the CLI."""
    app.command("load")(load)
