"""Create, update and delete, plain and conditional (http.html#create, #update, #delete, #cond-update).

The decisions that depend on stored state (does the id exist, does ``If-Match`` hold, how many
resources match the criteria) are made inside the writer's transaction, in the functions that
take a :class:`~fhir_hub.storage.port.Tx`. Transactions call the same functions entry by entry.
Parsing and validation happen before, on the event loop, so the writer only writes.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from fhir_hub import definitions
from fhir_hub.errors import FhirError, Issue, error, precondition
from fhir_hub.rest import patch as fhir_patch
from fhir_hub.rest import search_parameters
from fhir_hub.rest import validate as profile_check
from fhir_hub.rest.references import ReferenceChecker
from fhir_hub.rest.respond import location, prefer_return, version_headers
from fhir_hub.rest.wire import (
    CONTENT_TYPE_HEADER,
    Request,
    Response,
    information,
    parse_json,
    require_json_body,
)
from fhir_hub.search.parse import Conditions, conditions
from fhir_hub.storage.port import IndexRow, PreparedBody, StoredVersion, Tx
from fhir_hub.validation import policy, structure

#: How many resources a conditional delete may remove at once before it answers 412.
MAX_CONDITIONAL_DELETE = 100


@dataclass(slots=True)
class Written:
    """What a write did: the HTTP status it earns and the version it produced (or found)."""

    status: int
    version: StoredVersion | None

    @property
    def created(self) -> bool:
        return self.status == 201


#: Random bits of the ids. ``os.urandom`` per id is a system call that gives up the GIL, and the
#: writer thread (which assigns ids inside a transaction) then waits for the event loop to hand
#: it back: 7 % of the writer's samples during ingest. Seeded from the OS once per process; ids
#: are names, not secrets (access is decided by the authorization layer, never by guessing).
_RANDOM = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _RANDOM.seed(os.urandom(32)))


def new_id() -> str:
    """A time-ordered UUID (version 7 layout, RFC 9562) for server-assigned ids.

    Ids that grow with time land at the right edge of every B-tree keyed by id (``current``,
    the version and token indexes): random UUIDs dirty a random page per insert, which showed up
    as the largest cost of ingest (WAL growth and checkpoints) once a store held 200,000 resources.
    """
    ms = time.time_ns() // 1_000_000
    rand = _RANDOM.getrandbits(74)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# -- checks on the loop ----------------------------------------------------------------------


def check_type(rtype: str) -> None:
    if not definitions.is_resource_type(rtype):
        raise FhirError(404, error("not-supported", f"unknown resource type {rtype!r}"))


_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def check_id(rid: str) -> None:
    if not _ID.match(rid):
        raise FhirError(400, error("invalid", f"{rid!r} is not a valid resource id "
                                   "(1-64 characters of A-Z, a-z, 0-9, '-' and '.')"))


def parse_resource(req: Request, rtype: str) -> dict[str, Any]:
    require_json_body(req)
    resource = parse_json(req.body)
    if not isinstance(resource, dict):
        raise FhirError(400, error("structure", "the request body must be a JSON object (a resource)"))
    found = resource.get("resourceType")
    if found != rtype:
        raise FhirError(400, error("invalid", f"resourceType {found!r} does not match the URL's {rtype!r}",
                                   "resourceType"))
    return resource


def validate(resource: dict[str, Any], where: str | None = None, enabled: bool = True, required: str = "") -> None:
    """Structural R4 validation; every error becomes an issue with its FHIRPath location.

    ``where`` re-roots the locations, e.g. ``Bundle.entry[3].resource`` inside a transaction.
    A SearchParameter is then checked for what search needs, validation on or off. A resource
    claiming VN profiles in ``meta.profile`` must conform to them (422, ``rest/validate.py``), and
    one of a type the server's ``required`` policy names to its profiles (422, validation on or off).
    """
    if enabled:
        _validate_structure(resource, where)
        profile_check.check_claimed(resource, where)
    if required:
        policy.enforce(resource, required, where, structural=not enabled)
    if resource.get("resourceType") == "SearchParameter":
        search_parameters.check(resource, where)


def _validate_structure(resource: dict[str, Any], where: str | None) -> None:
    issues = structure.validate(resource)
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if not errors:
        return
    if where is not None:
        rtype = str(resource.get("resourceType"))
        errors = [Issue(i.severity, i.code, i.diagnostics, tuple(_reroot(e, rtype, where) for e in i.expression))
                  for i in errors]
    raise FhirError(400, errors)


def _reroot(expr: str, rtype: str, where: str) -> str:
    return where + expr[len(rtype):] if expr.startswith(rtype) else f"{where}.{expr}"


def etag_version(raw: str, where: str = "If-Match") -> int:
    """The version number in an ETag such as ``W/"3"`` (``If-Match``, ``entry.request.ifMatch``)."""
    tag = raw.strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    tag = tag.strip('"')
    if not tag.isdigit():
        raise FhirError(400, error("invalid", f"{where} {raw!r} is not a version ETag like W/\"3\"", where))
    return int(tag)


def if_match_version(req: Request) -> int | None:
    raw = req.headers.get("if-match")
    return None if raw is None else etag_version(raw)


# -- decisions on the writer -----------------------------------------------------------------


#: The tag of a golden record of patient reconciliation (``fhir_hub/mpi/service.py``).
_GOLDEN_MARK = b"urn:fhir-hub:mpi"


def find_targets(tx: Tx, rtype: str, criteria: Conditions, limit: int) -> list[str]:
    """Up to ``limit`` matches of conditional criteria, golden records left out: a golden Patient
    carries every identifier of its sources, but it is the hub's record, so a facility's
    ``ifNoneExist``, conditional update, patch, delete or reference picks among the Patients
    facilities sent, as it would with reconciliation off."""
    found = tx.find(rtype, criteria.criteria, limit, ids=criteria.ids)
    if rtype != "Patient" or not found:
        return found
    from fhir_hub.mpi.service import is_golden  # imports this module

    n = limit
    while True:
        kept = []
        for rid in found:
            v = tx.current(rtype, rid)
            if v is None or v.body is None or _GOLDEN_MARK not in v.body or not is_golden(orjson.loads(v.body)):
                kept.append(rid)
        if len(kept) >= limit or len(found) < n:
            return kept[:limit]
        n *= 2
        found = tx.find(rtype, criteria.criteria, n, ids=criteria.ids)


def match_one(tx: Tx, rtype: str, criteria: Conditions, what: str) -> str | None:
    """The one live match of conditional criteria, or ``None``; several matches are a 412."""
    found = find_targets(tx, rtype, criteria, 2)
    if len(found) > 1:
        raise precondition(f"{what} matched more than one {rtype}: the criteria are not selective enough")
    return found[0] if found else None


def update_target(tx: Tx, rtype: str, criteria: Conditions, body_id: str | None, what: str,
                  id_expression: str) -> str | None:
    """Conditional update's target (http.html#cond-update): the match, else the body's id, else
    ``None`` (create). A body id that differs from the match is a 400."""
    found = match_one(tx, rtype, criteria, what)
    if found is not None and body_id is not None and body_id != found:
        raise FhirError(400, error("invalid", f"the resource id {body_id!r} differs from the matching "
                                   f"{rtype}/{found}", id_expression))
    return found if found is not None else body_id


def delete_targets(tx: Tx, rtype: str, criteria: Conditions, what: str) -> list[str]:
    """Every match of a conditional delete, up to ``MAX_CONDITIONAL_DELETE`` (412 above)."""
    found = find_targets(tx, rtype, criteria, MAX_CONDITIONAL_DELETE + 1)
    if len(found) > MAX_CONDITIONAL_DELETE:
        raise precondition(f"{what} matched more than {MAX_CONDITIONAL_DELETE} {rtype} resources")
    return found


def create(tx: Tx, rtype: str, resource: dict[str, Any] | PreparedBody, refs: ReferenceChecker, *,
           if_none_exist: Conditions | None = None, rid: str | None = None, fresh: bool = False,
           where: str = "", holders: list[dict[str, Any]] | None = None,
           index: Sequence[IndexRow] | None = None) -> Written:
    """POST: ``rid`` is an id chosen ahead (transactions); ``fresh`` says it was just generated.

    ``holders`` and ``index`` are the reference holders and index rows found on the event loop;
    a :class:`PreparedBody` (a transaction's plain create, ``rid`` fresh) carries its references.
    """
    if if_none_exist is not None:
        existing = match_one(tx, rtype, if_none_exist, "If-None-Exist")
        if existing is not None:
            return Written(200, tx.current(rtype, existing))
    fresh = rid is None or fresh
    rid = rid or new_id()
    refs.check(resource, where or rtype, holders)
    refs.known(rtype, rid)
    written = Written(201, tx.put(rtype, rid, resource, "POST", fresh=fresh, index=index))
    if rtype == "Patient" and refs.on_patient is not None:  # reconciliation, in this unit (mpi/service.py)
        assert written.version is not None and written.version.body is not None
        refs.on_patient(tx, rid, resource if isinstance(resource, dict) else orjson.loads(written.version.body))
    return written


def update(tx: Tx, rtype: str, rid: str, resource: dict[str, Any], refs: ReferenceChecker, *,
           if_match: int | None = None, method: str = "PUT", where: str = "",
           holders: list[dict[str, Any]] | None = None, index: Sequence[IndexRow] | None = None,
           fresh: bool = False) -> Written:
    """PUT (or a PATCH's write); ``fresh`` promises ``rid`` was just made (a conditional PUT that
    matched nothing), so nothing is read before writing: most of a first claims import."""
    cur = None if fresh else tx.current(rtype, rid)
    if if_match is not None:
        if cur is None or cur.deleted:
            raise precondition(f"If-Match: {rtype}/{rid} does not exist")
        if cur.vid != if_match:
            raise precondition(f"If-Match W/\"{if_match}\" does not match the current version "
                               f"W/\"{cur.vid}\" of {rtype}/{rid}")
    refs.check(resource, where or rtype, holders)
    refs.known(rtype, rid)
    created = cur is None or cur.deleted
    written = Written(201 if created else 200, tx.put(rtype, rid, resource, method, fresh=fresh, index=index))
    if rtype == "Patient" and refs.on_patient is not None:  # reconciliation, in this unit (mpi/service.py)
        refs.on_patient(tx, rid, resource)
    return written


def conditional_update(tx: Tx, rtype: str, criteria: Conditions, resource: dict[str, Any],
                       refs: ReferenceChecker, *, if_match: int | None = None, where: str = "") -> Written:
    target = update_target(tx, rtype, criteria, resource.get("id"), "conditional update", "id")
    if target is None:
        return create(tx, rtype, resource, refs, where=where)
    return update(tx, rtype, target, resource, refs, if_match=if_match, where=where)


#: What ``on_patient`` is given for a deleted Patient (it finds the tombstone in the unit).
DELETED: dict[str, Any] = {}


def delete(tx: Tx, rtype: str, rid: str, *, if_match: int | None = None,
           refs: ReferenceChecker | None = None) -> Written:
    if if_match is not None:
        cur = tx.current(rtype, rid)
        if cur is None or cur.deleted or cur.vid != if_match:
            raise precondition(f"If-Match W/\"{if_match}\" does not match the current version of {rtype}/{rid}")
    gone = tx.delete(rtype, rid)
    if gone is not None and rtype == "Patient" and refs is not None and refs.on_patient is not None:
        refs.on_patient(tx, rid, DELETED)  # reconciliation: its golden record follows (mpi/service.py)
    return Written(200 if gone is not None else 204, gone)


def conditional_delete(tx: Tx, rtype: str, criteria: Conditions,
                       refs: ReferenceChecker | None = None) -> list[StoredVersion]:
    out: list[StoredVersion] = []
    for rid in delete_targets(tx, rtype, criteria, "conditional delete"):
        gone = delete(tx, rtype, rid, refs=refs).version
        if gone is not None:
            out.append(gone)
    return out


# -- HTTP handlers ---------------------------------------------------------------------------


def written_response(req: Request, w: Written) -> Response:
    v = w.version
    assert v is not None and v.body is not None
    headers = version_headers(v)
    if w.created:
        headers.append((b"location", location(req.base_url, v)))
    mode = prefer_return(req)
    if mode == "minimal":
        return Response(w.status, b"", [h for h in headers if h[0] != b"content-type"])
    if mode == "OperationOutcome":
        verb = "created" if w.created else ("updated" if w.status == 200 and req.method != "POST" else "found")
        return Response(w.status, information(f"{v.rtype}/{v.rid} {verb}, version {v.vid}"), headers)
    return Response(w.status, v.body, headers)


async def handle_create(hub: Any, req: Request, rtype: str) -> Response:
    check_type(rtype)
    resource = parse_resource(req, rtype)
    resource.pop("id", None)  # the server assigns ids on create (http.html#create)
    validate(resource, enabled=hub.settings.validate, required=hub.settings.require_profile)
    criteria = None
    if_none_exist = req.headers.get("if-none-exist")
    if if_none_exist is not None:
        criteria = conditions(rtype, query_pairs(if_none_exist), "If-None-Exist")
    w = await hub.store.transact(lambda tx: create(tx, rtype, resource, hub.refs(tx, req.base_url), if_none_exist=criteria))
    return written_response(req, w)


async def handle_update(hub: Any, req: Request, rtype: str, rid: str) -> Response:
    check_type(rtype)
    check_id(rid)
    resource = parse_resource(req, rtype)
    body_id = resource.get("id")
    if body_id is None:
        raise FhirError(400, error("required", "the resource has no id; an update needs the id of the URL", "id"))
    if body_id != rid:
        raise FhirError(400, error("invalid", f"the resource id {body_id!r} does not match the URL's {rid!r}", "id"))
    validate(resource, enabled=hub.settings.validate, required=hub.settings.require_profile)
    if_match = if_match_version(req)
    w = await hub.store.transact(lambda tx: update(tx, rtype, rid, resource, hub.refs(tx, req.base_url), if_match=if_match))
    return written_response(req, w)


async def handle_conditional_update(hub: Any, req: Request, rtype: str) -> Response:
    check_type(rtype)
    criteria = conditions(rtype, req.query, "conditional update")
    resource = parse_resource(req, rtype)
    if "id" in resource:
        check_id(str(resource["id"]))
    validate(resource, enabled=hub.settings.validate, required=hub.settings.require_profile)
    if_match = if_match_version(req)
    w = await hub.store.transact(
        lambda tx: conditional_update(tx, rtype, criteria, resource, hub.refs(tx, req.base_url), if_match=if_match))
    return written_response(req, w)


def _deleted_response(req: Request, gone: list[StoredVersion], what: str) -> Response:
    headers: list[tuple[bytes, bytes]] = []
    if len(gone) == 1:
        headers.append((b"etag", b'W/"%d"' % gone[0].vid))
    if prefer_return(req) == "OperationOutcome" or gone:
        text = f"deleted {what}" if gone else f"nothing to delete: {what}"
        return Response(200, information(text), [CONTENT_TYPE_HEADER, *headers])
    return Response(204, b"", headers)


async def handle_delete(hub: Any, req: Request, rtype: str, rid: str) -> Response:
    check_type(rtype)
    check_id(rid)
    if_match = if_match_version(req)
    w = await hub.store.transact(lambda tx: delete(tx, rtype, rid, if_match=if_match, refs=hub.refs(tx, req.base_url)))
    return _deleted_response(req, [w.version] if w.version else [], f"{rtype}/{rid}")


async def handle_conditional_delete(hub: Any, req: Request, rtype: str) -> Response:
    check_type(rtype)
    criteria = conditions(rtype, req.query, "conditional delete")
    gone = await hub.store.transact(lambda tx: conditional_delete(tx, rtype, criteria, hub.refs(tx, req.base_url)))
    return _deleted_response(req, gone, f"{len(gone)} {rtype} resource(s)")


def query_pairs(text: str) -> list[tuple[str, str]]:
    """Criteria like ``identifier=a|b&_id=x`` (an ``If-None-Exist`` value or a conditional URL)."""
    text = text.split("?", 1)[1] if "?" in text else text
    return parse_qsl(text, keep_blank_values=True)




def _patch_document(req: Request) -> tuple[str, Any]:
    ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json-patch+json":
        return "json", parse_json(req.body, "JSON Patch document")
    if ctype in ("application/fhir+json", "application/json"):
        return "fhirpath", parse_json(req.body, "FHIRPath Patch Parameters")
    raise FhirError(415, error("not-supported", f"PATCH with Content-Type {ctype or '(none)'!r} is not supported; "
                               "send application/json-patch+json or application/fhir+json (FHIRPath Patch)"))


def _repeats(element: str) -> bool | None:
    """Cardinality from the R4 element model, for FHIRPath Patch creating a new element."""
    owner, _, name = element.rpartition(".")
    try:
        el = definitions.type_model(owner).get(name) if owner else None
    except KeyError:
        return None
    return None if el is None else el["max"] == "*" or (isinstance(el["max"], int) and el["max"] > 1)


def apply_patch(resource: dict[str, Any], document: tuple[str, Any]) -> dict[str, Any]:
    kind, body = document
    rtype, rid = resource.get("resourceType"), resource.get("id")
    if kind == "json":
        out = fhir_patch.apply_json_patch(resource, body)
    else:
        out = fhir_patch.apply_fhirpath_patch(resource, body, is_repeating=_repeats)
    if out.get("resourceType") != rtype or out.get("id") != rid:
        raise FhirError(422, error("processing", "a patch may not change resourceType or id"))
    return out


def patch(tx: Tx, rtype: str, rid: str, document: tuple[str, Any], refs: ReferenceChecker, *,
          if_match: int | None, validate_on: bool, where: str = "", required: str = "") -> Written:
    """Read, patch and write back on the writer, so no concurrent update slips in between."""
    cur = tx.current(rtype, rid)
    if cur is None or cur.body is None:
        raise FhirError(404, error("not-found", f"{rtype}/{rid} does not exist, nothing to patch"))
    patched = apply_patch(orjson.loads(cur.body), document)
    validate(patched, where or None, enabled=validate_on, required=required)
    return update(tx, rtype, rid, patched, refs, if_match=if_match, method="PATCH", where=where)


async def handle_patch(hub: Any, req: Request, rtype: str, rid: str | None) -> Response:
    check_type(rtype)
    document = _patch_document(req)
    if_match = if_match_version(req)
    criteria = conditions(rtype, req.query, "conditional patch") if rid is None else None
    if rid is not None:
        check_id(rid)

    def run(tx: Tx) -> Written:
        target = rid if criteria is None else match_one(tx, rtype, criteria, "conditional patch")
        if target is None:
            raise FhirError(404, error("not-found", f"conditional patch matched no {rtype}"))
        return patch(tx, rtype, target, document, hub.refs(tx, req.base_url), if_match=if_match,
                     validate_on=hub.settings.validate, required=hub.settings.require_profile)

    return written_response(req, await hub.store.transact(run))
