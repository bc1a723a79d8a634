"""``fhir-hub export PATH`` / ``fhir-hub import PATH… --db DB``: move a whole store between backends.

An export directory holds, for each resource type, ``<Type>.ndjson``: the stored JSON of each
version, byte for byte as the store serves it (so a SQLite → SQLite round trip gives identical
bodies), one per line in the store's change order. Next to them, ``_versions.ndjson`` lists
every exported version in that order (type, id, versionId, the µs timestamp, the method, and
tombstones, which have no body), and ``_manifest.json`` the counts per type. Without
``--history`` only the live current versions are written; with it every version, deletes
included.

Import reads them through the storage port's :meth:`~fhir_hub.storage.port.Tx.restore`, which
writes a version as given (id, versionId, lastUpdated, method and bytes kept) and indexes it with
the target store's search parameters; a batch of versions is one transaction. Plain ``.ndjson``
files (another server's bulk export) are accepted too: each line is a version, its versionId and
lastUpdated taken from its ``meta``. The target must be empty. Afterwards the custom
SearchParameters that came along are registered and, if there are any, the store is reindexed
with them; then the live resources (and versions) per type are counted in the target and
compared with what the files say.

The export walks the system history newest first (the port's only full scan) and spools pages
to a temp dir so that the files come out oldest first; a current-only export remembers the
``(type, id)`` of each resource it has seen.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fhir_hub.config import Settings
from fhir_hub.search.dates import period
from fhir_hub.storage.port import HistoryQuery, Store, StoredVersion, Tx

VERSIONS = "_versions.ndjson"
MANIFEST = "_manifest.json"
_PAGE = 1000


def _progress(label: str) -> Progress:
    return Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[what]}"),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)


async def _open(db: str) -> Store:
    from fhir_hub.storage.select import make_store

    store = make_store(Settings.from_env(db=db))
    await store.open()
    return store


# -- export -----------------------------------------------------------------------------------


def _entry(v: StoredVersion) -> bytes:
    return orjson.dumps({"resourceType": v.rtype, "id": v.rid, "versionId": v.vid, "ts": v.ts, "method": v.method,
                         "deleted": v.body is None})


async def _export(db: str, out: Path, history: bool, progress: Progress) -> dict[str, Counter[str]]:
    store = await _open(db)
    counts: dict[str, Counter[str]] = {"resources": Counter(), "versions": Counter()}
    try:
        task = progress.add_task("scan", total=await store.history_total(HistoryQuery()), what="")
        seen: set[tuple[str, str]] = set()
        with tempfile.TemporaryDirectory(prefix="fhir-hub-export-") as spool:
            pages: list[Path] = []
            before: int | None = None
            while True:
                page = await store.history(HistoryQuery(before_seq=before, count=_PAGE))
                if not page:
                    break
                before = page[-1].seq
                kept = []
                for v in page:  # newest first: the first version met of a resource is its current one
                    key = (v.rtype, v.rid)
                    if history:
                        kept.append(v)
                    elif key not in seen:
                        seen.add(key)
                        if v.body is not None:
                            kept.append(v)
                path = Path(spool) / f"{len(pages)}.spool"
                with path.open("wb") as spooled:
                    for v in reversed(kept):
                        body = b"" if v.body is None else bytes(v.body)
                        if b"\n" in body:
                            raise ValueError(f"{v.rtype}/{v.rid}/_history/{v.vid}: stored JSON spans lines")
                        spooled.write(_entry(v) + b"\n" + body + b"\n")
                pages.append(path)
                progress.update(task, advance=len(page), what=page[-1].rtype)
            files: dict[str, IO[bytes]] = {}
            try:
                with (out / VERSIONS).open("wb") as log:
                    for path in reversed(pages):
                        with path.open("rb") as pages_in:
                            for entry in pages_in:
                                body = pages_in.readline()
                                log.write(entry)
                                meta = orjson.loads(entry)
                                rtype = meta["resourceType"]
                                counts["versions"][rtype] += 1
                                if meta["deleted"]:
                                    continue
                                if rtype not in files:
                                    files[rtype] = (out / f"{rtype}.ndjson").open("wb")
                                files[rtype].write(body)
            finally:
                for open_file in files.values():
                    open_file.close()
        for rtype in counts["versions"]:
            counts["resources"][rtype] = await store.count(rtype, [])
    finally:
        await store.close()
    (out / MANIFEST).write_bytes(orjson.dumps({
        "history": history, "resources": dict(sorted(counts["resources"].items())),
        "versions": dict(sorted(counts["versions"].items()))}, option=orjson.OPT_INDENT_2))
    return counts


def export(
    path: Path = typer.Argument(..., file_okay=False, help="Directory for the ndjson files (new or empty)."),
    db: str = typer.Option(None, "--db", help="The store: a SQLite file or a postgresql:// URL (env FHIR_HUB_DB)."),
    history: bool = typer.Option(False, "--history", help="Every version (deletes included), not just current ones."),
) -> None:
    """Write the whole store as ndjson, one file per resource type (bodies as stored)."""
    from fhir_hub.storage.select import describe, is_postgres

    source = Settings.from_env(db=db).db
    if not is_postgres(source) and not Path(source).is_file():
        raise typer.BadParameter(f"no database file at {source}", param_hint="--db")
    if path.exists() and any(path.iterdir()):
        raise typer.BadParameter(f"{path} is not empty", param_hint="PATH")
    path.mkdir(parents=True, exist_ok=True)
    with _progress("export") as progress:
        counts = asyncio.run(_export(source, path, history, progress))
    _table(f"fhir-hub export {describe(source)} → {path}", counts, history)


# -- import -----------------------------------------------------------------------------------


@dataclass
class _Expected:
    resources: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)


def _from_body(line: bytes, where: str) -> StoredVersion:
    doc = orjson.loads(line)
    meta = doc.get("meta") or {}
    try:
        vid = int(meta["versionId"])
        span = period(meta["lastUpdated"])
        assert span is not None
    except (KeyError, ValueError, TypeError, AssertionError) as exc:
        raise ValueError(f"{where}: a version needs meta.versionId and meta.lastUpdated") from exc
    return StoredVersion(doc["resourceType"], doc["id"], vid, span[0], "POST" if vid == 1 else "PUT", line)


def _versions(path: Path, expected: _Expected) -> Iterator[StoredVersion]:
    """The versions of an export directory (or a plain ndjson file), oldest first."""
    if path.is_file():
        with path.open("rb") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    v = _from_body(line.rstrip(b"\r\n"), f"{path}:{n}")
                    expected.resources[v.rtype] += 1
                    expected.versions[v.rtype] += 1
                    yield v
        return
    manifest = orjson.loads((path / MANIFEST).read_bytes()) if (path / MANIFEST).is_file() else None
    if manifest is None or not (path / VERSIONS).is_file():
        for file in sorted(path.glob("*.ndjson")):
            yield from _versions(file, expected)
        return
    expected.resources.update(manifest["resources"])
    expected.versions.update(manifest["versions"])
    files: dict[str, IO[bytes]] = {}
    try:
        with (path / VERSIONS).open("rb") as log:
            for n, line in enumerate(log, 1):
                e = orjson.loads(line)
                rtype, rid, vid = e["resourceType"], e["id"], e["versionId"]
                body = None
                if not e["deleted"]:
                    if rtype not in files:
                        files[rtype] = (path / f"{rtype}.ndjson").open("rb")
                    body = files[rtype].readline().rstrip(b"\r\n")
                    doc = orjson.loads(body) if body else {}
                    if (doc.get("id"), (doc.get("meta") or {}).get("versionId")) != (rid, str(vid)):
                        raise ValueError(f"{path / VERSIONS}:{n}: {rtype}.ndjson does not follow it "
                                         f"(expected {rtype}/{rid} version {vid})")
                yield StoredVersion(rtype, rid, vid, e["ts"], e["method"], body)
    finally:
        for open_file in files.values():
            open_file.close()


def _count_lines(path: Path) -> int:
    if path.is_file():
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())
    if (path / VERSIONS).is_file():
        return _count_lines(path / VERSIONS)
    return sum(_count_lines(p) for p in path.glob("*.ndjson"))


def _restore_all(batch: list[StoredVersion]) -> Any:
    def unit(tx: Tx) -> None:
        for v in batch:
            tx.restore(v)
    return unit


async def _import(paths: list[Path], db: str, batch_size: int,
                  progress: Progress) -> tuple[_Expected, _Expected, int, Counter[str]]:
    from fhir_hub.rest.reindex import reindex
    from fhir_hub.rest.search_parameters import Follower

    store = await _open(db)
    expected, found = _Expected(), _Expected()
    try:
        if await store.history_total(HistoryQuery()):
            raise typer.BadParameter("the target store is not empty: import writes versions as they were, "
                                     "so it needs an empty one", param_hint="--db")
        task = progress.add_task("import", total=sum(_count_lines(p) for p in paths), what="")
        for path in paths:
            batch: list[StoredVersion] = []
            for v in _versions(path, expected):
                batch.append(v)
                if len(batch) >= batch_size:
                    await store.transact(_restore_all(batch))
                    progress.update(task, advance=len(batch), what=v.rtype)
                    batch = []
            if batch:
                await store.transact(_restore_all(batch))
                progress.update(task, advance=len(batch), what=batch[-1].rtype)
        custom = await Follower(store).load()
        if custom:  # rows made before the custom parameters were known lack them
            await reindex(store, sorted(expected.resources))
        for rtype in sorted(set(expected.resources) | set(expected.versions)):
            found.resources[rtype] = await store.count(rtype, [])
            found.versions[rtype] = await store.history_total(HistoryQuery(rtype))
        reconciled: Counter[str] = Counter()
        if Settings.from_env(db=db).mpi:  # restored Patients skipped the write path's matching
            from fhir_hub.mpi.backfill import reconcile_store

            reconciled = await reconcile_store(store)
    finally:
        await store.close()
    return expected, found, custom, reconciled


def import_store(paths: list[Path], db: str, batch_size: int = 500) -> None:
    """``fhir-hub import PATH… --db DB`` (dispatched from the ``import`` command)."""
    from fhir_hub.storage.select import describe

    missing = [p for p in paths if not p.exists()]
    if missing:
        raise typer.BadParameter(f"{missing[0]} does not exist", param_hint="PATH")
    with _progress("import") as progress:
        expected, found, custom, reconciled = asyncio.run(_import(paths, db, batch_size, progress))
    console = Console()
    table = Table(title=f"fhir-hub import → {describe(db)}", title_justify="left")
    for name in ("type", "resources", "expected", "versions", "expected"):
        table.add_column(name, justify="left" if name == "type" else "right")
    bad = []
    for rtype in sorted(set(expected.resources) | set(found.resources)):
        row = (found.resources[rtype], expected.resources[rtype], found.versions[rtype], expected.versions[rtype])
        ok = row[0] == row[1] and row[2] == row[3]
        if not ok:
            bad.append(rtype)
        style = "" if ok else "[red]"
        table.add_row(rtype, *(f"{style}{n}" for n in row))
    table.add_row("[bold]total[/]", *(f"[bold]{sum(c.values())}[/]" for c in
                                      (found.resources, expected.resources, found.versions, expected.versions)))
    console.print(table)
    if custom:
        console.print(f"{custom} custom search parameter(s) registered; the store was reindexed with them.")
    if bad:
        console.print(f"[red]count mismatch for {', '.join(bad)}[/]")
        raise typer.Exit(1)
    console.print("Counts verified.")
    if reconciled:
        console.print(f"Patient reconciliation: {reconciled['matched']} source Patient(s) matched, "
                      f"{reconciled['already linked']} already linked (golden records and links written after the count).")


def _table(title: str, counts: dict[str, Counter[str]], history: bool) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("type")
    table.add_column("resources", justify="right")
    table.add_column("versions written" if history else "written", justify="right")
    for rtype in sorted(counts["versions"]):
        table.add_row(rtype, str(counts["resources"][rtype]), str(counts["versions"][rtype]))
    table.add_row("[bold]total[/]", f"[bold]{sum(counts['resources'].values())}[/]",
                  f"[bold]{sum(counts['versions'].values())}[/]")
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add ``export`` to the CLI (``import --db`` is dispatched here from ``import_claims.py``)."""
    app.command("export")(export)
