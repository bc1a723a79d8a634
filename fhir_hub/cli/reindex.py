"""``fhir-hub reindex``: rewrite the search index of a database file with today's search parameters.

The same work as ``POST [base]/$reindex`` (``rest/reindex.py``), without a server: it opens
the SQLite file itself, registers the custom SearchParameter resources stored in it, then
rewrites every resource's index rows, a batch per transaction. A server may be running on the
same file meanwhile: the batches take SQLite's write lock like another worker's writes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fhir_hub import definitions
from fhir_hub.config import Settings


async def _run(settings: Settings, types: list[str], progress: Progress) -> tuple[int, dict[str, int]]:
    from fhir_hub.rest.reindex import reindex
    from fhir_hub.rest.search_parameters import Follower
    from fhir_hub.search.extract import Indexer
    from fhir_hub.storage.sqlite.store import SQLiteStore

    # another process (a server) may share the file: hold no index rows it could not see
    store = SQLiteStore(settings.db, synchronous=settings.sqlite_synchronous, indexer=Indexer(), index_batch_rows=0)
    await store.open()
    try:
        custom = await Follower(store).load()
        totals = {t: await store.count(t, []) for t in types}
        task = progress.add_task("reindex", total=sum(totals.values()), rtype="")

        def advance(rtype: str, n: int) -> None:
            progress.update(task, advance=n, rtype=rtype)

        counts = await reindex(store, [t for t in types if totals[t]], advance)
    finally:
        await store.close()
    return custom, counts


def reindex(
    db: Path = typer.Option(None, help="SQLite file of the embedded store (env FHIR_HUB_DB, default fhir-hub.db)."),
    types: list[str] = typer.Option(None, "--type", "-t", help="Only this resource type (repeatable)."),
) -> None:
    """Rewrite the search index of every stored resource (after adding, changing or deleting a
    custom SearchParameter)."""
    settings = Settings.from_env(db=str(db) if db is not None else None)
    path = Path(settings.db)
    if not path.is_file():
        raise typer.BadParameter(f"no database file at {path}: nothing to reindex", param_hint="--db")
    unknown = [t for t in types or () if not definitions.is_resource_type(t)]
    if unknown:
        raise typer.BadParameter(f"{unknown[0]!r} is not an R4 resource type", param_hint="--type")
    chosen = list(dict.fromkeys(types)) if types else sorted(definitions.resource_types())
    columns = (TextColumn("[bold]reindex[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rtype]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        custom, counts = asyncio.run(_run(settings, chosen, progress))
    table = Table(title=f"fhir-hub reindex {path}", title_justify="left")
    table.add_column("type")
    table.add_column("resources", justify="right")
    for rtype, n in counts.items():
        table.add_row(rtype, str(n))
    table.add_row("[bold]total[/]", f"[bold]{sum(counts.values())}[/]")
    console = Console()
    console.print(table)
    console.print(f"{custom} custom search parameter(s) registered from the store.")


def register(app: typer.Typer) -> None:
    """Add ``reindex`` to the CLI."""
    app.command("reindex")(reindex)
