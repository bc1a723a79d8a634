"""Filling an empty store with generated sample data at start (``fhir-hub serve --sample N``).

The bundles go through the same transaction handler as HTTP requests, so sample data is
validated and written exactly like a client's — just without the network.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_hub.rest.transaction import handle_bundle
from fhir_hub.rest.wire import Request
from fhir_hub.sample.generator import patient_bundles
from fhir_hub.storage.port import HistoryQuery


async def seed(hub: Any, patients: int, base_url: str, seed_value: int = 0) -> int:
    """Load ``patients`` generated patients if the store is empty; returns resources written."""
    if await hub.store.history(HistoryQuery(count=1)):
        return 0
    written = 0
    headers = {"content-type": "application/fhir+json"}
    for bundle in patient_bundles(patients, seed=seed_value):
        req = Request("POST", [], [], headers, orjson.dumps(bundle), base_url)
        response = await handle_bundle(hub, req)
        if response.status != 200:
            raise RuntimeError(f"sample bundle rejected: {response.body[:500]!r}")
        written += len(bundle["entry"])
    return written
