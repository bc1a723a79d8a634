"""``fhir-hub mpi review|link|unlink|merge|unmerge|explain --base URL``: patient stewardship
against a running server (``FHIR_HUB_MPI=on``), through the operations of ``rest/mpi.py``;
``fhir-hub mpi reconcile --db DB``: match the Patients of a store that never went through the
write path (``fhir_hub/mpi/backfill.py``).

Each command prints what the server answered as a table; the exit status is 1 when the server
refused (the OperationOutcome's diagnostics are printed) and 2 when it cannot be reached.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, help="Patient reconciliation: review queue and stewardship.")
console = Console()

BASE = typer.Option("http://127.0.0.1:8080/fhir", "--base", help="FHIR base URL of the server.")
ACTOR = typer.Option(None, "--actor", help="Who decides (recorded on the link).")


def _ref(value: str) -> str:
    return value if value.startswith("Patient/") else f"Patient/{value}"


def _call(base: str, method: str, path: str, body: dict[str, Any] | None = None,
          params: dict[str, str] | None = None) -> dict[str, Any]:
    try:
        r = httpx.request(method, base.rstrip("/") + path, json=body, params=params, timeout=60,
                          headers={"Accept": "application/fhir+json", "Content-Type": "application/fhir+json"})
    except httpx.HTTPError as exc:
        console.print(f"[red]cannot reach {base}: {exc}[/]")
        raise typer.Exit(2) from exc
    payload: dict[str, Any] = r.json() if r.content else {}
    if r.status_code >= 400:
        for issue in payload.get("issue", []) or [{"diagnostics": r.text}]:
            console.print(f"[red]{r.status_code}: {issue.get('diagnostics')}[/]")
        raise typer.Exit(1)
    return payload


def _operation(base: str, name: str, actor: str | None, **values: str | None) -> dict[str, Any]:
    parameters = [{"name": k, "valueString": v} for k, v in values.items() if v is not None]
    if actor:
        parameters.append({"name": "actor", "valueString": actor})
    return _call(base, "POST", f"/Patient/{name}", {"resourceType": "Parameters", "parameter": parameters})


def _flatten(parameters: list[dict[str, Any]], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for p in parameters:
        name = f"{prefix}{p['name']}"
        if "part" in p:
            rows += _flatten(p["part"], f"{name}.")
        else:
            value = next((v for k, v in p.items() if k.startswith("value")), "")
            rows.append((name, str(value)))
    return rows


def _show(title: str, payload: dict[str, Any]) -> None:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in _flatten(payload.get("parameter", [])):
        table.add_row(name, value)
    console.print(table)


@app.command()
def review(base: str = BASE, count: int = typer.Option(50, "--count", help="At most this many items.")) -> None:
    """List the open review items: source, candidate golden record, rule, score, reasons."""
    bundle = _call(base, "GET", "/$mpi-review", params={"_count": str(count)})
    table = Table(title=f"review queue ({bundle.get('total', 0)})")
    for column in ("item", "source", "candidate", "rule", "score", "reasons"):
        table.add_column(column)
    for entry in bundle.get("entry", []):
        item = entry["resource"]
        parts = item["extension"][0]["extension"]
        get = {p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in parts}
        reasons = "; ".join(p["valueString"] for p in parts if p["url"] == "reason")
        table.add_row(item["id"], item["subject"]["reference"], f"Patient/{item['identifier'][0]['value']}",
                      str(get.get("rule", "")), str(get.get("score", "")), reasons)
    console.print(table)


@app.command()
def link(source: str, golden: str, base: str = BASE, actor: str | None = ACTOR) -> None:
    """Link SOURCE to GOLDEN (accepts the pair's review item)."""
    _show("linked", _operation(base, "$mpi-link", actor, source=_ref(source), golden=_ref(golden)))


@app.command()
def unlink(source: str, golden: str | None = typer.Argument(None, help="Reject SOURCE's review with this golden "
                                                                         "record instead."),
           base: str = BASE, actor: str | None = ACTOR) -> None:
    """Take SOURCE out of its golden record (back where a steward moved it from, else a new one)."""
    _show("unlinked", _operation(base, "$mpi-unlink", actor, source=_ref(source),
                                 golden=_ref(golden) if golden else None))


@app.command()
def merge(from_golden: str, into_golden: str, base: str = BASE, actor: str | None = ACTOR) -> None:
    """Merge golden record FROM_GOLDEN into INTO_GOLDEN."""
    _show("merged", _operation(base, "$mpi-merge", actor, **{"from": _ref(from_golden), "into": _ref(into_golden)}))


@app.command()
def unmerge(from_golden: str, base: str = BASE, actor: str | None = ACTOR) -> None:
    """Undo the merge of FROM_GOLDEN: its sources go back, both records as they were."""
    _show("unmerged", _operation(base, "$mpi-unmerge", actor, **{"from": _ref(from_golden)}))


@app.command()
def explain(patient: str, base: str = BASE) -> None:
    """How PATIENT (a source or a golden record) came to be linked as it is."""
    _show(f"explain {_ref(patient)}", _operation(base, "$mpi-explain", None, patient=_ref(patient)))


async def _reconcile(db: str | None) -> dict[str, int]:
    from fhir_hub.config import Settings
    from fhir_hub.mpi.backfill import reconcile_store
    from fhir_hub.storage.select import make_store

    store = make_store(Settings.from_env(db=db))
    await store.open()
    try:
        return dict(await reconcile_store(store))
    finally:
        await store.close()


@app.command()
def reconcile(db: str = typer.Option(None, "--db", help="The store (SQLite file or postgresql:// URL; env "
                                                        "FHIR_HUB_DB).")) -> None:
    """Match every source Patient without a link yet (a store written with reconciliation off, or
    restored below the REST layer), as a REST create would; run it with the server stopped."""
    counts = asyncio.run(_reconcile(db))
    console.print(f"{counts.get('matched', 0)} source Patient(s) matched, "
                  f"{counts.get('already linked', 0)} already linked")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="mpi")
