"""Entry point of the `fhir-hub` console script.

Each command group lives in its own module and registers itself on the one app,
so this file only lists them.
"""

from __future__ import annotations

import typer

from fhir_hub.cli import (
    auth,
    db,
    demo,
    import_claims,
    load,
    move,
    mpi,
    profiles,
    reindex,
    serve,
    terminology,
    validate,
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help="FHIR R4 hub for Vietnam's health sector.")



@app.callback()
def main() -> None:
    """fhir-hub: FHIR R4 server, loaders and tools."""


for module in (serve, demo, load, reindex, import_claims, move, validate, profiles, terminology, auth, mpi, db):
    module.register(app)


if __name__ == "__main__":  # pragma: no cover
    app()
