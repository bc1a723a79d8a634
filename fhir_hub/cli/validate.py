"""``fhir-hub validate``: check files against R4 and the VN Core profiles, for data stewards.

Each PATH is a JSON resource, a Bundle (the Bundle, then every ``entry.resource``), an ndjson file
(one resource a line) or a folder of them (``*.json``, ``*.ndjson``, recursively). A resource is
checked structurally (R4) and against ``--profile`` when it is of that profile's type, else against
the VN profiles it claims in ``meta.profile``, else against its default VN profile
(:func:`fhir_hub.profiles.default_profiles`: by type, Encounter by class, Observation by category).
The Conditions of a Bundle are checked against the ICD-10 sex and age rules
(:mod:`fhir_hub.validation.icd_rules`) with their Patient from the same Bundle.

``--ig DIR|package.tgz`` (repeatable) first loads the StructureDefinitions, ValueSets and
CodeSystems of a folder or a FHIR NPM package (:mod:`fhir_hub.validation.ig`), e.g. the package
``fhir-hub profiles build`` writes, so ``--profile`` and claims may name them.

``--jobs N`` (default 0: one per core) checks the files in N worker processes (forked, so the
``--ig`` packages loaded are theirs too); an ndjson file larger than 1 MB is cut into ranges of whole
lines, so one big file keeps every worker busy; results are printed in input order, as one process
prints them. Input of 256 kB or less is checked in this process (starting workers costs more).

Output: with ``--format text`` (the default; ``table`` is the same) every issue, then a summary
table; ``--format json`` prints one JSON document (``results``: file, line, resource,
OperationOutcome; ``summary``); ``--format outcome`` one OperationOutcome per resource checked, a
line each (ndjson), in input order. Messages are in English, or Vietnamese with ``--lang vi``. A
progress bar (bytes, ndjson line by line) runs on stderr while more than one file, or a file of
4 MB or more, is read. Conditions of an ndjson file are checked against the ICD-10 rules with the
Patients (by id) of the same file. Exit code 0 when no issue at or above
``--fail-on`` (``error``, the default, or ``warning``) was found, 1 when one was, 2 when the command
could not run (unknown profile, unreadable package, a PATH that does not exist, no file).
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import typer

if TYPE_CHECKING:
    from rich.console import Console

_SHOW = 200
#: A single file at least this large gets a progress bar too (bytes read, per ndjson line).
_LARGE = 4 * 1024 * 1024


@dataclass
class _Result:
    file: str
    line: int | None
    resource: str
    issues: list[Any] = field(default_factory=list)
    #: resources checked: 1, or 1 + the entries of a Bundle
    count: int = 1


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(x for x in p.rglob("*") if x.suffix in (".json", ".ndjson") and x.is_file()))
        else:
            out.append(p)
    return out


def _label(resource: Any, fallback: str) -> str:
    if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
        rid = resource.get("id")
        return f"{resource['resourceType']}/{rid}" if isinstance(rid, str) else str(resource["resourceType"])
    return fallback


def _check(resource: Any, profile_url: str | None, profile_type: str | None) -> list[Any]:
    from fhir_hub.validation import icd_rules, profile

    urls = [profile_url] if profile_url and isinstance(resource, dict) and resource.get("resourceType") == profile_type \
        else None
    issues = profile.validate_resource(resource, urls)
    if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
        for i, entry in enumerate(resource.get("entry") or ()):
            inner = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(inner, dict) or not isinstance(inner.get("resourceType"), str):
                continue
            wanted = [profile_url] if profile_url and inner["resourceType"] == profile_type else None
            found = profile.validate_resource(inner, wanted, structural=False)
            issues.extend(profile.reroot(x, inner["resourceType"], f"Bundle.entry[{i}].resource") for x in found)
        issues.extend(icd_rules.check(resource))
    return issues


def _bad_input(message: str, vi: str) -> Any:
    from fhir_hub.validation.profile import ProfileIssue

    return ProfileIssue("error", "structure", message, (), vi)


def _ndjson_patients(lines: list[bytes]) -> dict[str, dict[str, Any]]:
    """The Patients of an ndjson file by ``Patient/id``, for the ICD-10 rules on its Conditions."""
    found: dict[str, dict[str, Any]] = {}
    for raw in lines:
        if b"Patient" not in raw:
            continue
        try:
            res = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue  # reported when the line itself is checked
        if isinstance(res, dict) and res.get("resourceType") == "Patient" and isinstance(res.get("id"), str):
            found[f"Patient/{res['id']}"] = res
    return found


def _read(path: Path, profile_url: str | None, profile_type: str | None,
          advance: Callable[[int], None] = lambda n: None, part: _Part | None = None) -> Iterator[_Result]:
    """The results of one file; ``advance`` is told how many bytes each result covered. ``part``
    (ndjson only, for a worker): the lines of the file's bytes ``[start, end)``, see :data:`_Part`."""
    from fhir_hub.validation import icd_rules

    name = str(path)
    try:
        if part is None:
            data = path.read_bytes()
        else:
            with path.open("rb") as f:
                f.seek(part[1])
                data = f.read(part[2] - part[1])
    except OSError as exc:
        yield _Result(name, None, "-", [_bad_input(f"cannot read the file: {exc.strerror}",
                                                   f"không đọc được tệp: {exc.strerror}")])
        return
    if path.suffix == ".ndjson":
        lines = data.splitlines()
        del data
        if part is None:
            patients = _ndjson_patients(lines) if any(b"Condition" in raw for raw in lines) else {}
        else:  # the Patients of the whole file, for its Conditions
            patients = _ndjson_patients(path.read_bytes().splitlines()) if part[3] else {}
        for n, raw in enumerate(lines, (part[0] if part is not None else 0) + 1):
            advance(len(raw) + 1)
            if not raw.strip():
                continue
            try:
                resource = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                yield _Result(name, n, "-", [_bad_input(f"not valid JSON: {exc}", f"không phải JSON hợp lệ: {exc}")])
                continue
            issues = _check(resource, profile_url, profile_type)
            if patients and isinstance(resource, dict) and resource.get("resourceType") == "Condition":
                issues.extend(icd_rules.check(resource, patients))
            yield _Result(name, n, _label(resource, f"line {n}"), issues)
        return
    advance(len(data))
    try:
        resource = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        yield _Result(name, None, "-", [_bad_input(f"not valid JSON: {exc}", f"không phải JSON hợp lệ: {exc}")])
        return
    entries = resource.get("entry") if isinstance(resource, dict) and resource.get("resourceType") == "Bundle" else None
    yield _Result(name, None, _label(resource, "-"), _check(resource, profile_url, profile_type),
                  1 + (len(entries) if isinstance(entries, list) else 0))


