"""``fhir-hub demo-data``: write generated Vietnamese outpatient bundles to files.

Why files and not a direct load: the bundles can then be looked at, edited, shared and posted
to any FHIR server (``fhir-hub load DIR`` or curl), and the same seed always names the same
data set.  One JSON file per patient (a transaction Bundle), named ``patient-0001.json`` … so
that a sorted directory walk loads them in generation order.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: Resource types in the order a reader expects them in the summary.
_ORDER = ("Organization", "Patient", "Encounter", "Observation", "Condition")


def _summary(counts: Counter[str]) -> str:
    ordered = [t for t in _ORDER if t in counts] + sorted(t for t in counts if t not in _ORDER)
    return ", ".join(f"{counts[t]} {t}" for t in ordered)


def demo_data(
    patients: int = typer.Option(20, "--patients", "-n", min=0, help="Number of patients (one bundle each)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same patients."),
    out: Path = typer.Option(Path("demo-data"), "--out", "-o", file_okay=False,
                             help="Directory for the bundle files (created if missing)."),
    encounters: int = typer.Option(5, "--encounters", min=0, help="Outpatient visits per patient."),
    pretty: bool = typer.Option(False, "--pretty", help="Indent the JSON (bigger files, easier to read)."),
) -> None:
    """Generate Vietnamese outpatient data (FHIR R4 transaction bundles), one file per patient."""
    from fhir_hub.sample.generator import patient_bundles

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise typer.BadParameter(f"cannot create {out}: {exc}", param_hint="--out") from exc
    option = orjson.OPT_INDENT_2 if pretty else 0
    width = max(4, len(str(patients)))
    written = {f"patient-{i:0{width}d}.json" for i in range(1, patients + 1)}
    counts: Counter[str] = Counter()
    console = Console()
    with Progress(TextColumn("[bold]demo-data[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("bundles"),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("generate", total=patients)
        for i, bundle in enumerate(patient_bundles(patients, seed=seed, encounters=encounters), 1):
            (out / f"patient-{i:0{width}d}.json").write_bytes(orjson.dumps(bundle, option=option))
            counts.update(e["resource"]["resourceType"] for e in bundle["entry"])
            progress.advance(task)
    total = sum(counts.values())
    console.print(f"Wrote {patients} bundles to {out} ({total} resources: {_summary(counts) or 'none'}); "
                  f"seed {seed}.", soft_wrap=True)
    stale = sorted(p.name for p in out.glob("*.json") if p.name not in written)
    if stale:
        # a later `load DIR` would post them too: say so rather than delete files we did not just write
        console.print(f"[yellow]Note:[/] {out} also holds {len(stale)} other .json file(s), e.g. {stale[0]}.",
                      soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add ``demo-data`` to the CLI."""
    app.command("demo-data")(demo_data)
