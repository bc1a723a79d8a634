"""``fhir-hub profiles build|check|template-check``: the outpatient template registry, for data stewards.

* ``build [--out DIR] [--registry DIR]``: check the registry (``fhir_hub/profiles/templates``, or a
  copy being edited), build its profiles, Questionnaires and CodeSystems and write the FHIR NPM
  package ``fhir-hub.vn.outpatient-<version>.tgz`` into DIR (default: the current folder).
* ``check [PACKAGE.tgz|DIR …] [--registry DIR]``: lint the profiles of packages or folders of JSON
  (default: the shipped VN Core profiles and the templates built in memory); see
  :mod:`fhir_hub.profiles.lint`.
* ``template-check BUNDLE… [--template CODE] [--lang vi|en] [--format table|json]``: for each
  Encounter of each Bundle, which required items of its template the Bundle's Observations and
  Conditions record.

Exit codes: 0 clean, 1 problems found (lint errors, missing required items), 2 could not run (a
registry error, an unreadable file, no Encounter with a template).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

profiles_app = typer.Typer(no_args_is_help=True, add_completion=False,
                           help="Outpatient record templates: build the profile package, lint, check records.")


def _registry(folder: Path | None) -> Any:
    from fhir_hub.profiles.registry import RegistryError, load, registry

    try:
        return load(folder) if folder is not None else registry()
    except RegistryError as exc:
        Console(stderr=True).print(f"[red]registry error[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None


@profiles_app.command("build")
def build_cmd(
    out: Path = typer.Option(Path("."), "--out", help="Folder to write the package .tgz into."),
    folder: Path = typer.Option(None, "--registry", help="Template registry folder (default: the shipped one)."),
) -> None:
    """Build the templates into StructureDefinitions and Questionnaires and pack a FHIR NPM package."""
    from fhir_hub.profiles import build

    reg = _registry(folder)
    built = build.build(reg)
    path = build.write_package(out, built)
    table = Table(title="fhir-hub profiles build", title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    for label, n in (("templates", len(reg.templates)), ("Encounter profiles", len(built.encounter_profiles)),
                     ("Observation profiles", len(built.observation_profiles)),
                     ("Questionnaires", len(built.questionnaires)), ("CodeSystems", len(built.code_systems))):
        table.add_row(label, str(n))
    console = Console()
    console.print(table)
    console.print(f"wrote {escape(str(path))} ({path.stat().st_size:,} bytes)", highlight=False)


def _resources(members: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for name, r in members.items() if isinstance(r, dict) and "resourceType" in r
            and not name.endswith(("package.json", ".index.json"))]


@profiles_app.command("check")
def check_cmd(
    paths: list[Path] = typer.Argument(None, help="Package .tgz files or folders of JSON (default: the shipped "
                                       "profiles and the built templates)."),
    folder: Path = typer.Option(None, "--registry", help="Template registry folder (default: the shipped one)."),
) -> None:
    """Lint profiles: snapshots against differentials, references, bindings, invariants."""
    from fhir_hub.profiles import build, lint

    err = Console(stderr=True)
    batches: list[tuple[str, list[dict[str, Any]]]] = []
    if paths:
        for p in paths:
            try:
                batches.append((str(p), _resources(build.read_package(p))))
            except (OSError, ValueError) as exc:  # tarfile.ReadError and orjson's decode error are ValueErrors
                err.print(f"cannot read {escape(str(p))}: {escape(str(exc))}")
                raise typer.Exit(2) from None
    else:
        reg = _registry(folder)
        name, data = build.package(build.build(reg))
        batches.append((f"{name} (built in memory)", _resources(build.unpack(data))))
    console = Console()
    errors = 0
    for label, resources in batches:
        findings = lint.lint(resources)
        checked = sum(1 for r in resources if r.get("resourceType") in ("StructureDefinition", "Questionnaire"))
        for f in findings:
            style = "red" if f.severity == "error" else "yellow"
            console.print(f"[{style}]{f.severity}[/] {escape(f.resource)} {escape(f.where)}: {escape(f.message)}",
                          highlight=False)
        errors += sum(1 for f in findings if f.severity == "error")
        console.print(f"{escape(label)}: {checked} profiles and questionnaires checked, {len(findings)} finding(s)",
                      highlight=False)
    if errors:
        raise typer.Exit(1)


def _bundle_checks(path: Path, template: str | None, reg: Any) -> list[tuple[str, Any]]:
    """``(label, Check or message)`` for each Encounter of the Bundle in ``path``."""
    from fhir_hub.profiles import template_check

    doc = orjson.loads(path.read_bytes())
    if not isinstance(doc, dict) or doc.get("resourceType") != "Bundle":
        raise ValueError("not a Bundle")
    entries = [e for e in doc.get("entry") or () if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    pairs: list[tuple[str, dict[str, Any]]] = []
    for e in entries:
        res = e["resource"]
        ref = e.get("fullUrl") or f"{res.get('resourceType')}/{res.get('id')}"
        pairs.append((str(ref), res))
    out: list[tuple[str, Any]] = []
    for ref, res in pairs:
        if res.get("resourceType") != "Encounter":
            continue
        names = {ref}
        if isinstance(res.get("id"), str):
            names.add(f"Encounter/{res['id']}")
        chosen = reg.template(template) if template else None
        if template and chosen is None:
            raise ValueError(f"no template {template!r} in the registry")
        try:
            out.append((ref, template_check.check(res, pairs, names, chosen, reg)))
        except LookupError as exc:
            out.append((ref, str(exc)))
    return out


@profiles_app.command("template-check")
def template_check_cmd(
    bundles: list[Path] = typer.Argument(..., help="Bundle JSON files holding an Encounter and its resources."),
    template: str = typer.Option(None, "--template", help="Template code (default: the one the Encounter names)."),
    lang: str = typer.Option("en", "--lang", help="Language of the item names: en or vi."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """Which required items of the template each Encounter's record has, and which are missing."""
    from fhir_hub.profiles.registry import registry

    err = Console(stderr=True)
    if lang not in ("en", "vi") or fmt not in ("table", "json"):
        err.print("--lang is en or vi; --format is table or json")
        raise typer.Exit(2)
    reg = registry()
    results: list[tuple[str, str, Any]] = []
    for path in bundles:
        try:
            results.extend((str(path), label, c) for label, c in _bundle_checks(path, template, reg))
        except (OSError, ValueError) as exc:
            err.print(f"cannot check {escape(str(path))}: {escape(str(exc))}")
            raise typer.Exit(2) from None
    checks = [(f, label, c) for f, label, c in results if not isinstance(c, str)]
    for f, label, c in results:
        if isinstance(c, str):
            err.print(f"{escape(f)} {escape(label)}: {escape(c)}")
    if not checks:
        err.print("no Encounter with an outpatient template found")
        raise typer.Exit(2)
    vi = lang == "vi"

    def name(item: Any) -> str:
        return str(item.vi if vi else item.en)

    if fmt == "json":
        doc = [{"file": f, "encounter": label, "template": c.template.code, "complete": c.complete,
                "present": [{"code": x.item.code, "name": name(x.item), "required": x.item.required,
                             "resources": list(x.resources)} for x in c.present],
                "missing": [{"code": i.code, "name": name(i)} for i in c.missing]} for f, label, c in checks]
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        console = Console()
        for f, label, c in checks:
            t = c.template
            required = len(t.required())
            state = "[green]complete[/]" if c.complete else f"[red]{len(c.missing)} required item(s) missing[/]"
            console.print(f"{escape(f)} {escape(label)} — {escape(t.vi if vi else t.en)} ({t.code}): "
                          f"{required - len(c.missing)}/{required} required present, {state}", highlight=False)
            for i in c.missing:
                console.print(f"  [red]missing[/] {escape(name(i))} ({i.code})", highlight=False)
    if any(not c.complete for _, _, c in checks):
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``profiles`` command group to the CLI."""
    app.add_typer(profiles_app, name="profiles")
