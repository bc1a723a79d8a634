"""Configured limits answer with an OperationOutcome, not a dropped connection or a 500."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import make_server


def test_body_over_the_limit_is_413(tmp_path: Path) -> None:
    srv = make_server(tmp_path, max_body_bytes="2000").start()
    try:
        with httpx.Client(base_url=srv.base, headers={"Content-Type": "application/fhir+json"}) as c:
            small = c.post("/Patient", json={"resourceType": "Patient"})
            assert small.status_code == 201
            big = {"resourceType": "Patient", "name": [{"text": "x" * 5000}]}
            r = c.post("/Patient", json=big)
            assert r.status_code == 413
            assert r.json()["issue"][0]["code"] == "too-costly"

            def chunks():  # no Content-Length: the limit must hold while streaming too
                for _ in range(10):
                    yield b" " * 500

            streamed = c.post("/Patient", content=chunks())
            assert streamed.status_code == 413
            assert c.get("/metadata").status_code == 200  # the server is still there
    finally:
        srv.stop()


def test_unknown_paths_and_methods(tmp_path: Path) -> None:
    srv = make_server(tmp_path, validate="false").start()
    try:
        r = httpx.get(f"http://127.0.0.1:{srv.port}/elsewhere")
        assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
        r = httpx.put(f"{srv.base}/", content=b"{}")
        assert r.status_code == 405
        # validation off: an unknown element is stored as sent
        r = httpx.post(f"{srv.base}/Patient", json={"resourceType": "Patient", "bogus": 1},
                       headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 201 and r.json()["bogus"] == 1
        # validation off: an empty reference is not resolvable and not ours to check; no 500
        obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": ""}}
        r = httpx.post(f"{srv.base}/Observation", json=obs, headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 201, r.text
        bundle = {"resourceType": "Bundle", "type": "transaction",
                  "entry": [{"resource": obs, "request": {"method": "POST", "url": "Observation"}}]}
        r = httpx.post(srv.base, json=bundle, headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 200 and r.json()["entry"][0]["response"]["status"] == "201 Created", r.text
    finally:
        srv.stop()
