"""Read-by-id throughput with SMART authorization on and off, on one store in one run (issue 9).

One SQLite file with generated patients; wrk reads one patient's Observations by id (random
ids) from the same server restarted with ``FHIR_HUB_AUTH`` off and ``smart``:

* auth off;
* auth on, a Backend Services token (``system/*.rs``): token check only;
* auth on, a patient's token (``patient/*.rs``): token check + the compartment membership query;
* the same with ``FHIR_HUB_AUDIT=access``: an AuditEvent written (in batches) per read;
* auth off again, to bound the machine's drift during the run.

Prints the req/s of each and their ratio to the mean of the two "off" runs.

    python bench/auth.py [--duration 8] [--connections 16] [--patients 20]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import secrets
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

from bench.harness import ROOT, Proc, child_env, free_port, random_get_script, wrk  # noqa: E402

REDIRECT = "https://bench.example/cb"
PASSWORD = "bench-password"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def serve(db: Path, port: int, log: Path, auth: str, sample: int = 0, audit: str = "off") -> Proc:
    cmd = [sys.executable, "-m", "fhir_hub", "serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(db)]
    if sample:
        cmd += ["--sample", str(sample)]
    return Proc(f"fhir-hub auth={auth}", cmd, port, log,
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=8)
    ap.add_argument("--warmup", type=float, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--patients", type=int, default=20)
    args = ap.parse_args(argv)
    from joserfc.jwk import ECKey

    tmp = Path(tempfile.mkdtemp(prefix="fhirhub-bench-auth-"))
    db = tmp / "hub.db"
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    fhir = f"{origin}/fhir"

    proc = serve(db, port, tmp / "off.log", "off", sample=args.patients)
    try:
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
    print(f"{len(ids)} Observations of Patient/{patient}; wrk -t{args.threads} -c{args.connections} "
          f"-d{args.duration:g}s, random ids", flush=True)

    def measure(name: str, auth: str, header: dict[str, str] | None = None, audit: str = "off") -> float:
        p = serve(db, port, tmp / f"{name}.log", auth, audit=audit)
        try:
            headers = header(p) if callable(header) else (header or {})
            status = httpx.get(f"{fhir}/Observation/{ids[0]}", headers=headers).status_code
            assert status == 200, f"{name}: {status}"
            script = random_get_script(tmp / f"{name}.lua", ids_file, "/fhir/Observation/", headers=headers)
            wrk(origin, script, args.warmup, args.connections, args.threads)
            res = wrk(origin, script, args.duration, args.connections, args.threads)
        finally:
            p.stop()
        rate = float(res["req_s"] or 0.0)
        print(f"  {name:<28} {rate:>9.0f} req/s", flush=True)
        return rate

    off1 = measure("auth off", "off")
    system = measure("auth on, system token", "smart",
                     lambda p: {"Authorization": f"Bearer {backend_token(origin, key, 'bench-emr')}"})  # type: ignore[arg-type]
    patient_rate = measure("auth on, patient token", "smart",
                           lambda p: {"Authorization": f"Bearer {patient_token(origin, fhir, '001090000001')}"})  # type: ignore[arg-type]
    audited = measure("auth on, patient, audit on", "smart",
                      lambda p: {"Authorization": f"Bearer {patient_token(origin, fhir, '001090000001')}"},  # type: ignore[arg-type]
                      audit="access")
    off2 = measure("auth off (again)", "off")
    off = statistics.mean([off1, off2])
    print(f"ratio system token / off:  {system / off:.2f}")
    print(f"ratio patient token / off: {patient_rate / off:.2f}")
    print(f"ratio patient token with an AuditEvent per read / off: {audited / off:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
