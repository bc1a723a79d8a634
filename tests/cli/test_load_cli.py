"""``fhir-hub load`` against a tiny real HTTP server on loopback (no mocks of httpx).

The stand-in server records every request and answers like a FHIR server would: a
transaction-response for transactions, a batch-response (one entry failing) for batches, 201/200
for single resources, and a 422 OperationOutcome for a resource it is told to refuse.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from fhir_hub.cli.main import app
from fhir_hub.sample.generator import patient_bundles
from tests.conftest import free_port

runner = CliRunner()


@dataclass
class Recorder:
    """What the stand-in server saw."""

    requests: list[tuple[str, str, str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _outcome(diagnostics: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "invalid", "diagnostics": diagnostics}]}


def _handler(recorder: Recorder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep the test output clean
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def _handle(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            doc = json.loads(raw)
            with recorder.lock:
                recorder.requests.append((self.command, self.path, self.headers.get("Content-Type", ""), doc))
            if self.path == "/fhir" and doc.get("resourceType") == "Bundle":
                kind = doc["type"]
                entries = []
                for i, _ in enumerate(doc.get("entry", [])):
                    if kind == "batch" and i == 1:
                        entries.append({"response": {"status": "404 Not Found",
                                                     "outcome": _outcome("Patient/nope is not known")}})
                    else:
                        entries.append({"response": {"status": "201 Created"}})
                self._answer(200, {"resourceType": "Bundle", "type": f"{kind}-response", "entry": entries})
            elif doc.get("id") == "refused":
                self._answer(422, _outcome("Patient.gender: boom is not a valid code"))
            else:
                self._answer(200 if self.command == "PUT" else 201, doc)

        do_POST = do_PUT = _handle

    return Handler


@pytest.fixture
def stand_in() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(recorder))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/fhir", recorder
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def flat(text: str) -> str:
    return " ".join(text.split())


def write(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(doc))
    return path


def test_load_sends_each_kind_of_file_with_the_right_interaction(tmp_path: Path,
                                                                 stand_in: tuple[str, Recorder]) -> None:
    base, recorder = stand_in
    data = tmp_path / "data"
    bundles = list(patient_bundles(2, seed=1, encounters=1))
    for i, bundle in enumerate(bundles):
        write(data / "bundles" / f"b{i}.json", bundle)
    write(data / "single" / "with-id.json", {"resourceType": "Patient", "id": "p1"})
    write(data / "single" / "without-id.json", {"resourceType": "Patient", "gender": "female"})
    (data / "single" / "notes.txt").write_text("not FHIR, skipped by the directory walk")
    (data / "lines.ndjson").write_bytes(b'{"resourceType":"Patient","id":"nd-1"}\n\n'
                                        b'{"resourceType":"Observation","status":"final","code":{"text":"x"}}\n')
    result = runner.invoke(app, ["load", str(data), "--base", base + "/", "--concurrency", "2"])
    assert result.exit_code == 0, result.output

    seen = sorted((method, path) for method, path, _, _ in recorder.requests)
    assert seen == sorted([("POST", "/fhir"), ("POST", "/fhir"), ("PUT", "/fhir/Patient/p1"),
                           ("POST", "/fhir/Patient"), ("PUT", "/fhir/Patient/nd-1"), ("POST", "/fhir/Observation")])
    assert all(ctype == "application/fhir+json" for _, _, ctype, _ in recorder.requests)
    posted = [doc for method, path, _, doc in recorder.requests if path == "/fhir"]
    assert sorted(orjson.dumps(d) for d in posted) == sorted(orjson.dumps(b) for b in bundles)
    resources = sum(len(b["entry"]) for b in bundles) + 4
    text = flat(result.output)
    # the summary table: files, bundles, resources sent, failures
    assert "files" in text and "resources sent" in text
    assert f"│ 5 │ 2 │ {resources} │ 0 │" in text


def test_failures_are_reported_with_the_server_diagnostics(tmp_path: Path, stand_in: tuple[str, Recorder]) -> None:
    base, recorder = stand_in
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType": "Patient", oops}')
    refused = write(tmp_path / "refused.json", {"resourceType": "Patient", "id": "refused"})
    batch = write(tmp_path / "batch.json", {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/p1"}}, {"request": {"method": "GET", "url": "Patient/nope"}}]})
    mixed = tmp_path / "mixed.ndjson"
    mixed.write_bytes(b'{"resourceType":"Patient","id":"ok-1"}\n[1, 2]\n{"no":"type"}\n{"resourceType":"Patient","id":"a b"}\n')
    result = runner.invoke(app, ["load", str(bad), str(refused), str(batch), str(mixed), str(tmp_path / "missing.json"),
                                 "--base", base])
    assert result.exit_code == 1, result.output
    text = flat(result.output)
    assert f"{bad}: not valid JSON" in text
    assert f"{refused}: HTTP 422: Patient.gender: boom is not a valid code" in text
    assert f"{batch} entry[1]: HTTP 404 Not Found: Patient/nope is not known" in text
    assert f"{mixed}:2: not a FHIR resource (JSON is not an object)" in text
    assert f"{mixed}:3: not a FHIR resource (no valid resourceType)" in text
    assert f"{mixed}:4: invalid resource id 'a b'" in text
    assert f"{tmp_path / 'missing.json'}: no such file or directory" in text
    assert "7 failure(s)" in text
    # what could be sent was sent: the good ndjson line, the refused resource, the batch
    assert sorted(path for _, path, _, _ in recorder.requests) == ["/fhir", "/fhir/Patient/ok-1", "/fhir/Patient/refused"]


def test_unreachable_server_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    files = [write(tmp_path / f"p{i}.json", {"resourceType": "Patient", "id": f"p{i}"}) for i in range(3)]
    result = runner.invoke(app, ["load", *map(str, files), "--base", f"http://127.0.0.1:{free_port()}/fhir"])
    assert result.exit_code == 1
    assert "cannot connect to" in flat(result.output)
