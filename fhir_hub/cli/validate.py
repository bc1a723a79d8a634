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

import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

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
          advance: Callable[[int], None] = lambda n: None) -> Iterator[_Result]:
    """The results of one file; ``advance`` is told how many bytes each result covered."""
    from fhir_hub.validation import icd_rules

    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        yield _Result(name, None, "-", [_bad_input(f"cannot read the file: {exc.strerror}",
                                                   f"không đọc được tệp: {exc.strerror}")])
        return
    if path.suffix == ".ndjson":
        lines = data.splitlines()
        del data
        patients = _ndjson_patients(lines) if any(b"Condition" in raw for raw in lines) else {}
        for n, raw in enumerate(lines, 1):
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


def _load_igs(igs: list[Path], err: Console, done: list[Any]) -> None:
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
) -> None:
    """Validate FHIR resources against R4 and the VN Core profiles (exit 1 when an error is found)."""
    from fhir_hub.validation import ig

    loaded: list[Any] = []
    try:
        _validate(paths, profile_url, igs, lang, fmt, fail_on, loaded)
    finally:
        for one in reversed(loaded):
            ig.unload(one)


def _validate(paths: list[Path], profile_url: str | None, igs: list[Path], lang: str, fmt: str, fail_on: str,
              loaded: list[Any]) -> None:
    from fhir_hub import profiles
    from fhir_hub.rest.validate import outcome

    err = Console(stderr=True)
    if lang not in ("en", "vi") or fmt not in ("text", "table", "json", "outcome") or fail_on not in _FAIL_ON:
        err.print("--lang is en or vi; --format is text, json or outcome; --fail-on is error or warning")
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
    results: list[_Result] = []
    sizes = [p.stat().st_size if p.is_file() else 0 for p in files]
    columns = (TextColumn("[bold]validate[/]"), BarColumn(), DownloadColumn(), TextColumn("{task.fields[name]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    large = len(files) > 1 or sum(sizes) >= _LARGE
    with Progress(*columns, console=err, transient=True, disable=not large) as progress:
        task = progress.add_task("bytes", total=sum(sizes), name="")
        for path, size in zip(files, sizes, strict=True):
            progress.update(task, name=f"{path.name} ({len(results):,} checked)")
            start = progress.tasks[0].completed
            results.extend(_read(path, profile_url, profile_type, lambda n: progress.advance(task, n)))
            progress.update(task, completed=start + size)
    severities: Counter[str] = Counter(i.severity for r in results for i in r.issues)
    resources = sum(r.count for r in results)
    failed = sum(1 for r in results if any(i.severity in ("error", "fatal") for i in r.issues))
    summary = {"files": len(files), "resources": resources, "with_errors": failed,
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
