"""``fhir-hub import-claims``: map claims XML envelopes (QĐ 130 / 4750 / 3176) to FHIR bundles.

Each ``GIAMDINHHS`` file becomes one transaction Bundle per HOSO (:mod:`fhir_hub.mapping`).
With ``--out DIR`` the bundles are written as ``<file stem>.hoso<N>.json`` plus one
``<file stem>.outcome.json`` (the OperationOutcome listing every problem of the file); with
``--base URL`` each bundle is POSTed to a running server.  The errors (a record or file that
failed, a bundle the server refused, with its OperationOutcome's diagnostics) are printed first,
up to :data:`_SHOW_ERRORS`, then the warnings, up to :data:`_SHOW`: so many warnings cannot hide
one refusal.  A table at the end summarises HOSO mapped, posted and refused, resources by type,
and counts both errors and warnings.  The exit code is 1 when any HOSO could not be mapped or posted.  ``--strict`` stops at the
first record (HOSO, message, row bundle) or file with an error: what came before it is written or
posted (each record is its own transaction), it and what follows are not, exit code 1.

``--jobs N`` maps a claims file's HOSO in N worker processes (default 0: one per core;
:mod:`fhir_hub.mapping.parallel`), started before any other thread of the command; the output is
the same as with ``--jobs 1``.

``fhir-hub import FILE… --format claims|hl7v2|csv [--spec patients|vitals]`` does the same for any
legacy format (:mod:`fhir_hub.mapping.hl7v2`: one bundle per message; :mod:`.csv_import`: one per
500 rows), with the same outputs (``<stem>.msg<N>.json``, ``<stem>.part<N>.json``).
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fhir_hub.errors import described
from fhir_hub.mapping import formats

if TYPE_CHECKING:
    from fhir_hub.mapping.parallel import ClaimsMapper

_HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json",
            "Prefer": "return=minimal"}
_SHOW = 50  # warnings printed (the rest are counted in the table and kept in the .outcome.json)
_SHOW_ERRORS = 500  # errors printed: a separate budget, printed before any warning
# options the commands share (typer reads each default's OptionInfo; one object may serve several)
_OUT = typer.Option(None, "--out", "-o", help="Write the bundles and outcomes to this folder.")
_TIMEOUT = typer.Option(60.0, help="Seconds to wait for each POST.")
_SPEC = typer.Option(None, "--spec", help="For csv: the column spec (patients | vitals).")
_JOBS = typer.Option(0, "--jobs", "-j", min=0,
                     help="Processes mapping the HOSO of a claims file (0: one per core; 1: this process alone).")


def import_claims(
    files: list[Path] = typer.Argument(..., help="GIAMDINHHS envelope files (XML)."),
    out: Path = _OUT,
    base: str = typer.Option(None, "--base", help="POST the bundles to this FHIR base URL."),
    timeout: float = _TIMEOUT,
    strict: bool = typer.Option(False, "--strict", help="Stop at the first HOSO or file with an error."),
    concurrency: int = typer.Option(4, "--concurrency", "-c", min=1, help="Bundles posted at once (--base)."),
    jobs: int = _JOBS,
) -> None:
    """Map claims XML (QĐ 130 / 4750 / 3176, or QĐ 4210) into one FHIR transaction Bundle per HOSO."""
    _run(files, "claims", None, out, base, timeout, strict, concurrency, jobs)


def import_any(
    files: list[Path] = typer.Argument(..., help="Input files (with --db: export directories or ndjson files)."),
    fmt: str = typer.Option(None, "--format", "-f", help="claims (GIAMDINHHS XML) | hl7v2 | csv."),
    spec: str = _SPEC,
    out: Path = _OUT,
    base: str = typer.Option(None, "--base", help="POST the bundles to this FHIR base URL."),
    timeout: float = _TIMEOUT,
    db: str = typer.Option(None, "--db", help="Load a `fhir-hub export` into this empty store instead (cli/move.py)."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first record or file with an error."),
    concurrency: int = typer.Option(4, "--concurrency", "-c", min=1, help="Bundles posted at once (--base)."),
    jobs: int = _JOBS,
) -> None:
    """Map legacy exports (claims XML, HL7 v2 messages, CSV) into FHIR transaction bundles;
    with --db, load `fhir-hub export` ndjson into a store."""
    if db is not None and fmt is None:
        from fhir_hub.cli.move import import_store

        import_store(files, db)
        return
    _check_format(fmt, spec, ("claims", "hl7v2", "csv"), "--format")
    _run(files, fmt, spec, out, base, timeout, strict, concurrency, jobs)


def map_command(
    fmt: str = typer.Argument(..., metavar="FORMAT", help="qd130 | qd4210 (claims XML of that layout), "
                              "claims (either, per HOSO) | hl7v2 | csv."),
    files: list[Path] = typer.Argument(..., help="Input files."),
    out: Path = _OUT,
    post: str = typer.Option(None, "--post", help="POST the bundles to this FHIR base URL."),
    spec: str = _SPEC,
    timeout: float = _TIMEOUT,
    strict: bool = typer.Option(False, "--strict", help="Stop at the first record or file with an error."),
    concurrency: int = typer.Option(4, "--concurrency", "-c", min=1, help="Bundles posted at once (--post)."),
    jobs: int = _JOBS,
) -> None:
    """Map legacy exports (claims XML read as QĐ 130 or QĐ 4210, HL7 v2, CSV) into FHIR
    transaction bundles, written to --out or posted to --post."""
    _check_format(fmt, spec, formats.FORMATS, "FORMAT")
    _run(files, fmt, spec, out, post, timeout, strict, concurrency, jobs)


def _check_format(fmt: str | None, spec: str | None, allowed: tuple[str, ...], hint: str) -> None:
    refused = formats.refusal(fmt, spec, allowed)
    if refused is not None:
        raise typer.BadParameter(refused[0], param_hint=hint if refused[1] == "format" else "--spec")


def _bad(problems: list[Any]) -> bool:
    return any(p.severity in ("error", "fatal") for p in problems)


def _mapper(fmt: str, spec: str | None, claims: ClaimsMapper | None
            ) -> Callable[[bytes, str], tuple[Any, Iterator[Any]]]:
    """(file result, its records).  A claims file is mapped whole before its first POST: posting
    each HOSO as it was mapped (:func:`~fhir_hub.mapping.claims_xml.stream_file`) was measured
    slower end to end on the shared 2-core machine (39-43 s against 45-64 s for 1,002 HOSO,
    interleaved runs, server CPU 17 s against 15 s): not explained yet; likely the posting threads
    waiting for the GIL the mapping holds, so the server is sent fewer bundles at once."""
    if claims is not None:
        forced = formats.layout(fmt)
        return _whole(lambda data, name: claims.map_file(data, name, spec=forced))
    return _whole(formats.mapper(fmt, spec))


def _whole(mapper: Callable[[bytes, str], Any]) -> Callable[[bytes, str], tuple[Any, Iterator[Any]]]:
    def whole(data: bytes, name: str) -> tuple[Any, Iterator[Any]]:
        result = mapper(data, name)
        return result, iter(list(result.records))
    return whole


def _run(files: list[Path], fmt: str, spec: str | None, out: Path | None, base: str | None, timeout: float,
         strict: bool = False, concurrency: int = 4, jobs: int = 1) -> None:
    if (out is None) == (base is None):
        raise typer.BadParameter("give exactly one of --out DIR or --base URL (map: --post URL)")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    from fhir_hub.cli.validate import default_jobs
    from fhir_hub.mapping.claims_xml import gc_paused
    from fhir_hub.mapping.parallel import ClaimsMapper

    jobs = jobs or default_jobs()
    # the worker processes are forked first, before this process starts any thread
    kind = "claims" if formats.is_claims(fmt) else fmt
    claims = ClaimsMapper(jobs) if kind == "claims" and jobs > 1 else None
    mapper = _mapper(fmt, spec, claims)
    unit = {"claims": "HOSO", "hl7v2": "messages", "csv": "row bundles"}[kind]
    suffix = {"claims": "hoso", "hl7v2": "msg", "csv": "part"}[kind]
    console = Console()
    types: Counter[str] = Counter()
    severities: Counter[str] = Counter()
    errors: list[str] = []  # appended to by the posting threads too (list.append is atomic)
    warnings: list[str] = []
    records = mapped = posted = failed = unmapped = 0
    refused = 0  # bundles the server did not take (an answer >= 300 or no answer)
    stopped: str | None = None  # with --strict: the first record or file with an error
    # HL7 v2 messages are events in order (an A08 updates what an A01 made): posted one at a time
    poster = _Poster(base, timeout, 1 if fmt == "hl7v2" else concurrency, errors) if base else None
    columns = (TextColumn(f"[bold]import {fmt}[/]"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[name]}"), TimeElapsedColumn())
    try:
        # no live bar when stderr is not a terminal (a bench, a cron job): its refresh thread
        # took the GIL ten times a second from the mapping and the posting threads
        stderr = Console(stderr=True)
        with Progress(*columns, console=stderr, transient=True, refresh_per_second=2,
                      disable=not stderr.is_terminal) as progress:
            task = progress.add_task("files", total=len(files), name="")
            for path in files:
                progress.update(task, name=path.name)
                try:
                    data = path.read_bytes()
                except OSError as exc:
                    failed += 1
                    errors.append(f"[error] {path}: cannot read: {exc.strerror}")
                    progress.advance(task)
                    if strict:
                        stopped = path.name
                        break
                    continue
                # the collector paused until the file's bundles are posted and dropped: back
                # after the mapping, it would walk every live bundle again (gc_paused)
                with gc_paused():
                    result, stream = mapper(data, path.name)
                    for r in stream:
                        if stopped is None and strict and _bad(result.problems):
                            stopped = path.name
                        if stopped is not None:
                            continue  # mapped for the report, neither written nor posted
                        if strict and _bad(r.problems):
                            stopped = f"{path.name}, {r.where}"
                            failed += 1
                            continue
                        records += 1
                        unmapped += sum(len(v) for v in r.unmapped.values())
                        if r.bundle is None:
                            failed += 1
                            continue
                        mapped += 1
                        types.update(e["resource"]["resourceType"] for e in r.bundle["entry"])
                        if out is not None:
                            (out / f"{path.stem}.{suffix}{r.index}.json").write_bytes(
                                orjson.dumps(r.bundle, option=orjson.OPT_INDENT_2))
                        elif poster is not None:
                            poster.submit(r.bundle, f"{path.name}, {r.where}")
                        # its bytes are written or queued: the outcome needs only the problems, and the
                        # collector, back after the file, then walks far fewer live objects
                        r.bundle = None
                    if stopped is None and strict and _bad(result.problems):
                        stopped = path.name
                    if result.problems and not result.records:
                        failed += 1
                    outcome = result.outcome()
                    for issue in outcome["issue"]:
                        if issue["code"] != "informational":
                            severities[issue["severity"]] += 1
                            (errors if issue["severity"] in ("error", "fatal") else warnings).append(
                                f"[{issue['severity']}] {issue['diagnostics']}")
                    if poster is not None:
                        poster.drain()  # a file's bundles are all answered before the next file's
                if out is not None:
                    (out / f"{path.stem}.outcome.json").write_bytes(orjson.dumps(outcome, option=orjson.OPT_INDENT_2))
                progress.advance(task)
                if stopped is not None:
                    break
    finally:
        if claims is not None:
            claims.close()
        if poster is not None:
            poster.close()
            posted, failed, refused = posted + poster.posted, failed + poster.failed, poster.failed
    if stopped is not None:
        console.print(escape(f"--strict: stopped at {stopped} (it has an error): the {unit} before it were "
                             f"{'posted' if base else 'written'}, it and the rest were not"), highlight=False)
    _print_lines(console, errors, _SHOW_ERRORS, "errors")
    _print_lines(console, warnings, _SHOW, "warnings (see the .outcome.json files with --out)")
    table = Table(title=f"fhir-hub import ({fmt})", title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("files", str(len(files)))
    table.add_row(f"{unit} read", str(records))
    table.add_row(f"{unit} mapped", str(mapped))
    if base is not None:
        table.add_row(f"{unit} posted", str(posted))
        table.add_row(f"{unit} refused by or not sent to the server", f"[red]{refused}[/]" if refused else "0")
    table.add_row(f"{unit} or files failed", f"[red]{failed}[/]" if failed else "0")
    for rtype, n in sorted(types.items()):
        table.add_row(f"  {rtype}", str(n))
    for severity in ("fatal", "error", "warning", "information"):
        if severities[severity]:
            table.add_row(f"{severity} issues", str(severities[severity]))
    table.add_row("errors (listed above)", f"[red]{len(errors)}[/]" if errors else "0")
    table.add_row("warnings (listed above)", str(len(warnings)))
    table.add_row("unmapped fields (kept in the Binary)", str(unmapped))
    console.print(table)
    if failed:
        raise typer.Exit(1)


def _print_lines(console: Console, lines: list[str], limit: int, what: str) -> None:
    """The first ``limit`` of ``lines``, then how many more: errors and warnings each have their
    own budget, so a long list of one kind never pushes the other out of sight."""
    for line in lines[:limit]:
        console.print(escape(line), highlight=False)
    if len(lines) > limit:
        console.print(escape(f"… and {len(lines) - limit} more {what}"), highlight=False)


class _Poster:
    """Posts bundles with up to ``concurrency`` in flight: the server commits concurrent
    transactions together (one fsync for the group), so one client posting one bundle at a time
    leaves most of its write path idle. Bundles of one file are independent visits; conditional
    creates keep a patient in two of them one resource whatever the order.  Each posting thread
    keeps one http.client connection alive and sends the bytes serialised once by ``submit``; a
    2xx answer is not read further.  Client CPU per bundle, 1,002 bundles into a local server on
    the shared machine, serialising included: 3.1 ms with httpx (h11 and its stream layers in
    Python), 1.7 ms this way (a bare http.client loop without the pool: 0.7 ms): CPU the server,
    on the same cores, gets back."""

    def __init__(self, base: str, timeout: float, concurrency: int, lines: list[str]):
        self._target, self._timeout, self._lines = _Target.of(base), timeout, lines
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fhir-hub-post")
        self._limit = 2 * concurrency
        self._inflight: deque[Future[bool]] = deque()
        self._local = threading.local()  # each posting thread's kept-alive connection
        self._connections: list[http.client.HTTPConnection] = []
        self.posted = self.failed = 0

    def submit(self, bundle: dict[str, object], where: str) -> None:
        body = orjson.dumps(bundle)  # serialised once, here; the thread sends these bytes
        self._inflight.append(self._pool.submit(self._post, body, where))
        while len(self._inflight) >= self._limit:
            self._take()

    def _take(self) -> None:
        if self._inflight.popleft().result():
            self.posted += 1
        else:
            self.failed += 1

    def drain(self) -> None:
        while self._inflight:
            self._take()

    def close(self) -> None:
        self.drain()
        self._pool.shutdown()
        for conn in self._connections:
            conn.close()

    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = self._target.connect(self._timeout)
            self._local.conn = conn
            self._connections.append(conn)
        return conn

    def _post(self, body: bytes, where: str) -> bool:
        """One transaction on this thread's connection.  A connection the server closed while it
        sat idle fails on reuse: the bundle is sent once more on a new one (a re-sent bundle is
        idempotent: conditional creates and updates on stable keys)."""
        for attempt in (1, 2):
            conn = self._connection(fresh=attempt == 2)
            try:
                conn.request("POST", self._target.path, body=body, headers=_HEADERS)
                answer = conn.getresponse()
                status, text = answer.status, answer.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                if attempt == 2:
                    self._lines.append(f"[error] {where}: POST failed: {exc}")
                    return False
            except (OSError, http.client.HTTPException) as exc:
                self._connection(fresh=True)  # the next bundle of this thread starts clean
                self._lines.append(f"[error] {where}: POST failed: {type(exc).__name__}: {exc}")
                return False
        if status < 300:
            return True  # a transaction answered 2xx took every entry: nothing more to read
        self._lines.append(f"[error] {where}: the server answered {status}: {_diagnostics(text)}")
        return False


class _Target:
    """Where the bundles go: scheme, host, port and path of ``--base``."""

    def __init__(self, https: bool, host: str, port: int | None, path: str) -> None:
        self.https, self.host, self.port, self.path = https, host, port, path

    @classmethod
    def of(cls, base: str) -> _Target:
        url = urlsplit(base)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise typer.BadParameter(f"not an http(s) URL: {base!r}", param_hint="--base")
        path = url.path.rstrip("/") or "/"
        return cls(url.scheme == "https", url.hostname, url.port, path + (f"?{url.query}" if url.query else ""))

    def connect(self, timeout: float) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


def _diagnostics(text: bytes) -> str:
    """What a refusal says: its OperationOutcome's diagnostics, else the start of the body."""
    try:
        said = described(orjson.loads(text))
    except orjson.JSONDecodeError:
        said = ""
    return said or text[:300].decode("utf-8", "replace")


def register(app: typer.Typer) -> None:
    """Add ``import-claims``, ``import`` and ``map`` to the CLI (all here, so ``main.py`` lists one module)."""
    app.command("import-claims")(import_claims)
    app.command("import")(import_any)
    app.command("map")(map_command)
