"""The benches' lean HTTP client against a real fhir-hub: every body posted once, answers in order."""

from __future__ import annotations

import asyncio

import orjson

from bench.harness import get_once, post_bodies
from tests.conftest import Server


def _bundle(family: str) -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": family}]},
         "request": {"method": "POST", "url": "Patient"}}]})


def test_post_bodies_answers_each_body_in_order(server: Server) -> None:
    families = [f"harness-{i}" for i in range(7)]
    bodies = [_bundle(f) for f in families]
    bodies.insert(3, b"{not json")
    headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
    answers = asyncio.run(post_bodies(server.port, "/fhir", bodies, 3, headers))
    assert [status for status, _ in answers] == [200, 200, 200, 400, 200, 200, 200, 200]
    assert orjson.loads(answers[3][1])["resourceType"] == "OperationOutcome"
    for family, (_, body) in zip(families, answers[:3] + answers[4:], strict=True):
        location = orjson.loads(body)["entry"][0]["response"]["location"]
        status, read = asyncio.run(get_once(server.port, "/fhir/" + location, {"Accept": "application/fhir+json"}))
        assert status == 200 and orjson.loads(read)["name"] == [{"family": family}]
