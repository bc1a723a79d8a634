"""The ASGI application: a plain ASGI callable that routes FHIR interactions to their handlers.

No framework sits on the FHIR paths: a profile of a FastAPI route on this machine showed its
per-request machinery costing about two thirds of read throughput (issue "Hot paths at the
floor"). Routing is a look at the path segments; each handler gets a :class:`Request` and
returns a :class:`Response`; a :class:`FhirError` anywhere becomes its OperationOutcome.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fhir_hub import collector
from fhir_hub.config import Settings
from fhir_hub.errors import FhirError, error
from fhir_hub.rest import (
    everything,
    history,
    import_legacy,
    mpi,
    read,
    reindex,
    search,
    terminology,
    transaction,
    write,
)
from fhir_hub.rest.capability import capability_statement
from fhir_hub.rest.parsers import Parsers
from fhir_hub.rest.references import ReferenceChecker
from fhir_hub.rest.search_parameters import Follower
from fhir_hub.rest.summary import handle_summary, handle_summary_by_identifier
from fhir_hub.rest.templates import handle_template_check
from fhir_hub.rest.validate import handle_validate
from fhir_hub.rest.wire import CONTENT_TYPE_HEADER, Request, Response, check_accept, dumps, outcome_response
from fhir_hub.search.dates import instant
from fhir_hub.storage.port import PreparedBody, Store, StoreUnavailable, Tx
from fhir_hub.storage.select import make_store
from fhir_hub.validation import structure

log = logging.getLogger("fhir_hub")

_JSON_HEADERS = [CONTENT_TYPE_HEADER]


class _NoReferenceCheck(ReferenceChecker):
    def check(self, resource: dict[str, Any] | PreparedBody, where: str,
              holders: list[dict[str, Any]] | None = None) -> None:
        return None


class Hub:
    """What the handlers share: settings, the store, and the registry's follower of its
    SearchParameter resources."""

    def __init__(self, settings: Settings, store: Store):
        self.settings = settings
        self.store = store
        self.search_parameters = Follower(store)
        self.started = instant(time.time_ns() // 1000)
        #: ``rest.security`` of the CapabilityStatement for a base URL, when authorization is on.
        self.security: Callable[[str], dict[str, Any]] | None = None
        #: Patient reconciliation on Patient writes (``FHIR_HUB_MPI``), called inside their unit.
        self.mpi: Callable[[Tx, str, dict[str, Any]], None] | None = None
        #: Worker processes for large transaction bundles (``None``: parsed in this process).
        workers = settings.parse_processes()
        self.parsers: Parsers | None = Parsers(workers) if workers else None
        #: ``$import-legacy`` jobs, from the store's opening on.
        self.jobs: import_legacy.Jobs | None = None
        if settings.mpi:
            from fhir_hub.mpi.service import Reconciler

            self.mpi = Reconciler().on_patient

    def refs(self, tx: Tx, base_url: str) -> ReferenceChecker:
        checker = ReferenceChecker(tx, base_url) if self.settings.enforce_references else _NoReferenceCheck(tx, base_url)
        checker.on_patient = self.mpi
        return checker


def _method_not_allowed(method: str, path: str) -> FhirError:
    return FhirError(405, error("not-supported", f"{method} is not allowed on {path or 'the base'}"))


async def dispatch(hub: Hub, req: Request) -> Response:
    """Route one request; after a write that may have changed SearchParameter resources (one to
    their type, or a bundle), the registry takes the committed change in before the answer."""
    await hub.search_parameters.poll()
    response = await _route(hub, req)
    seg = req.segments
    if req.method not in ("GET", "HEAD") and (not seg or seg[0] == "SearchParameter"):
        await hub.search_parameters.catch_up()
    return response


async def _route(hub: Hub, req: Request) -> Response:
    """Route one request by method and path shape (http.html's URL patterns)."""
    seg = req.segments
    n = len(seg)
    m = req.method
    if m == "GET" or m == "HEAD":
        check_accept(req)
        if n == 2 and seg[0] == "$import-legacy":
            return await import_legacy.handle(hub, req, seg[1])
        if n == 2 and seg[1][0] not in "_$" and seg[0][0] != "_":
            return await read.handle_read(hub, req, seg[0], seg[1])
        if n == 4 and seg[2] == "_history":
            return await read.handle_vread(hub, req, seg[0], seg[1], seg[3])
        if n == 1 and seg[0] == "metadata":
            security = hub.security(req.base_url) if hub.security is not None else None
            return Response(200, dumps(capability_statement(req.base_url, hub.started, security),
                                       req.param("_pretty") == "true"), _JSON_HEADERS)
        if n == 1 and seg[0] == "_history":
            return await history.handle_history(hub, req)
        if n == 2 and seg[1] == "_history":
            return await history.handle_history(hub, req, seg[0])
        if n == 1 and seg[0] == "$mpi-review":
            return await mpi.handle_review(hub, req)
        if n == 3 and seg[2] == "_history":
            return await history.handle_history(hub, req, seg[0], seg[1])
        if n == 1:
            return await search.handle_search(hub, req, seg[0])
        if n == 0:
            return await search.handle_system_search(hub, req)
        if n == 3 and seg[2] == "$everything" and seg[0] == "Patient":
            return await everything.handle_everything(hub, req, seg[1])
        if n == 2 and seg[1] == "$everything" and seg[0] == "Patient":
            return await everything.handle_everything(hub, req, None)
        if n == 3 and seg[2] == "$summary" and seg[0] == "Patient":
            return await handle_summary(hub, req, seg[1])
        if n == 2 and seg[1] == "$summary" and seg[0] == "Patient":
            return await handle_summary_by_identifier(hub, req)
        if n == 3 and seg[2] == "$template-check" and seg[0] == "Encounter":
            return await handle_template_check(hub, req, seg[1])
        if n == 3 and seg[2][0] != "$":
            return await search.handle_compartment_search(hub, req, seg[0], seg[1], seg[2])
        if n == 2 and seg[1][0] == "$" and seg[0] in terminology.TYPES:
            return await terminology.handle(hub, req, seg[0], seg[1])
        raise FhirError(404, error("not-found", f"no FHIR endpoint at /{'/'.join(seg)}"))
    check_accept(req)
    if hub.settings.mpi and 1 <= n <= 2 and seg[0] == "AuditEvent" and (n == 1 or seg[1][0] not in "$_"):
        from fhir_hub.mpi.service import refuse_audit_write

        refuse_audit_write(seg[0])  # the hub's record of reconciliation decisions (README)
    if m == "POST":
        if n == 0:
            return await transaction.handle_bundle(hub, req)
        if n == 1 and seg[0] == "$reindex":
            return await reindex.handle_reindex(hub, req, None)
        if n == 1 and seg[0] == "$import-legacy":
            return await import_legacy.handle(hub, req, None)
        if n == 2 and seg[1] == "$reindex":
            return await reindex.handle_reindex(hub, req, seg[0])
        if n == 2 and seg[0] == "Patient" and seg[1] in mpi.OPERATIONS:
            return await mpi.handle(hub, req, seg[1])
        if n == 2 and seg[1] == "$validate":
            return await handle_validate(hub, req, seg[0])
        if n == 3 and seg[2] == "$validate":
            return await handle_validate(hub, req, seg[0], seg[1])
        if n == 3 and seg[2] == "$template-check" and seg[0] == "Encounter":
            return await handle_template_check(hub, req, seg[1])
        if n == 2 and seg[1][0] == "$" and seg[0] in terminology.TYPES:
            return await terminology.handle(hub, req, seg[0], seg[1])
        if n == 1 and seg[0] == "_search":
            return await search.handle_system_search(hub, req)
        if n == 1:
            return await write.handle_create(hub, req, seg[0])
        if n == 2 and seg[1] == "_search":
            return await search.handle_search(hub, req, seg[0])
        if n == 4 and seg[3] == "_search":
            return await search.handle_compartment_search(hub, req, seg[0], seg[1], seg[2])
    elif m == "PUT":
        if n == 2:
            return await write.handle_update(hub, req, seg[0], seg[1])
        if n == 1:
            return await write.handle_conditional_update(hub, req, seg[0])
    elif m == "DELETE":
        if n == 2:
            return await write.handle_delete(hub, req, seg[0], seg[1])
        if n == 1:
            return await write.handle_conditional_delete(hub, req, seg[0])
    elif m == "PATCH":
        if n == 2:
            return await write.handle_patch(hub, req, seg[0], seg[1])
        if n == 1:
            return await write.handle_patch(hub, req, seg[0], None)
    raise _method_not_allowed(m, "/".join(seg))


class FhirApp:
    """The ASGI callable (HTTP + lifespan)."""

    def __init__(self, settings: Settings, store: Store | None = None, sample_patients: int = 0):
        self.settings = settings
        self.store: Store = store or make_store(settings)
        self.hub = Hub(settings, self.store)
        self._base = settings.base_path.rstrip("/")
        self._opened = False
        self._sample = sample_patients
        self.auth: Any = None
        if settings.auth == "smart":
            from fhir_hub.auth import Auth  # imported only when on: auth off loads no JOSE code

            self.auth = Auth(settings)
            self.hub.security = self.auth.security

    async def startup(self) -> None:
        if not self._opened:
            structure.warm_up()  # compile the validators before the first request, not during it
            collector.settle()
            await self.store.open()
            if self.auth is not None:
                self.auth.open()  # its tables live in the store's file, which now exists
            self._opened = True
            custom = await self.hub.search_parameters.load()
            if custom:
                log.warning("registered %d custom search parameter(s) from the store", custom)
            if self._sample:
                from fhir_hub.sample.seed import seed

                base = self.settings.public_base_url or f"http://{self.settings.host}:{self.settings.port}{self._base}"
                written = await seed(self.hub, self._sample, base)
                if written:
                    log.warning("loaded %d sample resources", written)
            # after the custom search parameters are registered: the jobs' writes index with them
            jobs = import_legacy.Jobs(import_legacy.jobs_folder(self.settings.db, self.settings.jobs_dir))
            self.hub.jobs = jobs
            if resumed := jobs.resume(self.hub):
                log.warning("running again %d $import-legacy job(s) accepted before the last stop", resumed)

    async def shutdown(self) -> None:
        if self._opened:
            if self.hub.jobs is not None:
                await self.hub.jobs.close()
            if self.auth is not None:
                await self.auth.close()
            await self.store.close()
            if self.hub.parsers is not None:
                self.hub.parsers.close()
            self._opened = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # the server must not start on a store it cannot use
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        pretty = False
        try:
            if path == "/health":
                response = Response(200, b'{"status":"ok"}', [(b"content-type", b"application/json")])
            elif self.auth is not None and method == "OPTIONS" and "access-control-request-method" in headers:
                response = self.auth.preflight(headers)  # CORS, registered origins only
            elif self.auth is not None and self.auth.handles(path):
                response = await self.auth.endpoint(method, path, headers, scope["query_string"].decode("latin-1"),
                                                    await self._body(headers, receive), self._base_url(scope, headers))
            elif path == self._base or path.startswith(self._base + "/"):
                raw_query = scope["query_string"].decode("latin-1")
                query = parse_qsl(raw_query, keep_blank_values=True) if raw_query else []
                pretty = ("_pretty", "true") in query
                req = Request(method, [s for s in path[len(self._base):].split("/") if s], query, headers,
                              await self._body(headers, receive), self._base_url(scope, headers), raw_query)
                if self.auth is not None:  # the one enforcement point (fhir_hub/auth/enforce.py)
                    # a read by id decided before needs no coroutine of its own
                    req = self.auth.quick(req) or await self.auth.enforce(self.hub, req)
                response = await dispatch(self.hub, req)
            else:
                raise FhirError(404, error("not-found", f"nothing at {path}; the FHIR API is at {self._base}"))
        except FhirError as exc:
            response = outcome_response(exc, pretty)
        except StoreUnavailable as exc:
            response = outcome_response(FhirError(503, error("transient", str(exc)), {"Retry-After": "1"}))
        except Exception:  # a bug, not bad input: say so without leaking internals
            log.exception("unhandled error on %s %s", method, path)
            response = outcome_response(FhirError(500, error("exception", "internal error; see the server log")))
        if self.auth is not None and (self.auth.audits or "origin" in headers):  # its AuditEvent, CORS headers
            response = self.auth.after(self.hub, method, path, scope, headers, response)
        # a new list: handlers may answer with shared, precomputed header lists
        out_headers = [*response.headers, (b"content-length", str(len(response.body)).encode())]
        await send({"type": "http.response.start", "status": response.status, "headers": out_headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else response.body})

    async def _body(self, headers: dict[str, str], receive: Any) -> bytes:
        limit = self.settings.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise FhirError(413, error("too-costly", f"the request body of {declared} bytes exceeds the limit of "
                                       f"{limit} bytes"))
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise FhirError(400, error("incomplete", "the client disconnected before sending the whole body"))
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise FhirError(413, error("too-costly", f"the request body exceeds the limit of {limit} bytes"))
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _base_url(self, scope: dict[str, Any], headers: dict[str, str]) -> str:
        if self.settings.public_base_url:
            return self.settings.public_base_url.rstrip("/")
        host = headers.get("host")
        if host is None:
            server = scope.get("server") or ("localhost", self.settings.port)
            host = f"{server[0]}:{server[1]}"
        return f"{scope.get('scheme', 'http')}://{host}{self._base}"


def create_app(settings: Settings | None = None) -> FhirApp:
    """The app factory (``uvicorn --factory fhir_hub.app:create_app``)."""
    return FhirApp(settings or Settings.from_env())


__all__ = ["FhirApp", "Hub", "create_app", "dispatch"]
