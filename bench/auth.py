"""Read-by-id throughput with SMART authorization on and off, on one store in one run (issue 9).

One SQLite file with generated patients; wrk reads one patient's Observations by id (random
ids). Three servers run side by side on copies of the same data: ``FHIR_HUB_AUTH`` off,
``smart``, and ``smart`` with ``FHIR_HUB_AUDIT=access`` (its own copy of the file, which its
AuditEvents grow). Each round measures, one after the other:

* auth off;
* auth on, a Backend Services token (``system/*.rs``): token check only;
* auth on, a patient's token (``patient/*.rs``): token check + the compartment decision;
* the same with ``FHIR_HUB_AUDIT=access``: an AuditEvent written (in batches) per read.

Rounds alternate the passes so the machine's drift hits them alike; each ratio is taken within a
round (on / off of that round) and the median over rounds is printed. Beside req/s, the server's
CPU time per request (user + system of every thread of the server process, from /proc, over the
wrk run and one settling second after it, when buffered AuditEvents are written): on a machine
shared with other work req/s moves with the neighbours' load, CPU per request much less, so the
CPU ratio (off µs / on µs: the throughput the same CPU would give) is the steadier figure.
``--profile DIR`` records the first round's passes with py-spy (speedscope) and prints their
top frames.

    python bench/auth.py [--rounds 3] [--duration 5] [--connections 16] [--patients 20] [--profile DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from html import unescape
from pathlib import Path
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
    random_get_script,
    summarize_speedscope,
    wrk,
)

REDIRECT = "https://bench.example/cb"
PASSWORD = "bench-password"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def serve(db: Path, port: int, log: Path, auth: str, sample: int = 0, audit: str = "off") -> Proc:
    cmd = [sys.executable, "-m", "fhir_hub", "serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(db)]
    if sample:
        cmd += ["--sample", str(sample)]
    return Proc(f"fhir-hub auth={auth}", cmd, port, log,
                env=child_env(FHIR_HUB_AUTH=auth, FHIR_HUB_AUDIT=audit)).start(180)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of process ``pid`` so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--profile", type=Path, default=None, help="record the first round with py-spy into this directory")
    args = ap.parse_args(argv)
    from joserfc.jwk import ECKey

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
    audit_db = tmp / "hub-audit.db"
    shutil.copyfile(db, audit_db)  # the server was stopped: the file is whole (no -wal left)
    print(f"{len(ids)} Observations of Patient/{patient}; {args.rounds} rounds of wrk -t{args.threads} "
          f"-c{args.connections} -d{args.duration:g}s, random ids", flush=True)

    servers: dict[str, tuple[Proc, str]] = {}
    try:
        for name, file, auth, audit in (("off", db, "off", "off"), ("smart", db, "smart", "off"),
                                        ("audit", audit_db, "smart", "access")):
            p_port = free_port()
            servers[name] = (serve(file, p_port, tmp / f"{name}.log", auth, audit=audit), f"http://127.0.0.1:{p_port}")
        smart, audited = servers["smart"][1], servers["audit"][1]
        passes = [
            ("auth off", "off", {}),
            ("auth on, system token", "smart",
             {"Authorization": f"Bearer {backend_token(smart, key, 'bench-emr')}"}),
            ("auth on, patient token", "smart",
             {"Authorization": f"Bearer {patient_token(smart, f'{smart}/fhir', '001090000001')}"}),
            ("auth on, patient, audit on", "audit",
             {"Authorization": f"Bearer {patient_token(audited, f'{audited}/fhir', '001090000001')}"}),
        ]
        rates: dict[str, list[float]] = {name: [] for name, _, _ in passes}
        cpus: dict[str, list[float]] = {name: [] for name, _, _ in passes}
        for rnd in range(args.rounds):
            print(f"round {rnd + 1}", flush=True)
            for name, server, headers in passes:
                proc, origin = servers[server]
                status = httpx.get(f"{origin}/fhir/Observation/{ids[0]}", headers=headers).status_code
                assert status == 200, f"{name}: {status}"
                script = random_get_script(tmp / f"{server}-{len(headers)}.lua", ids_file, "/fhir/Observation/",
                                           headers=headers)
                wrk(origin, script, args.warmup, args.connections, args.threads)
                time.sleep(1.0)  # the warm-up's buffered AuditEvents are written before the count starts
                spy = None
                if args.profile is not None and rnd == 0:
                    args.profile.mkdir(parents=True, exist_ok=True)
                    spy = PySpy(proc.pid, args.profile / f"{re.sub(r'[^a-z]+', '-', name)}.speedscope.json")
                    spy.__enter__()
                before = cpu_seconds(proc.pid)
                res = wrk(origin, script, args.duration, args.connections, args.threads)
                time.sleep(1.0)  # and this run's, inside the count
                used = cpu_seconds(proc.pid) - before
                if spy is not None:
                    spy.__exit__(None, None, None)
                assert not res["non_2xx_3xx"], f"{name}: {res['non_2xx_3xx']} answers were not 2xx/3xx"
                requests = int(res["requests"] or 0)
                rates[name].append(float(res["req_s"] or 0.0))
                cpus[name].append(used / requests * 1e6 if requests else float("nan"))
                print(f"  {name:<28} {rates[name][-1]:>9.0f} req/s  {cpus[name][-1]:>7.1f} µs CPU/request (server)",
                      flush=True)
                if spy is not None:
                    if spy.error:
                        print(f"    {spy.error}")
                    else:
                        top = summarize_speedscope(spy.out, top=12)
                        print("    self:", "; ".join(f"{x['frame']} {x['pct']}%" for x in top["self"]))
    finally:
        for proc, _ in servers.values():
            proc.stop()
    print("median over rounds of the ratio to auth off in the same round (req/s; CPU: off µs / on µs):")
    for name, _, _ in passes[1:]:
        rate_ratios = [on / off for on, off in zip(rates[name], rates["auth off"], strict=True)]
        cpu_ratios = [off / on for on, off in zip(cpus[name], cpus["auth off"], strict=True)]
        print(f"  {name[9:]:<20} req/s {statistics.median(rate_ratios):.2f} "
              f"({' '.join(f'{r:.2f}' for r in rate_ratios)})   CPU {statistics.median(cpu_ratios):.2f} "
              f"({' '.join(f'{r:.2f}' for r in cpu_ratios)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
