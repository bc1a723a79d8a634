"""``fhir-hub load``: post bundles, single resources and ndjson files to a running server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


@dataclass
class Tally:
    files: int = 0
    bundles: int = 0
    resources: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def _files(paths: list[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            yield from sorted(x for x in p.rglob("*") if x.suffix in (".json", ".ndjson") and x.is_file())
        else:
            yield p


def _diagnostics(r: httpx.Response) -> str:
    try:
        body = r.json()
        return "; ".join(i.get("diagnostics", "") for i in body.get("issue", [])) or r.text[:300]
    except ValueError:
        return r.text[:300]


async def _send(client: httpx.AsyncClient, doc: Any, where: str, tally: Tally) -> None:
    if not isinstance(doc, dict) or "resourceType" not in doc:
        tally.failures.append((where, "not a FHIR resource (no resourceType)"))
        return
    rtype = doc["resourceType"]
    if rtype == "Bundle" and doc.get("type") in ("transaction", "batch"):
        r = await client.post("", content=orjson.dumps(doc))
        count = len(doc.get("entry") or [])
        tally.bundles += 1
    elif "id" in doc:
        r = await client.put(f"/{rtype}/{doc['id']}", content=orjson.dumps(doc))
        count = 1
    else:
        r = await client.post(f"/{rtype}", content=orjson.dumps(doc))
        count = 1
    if r.status_code >= 400:
        tally.failures.append((where, f"{r.status_code}: {_diagnostics(r)}"))
    else:
        tally.resources += count


def _documents(path: Path, tally: Tally) -> Iterator[tuple[Any, str]]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        tally.failures.append((str(path), f"cannot read: {exc}"))
        return
    tally.files += 1
    lines = raw.splitlines() if path.suffix == ".ndjson" else [raw]
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{n}" if path.suffix == ".ndjson" else str(path)
        try:
            yield orjson.loads(line), where
        except orjson.JSONDecodeError as exc:
            tally.failures.append((where, f"not valid JSON: {exc}"))


async def _load(paths: list[Path], base: str, concurrency: int) -> Tally:
    tally = Tally()
    files = list(_files(paths))
    queue: asyncio.Queue[tuple[Any, str] | None] = asyncio.Queue(maxsize=concurrency * 2)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as progress:
        task = progress.add_task("loading", total=len(files))
        async with httpx.AsyncClient(base_url=base.rstrip("/"), headers=HEADERS, timeout=300) as client:

            async def worker() -> None:
                while (item := await queue.get()) is not None:
                    try:
                        await _send(client, item[0], item[1], tally)
                    except httpx.HTTPError as exc:
                        tally.failures.append((item[1], f"HTTP error: {exc!r}"))

            workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
            for path in files:
                for item in _documents(path, tally):
                    await queue.put(item)
                progress.advance(task)
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
    return tally


def load(
    paths: list[Path] = typer.Argument(..., help="Files (.json, .ndjson) or folders."),
    base: str = typer.Option("http://127.0.0.1:8080/fhir", help="FHIR base URL of the server."),
    concurrency: int = typer.Option(4, min=1, help="Requests in flight at once."),
) -> None:
    """Post bundles, resources and ndjson to a running FHIR server."""
    tally = asyncio.run(_load(paths, base, concurrency))
    console = Console()
    table = Table(title=f"loaded into {base}")
    for col in ("files", "bundles", "resources sent", "failures"):
        table.add_column(col, justify="right")
    table.add_row(str(tally.files), str(tally.bundles), str(tally.resources), str(len(tally.failures)))
    console.print(table)
    for where, why in tally.failures[:50]:
        console.print(f"[red]{where}[/red]: {why}")
    if tally.failures:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("load")(load)
