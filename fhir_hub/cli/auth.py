"""``fhir-hub clients add|list|remove|demo`` and ``fhir-hub users add|list``: who may ask for tokens.

They write the authorization server's tables in the store's SQLite file (``fhir_hub/auth/storage.py``),
so a running server sees a change at its next request. Passwords are asked for without echo and
stored as scrypt hashes; nothing secret is printed.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.table import Table

from fhir_hub.config import Settings

clients = typer.Typer(no_args_is_help=True, help="SMART clients (apps and backend services).")
users = typer.Typer(no_args_is_help=True, help="Demo citizens who can sign in, each linked to a Patient.")

_DB = typer.Option(None, "--db", help="SQLite file of the embedded store (env FHIR_HUB_DB, default fhir-hub.db).")
_PUBLIC_SCOPE = "launch/patient offline_access patient/*.rs"
_BACKEND_SCOPE = "system/*.cruds"


def _store(db: Path | None):  # type: ignore[no-untyped-def]
    from fhir_hub.auth.storage import AuthStore

    return AuthStore(Settings.from_env(db=str(db) if db is not None else None).db)


@clients.command("add")
def clients_add(
    client_id: str = typer.Argument(..., help="The client_id apps will send."),
    name: str = typer.Option(None, "--name", help="Shown on the consent page (default: the client_id)."),
    redirect_uri: list[str] = typer.Option(None, "--redirect-uri", help="A registered redirect URI (repeatable)."),
    jwks: Path = typer.Option(None, "--jwks", help="JWK Set file of the client's public keys (private_key_jwt)."),
    scope: str = typer.Option(None, "--scope", help=f"Scopes it may be granted (default {_PUBLIC_SCOPE!r} for apps, "
                              f"{_BACKEND_SCOPE!r} for clients with keys)."),
    db: Path = _DB,
) -> None:
    """Register (or replace) a client: an app with redirect URIs, a backend service with a JWKS, or both."""
    from fhir_hub.auth.scopes import ScopeError, parse_scopes
    from fhir_hub.auth.storage import Client

    keys = None
    if jwks is not None:
        try:
            keys = orjson.loads(jwks.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise typer.BadParameter(f"cannot read a JWK Set from {jwks}: {exc}", param_hint="--jwks") from None
        if not isinstance(keys, dict) or not isinstance(keys.get("keys"), list) or \
                any("d" in k for k in keys["keys"] if isinstance(k, dict)):
            raise typer.BadParameter("expected a JWK Set of public keys ({\"keys\": [...]}, no private parts)",
                                     param_hint="--jwks")
    if not redirect_uri and keys is None:
        raise typer.BadParameter("give --redirect-uri (an app) or --jwks (a backend service)")
    chosen = scope or (_BACKEND_SCOPE if keys is not None and not redirect_uri else _PUBLIC_SCOPE)
    try:
        parse_scopes(chosen)
    except ScopeError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scope") from None
    store = _store(db)
    store.put_client(Client(client_id, name or client_id, tuple(redirect_uri or ()), keys, chosen))
    store.close()
    Console().print(f"client [bold]{client_id}[/] registered ({'keys' if keys else 'public'}; scope {chosen})")


@clients.command("list")
def clients_list(db: Path = _DB) -> None:
    """List the registered clients."""
    store = _store(db)
    table = Table("client_id", "name", "kind", "redirect URIs", "scope")
    for c in store.clients():
        table.add_row(c.client_id, c.name, "private_key_jwt" if c.jwks else "public", "\n".join(c.redirect_uris),
                      c.scope)
    store.close()
    Console().print(table)


@clients.command("remove")
def clients_remove(client_id: str = typer.Argument(...), db: Path = _DB) -> None:
    """Remove a client (tokens it holds stay valid until they expire, at most an hour)."""
    store = _store(db)
    removed = store.remove_client(client_id)
    store.close()
    if not removed:
        Console(stderr=True).print(f"no client {client_id}")
        raise typer.Exit(1)
    Console().print(f"client [bold]{client_id}[/] removed")


@clients.command("demo")
def clients_demo(
    origin: str = typer.Option(..., "--origin", help="Origin the server is reached at, e.g. http://127.0.0.1:8080 "
                               "(the demo's redirect URI is registered under it)."),
    install: bool = typer.Option(True, "--install/--no-install", help="npm ci fhirclient into FHIR_HUB_DEMO_DIR."),
    db: Path = _DB,
) -> None:
    """Set up the demo citizen app: install fhirclient from npm and register its public client."""
    from fhir_hub.auth import demo
    from fhir_hub.auth.storage import Client

    origin = origin.rstrip("/")
    if not origin.startswith(("http://", "https://")) or "/" in origin.split("://", 1)[1]:
        raise typer.BadParameter(f"expected an origin such as http://127.0.0.1:8080, got {origin!r}",
                                 param_hint="--origin")
    settings = Settings.from_env(db=str(db) if db is not None else None)
    if install:
        try:
            library = demo.install(settings)
        except RuntimeError as exc:
            Console(stderr=True).print(str(exc))
            raise typer.Exit(1) from None
        Console().print(f"fhirclient installed: {library}")
    uri = demo.redirect_uri(f"{origin}/auth")
    store = _store(db)
    store.put_client(Client(demo.CLIENT_ID, "Sổ sức khỏe điện tử (bản thử)", (uri,), None, demo.SCOPE))
    store.close()
    Console().print(f"client [bold]{demo.CLIENT_ID}[/] registered; open {origin}/auth/demo/ with FHIR_HUB_AUTH=smart")


@users.command("add")
def users_add(
    national_id: str = typer.Option(..., "--national-id", help="The personal identification number (CCCD) to sign in "
                                    "with."),
    patient: str = typer.Option(..., "--patient", help="Id of the Patient resource whose record the user sees."),
    name: str = typer.Option("", "--name", help="Shown on the consent page."),
    password: str = typer.Option(..., "--password", prompt=True, hide_input=True, confirmation_prompt=True,
                                 help="Asked for when not given."),
    db: Path = _DB,
) -> None:
    """Add (or replace) a demo citizen linked to a Patient."""
    if not national_id.strip() or not patient.strip():
        raise typer.BadParameter("--national-id and --patient must not be empty")
    store = _store(db)
    store.put_user(national_id.strip(), patient.strip(), name or national_id.strip(), password)
    store.close()
    Console().print(f"user {national_id.strip()} linked to Patient/{patient.strip()}")


@users.command("list")
def users_list(db: Path = _DB) -> None:
    """List the users and their Patients."""
    store = _store(db)
    table = Table("national id", "patient", "name")
    for u in store.users():
        table.add_row(u.national_id, u.patient, u.name)
    store.close()
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(clients, name="clients")
    app.add_typer(users, name="users")
