"""Which backend a ``--db`` value names: a ``postgresql://`` (or ``postgres://``) URL is the
PostgreSQL store, anything else is the path of the embedded SQLite file (the default)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from fhir_hub.config import Settings
from fhir_hub.search.extract import Indexer
from fhir_hub.storage.port import Store

_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(db: str) -> bool:
    return db.startswith(_SCHEMES)


def describe(db: str) -> str:
    """``db`` fit to print: a URL's password replaced by ``***``."""
    if not is_postgres(db):
        return db
    parts = urlsplit(db)
    if parts.password is None:
        return db
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def make_store(settings: Settings) -> Store:
    """The store ``settings.db`` names, with the search indexer, not opened yet."""
    if is_postgres(settings.db):
        from fhir_hub.storage.postgres.store import PostgresStore  # psycopg loads only when used

        return PostgresStore(settings.db, group_commit_max=settings.group_commit_max, indexer=Indexer(),
                             replicas=settings.read_replicas.split())
    from fhir_hub.storage.sqlite.store import SQLiteStore

    return SQLiteStore(settings.db, synchronous=settings.sqlite_synchronous, group_commit_max=settings.group_commit_max,
                       index_batch_rows=settings.index_batch_rows, indexer=Indexer())
