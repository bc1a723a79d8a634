"""``fhir-hub db upgrade`` / ``fhir-hub db status``: the PostgreSQL store's schema version.

A server refuses a database of another schema version (``storage/postgres/migrations.py`` says
why); these commands are the way out: ``upgrade`` runs the missing migrations in one transaction,
``status`` says which version the database has, which this fhir-hub needs, and when each
migration ran. The embedded SQLite store has no versioned migrations, so both refuse a file path.
"""

from __future__ import annotations

from typing import Any

import typer

from fhir_hub.config import Settings

db_app = typer.Typer(no_args_is_help=True, help="The PostgreSQL store's schema: status and upgrade.")

_DB = typer.Option(None, "--db", help="postgresql:// URL of the store [env FHIR_HUB_DB].")


def _connect(db: str | None) -> tuple[Any, str]:
    """A connection to the store ``--db`` names, and its name fit to print (no password)."""
    from fhir_hub.storage.select import describe, is_postgres

    url = Settings.from_env(db=db).db
    if not is_postgres(url):
        typer.echo(f"fhir-hub db: {url} is not a postgresql:// URL; the SQLite store has no versioned "
                   "schema migrations", err=True)
        raise typer.Exit(2)
    import psycopg

    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10), describe(url)
    except psycopg.OperationalError as exc:
        typer.echo(f"fhir-hub db: cannot connect to {describe(url)}: {exc}", err=True)
        raise typer.Exit(1) from None


@db_app.command("upgrade")
def upgrade(db: str = _DB) -> None:
    """Bring the database's schema to this fhir-hub's version (all migrations in one transaction)."""
    from fhir_hub.storage.postgres import migrations

    conn, where = _connect(db)
    with conn:
        try:
            before, after = migrations.upgrade(conn, where)
        except migrations.SchemaMismatch as exc:
            typer.echo(f"fhir-hub db upgrade: {exc}", err=True)
            raise typer.Exit(1) from None
    if before == after:
        typer.echo(f"{where}: already at schema version {after}")
    elif before is None:
        typer.echo(f"{where}: schema created at version {after}")
    else:
        typer.echo(f"{where}: schema upgraded from version {before} to {after}")


@db_app.command("status")
def status(db: str = _DB) -> None:
    """The database's schema version, this fhir-hub's, and when each migration ran."""
    from fhir_hub.storage.postgres import migrations

    conn, where = _connect(db)
    with conn:
        found = migrations.version(conn)
        ran = migrations.history(conn)
    typer.echo(f"{where}: schema version {'none (empty database)' if found is None else found}; "
               f"this fhir-hub uses {migrations.LATEST}")
    for version, description, at in ran:
        typer.echo(f"  {version}  {at.isoformat(timespec='seconds') if at else 'before records':25}  {description}")
    if found is not None and found != migrations.LATEST:
        typer.echo(str(migrations.mismatch(found, where)))
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
