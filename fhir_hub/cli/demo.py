"""``fhir-hub demo-data``: write generated outpatient transaction bundles, one file per patient."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.progress import track
from rich.table import Table


def demo_data(
    patients: int = typer.Option(20, "--patients", min=1, help="How many patients (one bundle each)."),
    seed: int = typer.Option(0, help="Random seed: the same seed gives the same data."),
    out: Path = typer.Option(Path("demo-data"), help="Folder for the bundle files."),
) -> None:
    """Generate Vietnamese outpatient data as FHIR transaction bundles."""
    from fhir_hub.sample.generator import patient_bundles

    out.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    width = len(str(patients))
    for i, bundle in enumerate(track(patient_bundles(patients, seed=seed), total=patients,
                                     description="generating", transient=True)):
        (out / f"patient-{i:0{width}d}.json").write_bytes(orjson.dumps(bundle))
        counts.update(e["resource"]["resourceType"] for e in bundle["entry"])
    table = Table(title=f"{patients} bundles in {out}")
    table.add_column("resource type")
    table.add_column("count", justify="right")
    for rtype, n in sorted(counts.items()):
        table.add_row(rtype, str(n))
    table.add_row("total", str(sum(counts.values())))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("demo-data")(demo_data)
