"""A throwaway PostgreSQL cluster for tests and benches: ``initdb`` in a temp dir, a free loopback port.

The binaries are looked up in ``FHIR_HUB_PG_BIN``, then ``pg_config --bindir``, then Debian's
``/usr/lib/postgresql/<major>/bin`` (newest first), then ``PATH``. ``initdb`` refuses to run as
root, so under root the cluster belongs to the unprivileged ``nobody`` user: its directory is made
in the system temp dir (not under pytest's root-only one), handed to ``nobody``, and ``initdb`` and
``pg_ctl`` run through ``runuser``. Clients connect over TCP on 127.0.0.1 with trust
authentication (the cluster lives for one test session); the unix socket goes into the cluster's
own directory so it never collides with a system server's.

For the fault and replica tests a cluster can also be killed (SIGKILL to the postmaster and every
backend, as a crash would) and started again on its port, and can make a streaming hot standby
of itself (``pg_basebackup -R`` into another temp dir, started on another free port).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
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
    ``crash_safe=True`` keeps ``fsync`` off but commits synchronously: a commit's WAL is written
    to the kernel before it is acknowledged, so it survives a SIGKILL of the server (not a power
    cut), which is what the fault tests need.
    """

    def __init__(self, bindir: Path, *, durable: bool = False, crash_safe: bool = False):
        self.bindir = bindir
        self.durable = durable
        self.crash_safe = crash_safe
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

    def _make_root(self) -> Path:
        self.root = Path(tempfile.mkdtemp(prefix="fhir-hub-pg-"))
        if self._as_root:
            shutil.chown(self.root, RUN_AS)
        return self.root / "data"

    def start(self) -> Cluster:
        data = self._make_root()
        initdb = [str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-locale"]
        self._run(*initdb, *([] if self.durable else ["--no-sync"]))
        return self._launch()

    def _settings(self) -> list[str]:
        assert self.root is not None
        out = [f"-k {self.root}", "-c listen_addresses=127.0.0.1", "-c max_connections=200",
               "-c wal_level=replica", "-c max_wal_senders=5"]
        if not self.durable:
            out += ["-c fsync=off", "-c full_page_writes=off"]
            if not self.crash_safe:
                out.append("-c synchronous_commit=off")
        return out

    def _pg_ctl_start(self) -> None:
        assert self.root is not None
        options = " ".join([f"-p {self.port}", *self._settings()])
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-l", str(self.root / "log"), "-w",
                  "-t", "60", "-o", options, "start")

    def _launch(self) -> Cluster:
        for _attempt in range(3):  # the port is free when picked; another process may take it first
            self.port = _free_port()
            try:
                self._pg_ctl_start()
                return self
            except RuntimeError:
                if _attempt == 2:
                    self.stop()
                    raise
        return self

    def kill(self) -> None:
        """SIGKILL the postmaster and every process it started (a crash: no shutdown checkpoint)."""
        assert self.root is not None
        pid = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
        children = [p for p in _pids() if _parent(p) == pid]
        os.kill(pid, signal.SIGKILL)  # first, so it cannot start new backends
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 30
        while any(Path(f"/proc/{p}").exists() for p in (pid, *children)) and time.monotonic() < deadline:
            time.sleep(0.02)

    def restart(self) -> None:
        """Start the server again on the same port (after :meth:`kill`: crash recovery runs first)."""
        self._pg_ctl_start()

    def start_standby(self) -> Cluster:
        """A streaming hot standby of this (running) cluster on another free port."""
        standby = Cluster(self.bindir, durable=self.durable, crash_safe=self.crash_safe)
        data = standby._make_root()
        standby._run(str(self.bindir / "pg_basebackup"), "-D", str(data), "-R", "-X", "stream", "-h", "127.0.0.1",
                     "-p", str(self.port), "-U", "postgres", "-c", "fast", *([] if self.durable else ["--no-sync"]))
        return standby._launch()

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


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return -1
    return int(stat.rsplit(")", 1)[1].split()[1])  # the name in parentheses may hold spaces
