"""Process plumbing shared by the benches: servers, wrk, py-spy, /proc memory, profile summaries.

Everything listens on 127.0.0.1; every loop is bounded by a deadline; every process started here
is stopped by its own pid (:class:`Proc.stop`).
"""

from __future__ import annotations

import asyncio
import collections
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
WRK = shutil.which("wrk") or "/usr/bin/wrk"
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
TASKSET = shutil.which("taskset")


def rel(p: Path) -> str:
    """``p`` relative to the repository when inside it, else its name (results files sit beside
    what they name, and are committed: no path of the machine belongs in them)."""
    try:
        return str(p.resolve().relative_to(ROOT))
    except ValueError:
        return p.name


def command(script: str, args: list[str]) -> str:
    """The command line of a run as results record it: absolute paths (``/x`` or ``--opt=/x``)
    as :func:`rel` names them."""
    def shown(arg: str) -> str:
        head, eq, value = arg.rpartition("=")  # "/x": ("", "", "/x")
        return head + eq + (rel(Path(value)) if value.startswith("/") else value)
    return " ".join([script, *map(shown, args)])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    """The environment for servers: the repository on the path (fhir_hub need not be installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


def pinned(cmd: list[str], cpus: str | None) -> list[str]:
    """``cmd`` run on the CPUs ``cpus`` (``taskset -c``, every thread it starts inherits them), or as it is
    when ``cpus`` is ``None`` or taskset is missing. taskset execs the command: the pid stays the command's."""
    if cpus is None or TASKSET is None:
        return cmd
    return [TASKSET, "-c", cpus, *cmd]


def cpu_ticks() -> tuple[int, int]:
    """``(steal, total)`` jiffies of every CPU so far (``/proc/stat``); ``(0, 0)`` if unreadable."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_pct(since: tuple[int, int]) -> float | None:
    """The share of the machine's CPU time the hypervisor gave to others since ``since``
    (:func:`cpu_ticks`), in %: on this VM it moves the figures by a third, so every measured
    phase records it beside them."""
    steal, total = cpu_ticks()
    if total <= since[1]:
        return None
    return round(100 * (steal - since[0]) / (total - since[1]), 1)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


# --- memory ------------------------------------------------------------------------------------


def proc_status_kb(pid: int, key: str) -> int | None:
    """``VmRSS``/``VmHWM``/... of a process in kB, from /proc/PID/status."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def proc_mem_kb(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile, RssShmem and VmHWM of a process in kB ({} once it is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                    out[key] = int(line.split()[1])
    except OSError:
        return {}
    return out


class RssSampler:
    """Polls VmRSS of ``pid`` on a thread until stopped; ``peak_kb`` is the largest sample."""

    def __init__(self, pid: int, interval: float = 0.02):
        self.pid = pid
        self.interval = interval
        self.peak_kb = 0
        #: the heap part of RSS (file-backed pages, e.g. SQLite's mmap of the db, are RssFile)
        self.peak_anon_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            mem = proc_mem_kb(self.pid)
            if not mem:
                return
            self.samples += 1
            self.peak_kb = max(self.peak_kb, mem.get("VmRSS", 0))
            self.peak_anon_kb = max(self.peak_anon_kb, mem.get("RssAnon", 0))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(5)


# --- servers -----------------------------------------------------------------------------------