_FAIL_ON = {"error": ("fatal", "error"), "warning": ("fatal", "error", "warning")}
#: An ndjson file is cut into parts of about this many bytes for the workers (whole lines each).
_PART = 1 << 20
#: Files of at most this many bytes in all are checked in this process: starting workers costs more.
_SMALL = 256 * 1024

#: A part of an ndjson file: (lines before it, first byte, byte after its last, whether the file
#: has a Condition anywhere). It starts after a newline and ends with one (or at the end of the
#: file), so its lines are the file's lines, numbered from the first number after its start.
_Part = tuple[int, int, int, bool]
#: What a worker checks: (path, the part of an ndjson file or None for the whole file, bytes it covers).
_Task = tuple[str, _Part | None, int]


def _tasks(files: list[Path], sizes: list[int], parts: int) -> list[_Task]:
    """The work in input order: a task per file; with ``parts`` > 1, an ndjson file larger than
    :data:`_PART` cut into parts of whole lines (about ``parts`` × 4 per file at least, so one big
    file keeps every worker busy), which a worker reads alone."""
    out: list[_Task] = []
    for path, size in zip(files, sizes, strict=True):
        if parts <= 1 or path.suffix != ".ndjson" or size <= _PART:
            out.append((str(path), None, size))
            continue
        try:
            data = path.read_bytes()
        except OSError:
            out.append((str(path), None, size))  # the worker reports it
            continue
        conditions = b"Condition" in data
        target = max(min(_PART, len(data) // (parts * 4) + 1), 64 * 1024)
        start = line = 0
        while start < len(data):
            cut = data.find(b"\n", min(start + target, len(data)) - 1)
            end = len(data) if cut < 0 else cut + 1
            out.append((str(path), (line, start, end, conditions), end - start))
            line += len(data[start:end].splitlines())
            start = end
    return out


#: The options of the run, set in each worker by :func:`_init_worker` (and in this process when jobs is 1).
_OPTIONS: dict[str, Any] = {}


def _init_worker(profile_url: str | None, profile_type: str | None) -> None:
    _OPTIONS.update(profile_url=profile_url, profile_type=profile_type)


def _work(task: _Task) -> list[_Result]:
    """The results of one task (in a worker process, or in this one)."""
    path, part, _size = task
    return list(_read(Path(path), _OPTIONS["profile_url"], _OPTIONS["profile_type"], part=part))


def default_jobs() -> int:
    """The cores this process may run on (the default of ``--jobs``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _pool(jobs: int, tasks: int, profile_url: str | None, profile_type: str | None) -> Any:
    """``jobs`` worker processes, started now (forked, so the loaded ``--ig`` packages and the imports
    are theirs too, and before a progress bar's thread runs), or ``None`` for this process alone."""
    _init_worker(profile_url, profile_type)
    import multiprocessing

    if jobs <= 1 or tasks < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(min(jobs, tasks), mp_context=multiprocessing.get_context("fork"),
                               initializer=_init_worker, initargs=(profile_url, profile_type))
    pool.submit(int).result()  # with fork, the first task starts every worker
    return pool


def _results(tasks: list[_Task], pool: Any, jobs: int,
             done: Callable[[_Task, int], None]) -> Iterator[list[_Result]]:
    """Each task's results, in input order, from the ``pool``'s workers or (``None``) this process;
    ``done(task, resources checked so far)`` after each."""
    checked = 0
    if pool is None:
        found_all: Iterator[list[_Result]] = map(_work, tasks)
    else:
        found_all = pool.map(_work, tasks, chunksize=max(1, min(64, len(tasks) // (jobs * 8))))
    for task, found in zip(tasks, found_all, strict=True):
        checked += len(found)
        done(task, checked)
        yield found


def _load_igs(igs: list[Path], err: Any, done: list[Any]) -> None:
    from fhir_hub.validation import ig

    for path in igs:
        try:
            loaded = ig.load(path)
        except ig.IgError as exc:
            err.print(escape(str(exc)))
            raise typer.Exit(2) from None
        done.append(loaded)
        err.print(f"{escape(loaded.source)}: {len(loaded.profiles)} StructureDefinition(s), "
                  f"{len(loaded.value_sets)} ValueSet(s), {len(loaded.code_systems)} CodeSystem(s) loaded",
                  highlight=False)


def validate(
    paths: list[Path] = typer.Argument(..., help="JSON resources, Bundles, ndjson files or folders of them."),
    profile_url: str = typer.Option(None, "--profile", help="Check resources of its type against this profile URL."),
    igs: list[Path] = typer.Option([], "--ig", help="Folder or FHIR package .tgz of extra StructureDefinitions, "
                                   "ValueSets and CodeSystems (repeatable)."),
    lang: str = typer.Option("en", "--lang", help="Language of the messages: en or vi."),
    fmt: str = typer.Option("text", "--format", help="text (issues and a summary), json or outcome (ndjson)."),
    fail_on: str = typer.Option("error", "--fail-on", help="Exit 1 when an issue of this severity or worse is "
                                "found: error or warning."),
    jobs: int = typer.Option(0, "--jobs", "-j", help="Worker processes (0, the default: one per core); "
                             "results stay in input order."),
) -> None:
    """Validate FHIR resources against R4 and the VN Core profiles (exit 1 when an error is found)."""
    run(paths, profile_url, igs, lang, fmt, fail_on, jobs)


def run(paths: list[Path], profile_url: str | None = None, igs: list[Path] | None = None, lang: str = "en",
        fmt: str = "text", fail_on: str = "error", jobs: int = 0) -> None:
    """The command, whichever parser read its options (typer, or :func:`fast` at start-up); raises
    ``typer.Exit`` with the exit code when it is not 0."""
    loaded: list[Any] = []
    try:
        _validate(paths, profile_url, igs or [], lang, fmt, fail_on, jobs, loaded)
    finally:
        if loaded:
            from fhir_hub.validation import ig

            for one in reversed(loaded):
                ig.unload(one)


class _NotMine(Exception):
    """The arguments are not for :func:`fast`: typer parses them (and reports what is wrong)."""


def fast(argv: list[str]) -> int | None:
    """``fhir-hub validate`` without typer's parser: its options through argparse, so a run does not
    import pydantic and build a TypeAdapter per option (typer's coercion; about 0.2 s of CPU, a third
    of a small run's start-up). The exit code, or ``None`` when the arguments ask for what typer
    answers (``--help``, an unknown or malformed option): the caller then hands them to typer, so
    help and error messages are typer's, and the behaviour the same."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str) -> Any:  # type: ignore[override]
            raise _NotMine(message)

    if any(a in ("--help", "-h") or (a.startswith("-") and "=" not in a and a not in _FAST_OPTIONS) and a != "--"
           for a in argv):
        return None
    parser = Parser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--profile", dest="profile_url")
    parser.add_argument("--ig", dest="igs", action="append", type=Path)
    parser.add_argument("--lang", default="en")
    parser.add_argument("--format", dest="fmt", default="text")
    parser.add_argument("--fail-on", dest="fail_on", default="error")
    parser.add_argument("--jobs", "-j", type=int, default=0)
    try:
        args = parser.parse_args(argv)
    except (_NotMine, argparse.ArgumentError):
        return None
    try:
        run(**vars(args))
    except typer.Exit as exc:
        return int(exc.exit_code)
    return 0


_FAST_OPTIONS = frozenset({"--profile", "--ig", "--lang", "--format", "--fail-on", "--jobs", "-j"})


def _validate(paths: list[Path], profile_url: str | None, igs: list[Path], lang: str, fmt: str, fail_on: str,
              jobs: int, loaded: list[Any]) -> None:
    from fhir_hub import profiles

    err = _Err()
    if lang not in ("en", "vi") or fmt not in ("text", "table", "json", "outcome") or fail_on not in _FAIL_ON \
            or jobs < 0:
        err.print("--lang is en or vi; --format is text, json or outcome; --fail-on is error or warning; "
                  "--jobs is 0 or more")
        raise typer.Exit(2)
    missing = [p for p in paths if not p.exists()]
    if missing:
        err.print(f"no such file or folder: {escape(', '.join(map(str, missing)))}")
        raise typer.Exit(2)
    _load_igs(igs, err, loaded)
    profile_type = None
    if profile_url:
        sd = profiles.structure_definition(profile_url)
        if sd is None:
            err.print(f"unknown profile {escape(profile_url)}; known: {', '.join(profiles.profile_urls())}")
            raise typer.Exit(2)
        profile_type = sd["type"]
    files = _files(paths)
    if not files:
        err.print("no file to validate")
        raise typer.Exit(2)
    sizes = [p.stat().st_size if p.is_file() else 0 for p in files]
    jobs = jobs or default_jobs()
    if sum(sizes) <= _SMALL:
        jobs = 1
    tasks = _tasks(files, sizes, jobs)
    results: list[_Result] = []
    large = len(files) > 1 or sum(sizes) >= _LARGE
    pool = _pool(jobs, len(tasks), profile_url, profile_type)
    try:
        if large and sys.stderr.isatty():
            _with_progress(_err(), tasks, sum(sizes), pool, jobs, results)
        else:
            for found in _results(tasks, pool, jobs, lambda task, n: None):
                results.extend(found)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    _report(results, len(files), lang, fmt, fail_on)


def _err() -> Console:
    from rich.console import Console

    return Console(stderr=True)


class _Err:
    """stderr's rich Console, made on the first message (rich costs 0.07 s to import; a clean run with
    ``--format json`` prints none)."""

    def print(self, *args: Any, **kwargs: Any) -> None:
        _err().print(*args, **kwargs)


def escape(text: str) -> str:
    """rich's markup escape, imported when a message needs it."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _with_progress(err: Console, tasks: list[_Task], total: int, pool: Any, jobs: int,
                   results: list[_Result]) -> None:
    """Check the tasks with a progress bar (bytes of the tasks done) on stderr."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("[bold]validate[/]"), BarColumn(), DownloadColumn(), TextColumn("{task.fields[name]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        bar = progress.add_task("bytes", total=total, name="")

        def done(task: _Task, checked: int) -> None:
            progress.update(bar, advance=task[2], name=f"{Path(task[0]).name} ({checked:,} checked)")

        for found in _results(tasks, pool, jobs, done):
            results.extend(found)


def _report(results: list[_Result], files: int, lang: str, fmt: str, fail_on: str) -> None:
    """Print the results as ``fmt`` asks; ``typer.Exit(1)`` when an issue at or above ``fail_on`` was found."""
    from fhir_hub.validation.profile import outcome

    severities: Counter[str] = Counter(i.severity for r in results for i in r.issues)
    resources = sum(r.count for r in results)
    failed = sum(1 for r in results if any(i.severity in ("error", "fatal") for i in r.issues))
    summary = {"files": files, "resources": resources, "with_errors": failed,
               **{s: severities[s] for s in ("fatal", "error", "warning", "information")}}
    if fmt == "json":
        doc = {"results": [{"file": r.file, "line": r.line, "resource": r.resource,
                            "outcome": outcome(r.issues, lang)} for r in results], "summary": summary}
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif fmt == "outcome":
        sys.stdout.write("".join(orjson.dumps(outcome(r.issues, lang)).decode() + "\n" for r in results))
    else:
        _print_table(results, summary, lang)
    if any(severities[s] for s in _FAIL_ON[fail_on]):
        raise typer.Exit(1)


def _print_table(results: list[_Result], summary: dict[str, int], lang: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    shown = 0
    styles = {"fatal": "bold red", "error": "red", "warning": "yellow", "information": "cyan"}
    for r in results:
        for i in r.issues:
            if shown >= _SHOW:
                break
            shown += 1
            where = f"{r.file}" + (f":{r.line}" if r.line else "") + f" {r.resource}"
            vi_text: str = getattr(i, "vi", "")
            text = vi_text if lang == "vi" and vi_text else i.diagnostics
            at = ", ".join(i.expression)
            console.print(f"[{styles.get(i.severity, '')}]{i.severity}[/] {escape(where)} "
                          f"{escape(at)}: {escape(text)}", highlight=False)
    total = sum(len(r.issues) for r in results)
    if total > shown:
        console.print(f"… and {total - shown} more (use --format json for all)")
    vi = lang == "vi"
    table = Table(title="fhir-hub validate", title_justify="left")
    table.add_column("mục" if vi else "what")
    table.add_column("số lượng" if vi else "count", justify="right")
    labels = {"files": ("files", "tệp"), "resources": ("resources", "tài nguyên"),
              "with_errors": ("with errors", "có lỗi"), "fatal": ("fatal", "nghiêm trọng"),
              "error": ("errors", "lỗi"), "warning": ("warnings", "cảnh báo"),
              "information": ("information", "thông tin")}
    for key, (en, vi_label) in labels.items():
        value = summary[key]
        cell = f"[red]{value}[/]" if key in ("with_errors", "error", "fatal") and value else str(value)
        table.add_row(vi_label if vi else en, cell)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``validate`` to the CLI."""
    app.command("validate")(validate)
