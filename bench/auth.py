"""Read-by-id throughput with SMART authorization on and off, on one store in one run (issue 9).

One SQLite file with generated patients; wrk reads one patient's Observations by id (random
ids). Three servers run side by side, each on its own copy of the data (so one server's writes,
tokens or AuditEvents, never reach another's reads through a shared WAL): ``FHIR_HUB_AUTH`` off,
``smart``, and ``smart`` with ``FHIR_HUB_AUDIT=access``. The passes:

* auth off;
* auth on, a Backend Services token (``system/*.rs``): token check only;
* auth on, a patient's token (``patient/*.rs``): token check + the compartment decision;
* the same with ``FHIR_HUB_AUDIT=access``: an AuditEvent written (in batches) per read.

Why the old figures swung (0.64 to 1.35 for the same code): each pass ran alone, one after the
other, on two cores shared with wrk and with other work, and the server's CPU per request moved
by ±25 % from round to round with what else ran on its core, several times the auth cost. So by
default (``--mode together``) each pass runs **at the same time** as an auth-off pass, one wrk
each: both servers pinned to CPU 0 (``--pin split``; wrk on CPU 1), they meet the same
neighbours, the same cache pollution and the same scheduler in every instant, and the ratio is
taken between two runs of the same seconds. Every server's CPU per request (user + system of
every thread, from /proc, over the wrk run and one settling second after it, when buffered
AuditEvents are written) is printed beside req/s; CPU ratio = off µs / on µs, the throughput the
same CPU would give. Two single-threaded servers sharing a CPU get equal shares, so their req/s
ratio is their CPU ratio too; the audit server runs a writer thread as well, which the scheduler
gives its own share, so for it only the CPU ratio is meaningful. ``--mode alternate`` runs the
passes one after the other (each round starting one pass later), as before. Also printed per
pass: the server's context switches per request, wrk's CPU per request, the other servers' CPU
(they should be idle), the hypervisor's steal and the load average. The medians over
``--rounds`` and every round are printed; ``--json FILE`` keeps them all. ``--profile DIR``
records the first run of each pass with py-spy (speedscope) and prints its top frames.

    python bench/auth.py [--rounds 7] [--duration 3] [--mode together|alternate] [--pin split|none]
                         [--passes off,system,patient,audit] [--json FILE] [--profile DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (  # noqa: E402
    ROOT,
    Proc,
    PySpy,
    child_env,
    free_port,
    loadavg,
    pinned,
    random_get_script,
    summarize_speedscope,
    wrk,
)

REDIRECT = "https://bench.example/cb"
PASSWORD = "bench-password"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def serve(db: Path, port: int, log: Path, auth: str, sample: int = 0, audit: str = "off",
          cpus: str | None = None) -> Proc:
    cmd = [sys.executable, "-m", "fhir_hub", "serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(db)]
    if sample:
        cmd += ["--sample", str(sample)]
    return Proc(f"fhir-hub auth={auth}", pinned(cmd, cpus), port, log,
                env=child_env(FHIR_HUB_AUTH=auth, FHIR_HUB_AUDIT=audit)).start(180)


def cli(db: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "fhir_hub", *args, "--db", str(db)], check=True, cwd=ROOT,
                   env=child_env(), capture_output=True)


def backend_token(origin: str, key: object, client_id: str) -> str:
    from joserfc import jwt

    now = int(time.time())
    assertion = jwt.encode({"alg": "ES384", "kid": client_id}, {"iss": client_id, "sub": client_id,
                           "aud": f"{origin}/auth/token", "exp": now + 120, "jti": uuid.uuid4().hex},
                           key, algorithms=["ES384"])  # type: ignore[arg-type]
    r = httpx.post(f"{origin}/auth/token", data={"grant_type": "client_credentials", "scope": "system/*.rs",
                                                 "client_assertion_type": ASSERTION_TYPE,
                                                 "client_assertion": assertion})
    r.raise_for_status()
    return str(r.json()["access_token"])


def patient_token(origin: str, fhir: str, national_id: str) -> str:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    with httpx.Client(base_url=origin) as c:
        page = c.get("/auth/authorize", params={"response_type": "code", "client_id": "bench-app",
                                                "redirect_uri": REDIRECT, "scope": "launch/patient patient/*.rs",
                                                "state": "s", "aud": fhir, "code_challenge": challenge,
                                                "code_challenge_method": "S256"})

        def txn(html: str) -> str:
            m = re.search(r'name="txn" value="([^"]*)"', html)
            assert m, html
            return unescape(m.group(1))

        consent = c.post("/auth/login", data={"txn": txn(page.text), "national_id": national_id,
                                              "password": PASSWORD})
        done = c.post("/auth/consent", data={"txn": txn(consent.text), "decision": "allow"})
        code = parse_qs(urlsplit(done.headers["location"]).query)["code"][0]
        r = c.post("/auth/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                        "client_id": "bench-app", "code_verifier": verifier})
    r.raise_for_status()
    return str(r.json()["access_token"])


@dataclass
class Sample:
    """One pass of one round: what wrk saw and what the server process spent on it."""

    req_s: float
    requests: int
    #: server CPU (user + system, every thread) per request, and its system part, µs
    cpu_us: float
    sys_us: float
    #: the server's event-loop thread: context switches per request (voluntary + involuntary)
    switches: float
    #: wrk's own CPU per request, µs (it shares the machine)
    wrk_us: float
    #: the other servers' CPU over the pass, ms (they should be idle)
    idle_ms: float
    #: share of the machine's CPU time the hypervisor took (steal) over the pass, %
    steal_pct: float
    load: str


def thread_cpu(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of process ``pid`` (every thread), from ``/proc/PID/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of process ``pid`` so far (``/proc/PID/stat``)."""
    return sum(thread_cpu(pid))


