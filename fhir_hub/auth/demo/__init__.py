"""The demo citizen app: static pages that do a SMART standalone launch with the ``fhirclient``
JavaScript library and show the patient's summary in Vietnamese.

Served by the authorization server at ``{auth base}/demo/`` when ``FHIR_HUB_AUTH=smart`` (so
the pages, the login and consent pages and the token endpoint share an origin and need no
CORS). ``fhirclient`` comes from npm: ``fhir-hub clients demo --origin URL`` runs ``npm ci`` on
this folder's ``package.json`` and lock into ``FHIR_HUB_DEMO_DIR`` (default
``~/.cache/fhir-hub/demo``) and registers the public client ``demo-citizen`` with the
redirect URI under ``URL``; nothing from ``node_modules`` is kept in the repository. Until that
has run the library's URL answers 404 with a page saying what to run.
"""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path

import orjson

from fhir_hub.config import Settings
from fhir_hub.rest.wire import Response

#: The public client the pages use (registered by ``fhir-hub clients demo``).
CLIENT_ID = "demo-citizen"
#: What the app asks for: the patient in context and read access to the patient's data.
SCOPE = "launch/patient patient/*.rs"
#: The browser build of fhirclient inside the installed package.
LIBRARY = Path("node_modules/fhirclient/build/fhir-client.min.js")

_STATIC = {"index.html": "text/html", "demo.js": "text/javascript", "demo.css": "text/css"}
_CSP = (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_COMMON = [(b"cache-control", b"no-cache"), (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
           _CSP]


def install_dir(settings: Settings) -> Path:
    return Path(settings.demo_dir) if settings.demo_dir else Path.home() / ".cache" / "fhir-hub" / "demo"


def redirect_uri(auth_base: str) -> str:
    """The page is its own redirect URI."""
    return f"{auth_base}/demo/"


def install(settings: Settings) -> Path:
    """``npm ci`` of the demo's locked packages into :func:`install_dir` (skipped when that
    version is already there); the path of the browser library. Raises ``RuntimeError`` with
    npm's output when npm is missing or fails."""
    target = install_dir(settings)
    source = resources.files(__package__)
    wanted = source.joinpath("package-lock.json").read_bytes()
    library = target / LIBRARY
    if library.is_file() and (target / "package-lock.json").is_file() and \
            (target / "package-lock.json").read_bytes() == wanted:
        return library
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed: install Node.js and npm, then run this again")
    target.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        (target / name).write_bytes(source.joinpath(name).read_bytes())
    # optional packages are React Native shims fhirclient's browser build does not use; no
    # install scripts are run
    done = subprocess.run([npm, "ci", "--omit=optional", "--omit=dev", "--ignore-scripts", "--no-audit",
                           "--no-fund"], cwd=target, capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not library.is_file():
        raise RuntimeError(f"npm ci in {target} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return library


def _missing() -> Response:
    text = b"// fhirclient is not installed: run `fhir-hub clients demo --origin <this server's origin>`\n"
    return Response(404, text, [(b"content-type", b"text/javascript; charset=utf-8"), *_COMMON])


def serve(settings: Settings, name: str, fhir_base: str) -> Response | None:
    """The response for ``{auth base}/demo/<name>`` (``None``: no such file)."""
    if name in ("", "index.html"):
        name = "index.html"
    if name == "config.json":
        body = orjson.dumps({"iss": fhir_base, "clientId": CLIENT_ID, "scope": SCOPE})
        return Response(200, body, [(b"content-type", b"application/json"), *_COMMON])
    if name == "fhir-client.js":
        library = install_dir(settings) / LIBRARY
        if not library.is_file():
            return _missing()
        return Response(200, library.read_bytes(), [(b"content-type", b"text/javascript; charset=utf-8"), *_COMMON])
    kind = _STATIC.get(name)
    if kind is None:
        return None
    body = resources.files(__package__).joinpath(name).read_bytes()
    return Response(200, body, [(b"content-type", f"{kind}; charset=utf-8".encode()), *_COMMON])


__all__ = ["CLIENT_ID", "SCOPE", "install", "install_dir", "redirect_uri", "serve"]
