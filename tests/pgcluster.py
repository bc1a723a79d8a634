"""A throwaway PostgreSQL cluster for tests and benches: ``initdb`` in a temp dir, a free loopback port.

The binaries are looked up in ``FHIR_HUB_PG_BIN``, then ``pg_config --bindir``, then Debian's
``/usr/lib/postgresql/<major>/bin`` (newest first), then ``PATH``. ``initdb`` refuses to run as
root, so under root the cluster belongs to the unprivileged ``nobody`` user: its directory is made
in the system temp dir (not under pytest's root-only one), handed to ``nobody``, and ``initdb`` and
``pg_ctl`` run through ``runuser``. Clients connect over TCP on 127.0.0.1 with trust
authentication (the cluster lives for one test session); the unix socket goes into the cluster's
own directory so it never collides with a system server's.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

_NEEDED = ("initdb", "pg_ctl", "postgres")
#: The unprivileged account a root process runs PostgreSQL as.
RUN_AS = "nobody"


def _has_all(d: Path) -> bool:
    return all((d / name).is_file() for name in _NEEDED)


def find_bindir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or ``None``."""
    candidates: list[Path] = []
    if os.environ.get("FHIR_HUB_PG_BIN"):
        candidates.append(Path(os.environ["FHIR_HUB_PG_BIN"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10).stdout
            candidates.append(Path(out.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        majors = sorted((p for p in debian.iterdir() if p.name.isdigit()), key=lambda p: int(p.name), reverse=True)
        candidates.extend(p / "bin" for p in majors)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    return next((d for d in candidates if _has_all(d)), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One PostgreSQL server in a temp dir; :meth:`stop` removes every file it made.

    ``durable=False`` (tests) turns ``fsync`` off: nothing here must survive a power cut, and
    each commit is then cheap. Benches keep PostgreSQL's defaults (``fsync``, synchronous commit).
    """

    def __init__(self, bindir: Path, *, durable: bool = False):
        self.bindir = bindir
        self.durable = durable
        self.port = 0
        self.root: Path | None = None
        self._as_root = hasattr(os, "geteuid") and os.geteuid() == 0

    def _run(self, *args: str) -> None:
        cmd = [str(a) for a in args]
        if self._as_root:
            cmd = ["runuser", "-u", RUN_AS, "--", *cmd]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=self.root)
        if r.returncode != 0:
            log = self.root / "log" if self.root else None
            tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}{tail}")

    def start(self) -> Cluster:
        self.root = Path(tempfile.mkdtemp(prefix="fhir-hub-pg-"))
        if self._as_root:
            shutil.chown(self.root, RUN_AS)
        data = self.root / "data"
        initdb = [str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-locale"]
        self._run(*initdb, *([] if self.durable else ["--no-sync"]))
        settings = [f"-k {self.root}", "-c listen_addresses=127.0.0.1", "-c max_connections=200"]
        if not self.durable:
            settings += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        for _attempt in range(3):  # the port is free when picked; another process may take it first
            self.port = _free_port()
            options = " ".join([f"-p {self.port}", *settings])
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.root / "log"), "-w",
                          "-t", "60", "-o", options, "start")
                return self
            except RuntimeError:
                if _attempt == 2:
                    self.stop()
                    raise
        return self

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self, name: str) -> str:
        """A new empty database (UTF8, from ``template0``); its URL."""
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.root is None:
            return
        data = self.root / "data"
        if (data / "postmaster.pid").exists():
            try:
                self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
            except RuntimeError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
