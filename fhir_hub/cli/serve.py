"""``fhir-hub serve``: run the server on the embedded store, or on PostgreSQL (``--db postgresql://…``)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import typer

from fhir_hub.config import Settings, settings_env


def serve(
    host: str = typer.Option(None, help="Interface to listen on [env FHIR_HUB_HOST, default 127.0.0.1]."),
    port: int = typer.Option(None, help="TCP port [env FHIR_HUB_PORT, default 8080]."),
    db: str = typer.Option(None, help="SQLite file of the embedded store, or a postgresql:// URL for the PostgreSQL "
                           "store [env FHIR_HUB_DB, default fhir-hub.db]."),
    read_replica: list[str] = typer.Option(None, "--read-replica", help="postgresql:// URL of a streaming standby "
                                           "of --db to serve reads and searches; repeatable [env "
                                           "FHIR_HUB_READ_REPLICAS, space-separated]."),
    base_url: str = typer.Option(None, "--base-url", help="Public base URL for links [env FHIR_HUB_PUBLIC_BASE_URL]."),
    no_validate: bool = typer.Option(False, "--no-validate", help="Skip structural validation on write."),
    sample: int = typer.Option(0, "--sample", help="Load N generated sample patients if the store is empty."),
    workers: int = typer.Option(1, "--workers", min=1, help="Server processes sharing the store (SQLite "
                                "serialises their writes)."),
    parse_workers: int = typer.Option(None, "--parse-workers", min=0, help="Processes that parse, validate and "
                                      "index large transaction bundles (0: none) [env FHIR_HUB_PARSE_WORKERS, "
                                      "default: cores - 1]."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
    require_profile: str = typer.Option(None, "--require-profile", help="Profiles every write of a type must "
                                        "conform to (422 otherwise): Type=url[,Type=url…] [env "
                                        "FHIR_HUB_REQUIRE_PROFILE]."),
) -> None:
    """Start the FHIR server (uvicorn, uvloop, httptools) on the embedded SQLite store or PostgreSQL."""
    import uvicorn

    from fhir_hub.app import FhirApp
    from fhir_hub.storage.select import describe, is_postgres

    try:
        settings = Settings.from_env(
            host=host, port=port, db=db, public_base_url=base_url,
            validate=False if no_validate else None,
            index_batch_rows=0 if workers > 1 else None,
            require_profile=require_profile, parse_workers=parse_workers,
            read_replicas=" ".join(read_replica) if read_replica else None,
        )
    except ValueError as exc:  # a bad setting: say which, not a traceback
        typer.echo(f"fhir-hub serve: {exc}", err=True)
        raise typer.Exit(2) from None
    replicas = settings.read_replicas.split()
    if replicas and not (is_postgres(settings.db) and all(map(is_postgres, replicas))):
        typer.echo("fhir-hub serve: --read-replica needs a postgresql:// --db and postgresql:// replica URLs",
                   err=True)
        raise typer.Exit(2)
    typer.echo(f"fhir-hub on http://{settings.host}:{settings.port}{settings.base_path} (store: {describe(settings.db)}"
               f"{''.join(f', replica {describe(u)}' for u in replicas)}, "
               f"{workers} worker{'s' if workers > 1 else ''})")
    common: dict[str, Any] = {"host": settings.host, "port": settings.port, "log_level": log_level, "access_log": False,
              "loop": "uvloop", "http": "httptools", "lifespan": "on",
              "timeout_keep_alive": settings.keep_alive_seconds}
    if workers == 1:
        uvicorn.run(FhirApp(settings, sample_patients=sample), **common)
        return
    if sample:
        asyncio.run(_seed_first(settings, sample))  # once, before the workers race for an empty store
    os.environ.update(settings_env(settings))  # workers build their settings from the environment
    uvicorn.run("fhir_hub.app:create_app", factory=True, workers=workers, **common)


async def _seed_first(settings: Settings, sample: int) -> None:
    from fhir_hub.app import FhirApp

    app = FhirApp(settings, sample_patients=sample)
    await app.startup()
    await app.shutdown()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