def http_get(port: int, path: str, headers: dict[str, str] | None = None,
             timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


class _Connection:
    """One kept-alive HTTP/1.1 connection to a server on loopback, with the least client work:
    a request is one write of its head and body, an answer is read by ``Content-Length`` (or
    chunks). The ingest benches post with these: ``httpx``'s async client spent about 4 ms of
    the two cores per 73-entry bundle, a tenth of what the server spends on it, on the same box."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str):
        self._reader, self._writer, self._host = reader, writer, host

    @classmethod
    async def open(cls, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        return cls(reader, writer, f"127.0.0.1:{port}")

    async def request(self, method: str, target: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
        head = [f"{method} {target} HTTP/1.1", f"Host: {self._host}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        status_line, *lines = (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
        if fields.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int((await self._reader.readuntil(b"\r\n")).strip().split(b";")[0], 16):
                parts.append(await self._reader.readexactly(size + 2))
            await self._reader.readuntil(b"\r\n")
            content = b"".join(p[:-2] for p in parts)
        else:
            content = await self._reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            raise ConnectionError("the server closed the connection")
        return int(status_line.split()[1]), content

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


async def post_bodies(port: int, target: str, bodies: Sequence[bytes], clients: int,
                      headers: dict[str, str]) -> list[tuple[int, bytes]]:
    """POST every body to ``target``, ``clients`` connections at a time, each posting its next
    body once the last is answered; answers in the bodies' order (status ``-1`` and the error
    text when a connection failed)."""
    todo = iter(enumerate(bodies))
    answers: list[tuple[int, bytes]] = [(-2, b"not sent")] * len(bodies)

    async def client() -> None:
        conn = await _Connection.open(port)
        try:
            for i, body in todo:
                try:
                    answers[i] = await conn.request("POST", target, headers, body)
                except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
                    answers[i] = (-1, repr(exc).encode())
                    await conn.close()
                    conn = await _Connection.open(port)
        finally:
            await conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return answers


async def get_once(port: int, target: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = await _Connection.open(port)
    try:
        return await conn.request("GET", target, headers)
    finally:
        await conn.close()


@dataclass
class Proc:
    """A server started by a bench; ``startup_ms`` is spawn → first 200 on ``ready_path``."""

    name: str
    cmd: list[str]
    port: int
    log_path: Path
    ready_path: str = "/health"
    ready_statuses: tuple[int, ...] = (200,)
    env: dict[str, str] = field(default_factory=child_env)
    popen: subprocess.Popen[bytes] | None = None
    startup_ms: float | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self, timeout: float = 60.0) -> Proc:
        log = open(self.log_path, "ab")
        t0 = time.perf_counter()
        self.popen = subprocess.Popen(self.cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
        log.close()
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode} before answering; "
                                   f"log tail:\n{self.log_tail()}")
            try:
                status, _, _ = http_get(self.port, self.ready_path, timeout=1.0)
                if status in self.ready_statuses:
                    self.startup_ms = (time.perf_counter() - t0) * 1000
                    return self
            except OSError:
                pass
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer {self.ready_statuses} on {self.ready_path} within {timeout}s; "
                           f"log tail:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def rss_kb(self) -> int | None:
        return proc_status_kb(self.pid, "VmRSS")

    def hwm_kb(self) -> int | None:
        return proc_status_kb(self.pid, "VmHWM")

    def mem_kb(self) -> dict[str, int]:
        return proc_mem_kb(self.pid)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown (lifespan closes the store)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        return self.popen.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def fhir_hub_proc(port: int, db: Path, log: Path) -> Proc:
    cmd = [sys.executable, "-m", "fhir_hub", "serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(db)]
    return Proc("fhir-hub", cmd, port, log)


def floor_proc(name: str, factory: str, port: int, db: Path, log: Path) -> Proc:
    """A floor app under uvicorn with the same server settings fhir-hub uses."""
    cmd = [sys.executable, "-m", "uvicorn", "--factory", f"bench.floors:{factory}", "--host", "127.0.0.1",
           "--port", str(port), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
           "--log-level", "warning", "--lifespan", "off"]
    # an unknown id answers 404: any such answer means the app is up
    return Proc(name, cmd, port, log, ready_path="/Patient/__ready__", ready_statuses=(200, 404),
                env=child_env(BENCH_FLOOR_DB=str(db)))


# --- wrk ---------------------------------------------------------------------------------------

LUA_RANDOM_GET = """
local ids = {}
for line in io.lines(%(ids)s) do if #line > 0 then ids[#ids + 1] = line end end
local prefix, suffix = %(prefix)s, %(suffix)s
local counter = 0
function setup(thread) counter = counter + 1; thread:set("tid", counter) end
function init(args) math.randomseed(os.time() * 1000 + (tid or 1) * 7919) end
%(headers)s
function request() return wrk.format("GET", prefix .. ids[math.random(#ids)] .. suffix) end
"""

LUA_POST = """
local f = assert(io.open(%(body)s, "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/fhir+json"
%(headers)s
"""


def lua_str(s: str) -> str:
    return json.dumps(s)  # a JSON string literal is a valid Lua string literal for these inputs


def lua_headers(headers: dict[str, str]) -> str:
    return "\n".join(f"wrk.headers[{lua_str(k)}] = {lua_str(v)}" for k, v in headers.items())


def random_get_script(path: Path, ids_file: Path, prefix: str, suffix: str = "",
                      headers: dict[str, str] | None = None) -> Path:
    path.write_text(LUA_RANDOM_GET % {"ids": lua_str(str(ids_file)), "prefix": lua_str(prefix),
                                      "suffix": lua_str(suffix), "headers": lua_headers(headers or {})})
    return path


def post_script(path: Path, body_file: Path, headers: dict[str, str] | None = None) -> Path:
    path.write_text(LUA_POST % {"body": lua_str(str(body_file)), "headers": lua_headers(headers or {})})
    return path


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"unparsed wrk duration {text!r}")
    return float(m.group(1)) * _UNIT[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    """Requests/s, the latency distribution (ms) and error counts from ``wrk --latency`` output."""
    res: dict[str, Any] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["req_s"] = float(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in ([\d.]+\w+),", out)
    res["requests"] = int(m.group(1)) if m else None
    dist: dict[str, float] = {}
    block = out.split("Latency Distribution", 1)
    if len(block) == 2:
        for pct, value in re.findall(r"^\s+(\d+)%\s+([\d.]+\w+)\s*$", block[1], re.M):
            dist[pct] = _ms(value)
    res["latency_ms"] = dist
    res["p50_ms"] = dist.get("50")
    res["p99_ms"] = dist.get("99")
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["non_2xx_3xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)) if m else {}
    return res


def wrk(url: str, script: Path, duration: float, connections: int, threads: int = 2,
        timeout_s: int = 10, cpus: str | None = None) -> dict[str, Any]:
    """One wrk run; ``cpus``: the CPUs it may run on (:func:`pinned`; default: any)."""
    cmd = pinned([WRK, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency",
                  f"--timeout={timeout_s}s", "-s", str(script), url], cpus)
    load_before, ticks = loadavg(), cpu_ticks()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    res = parse_wrk(proc.stdout)
    res.update(cmd=command(Path(cmd[0]).name, cmd[1:]), exit=proc.returncode, loadavg_before=load_before,
               loadavg_after=loadavg(), steal_pct=steal_pct(ticks))
    if proc.returncode != 0 or res["req_s"] is None:
        res["stderr"] = proc.stderr[-2000:]
        res["stdout"] = proc.stdout[-2000:]
    return res


# --- profiles ----------------------------------------------------------------------------------


class PySpy:
    """``py-spy record`` on a running server, stopped with SIGINT (py-spy then writes the file)."""

    def __init__(self, pid: int, out: Path, rate: int = 250):
        self.pid = pid
        self.out = out
        self.cmd = [PY_SPY, "record", "--pid", str(pid), "--rate", str(rate), "--format", "speedscope",
                    "--output", str(out), "--nonblocking"]
        self.popen: subprocess.Popen[bytes] | None = None
        self.error: str | None = None

    def __enter__(self) -> PySpy:
        try:
            self.out.unlink(missing_ok=True)
            self.popen = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)
        except OSError as exc:
            self.error = f"py-spy could not start: {exc}"
            return self
        time.sleep(0.7)  # attach before the load starts
        if self.popen.poll() is not None:
            out = self.popen.stdout.read().decode(errors="replace") if self.popen.stdout else ""
            self.error = f"py-spy exited with {self.popen.returncode}: {out[-800:]}"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
        try:
            out, _ = self.popen.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            out, _ = self.popen.communicate(timeout=10)
        if not self.out.exists():
            if self.error is None:
                self.error = f"py-spy wrote no profile (exit {self.popen.returncode}): " \
                             f"{(out or b'').decode(errors='replace')[-800:]}"
            return
        self.out.write_text(local_paths_hidden(self.out.read_text()))


def local_paths_hidden(text: str) -> str:
    """A profile's frame files relative to the checkout, ``site-packages/`` or ``stdlib/``:
    results are committed, and no path of the machine they were measured on belongs there."""
    paths = sysconfig.get_paths()
    for prefix, short in ((str(ROOT) + "/", ""), (paths["purelib"] + "/", "site-packages/"),
                          (paths["stdlib"] + "/", "stdlib/")):
        text = text.replace(prefix, short)
    return text


def summarize_speedscope(path: Path, top: int = 15) -> dict[str, Any]:
    """Top frames of a py-spy speedscope file: self (leaf) and inclusive share of all samples,
    over all threads, plus each thread's share. Frames are keyed by function and file:line of
    the definition-less py-spy frame name (``function (file:line)``)."""
    doc = json.loads(path.read_text())
    frames = doc["shared"]["frames"]

    def key(i: int) -> str:
        f = frames[i]
        file = f.get("file") or ""
        short = "/".join(Path(file).parts[-2:]) if file else "?"
        return f"{f['name']} ({short})"

    self_w: collections.Counter[str] = collections.Counter()
    incl_w: collections.Counter[str] = collections.Counter()
    threads: dict[str, float] = {}
    total = 0.0
    n_samples = 0
    for prof in doc["profiles"]:
        t_total = 0.0
        for stack, w in zip(prof["samples"], prof["weights"], strict=True):
            t_total += w
            n_samples += 1
            if not stack:
                continue
            self_w[key(stack[-1])] += w
            # the launcher chain (runpy, typer, uvicorn.run, ... down to asyncio's Runner.run) is in
            # every sample of the main thread: leave it out of the inclusive list
            start = 0
            for j, i in enumerate(stack):
                if frames[i]["name"] == "Runner.run":
                    start = j + 1
                    break
            for k in {key(i) for i in stack[start:]}:
                incl_w[k] += w
        threads[prof.get("name", "?")] = t_total
        total += t_total
    if total == 0:
        return {"samples": 0, "self": [], "inclusive": [], "threads": {}}

    def pct(c: collections.Counter[str]) -> list[dict[str, Any]]:
        return [{"frame": k, "pct": round(100 * v / total, 1)} for k, v in c.most_common(top)]

    return {"samples": n_samples, "sampled_s": round(total, 2), "self": pct(self_w), "inclusive": pct(incl_w),
            "threads": {k: round(100 * v / total, 1) for k, v in threads.items()}}
