"""Typed settings: environment variables (``FHIR_HUB_*``) overridden by CLI flags.

This module is the only reader of the environment, so every knob is listed here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    #: SQLite file of the embedded store (``:memory:`` is not supported: readers need a shared file),
    #: or a ``postgresql://`` URL for the PostgreSQL store (``storage/select.py``).
    db: str = "fhir-hub.db"
    #: ``postgresql://`` URLs of streaming standbys of ``db`` that serve reads and searches,
    #: separated by spaces (``serve --read-replica``; ``storage/postgres/replicas.py``).
    read_replicas: str = ""
    #: Path prefix of the FHIR REST API.
    base_path: str = "/fhir"
    #: Absolute base URL used in ``Location``, ``fullUrl`` and paging links; derived from the
    #: request's Host header when unset.
    public_base_url: str | None = None
    #: Largest request body accepted, in bytes (413 above it).
    max_body_bytes: int = 128 * 1024 * 1024
    #: Bundles larger than this are parsed entry by entry, keeping memory near their size.
    stream_bundle_bytes: int = 8 * 1024 * 1024
    #: Structural validation of every written resource against R4.
    validate: bool = True
    #: Relative references to ``Type/id`` must point at a live resource on write.
    enforce_references: bool = True
    #: Default and largest page size for history and search.
    default_count: int = 50
    max_count: int = 1000
    #: SQLite ``synchronous`` level: FULL survives power loss; NORMAL survives a process crash only.
    sqlite_synchronous: str = "FULL"
    #: How many queued write units the single writer may fold into one commit (group commit).
    group_commit_max: int = 64
    #: Index rows the writer may hold back and insert as one sorted batch (0: with each write).
    #: Searches wait for held rows, so results never miss an acknowledged write; ``serve
    #: --workers N`` sets 0, since another process cannot see this one's held rows.
    index_batch_rows: int = 20_000
    #: Patient reconciliation on every Patient create and update, in the same unit of work: golden
    #: records, links and review items (``fhir_hub/mpi/service.py``; README, Patient reconciliation).
    mpi: bool = False
    #: ``off``: the server runs open; ``smart``: SMART on FHIR authorization server and every FHIR
    #: request needs a token (``fhir_hub/auth``).
    auth: str = "off"
    #: Profiles every write of a type must conform to, ``Type=url,Type=url`` (422 otherwise;
    #: ``fhir_hub/validation/policy.py``). Empty: only claimed profiles are checked.
    require_profile: str = ""
    #: Where ``fhir-hub clients demo`` installs the demo citizen app's npm packages (fhirclient)
    #: and the server (auth on) serves them from; empty: ``~/.cache/fhir-hub/demo``.
    demo_dir: str = ""
    #: With auth on, ``access``: an AuditEvent (IHE BALP-shaped) per FHIR interaction, written in
    #: batches (``fhir_hub/auth/audit.py``); ``off``: none.
    audit: str = "off"
    #: With auth on, cost units per second each client may spend (a read 1, a search 5...;
    #: ``fhir_hub/auth/limits.py``), 429 above it; 0: no limit.
    rate_limit: int = 0
    #: Processes that parse, validate and index large transaction bundles off the event loop
    #: (``fhir_hub/rest/parsers.py``); 0: all in the server process. Default: one per core
    #: beyond the first.
    parse_workers: int = -1
    #: Seconds an idle kept-alive HTTP connection stays open (uvicorn's default is 5): clients
    #: that pool connections (EMR interfaces, the import CLI) meet a connection closed under them
    #: less often. 75 is nginx's default.
    keep_alive_seconds: int = 75
    #: Folder of ``$import-legacy`` jobs (each accepted file and its result); empty: ``<db>.jobs``
    #: beside a SQLite file, else ``~/.cache/fhir-hub/jobs`` (``fhir_hub/rest/import_legacy.py``).
    jobs_dir: str = ""

    def parse_processes(self) -> int:
        if self.parse_workers >= 0:
            return self.parse_workers
        return max((os.cpu_count() or 1) - 1, 0)

    def __post_init__(self) -> None:
        if self.auth not in ("off", "smart"):  # a typo must not leave the server open
            raise ValueError(f"FHIR_HUB_AUTH: expected off or smart, got {self.auth!r}")
        if self.require_profile:  # nor leave the profile policy silently off
            from fhir_hub.validation.policy import parse

            parse(self.require_profile)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``FHIR_HUB_<FIELD>`` variables, then explicit overrides (CLI flags)."""
        source: Mapping[str, str] = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = source.get(f"FHIR_HUB_{f.name.upper()}")
            if raw is None:
                continue
            values[f.name] = _coerce(f.type, raw, f.name)
        settings = cls(**values)
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``FHIR_HUB_*`` variables that rebuild ``settings`` (for worker processes)."""
    out: dict[str, str] = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if value is not None:
            out[f"FHIR_HUB_{f.name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def _coerce(kind: Any, raw: str, name: str) -> Any:
    kind = str(kind)
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("bool"):
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"FHIR_HUB_{name.upper()}: expected a boolean, got {raw!r}")
    return raw
