"""Builders of Patient resources for the matching tests, and a server with reconciliation on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fhir_hub.mpi.features import ADMIN_ADDRESS_EXT, INSURANCE_NUMBER, NATIONAL_ID
from fhir_hub.mpi.units import PROVINCE_2025, PROVINCE_PRE2025, WARD_2025, WARD_PRE2025
from tests.conftest import Server, fhir_client, make_server

#: 1985, male, birth registered in Hà Nội (001)
CCCD = "001085012345"
CARD = "DN4010123456789"


def address(province: str, ward: str, old: bool = False) -> dict[str, Any]:
    ps, ws = (PROVINCE_PRE2025, WARD_PRE2025) if old else (PROVINCE_2025, WARD_2025)
    return {"use": "home", "extension": [{"url": ADMIN_ADDRESS_EXT, "extension": [
        {"url": "state", "valueCodeableConcept": {"coding": [{"system": ps, "code": province}]}},
        {"url": "ward", "valueCodeableConcept": {"coding": [{"system": ws, "code": ward}]}}]}]}


def patient(name: str = "Nguyễn Văn Hùng", birth: str | None = "1985-03-04", sex: str | None = "male",
            cccd: str | None = CCCD, card: str | None = CARD, phone: str | None = "0912345678",
            addr: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Patient; ``addr`` defaults to Phường Ba Đình, Hà Nội (2025 codes 01 / 00004)."""
    identifiers = []
    if cccd:
        identifiers.append({"system": NATIONAL_ID, "value": cccd})
    if card:
        identifiers.append({"system": INSURANCE_NUMBER, "value": card})
    words = name.split()
    resource: dict[str, Any] = {"resourceType": "Patient", "identifier": identifiers,
                                "name": [{"text": name, "family": words[0], "given": words[1:]}],
                                "address": [addr if addr is not None else address("01", "00004")]}
    if birth:
        resource["birthDate"] = birth
    if sex:
        resource["gender"] = sex
    if phone:
        resource["telecom"] = [{"system": "phone", "value": phone}]
    return resource


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with reconciliation on, one per test module."""
    s = make_server(tmp_path_factory.mktemp("mpi"), mpi="on").start()
    yield s
    s.stop()


@pytest.fixture
def c(srv: Server) -> Iterator[httpx.Client]:
    with fhir_client(srv) as client:
        yield client
