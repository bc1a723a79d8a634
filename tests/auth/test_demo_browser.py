"""The demo citizen app end to end in headless Chromium (Debian's ``chromium``, driven by
Playwright with that executable): ``fhir-hub clients demo`` installs fhirclient from npm and
registers the app; the app does a standalone launch with PKCE through the login and consent
pages of a real server (auth on) and renders the patient's summary in Vietnamese.

Skipped only when no ``chromium`` executable is there (``.ci/run`` installs Debian's package);
a missing Playwright or a failing npm install fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.auth.smart import PASSWORD, authorize_params, bearer, cli, make_backend, origin, pkce
from tests.conftest import Server, make_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed and could not be "
                                "(.ci/run installs it with apt-get)")
NATIONAL_ID = "001090000077"


def _seed(srv: Server, tmp: Path) -> dict[str, str]:
    """A citizen with a problem and a vital sign, another with a problem of their own."""
    backend = make_backend(srv.db, tmp, "emr", "ES384")
    access = backend.token(srv).json()["access_token"]

    def person(family: str, problem: str) -> list[dict[str, Any]]:
        ref = {"reference": f"urn:uuid:{family}"}
        return [
            {"fullUrl": f"urn:uuid:{family}", "request": {"method": "POST", "url": "Patient"},
             "resource": {"resourceType": "Patient", "name": [{"family": family, "given": ["Thị", "Demo"]}],
                          "identifier": [{"system": "http://example.vn/cccd", "type": {"text": "Số định danh"},
                                          "value": NATIONAL_ID if family == "Phạm" else "001090000078"}]}},
            {"request": {"method": "POST", "url": "Condition"},
             "resource": {"resourceType": "Condition", "subject": ref, "code": {"text": problem},
                          "clinicalStatus": {"coding": [{"code": "active"}]}, "onsetDateTime": "2021-04-05"}},
        ]

    vital = {"request": {"method": "POST", "url": "Observation"},
             "resource": {"resourceType": "Observation", "status": "final", "subject": {"reference": "urn:uuid:Phạm"},
                          "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                    "observation-category", "code": "vital-signs"}]}],
                          "code": {"text": "Huyết áp tâm thu"}, "valueQuantity": {"value": 128, "unit": "mmHg"},
                          "effectiveDateTime": "2024-02-03"}}
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [*person("Phạm", "Đái tháo đường típ 2"), vital, *person("Võ", "Hen phế quản")]}
    r = httpx.post(srv.base, content=orjson.dumps(bundle), headers=bearer(access), timeout=30)
    assert r.status_code == 200, r.text
    ids = [e["response"]["location"].split("/")[1] for e in r.json()["entry"]]
    return {"citizen": ids[0], "other": ids[3]}


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("demo")
    srv = make_server(tmp, auth="smart").start()
    try:
        # the project's own setup: npm ci of the locked fhirclient into the cache, and the client
        out = subprocess.run([sys.executable, "-m", "fhir_hub", "clients", "demo", "--origin", origin(srv),
                              "--db", str(srv.db)], capture_output=True, text=True, timeout=900, env=os.environ)
        assert out.returncode == 0, out.stdout + out.stderr
        ids = _seed(srv, tmp)
        cli(srv.db, "users", "add", "--national-id", NATIONAL_ID, "--patient", ids["citizen"], "--name",
            "Phạm Thị Demo", "--password", PASSWORD)
        yield srv, ids
    finally:
        srv.stop()


def test_demo_pages_are_served_with_a_strict_policy(demo_server: tuple[Server, dict[str, str]]) -> None:
    srv, _ = demo_server
    page = httpx.get(f"{origin(srv)}/auth/demo/")
    assert page.status_code == 200 and 'id="launch"' in page.text
    assert httpx.get(f"{origin(srv)}/auth/demo/index.html").text == page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    config = httpx.get(f"{origin(srv)}/auth/demo/config.json").json()
    assert config == {"iss": srv.base, "clientId": "demo-citizen", "scope": "launch/patient patient/*.rs"}
    lib = httpx.get(f"{origin(srv)}/auth/demo/fhir-client.js")
    assert lib.status_code == 200 and "oauth2" in lib.text
    assert httpx.get(f"{origin(srv)}/auth/demo/package.json").status_code == 404  # only the app's files


def test_standalone_launch_in_headless_chromium(demo_server: tuple[Server, dict[str, str]], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    srv, ids = demo_server
    seen: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(locale="vi-VN")
            page.on("request", lambda req: seen.append(req.url))
            page.goto(f"{origin(srv)}/auth/demo/")
            page.click("#launch")
            page.wait_for_selector("input[name=national_id]")  # the server's login page
            page.fill("input[name=national_id]", NATIONAL_ID)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]:not([name])")
            page.wait_for_selector("button[name=decision][value=allow]")  # the consent page
            assert "Sổ sức khỏe điện tử (bản thử)" in page.content()
            page.click("button[name=decision][value=allow]")
            page.wait_for_selector("body[data-ready]", timeout=30_000)
            page.screenshot(path=str(tmp_path / "summary.png"), full_page=True)
            assert page.get_attribute("body", "data-ready") == "true", page.inner_text("#status")
            text = page.inner_text("main")
            sections = page.eval_on_selector_all("section", "els => els.map(e => e.dataset.code)")
        finally:
            browser.close()
    authorize = next(u for u in seen if "/auth/authorize?" in u)
    assert "code_challenge_method=S256" in authorize and "code_challenge=" in authorize  # PKCE
    assert sections[:3] == ["11450-4", "48765-2", "10160-0"] and "8716-3" in sections
    assert "Tóm tắt hồ sơ sức khỏe" in text and "Vấn đề sức khỏe" in text and "Dấu hiệu sinh tồn" in text
    assert "Đái tháo đường típ 2" in text and "Huyết áp tâm thu: 128 mmHg" in text
    assert "Không có thông tin." in text  # allergies and medications: none recorded
    assert NATIONAL_ID in text and ids["citizen"] in text
    assert "Hen phế quản" not in text and "Võ" not in text  # the other citizen's record


def test_an_app_on_another_origin_gets_its_code_in_chromium(demo_server: tuple[Server, dict[str, str]]) -> None:
    """The consent form ends in a redirect to the app's origin, which Chromium holds to the page's
    ``form-action``: the consent page must allow that origin, or no app but the demo would work."""
    from playwright.sync_api import sync_playwright

    srv, _ = demo_server
    app = "http://localhost:9/callback"  # nothing listens there: the request is enough
    cli(srv.db, "clients", "add", "other-origin-app", "--redirect-uri", app)
    _, challenge = pkce()
    params = authorize_params(srv, challenge, client_id="other-origin-app", redirect_uri=app)
    blocked: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda msg: blocked.append(msg.text) if "Content Security Policy" in msg.text else None)
            page.goto(str(httpx.URL(f"{origin(srv)}/auth/authorize", params=params)))
            page.fill("input[name=national_id]", NATIONAL_ID)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]:not([name])")
            page.wait_for_selector("button[name=decision][value=allow]")
            with page.expect_request(lambda req: req.url.startswith(app)) as sent:
                page.click("button[name=decision][value=allow]")
            url = sent.value.url
        finally:
            browser.close()
    assert "code=" in url and f"state={params['state']}" in url
    assert blocked == []
