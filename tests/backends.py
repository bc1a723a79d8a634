"""Fixtures that give a test every storage backend: SQLite in its temp dir, PostgreSQL in a cluster
the session starts itself (``tests/pgcluster.py``), one fresh database per test.

PostgreSQL tests are skipped, saying why, only when no PostgreSQL binaries are installed; under
CI (``CI`` set) a missing installation fails instead, since ``.ci/run`` installs Debian's
``postgresql`` package when the binaries are absent.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fhir_hub.search.extract import Indexer
from fhir_hub.storage.port import Store
from tests.pgcluster import Cluster, find_bindir

#: ``(tmp dir, name) -> a new, unopened store``; the same arguments reach the same data.
StoreFactory = Callable[[Path, str], Store]
BACKEND_NAMES = ("sqlite", "postgres")
_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    bindir = find_bindir()
    if bindir is None:
        reason = ("PostgreSQL binaries (initdb, pg_ctl, postgres) not found: install Debian's postgresql "
                  "package (.ci/run does) or set FHIR_HUB_PG_BIN")
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = Cluster(bindir).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_databases(pg_cluster: Cluster) -> Iterator[Callable[[str], str]]:
    """``name -> URL`` of a database made for this test (one per name), dropped after it."""
    made: dict[str, str] = {}

    def database(name: str) -> str:
        if name not in made:
            made[name] = f"t{next(_numbers)}_{''.join(ch for ch in name if ch.isalnum())[:40].lower()}"
            pg_cluster.create_database(made[name])
        return pg_cluster.url(made[name])

    yield database
    for db in made.values():
        pg_cluster.drop_database(db)


@pytest.fixture
def pg_url(pg_databases: Callable[[str], str]) -> str:
    """One empty database for this test."""
    return pg_databases("main")


@pytest.fixture(params=BACKEND_NAMES)
def store_factory(request: pytest.FixtureRequest) -> StoreFactory:
    """Parametrizes a test over the backends: call it for a new store (empty on first use)."""
    if request.param == "sqlite":
        from fhir_hub.storage.sqlite.store import SQLiteStore

        return lambda tmp, name: SQLiteStore(str(tmp / f"{name}.db"), indexer=Indexer())
    from fhir_hub.storage.postgres.store import PostgresStore

    databases: Callable[[str], str] = request.getfixturevalue("pg_databases")
    return lambda _tmp, name: PostgresStore(databases(name), indexer=Indexer())
