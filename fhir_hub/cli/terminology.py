"""``fhir-hub terminology lookup|validate-code|expand|translate``: the terminology service offline.

Stewards check a code, list a value set or map an old administrative unit to a new one without a
running server: the same pure functions that answer ``$lookup``, ``$validate-code``, ``$expand``
and ``$translate`` (``fhir_hub.terminology``), over the catalogue shipped in the package. Exit
status 1 when the answer is "no" (unknown code, invalid, nothing found), 2 when the question
names a code system, value set or map that is not shipped.
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

group = typer.Typer(no_args_is_help=True, help="Look codes up, validate, expand and translate (offline).")
_out = Console()


def _unknown(what: str) -> typer.Exit:
    Console(stderr=True).print(f"[red]{what} is not in the shipped catalogue[/red]")
    return typer.Exit(2)


@group.command("lookup")
def lookup(system: str = typer.Argument(..., help="Code system URL."), code: str = typer.Argument(...),
           lang: str = typer.Option(None, "--lang", help="Display language, e.g. en.")) -> None:
    """Display, designations and properties of a code."""
    from fhir_hub import terminology

    try:
        found = terminology.lookup_details(system, code, lang)
    except terminology.UnknownSystem:
        raise _unknown(f"code system {system}") from None
    if found is None:
        _out.print(f"{code} is not a code of {system}")
        raise typer.Exit(1)
    table = Table(title=f"{system}|{code}", show_header=False)
    table.add_row("display", found.display)
    for language, value in found.designations:
        table.add_row(f"designation ({language})", value)
    for name, _kind, value in found.properties:
        table.add_row(name, value)
    _out.print(table)


@group.command("validate-code")
def validate_code(url: str = typer.Argument(..., help="ValueSet or CodeSystem URL."), code: str = typer.Argument(...),
                  system: str = typer.Option(None, "--system", help="The code's system (for a ValueSet)."),
                  display: str = typer.Option(None, "--display", help="Check this display too.")) -> None:
    """Is the code in the value set (or code system), with this display?"""
    from fhir_hub import terminology

    valueset = terminology.value_set(url)
    if valueset is not None:
        try:
            ok, message, _shown = terminology.validate_in_valueset(valueset, code, system, display)
        except (terminology.UnknownSystem, terminology.UnsupportedCompose) as exc:
            Console(stderr=True).print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from None
    elif terminology.code_system(url) is not None:
        ok, message = terminology.validate_code(url, code, display)
    else:
        raise _unknown(f"value set or code system {url}")
    _out.print(f"[{'green' if ok else 'red'}]{'valid' if ok else 'invalid'}[/]: {message}")
    raise typer.Exit(0 if ok else 1)


@group.command("expand")
def expand(url: str = typer.Argument(..., help="ValueSet URL."),
           filter: str = typer.Option(None, "--filter", help="Text filter (accents and case ignored)."),
           count: int = typer.Option(50, "--count", min=0), offset: int = typer.Option(0, "--offset", min=0)) -> None:
    """The codes of a value set, filtered and paged."""
    from fhir_hub import terminology

    valueset = terminology.value_set(url)
    if valueset is None:
        raise _unknown(f"value set {url}")
    try:
        found = terminology.expand(valueset, filter=filter, count=count, offset=offset)
    except (terminology.UnknownSystem, terminology.UnsupportedCompose) as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    table = Table(title=f"{url}: {found.total:,} code(s), from {found.offset}")
    for column in ("code", "display", "system"):
        table.add_column(column)
    for entry in found.contains:
        table.add_row(entry.code, entry.display, entry.system)
    _out.print(table)
    raise typer.Exit(0 if found.total else 1)


@group.command("translate")
def translate(code: str = typer.Argument(...), url: str = typer.Option(None, "--map", help="ConceptMap URL."),
              source: str = typer.Option(None, "--system", help="The code's system."),
              target: str = typer.Option(None, "--target", help="Target system."),
              reverse: bool = typer.Option(False, "--reverse", help="Read the map backwards.")) -> None:
    """Map a code (e.g. a pre-2025 province) through the shipped ConceptMaps."""
    from fhir_hub import terminology

    if url is not None and terminology.concept_map(url) is None:
        raise _unknown(f"concept map {url}")
    try:
        matches = terminology.translate(code, url, source, target, reverse=reverse)
    except terminology.UnknownSystem as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    table = Table(title=f"{code}: {len(matches)} match(es)")
    for column in ("equivalence", "code", "display", "system"):
        table.add_column(column)
    for m in matches:
        table.add_row(m.equivalence, m.code, m.display or "", m.system)
    _out.print(table)
    raise typer.Exit(0 if matches else 1)


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="terminology")