def switches(pid: int) -> int:
    """Voluntary + involuntary context switches of the main (event-loop) thread of ``pid``."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if "ctxt_switches:" in line:
            total += int(line.split()[1])
    return total


def machine_steal() -> tuple[int, int]:
    """(steal, total) jiffies of the whole machine so far (``/proc/stat``)."""
    cols = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return cols[7] if len(cols) > 7 else 0, sum(cols[:8])


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


PASSES = {
    # key: (label, server)
    "off": ("auth off", "off"),
    "system": ("auth on, system token", "smart"),
    "patient": ("auth on, patient token", "smart"),
    "audit": ("auth on, patient, audit on", "audit"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--passes", default="off,system,patient,audit",
                    help="which passes, comma-separated, of: " + ", ".join(PASSES) + " (off is always run)")
    ap.add_argument("--pin", choices=("split", "none"), default="split" if (os.cpu_count() or 1) >= 2 else "none",
                    help="split (default on 2+ CPUs): every server on CPU 0, wrk on CPU 1, for every pass; "
                         "none: the scheduler places them")
    ap.add_argument("--mode", choices=("together", "alternate"), default="together",
                    help="together (default): each pass runs at the same time as an auth-off pass, one wrk each, "
                         "so both meet the same neighbours, CPU and caches; alternate: one pass after the other")
    ap.add_argument("--json", type=Path, default=None, help="write every round's figures here")
    ap.add_argument("--profile", type=Path, default=None, help="record the first round with py-spy into this directory")
    args = ap.parse_args(argv)
    from joserfc.jwk import ECKey

    chosen = ["off", *[k for k in args.passes.split(",") if k in PASSES and k != "off"]]
    server_cpus, wrk_cpus = ("0", "1") if args.pin == "split" else (None, None)
    tmp = Path(tempfile.mkdtemp(prefix="fhirhub-bench-auth-"))
    db = tmp / "hub.db"
    port = free_port()
    proc = serve(db, port, tmp / "seed.log", "off", sample=args.patients)
    try:
        fhir = f"http://127.0.0.1:{port}/fhir"
        patient = httpx.get(f"{fhir}/Patient", params={"_count": 1}).json()["entry"][0]["resource"]["id"]
        found = httpx.get(f"{fhir}/Observation", params={"subject": f"Patient/{patient}", "_count": 1000}).json()
    finally:
        proc.stop()
    ids = [e["resource"]["id"] for e in found.get("entry", [])]
    ids_file = tmp / "ids.txt"
    ids_file.write_text("\n".join(ids) + "\n")
    key = ECKey.generate_key("P-384", parameters={"kid": "bench-emr"})
    (tmp / "jwks.json").write_bytes(orjson.dumps({"keys": [key.as_dict(private=False)]}))
    cli(db, "clients", "add", "bench-emr", "--jwks", str(tmp / "jwks.json"), "--scope", "system/*.rs")
    cli(db, "clients", "add", "bench-app", "--redirect-uri", REDIRECT)
    cli(db, "users", "add", "--national-id", "001090000001", "--patient", patient, "--password", PASSWORD)
    # every server its own copy of the file (the server was stopped: the file is whole, no -wal left), so
    # one server's writes (tokens, AuditEvents) never reach another's reads through a shared WAL
    files = {}
    for name in ("off", "smart", "audit"):
        files[name] = tmp / f"hub-{name}.db"
        shutil.copyfile(db, files[name])
    print(f"{len(ids)} Observations of Patient/{patient}; {args.rounds} rounds of wrk -t{args.threads} "
          f"-c{args.connections} -d{args.duration:g}s (warm-up {args.warmup:g}s), random ids; pinning: "
          + ("servers on CPU 0, wrk on CPU 1" if server_cpus else "none") + f"; load {loadavg()}", flush=True)

    needed = {"off"} | {PASSES[k][1] for k in chosen}
    servers: dict[str, tuple[Proc, str]] = {}
    #: per pass but off: (that pass, the auth-off pass it is compared with), one per round
    pairs: dict[str, list[tuple[Sample, Sample]]] = {k: [] for k in chosen[1:]}
    try:
        for name, auth, audit in (("off", "off", "off"), ("smart", "smart", "off"), ("audit", "smart", "access")):
            if name in needed:
                p_port = free_port()
                servers[name] = (serve(files[name], p_port, tmp / f"{name}.log", auth, audit=audit, cpus=server_cpus),
                                 f"http://127.0.0.1:{p_port}")
        headers: dict[str, dict[str, str]] = {"off": {}}
        if "system" in chosen:
            headers["system"] = {"Authorization": f"Bearer {backend_token(servers['smart'][1], key, 'bench-emr')}"}
        for k in ("patient", "audit"):
            if k in chosen:
                origin = servers[PASSES[k][1]][1]
                headers[k] = {"Authorization": f"Bearer {patient_token(origin, f'{origin}/fhir', '001090000001')}"}
        print("Authorization header: " + ", ".join(f"{k} {len(h['Authorization'])} bytes" for k, h in headers.items()
                                                   if h), flush=True)
        scripts = {k: random_get_script(tmp / f"{k}.lua", ids_file, "/fhir/Observation/", headers=headers[k])
                   for k in chosen}
        spied: set[str] = set()

        def measure(group: list[str]) -> dict[str, Sample]:
            """Warm up, then drive the passes of ``group`` at once (one wrk each) and count each server."""
            for k in group:
                origin = servers[PASSES[k][1]][1]
                status = httpx.get(f"{origin}/fhir/Observation/{ids[0]}", headers=headers[k]).status_code
                assert status == 200, f"{PASSES[k][0]}: {status}"
            drive(group, args.warmup)
            time.sleep(1.0)  # the warm-up's buffered AuditEvents are written before the count starts
            spies = []
            if args.profile is not None:
                for k in group:
                    if k not in spied and k != "off":
                        spied.add(k)
                        args.profile.mkdir(parents=True, exist_ok=True)
                        spy = PySpy(servers[PASSES[k][1]][0].pid,
                                    args.profile / f"{re.sub(r'[^a-z]+', '-', PASSES[k][0])}.speedscope.json")
                        spies.append((k, spy.__enter__()))
            used = {PASSES[k][1] for k in group}
            others = [p.pid for n, (p, _) in servers.items() if n not in used]
            idle0 = sum(cpu_seconds(pid) for pid in others)
            cpu0 = {k: thread_cpu(servers[PASSES[k][1]][0].pid) for k in group}
            sw0 = {k: switches(servers[PASSES[k][1]][0].pid) for k in group}
            steal0, total0 = machine_steal()
            child0 = children_cpu()
            load = loadavg()
            results = drive(group, args.duration)
            wrk_cpu = children_cpu() - child0
            time.sleep(1.0)  # and this run's, inside the count
            steal1, total1 = machine_steal()
            idle = sum(cpu_seconds(pid) for pid in others) - idle0
            for _, spy in spies:
                spy.__exit__(None, None, None)
            total_requests = sum(int(r["requests"] or 0) for r in results.values()) or 1
            out = {}
            for k in group:
                res = results[k]
                assert not res["non_2xx_3xx"], f"{PASSES[k][0]}: {res['non_2xx_3xx']} answers were not 2xx/3xx"
                pid = servers[PASSES[k][1]][0].pid
                user1, sys1 = thread_cpu(pid)
                n = int(res["requests"] or 0) or 1
                out[k] = Sample(float(res["req_s"] or 0.0), n, (user1 - cpu0[k][0] + sys1 - cpu0[k][1]) / n * 1e6,
                                (sys1 - cpu0[k][1]) / n * 1e6, (switches(pid) - sw0[k]) / n,
                                wrk_cpu / total_requests * 1e6, idle * 1e3,
                                100 * (steal1 - steal0) / max(1, total1 - total0), load)
            for k, spy in spies:
                if spy.error:
                    print(f"    {spy.error}")
                else:
                    top = summarize_speedscope(spy.out, top=12)
                    print(f"    {k} self:", "; ".join(f"{x['frame']} {x['pct']}%" for x in top["self"]))
            return out

        def drive(group: list[str], duration: float) -> dict[str, dict[str, Any]]:
            if len(group) == 1:
                k = group[0]
                return {k: wrk(servers[PASSES[k][1]][1], scripts[k], duration, args.connections, args.threads,
                               cpus=wrk_cpus)}
            with ThreadPoolExecutor(len(group)) as pool:
                futures = {k: pool.submit(wrk, servers[PASSES[k][1]][1], scripts[k], duration, args.connections,
                                          max(1, args.threads // len(group)), cpus=wrk_cpus) for k in group}
                return {k: f.result() for k, f in futures.items()}

        def show(label: str, row: Sample) -> None:
            print(f"  {label:<28} {row.req_s:>7.0f} req/s  server {row.cpu_us:>6.1f} µs CPU/req "
                  f"(sys {row.sys_us:>5.1f}, {row.switches:.2f} switches/req)  wrk {row.wrk_us:>5.1f} µs/req  "
                  f"others {row.idle_ms:.0f} ms  steal {row.steal_pct:.1f}%  load {row.load}", flush=True)

        for rnd in range(args.rounds):
            # each round starts one pass later, so no pass always follows the same one or always comes first
            order = chosen[rnd % len(chosen):] + chosen[:rnd % len(chosen)]
            if args.mode == "together":
                order = [k for k in order if k != "off"]
                print(f"round {rnd + 1}: each pass side by side with auth off: {' '.join(order)}", flush=True)
                for k in order:
                    got = measure(["off", k])
                    pairs[k].append((got[k], got["off"]))
                    show(PASSES[k][0], got[k])
                    show("  beside it, auth off", got["off"])
            else:
                print(f"round {rnd + 1}: {' '.join(order)}", flush=True)
                alone: dict[str, Sample] = {}
                for k in order:
                    alone[k] = measure([k])[k]
                    show(PASSES[k][0], alone[k])
                for k in chosen[1:]:
                    pairs[k].append((alone[k], alone["off"]))
    finally:
        for proc, _ in servers.values():
            proc.stop()
    print("server CPU µs per request, median over rounds (every round; auth off: its run beside or in the round):")
    for k in chosen[1:]:
        for label, which in ((PASSES[k][0], 0), ("  auth off", 1)):
            xs = [pair[which].cpu_us for pair in pairs[k]]
            print(f"  {label:<28} {median(xs):>6.1f}  ({' '.join(f'{x:.1f}' for x in xs)})")
    print("median over rounds of the ratio to auth off "
          + ("run at the same time" if args.mode == "together" else "in the same round")
          + " (req/s: on / off; CPU: off µs / on µs):")
    summary: dict[str, Any] = {}
    for k in chosen[1:]:
        rate = [on.req_s / off.req_s for on, off in pairs[k]]
        cpu = [off.cpu_us / on.cpu_us for on, off in pairs[k]]
        summary[k] = {"req_s_ratio": median(rate), "cpu_ratio": median(cpu), "req_s_ratios": rate, "cpu_ratios": cpu}
        print(f"  {PASSES[k][0][9:]:<20} req/s {median(rate):.2f} ({' '.join(f'{r:.2f}' for r in rate)})   "
              f"CPU {median(cpu):.2f} ({' '.join(f'{r:.2f}' for r in cpu)})")
    if "audit" in summary and args.mode == "together":
        print("  (audit on: its writer thread gets a CPU share of its own beside the loop, so its req/s ratio "
              "overstates it; the CPU ratio is the figure)")
    if args.json is not None:
        args.json.write_bytes(orjson.dumps({
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "pairs": {k: [{"on": asdict(on), "off": asdict(off)} for on, off in pairs[k]] for k in pairs},
            "summary": summary, "load_end": loadavg(),
        }, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
