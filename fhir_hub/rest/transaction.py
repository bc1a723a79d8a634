"""Batch and transaction bundles (http.html#transaction).

A transaction is resolved first and written once (design note 4): on the event loop every entry
is parsed and validated; then a single unit on the writer resolves ids (``ifNoneExist``,
conditional URLs), rewrites ``urn:uuid:`` and conditional references, applies the entries in the
spec's order — DELETE, POST, PUT/PATCH, GET — and checks referential integrity. Any failure raises,
and the store's unit of work rolls everything back.

A batch runs each entry as its own unit; the store's group commit still folds them into one
fsync, and one entry's failure becomes that entry's ``response.outcome``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import ijson
import orjson

from fhir_hub import definitions
from fhir_hub.errors import FhirError, error, precondition
from fhir_hub.rest import terminology, write
from fhir_hub.rest.references import (
    ReferenceChecker,
    path_of,
    reference_holders,
    strip_base,
)
from fhir_hub.rest.respond import prefer_return
from fhir_hub.rest.wire import CONTENT_TYPE_HEADER, Request, Response, dumps, parse_json, require_json_body
from fhir_hub.search.dates import instant
from fhir_hub.search.parse import Conditions, conditions
from fhir_hub.storage.port import Indexer, IndexForm, PreparedBody, StoredVersion, Tx, prepare_body

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}


@dataclass(slots=True)
class Entry:
    """One parsed bundle entry: what to do, to what, with which body."""

    index: int
    method: str
    rtype: str
    rid: str | None = None
    vid: str | None = None
    #: Criteria of a conditional URL (``Patient?identifier=...``).
    criteria: Conditions | None = None
    resource: dict[str, Any] | None = None
    full_url: str | None = None
    if_none_exist: Conditions | None = None
    if_match: int | None = None
    #: A GET entry's ``ifNoneMatch`` version and ``ifModifiedSince`` (seconds since the epoch).
    if_none_match: int | None = None
    if_modified_since: int | None = None
    #: ``("json", ops)`` or ``("fhirpath", Parameters)`` for PATCH entries.
    patch: tuple[str, Any] | None = None
    #: Filled while resolving: the id a POST found through ``ifNoneExist`` (no write then).
    existing: str | None = None
    #: A conditional PUT that matched nothing got a new id: no earlier version to look for.
    fresh: bool = False
    #: Ids a conditional DELETE resolved to.
    targets: Sequence[str] = ()
    #: The dicts holding the resource's references (found once, rewritten, then checked).
    holders: list[dict[str, Any]] | None = None
    #: The resource as compact JSON instead of ``resource``, for bundles too large to hold as dicts.
    packed: bytes | None = None
    #: Instead of ``resource``: a plain create's stored bytes, made with its id and its references
    #: resolved before the writer runs (:func:`_prepare_creates`).
    prepared: PreparedBody | None = None
    #: ``resource.id`` as sent (conditional PUT checks it against the match).
    body_id: str | None = None
    #: Search-index rows extracted on the event loop or by a parser process, prepared in the
    #: store's ``index_form`` (see ``Tx.put``), and that form.
    index_rows: Any = None
    index_form: IndexForm | None = None
    #: For GET/HEAD entries: the URL's path segments and query.
    segments: Sequence[str] = ()
    query: Sequence[tuple[str, str]] = ()
    #: An operation call (``POST ValueSet/$expand``): its HTTP method and body. It runs with the
    #: reads, after every write (``method`` is "GET" for the order), and writes nothing.
    operation: tuple[str, bytes] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its field values in order, for the parser processes' answers: the default
        for a slotted dataclass builds a dict of all 23 fields per entry, and unpickling that cost
        the server about 17 µs of its GIL per resource."""
        return (Entry, tuple([getattr(self, name) for name in _ENTRY_FIELDS]))

    def load(self) -> dict[str, Any] | None:
        if self.resource is None and self.packed is not None:
            loaded: dict[str, Any] = orjson.loads(self.packed)
            return loaded
        return self.resource

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


# -- parsing (event loop) --------------------------------------------------------------------


def _parse_url(raw: str, base_url: str, where: str) -> tuple[list[str], list[tuple[str, str]]]:
    """Path segments and query of ``request.url``.

    An absolute URL (this server's or another's, as the spec's own example bundles use) is read
    from its first resource-type segment on, the way HAPI treats them.
    """
    url = strip_base(raw, base_url)
    parts = urlsplit(url)
    segments = [s for s in parts.path.split("/") if s]
    if parts.scheme:
        start = next((i for i, s in enumerate(segments) if definitions.is_resource_type(s)), None)
        if start is None:
            raise FhirError(400, error("invalid", f"request.url {raw!r} names no resource type",
                                       f"{where}.request.url"))
        segments = segments[start:]
    return segments, parse_qsl(parts.query, keep_blank_values=True)


def _patch_body(resource: Any, where: str) -> tuple[str, Any]:
    if not isinstance(resource, dict):
        raise FhirError(400, error("required", "a PATCH entry needs a resource (Parameters or Binary)",
                                   f"{where}.resource"))
    if resource.get("resourceType") == "Parameters":
        return "fhirpath", resource
    if resource.get("resourceType") == "Binary" and "json-patch" in str(resource.get("contentType", "")):
        try:
            return "json", orjson.loads(base64.b64decode(resource.get("data", ""), validate=True))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise FhirError(400, error("invalid", f"the JSON Patch in Binary.data cannot be read: {exc}",
                                       f"{where}.resource.data")) from None
    raise FhirError(400, error("invalid", "a PATCH entry's resource must be a FHIRPath Patch Parameters or a "
                               "Binary with contentType application/json-patch+json", f"{where}.resource"))


def _tight(data: bytes) -> bytes:
    """An exact-size copy: orjson's output keeps its 4 KiB buffer, which 70,000 entries turn into 280 MB."""
    return bytes(memoryview(data))


#: Stands in for an entry's ``urn:uuid:`` while the loop extracts index rows: ``Type/urn-<uuid>``
#: lets a parameter that keeps references by type (``patient`` is ``subject.where(resolve() is
#: Patient)``) see the type; the writer swaps in the real id once it is known (:func:`_rewrite`).
_URN_ID = "urn-"


def urn_types(raw_entries: Iterable[Any]) -> dict[str, str]:
    """``urn:uuid:… → resource type`` of a bundle's entries."""
    out: dict[str, str] = {}
    for raw in raw_entries:
        if isinstance(raw, dict):
            full_url, resource = raw.get("fullUrl"), raw.get("resource")
            if isinstance(full_url, str) and full_url.startswith("urn:uuid:") and isinstance(resource, dict) \
                    and isinstance(resource.get("resourceType"), str):
                out[full_url] = resource["resourceType"]
    return out


_ENTRY_FIELDS = tuple(f.name for f in fields(Entry))


def _placeholder(urn: str, rtype: str) -> str:
    return f"{rtype}/{_URN_ID}{urn[9:]}"


def parse_entry(raw: Any, index: int, base_url: str, validate: bool, pack: bool = False,
                indexer: Indexer | None = None, urn_types: dict[str, str] | None = None,
                required: str = "", form: IndexForm | None = None) -> Entry:
    """Parse and check one entry on the event loop.

    Everything that does not depend on stored state is done here, while the writer is busy with
    SQL: validation, and for POST/PUT the search-index rows and the reference holders.
    """
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise FhirError(400, error("structure", "a bundle entry must be an object", where))
    request = raw.get("request")
    if not isinstance(request, dict):
        raise FhirError(400, error("required", "entry.request is required in a batch or transaction",
                                   f"{where}.request"))
    method = request.get("method")
    if method not in _ORDER:
        raise FhirError(400, error("invalid", f"request.method {method!r} is not GET, HEAD, POST, PUT, PATCH or "
                                   "DELETE", f"{where}.request.method"))
    url = request.get("url")
    if not isinstance(url, str) or not url:
        raise FhirError(400, error("required", "request.url is required", f"{where}.request.url"))
    segments, query = _parse_url(url, base_url, where)
    if not segments:
        raise FhirError(400, error("invalid", f"request.url {url!r} names no resource type", f"{where}.request.url"))
    rtype = segments[0]
    if segments[-1].startswith("$"):
        if method not in ("GET", "POST"):
            raise FhirError(400, error("invalid", f"an operation is called with GET or POST, not {method}",
                                       f"{where}.request.method"))
        resource = raw.get("resource")
        body = b"" if resource is None else orjson.dumps(resource)
        return Entry(index, "GET", rtype, segments=segments, query=query, operation=(method, body))
    if method != "GET" and method != "HEAD":
        write.check_type(rtype)
    entry = Entry(index, method, rtype, full_url=raw.get("fullUrl"))
    if len(segments) >= 2:
        entry.rid = segments[1]
        if method != "GET":
            write.check_id(entry.rid)
    if len(segments) == 4 and segments[2] == "_history":
        entry.vid = segments[3]
    if method in ("GET", "HEAD"):
        entry.segments, entry.query = segments, query
        if request.get("ifNoneMatch") is not None:
            entry.if_none_match = write.etag_version(str(request["ifNoneMatch"]), f"{where}.request.ifNoneMatch")
        if request.get("ifModifiedSince") is not None:
            entry.if_modified_since = _instant_seconds(request["ifModifiedSince"], f"{where}.request.ifModifiedSince")
        return entry
    if len(segments) > 2 or (len(segments) == 2 and method == "POST"):
        raise FhirError(400, error("invalid", f"request.url {url!r} does not fit {method}", f"{where}.request.url"))
    if entry.rid is None and method != "POST":
        entry.criteria = conditions(rtype, query, f"{where}.request.url")
    if_match = request.get("ifMatch")
    if if_match is not None:
        entry.if_match = write.etag_version(str(if_match), f"{where}.request.ifMatch")
    if method == "POST" and request.get("ifNoneExist"):
        entry.if_none_exist = conditions(rtype, write.query_pairs(str(request["ifNoneExist"])),
                                             f"{where}.request.ifNoneExist")
    resource = raw.get("resource")
    if method == "PATCH":
        entry.patch = _patch_body(resource, where)
        return entry
    if method == "DELETE":
        return entry
    if not isinstance(resource, dict):
        raise FhirError(400, error("required", f"a {method} entry needs a resource", f"{where}.resource"))
    if resource.get("resourceType") != rtype:
        raise FhirError(400, error("invalid", f"resourceType {resource.get('resourceType')!r} does not match "
                                   f"request.url {url!r}", f"{where}.resource.resourceType"))
    if method == "POST":
        resource.pop("id", None)
    elif entry.rid is not None:
        if resource.get("id") != entry.rid:
            raise FhirError(400, error("invalid", f"resource id {resource.get('id')!r} does not match request.url "
                                       f"{url!r}", f"{where}.resource.id"))
    write.validate(resource, f"{where}.resource", validate, required)
    entry.body_id = resource.get("id")
    if pack:
        entry.packed = _tight(orjson.dumps(resource))
        return entry  # a streamed bundle keeps only bytes: the writer extracts the rows
    entry.resource = resource
    entry.holders = reference_holders(resource)
    if indexer is not None and form is not None:
        _index_entry(entry, indexer, form, urn_types)
    return entry


def _index_entry(entry: Entry, indexer: Indexer, form: IndexForm, urn_types: dict[str, str] | None) -> None:
    """The entry's index rows, its ``urn:uuid:`` references as placeholders (see :data:`_URN_ID`)."""
    assert entry.resource is not None and entry.holders is not None
    swapped = []
    for holder in entry.holders:
        ref = holder["reference"]
        target_type = urn_types.get(ref) if urn_types else None
        if target_type is not None:
            holder["reference"] = _placeholder(ref, target_type)
            swapped.append((holder, ref))
    entry.index_rows = form.prepare(entry.rtype, indexer.rows(entry.rtype, entry.resource))
    entry.index_form = form
    for holder, ref in swapped:
        holder["reference"] = ref


def parse_entries(raw_entries: list[Any], base_url: str, validate: bool, indexer: Indexer | None,
                  required: str = "", form: IndexForm | None = None) -> list[Entry]:
    """A transaction's entries, parsed and checked (:func:`parse_entry`), its plain creates
    prepared (:func:`_prepare_creates`) and every other write's index rows extracted."""
    entries = [parse_entry(raw, i, base_url, validate, required=required) for i, raw in enumerate(raw_entries)]
    if indexer is None or form is None:
        return entries
    _prepare_creates(entries, base_url, indexer, form)
    left = [e for e in entries if e.resource is not None]
    if left:  # usually none: a bundle of plain creates is prepared whole
        urns = urn_types(raw_entries)
        for e in left:
            _index_entry(e, indexer, form, urns)
    return entries


def _alias_keys(e: Entry) -> tuple[str | None, str | None]:
    """The strings that name entry ``e`` in the other entries' references
    (references.html#bundle-references): its ``fullUrl``, and a POST's absolute fullUrl's
    ``Type/id`` tail; ``None`` where it has none."""
    if not e.full_url or e.method not in ("POST", "PUT"):
        return None, None
    return e.full_url, _fullurl_tail(e.full_url, e.rtype) if e.method == "POST" else None


def _conditional_reference(rel: str) -> bool:
    return "?" in rel and not rel.startswith("urn:") and definitions.is_resource_type(rel.split("?", 1)[0])


def _prepare_creates(entries: list[Entry], base_url: str, indexer: Indexer, form: IndexForm) -> None:
    """Give each plain create (a POST without ``ifNoneExist``) its id now and, where every one of
    its references can be resolved without the store, its stored bytes and index rows.

    This is :func:`_resolve`'s and :func:`_rewrite`'s work done ahead, in the parser process,
    for the entries whose outcome does not depend on stored state: their ids are fresh, and a
    reference to an entry whose id is known here (a plain create, a PUT to ``Type/id``) or to
    no entry at all is rewritten exactly as the writer would. An entry that names a conditional
    reference, or an entry whose id only the writer can know (``ifNoneExist``, a conditional
    PUT), is left for the writer; so is every entry of a bundle in which a fullUrl (or tail)
    names two entries.
    """
    for e in entries:
        if e.method == "POST" and e.if_none_exist is None and e.resource is not None:
            e.rid = write.new_id()
    known: dict[str, str] = {}
    unknown: set[str] = set()
    for e in entries:
        full_url, tail = _alias_keys(e)
        sure = e.rid is not None and e.criteria is None
        for key in (full_url, tail):
            if key is None:
                continue
            if key in known or key in unknown:
                return  # named twice: which entry it means is the writer's rule to apply
            if sure:
                known[key] = f"{e.rtype}/{e.rid}"
            else:
                unknown.add(key)
    for e in entries:
        if e.method != "POST" or e.if_none_exist is not None or e.resource is None or e.holders is None:
            continue
        targets = []
        for holder in e.holders:
            ref = holder["reference"]
            target = known.get(ref)
            if target is None:
                rel = strip_base(ref, base_url)
                if ref in unknown or _conditional_reference(rel):
                    break
                target = rel
            targets.append(target)
        else:
            assert e.rid is not None
            sent = [holder["reference"] for holder in e.holders]
            for holder, target in zip(e.holders, targets, strict=True):
                holder["reference"] = target
            prepared = prepare_body(e.rtype, e.rid, e.resource, tuple(targets))
            if prepared is None:
                for holder, ref in zip(e.holders, sent, strict=True):
                    holder["reference"] = ref
                continue
            e.index_rows = form.prepare(e.rtype, indexer.rows(e.rtype, e.resource))
            e.index_form = form
            e.prepared = prepared
            e.resource = e.holders = None


def _instant_seconds(raw: Any, where: str) -> int:
    """A FHIR ``instant`` (``Bundle.entry.request.ifModifiedSince``) as whole seconds since the epoch."""
    try:
        moment = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise FhirError(400, error("invalid", f"{raw!r} is not an instant with a time zone", where))
    return int(moment.timestamp())


def _bad_bundle(detail: str, *expression: str) -> FhirError:
    return FhirError(400, error("invalid", detail, *expression))


def parse_bundle(req: Request, stream_above: int) -> tuple[str, Iterable[Any], bool]:
    """Bundle type, its raw entries (a list, or a lazy stream for a large body), and whether streamed.

    Bodies over ``stream_above`` bytes are read entry by entry (ijson) and their entries kept as
    compact JSON: a 50 MB bundle parsed whole into dicts takes about ten times its size in memory.
    """
    require_json_body(req)
    body = req.body
    req.body = b""  # a large bundle's bytes are not kept by the request once parsing starts
    if len(body) > stream_above:
        return *_stream_bundle(body), True
    bundle = parse_json(body)
    del body
    return *bundle_of(bundle), False


def bundle_of(bundle: Any) -> tuple[str, list[Any]]:
    """A parsed body's bundle type and entries, or the 400 that says why it is no batch or transaction."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise _bad_bundle("POST to the base expects a Bundle of type batch or transaction", "resourceType")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise _bad_bundle(f"Bundle.type {kind!r}: only batch and transaction can be processed at the base",
                          "Bundle.type")
    entries = bundle.get("entry") or []
    if not isinstance(entries, list):
        raise FhirError(400, error("structure", "Bundle.entry must be an array", "Bundle.entry"))
    return kind, entries


def _first(body: bytes, prefix: str) -> Any:
    try:
        return next(ijson.items(io.BytesIO(body), prefix, use_float=True), None)
    except ijson.JSONError as exc:
        raise FhirError(400, error("structure", f"the request body is not valid JSON: {exc}")) from None


def _stream_bundle(body: bytes) -> tuple[str, Iterable[Any]]:
    if _first(body, "resourceType") != "Bundle":
        raise _bad_bundle("POST to the base expects a Bundle of type batch or transaction", "resourceType")
    kind = _first(body, "type")
    if kind not in ("batch", "transaction"):
        raise _bad_bundle(f"Bundle.type {kind!r}: only batch and transaction can be processed at the base",
                          "Bundle.type")

    def entries() -> Iterator[Any]:
        try:
            yield from ijson.items(io.BytesIO(body), "entry.item", use_float=True)
        except ijson.JSONError as exc:
            raise FhirError(400, error("structure", f"the request body is not valid JSON: {exc}",
                                       "Bundle.entry")) from None

    return str(kind), entries()


# -- resolving and applying (writer) ---------------------------------------------------------


def _resolve_conditional_ref(tx: Tx, ref: str, path: str) -> str:
    rtype, _, query = ref.partition("?")
    write.check_type(rtype)
    criteria = conditions(rtype, parse_qsl(query, keep_blank_values=True), f"{path}.reference")
    found = write.find_targets(tx, rtype, criteria, 2)
    if not found:
        raise FhirError(400, error("not-found", f"conditional reference {ref!r} matched no {rtype}",
                                   f"{path}.reference"))
    if len(found) > 1:
        raise precondition(f"conditional reference {ref!r} at {path} matched more than one {rtype}")
    return f"{rtype}/{found[0]}"


def _resolve(tx: Tx, entries: list[Entry], base_url: str) -> None:
    """Give every entry its target id and rewrite the references between entries."""
    aliases: dict[str, str] = {}
    targets: dict[tuple[str, str], int] = {}

    def claim(e: Entry, rid: str) -> None:
        key = (e.rtype, rid)
        if key in targets:
            raise FhirError(400, error("invalid", f"{e.rtype}/{rid} is the target of entries {targets[key]} and "
                                       f"{e.index}: a transaction may touch a resource only once", e.where))
        targets[key] = e.index

    for e in entries:
        if e.method == "POST":
            if e.if_none_exist is not None:
                e.existing = write.match_one(tx, e.rtype, e.if_none_exist, f"{e.where}: ifNoneExist")
                e.rid = e.existing or write.new_id()
            elif e.rid is None:  # not given its id by _prepare_creates
                e.rid = write.new_id()
            claim(e, e.rid)
        elif e.method == "DELETE" and e.criteria is not None:
            e.targets = write.delete_targets(tx, e.rtype, e.criteria, f"{e.where}: conditional delete")
            for rid in e.targets:
                claim(e, rid)
            continue
        elif e.method == "PATCH" and e.criteria is not None:
            e.rid = write.match_one(tx, e.rtype, e.criteria, f"{e.where}: conditional PATCH")
            if e.rid is None:
                raise FhirError(404, error("not-found", f"{e.where}: conditional PATCH matched no {e.rtype}"))
            e.criteria = None
            claim(e, e.rid)
        elif e.method == "PUT" and e.criteria is not None:
            e.rid = write.update_target(tx, e.rtype, e.criteria, e.body_id, f"{e.where}: conditional PUT",
                                        f"{e.where}.resource.id")
            if e.rid is None:  # no match and no id: a create (http.html#cond-update), under a new id
                e.rid, e.fresh = write.new_id(), True
            e.criteria = None
            claim(e, e.rid)
        elif e.method != "GET" and e.method != "HEAD" and e.rid is not None:
            claim(e, e.rid)
        full_url, tail = _alias_keys(e)
        if full_url is not None and e.rid is not None:
            aliases[full_url] = f"{e.rtype}/{e.rid}"
            if tail is not None:
                # a relative reference to an absolute fullUrl's Type/id means that entry
                # (references.html#bundle-references); its placeholder id is replaced
                aliases.setdefault(tail, f"{e.rtype}/{e.rid}")

    for e in entries:
        resource = e.load()
        if resource is None or e.method not in ("POST", "PUT"):
            continue
        holders = e.holders if e.holders is not None else reference_holders(resource)
        _rewrite(tx, e, resource, holders, aliases, base_url)
        if e.packed is not None:
            e.packed = _tight(orjson.dumps(resource))  # back to compact form: one entry's dicts at a time


def _rewrite(tx: Tx, e: Entry, resource: dict[str, Any], holders: list[dict[str, Any]], aliases: dict[str, str],
         base_url: str) -> None:
    """Point references at the ids the transaction resolved (urn:uuid, fullUrl, conditional),
    and the entry's index rows with them: they were extracted before the ids were known."""
    changed: dict[str, str] = {}
    for holder in holders:
        ref = holder["reference"]
        target = aliases.get(ref)
        if target is not None:
            holder["reference"] = changed[ref] = target
            continue
        rel = strip_base(ref, base_url)
        if _conditional_reference(rel):
            path = path_of(resource, holder, f"{e.where}.resource")
            holder["reference"] = changed[ref] = _resolve_conditional_ref(tx, rel, path.removesuffix(".reference"))
        elif rel != ref:
            holder["reference"] = changed[ref] = rel
    if changed and e.index_rows is not None and e.index_form is not None:
        # rows carry Type/urn-<uuid> for urn:uuid references (parse_entry): swap in the real ids
        by_row = {(_placeholder(ref, target.partition("/")[0]) if ref.startswith("urn:uuid:") else ref): target
                  for ref, target in changed.items()}
        e.index_rows = e.index_form.retarget(e.index_rows, by_row)  # None: the writer extracts them again


def _fullurl_tail(full_url: str, rtype: str) -> str | None:
    if not (full_url.startswith("http://") or full_url.startswith("https://")):
        return None
    parts = full_url.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == rtype:
        return f"{rtype}/{parts[-1]}"
    return None


def _response(status: int, v: StoredVersion | None, with_body: bool) -> dict[str, Any]:
    response: dict[str, Any] = {"status": _STATUS_TEXT.get(status, str(status))}
    out: dict[str, Any] = {"response": response}
    if v is not None:
        if status == 201:
            response["location"] = f"{v.rtype}/{v.rid}/_history/{v.vid}"
        response["etag"] = f'W/"{v.vid}"'
        response["lastModified"] = instant(v.ts)
        if with_body and v.body is not None:
            out["resource"] = orjson.Fragment(v.body)
    return out


def _operation_entry(e: Entry, base_url: str) -> dict[str, Any]:
    """Answer an operation entry; only the terminology operations (which read no stored state)
    can run inside a bundle."""
    assert e.operation is not None
    method, body = e.operation
    segments = list(e.segments)
    if len(segments) != 2 or segments[0] not in terminology.TYPES:
        raise FhirError(400, error("not-supported", f"{e.where}: operation {'/'.join(segments)} cannot run inside a "
                                   "bundle (only the terminology operations can)", f"{e.where}.request.url"))
    req = Request(method, segments, list(e.query), {"content-type": "application/fhir+json"}, body, base_url)
    answer = terminology.invoke(req, segments[0], segments[1])
    return {"resource": answer, "response": {"status": "200 OK"}}


def _not_modified(e: Entry, v: StoredVersion) -> bool:
    """The entry's ``ifNoneMatch`` / ``ifModifiedSince`` (http.html#cread) say the client has it."""
    if e.if_none_match is not None:
        return e.if_none_match == v.vid
    return e.if_modified_since is not None and v.ts // 1_000_000 <= e.if_modified_since


def _read_entry(tx: Tx, e: Entry, base_url: str) -> dict[str, Any]:
    if e.operation is not None:
        return _operation_entry(e, base_url)
    segments, query = e.segments, e.query
    if len(segments) == 1:
        write.check_type(e.rtype)
        criteria = conditions(e.rtype, query, f"{e.where}.request.url")
        ids = tx.find(e.rtype, criteria.criteria, 1000, ids=criteria.ids)
        found = [tx.current(e.rtype, rid) for rid in ids]
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(found)}
        matches = [{"fullUrl": f"{base_url}/{v.rtype}/{v.rid}", "resource": orjson.Fragment(v.body),
                    "search": {"mode": "match"}} for v in found if v is not None and v.body is not None]
        if matches:
            bundle["entry"] = matches
        return {"resource": bundle, "response": {"status": "200 OK"}}
    if len(segments) == 2:
        v = tx.current(e.rtype, segments[1])
    elif len(segments) == 4 and segments[2] == "_history" and segments[3].isdigit():
        v = tx.vread(e.rtype, segments[1], int(segments[3]))
    else:
        raise FhirError(400, error("not-supported", f"{e.where}: this GET is not supported inside a bundle yet",
                                   f"{e.where}.request.url"))
    if v is None:
        raise FhirError(404, error("not-found", f"{e.where}: {'/'.join(segments)} is not known"))
    if v.body is None:
        raise FhirError(410, error("deleted", f"{e.where}: {'/'.join(segments)} was deleted"))
    if len(segments) == 2 and _not_modified(e, v):
        return _response(304, v, False)
    out = _response(200, v, True)
    if e.method == "HEAD":
        out.pop("resource", None)
    return out


def execute(tx: Tx, entries: list[Entry], hub: Any, base_url: str, with_body: bool) -> list[dict[str, Any]]:
    """Resolve, then apply entries in the spec's order; returns response entries in bundle order."""
    _resolve(tx, entries, base_url)
    refs: ReferenceChecker = hub.refs(tx, base_url)
    for e in entries:
        if e.method in ("POST", "PUT", "PATCH") and e.rid is not None:
            refs.known(e.rtype, e.rid)
        if hub.settings.mpi and e.method in ("POST", "PUT", "PATCH", "DELETE") and e.rtype == "AuditEvent":
            from fhir_hub.mpi.service import refuse_audit_write

            refuse_audit_write(e.rtype)  # the hub's record of reconciliation decisions (README)
    results: dict[int, dict[str, Any]] = {}
    validate = hub.settings.validate
    for e in sorted(entries, key=lambda x: _ORDER[x.method]):
        where = f"{e.where}.resource"
        results[e.index] = _apply(tx, e, refs, base_url, with_body, validate, where, hub.settings.require_profile)
        if e.method != "GET" and e.method != "HEAD":
            # written: the stored bytes are all that is needed
            e.resource = e.holders = e.packed = e.prepared = e.index_rows = None
    return [results[e.index] for e in entries]


def _apply(tx: Tx, e: Entry, refs: ReferenceChecker, base_url: str, with_body: bool, validate: bool,
           where: str, required: str = "") -> dict[str, Any]:
    """Apply one resolved entry; returns its response entry."""
    if e.method == "DELETE":
        if e.rid is not None and not e.targets:
            w = write.delete(tx, e.rtype, e.rid, if_match=e.if_match, refs=refs)
            return _response(w.status if w.version else 204, w.version, False)
        else:
            for rid in e.targets:
                write.delete(tx, e.rtype, rid, refs=refs)
            return _response(204 if not e.targets else 200, None, False)
    elif e.method == "POST":
        assert e.rid is not None
        if e.existing is not None:
            return _response(200, tx.current(e.rtype, e.existing), with_body)
        else:
            resource = e.prepared or e.load()
            assert resource is not None
            w = write.create(tx, e.rtype, resource, refs, rid=e.rid, fresh=True, where=where,
                             holders=e.holders, index=e.index_rows)
            return _response(201, w.version, with_body)
    elif e.method == "PUT":
        resource = e.load()
        assert resource is not None and e.rid is not None
        w = write.update(tx, e.rtype, e.rid, resource, refs, if_match=e.if_match, where=where,
                         holders=e.holders, index=e.index_rows, fresh=e.fresh)
        return _response(w.status, w.version, with_body)
    elif e.method == "PATCH":
        assert e.rid is not None and e.patch is not None
        w = write.patch(tx, e.rtype, e.rid, e.patch, refs, if_match=e.if_match, validate_on=validate,
                        where=where, required=required)
        return _response(w.status, w.version, with_body)
    else:
        return _read_entry(tx, e, base_url)


# -- HTTP handler ----------------------------------------------------------------------------


def _entry_error(exc: FhirError) -> dict[str, Any]:
    return {"response": {"status": str(exc.status), "outcome": exc.outcome()}}


async def _parsed_elsewhere(hub: Any, req: Request) -> list[Entry] | None:
    """A transaction's entries parsed by a worker process (``rest/parsers.py``), or ``None``:
    no pool, a body too small or too large (streamed here), a batch, or a pool that broke."""
    parsers = hub.parsers
    body = req.body
    if parsers is None or len(body) > hub.settings.stream_bundle_bytes or not parsers.wants(body):
        return None
    require_json_body(req)
    s = hub.settings
    form = hub.store.index_form if hub.store.indexer is not None else None
    answer = await parsers.parse(body, req.base_url, s.validate, s.require_profile, form)
    if answer is None or answer[0] == "batch":
        return None
    if answer[0] == "error":
        raise FhirError(answer[1], answer[2], answer[3])
    req.body = b""
    entries: list[Entry] = answer[2]
    return entries


async def handle_bundle(hub: Any, req: Request) -> Response:
    validate = hub.settings.validate
    with_body = prefer_return(req, default="minimal") == "representation"  # bundles answer minimal unless asked
    base_url = req.base_url
    entries = await _parsed_elsewhere(hub, req)
    streamed = False
    raw_entries: Iterable[Any] = ()
    if entries is not None:
        kind = "transaction"
    else:
        kind, raw_entries, streamed = parse_bundle(req, hub.settings.stream_bundle_bytes)
    if kind == "transaction":
        if entries is None:
            if streamed:
                entries = [parse_entry(raw, i, base_url, validate, pack=True, required=hub.settings.require_profile)
                           for i, raw in enumerate(raw_entries)]
            else:
                entries = parse_entries(list(raw_entries), base_url, validate, hub.store.indexer,
                                        hub.settings.require_profile, hub.store.index_form)
        parsed = entries
        results = await hub.store.transact(lambda tx: execute(tx, parsed, hub, base_url, with_body))
    else:
        results = await asyncio.gather(*(_batch_entry(hub, raw, i, base_url, with_body)
                                         for i, raw in enumerate(list(raw_entries))))
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": f"{kind}-response"}
    if results:
        bundle["entry"] = results
    return Response(200, dumps(bundle, req.param("_pretty") == "true"), [CONTENT_TYPE_HEADER])


async def _batch_read(hub: Any, entry: Entry, raw: dict[str, Any], base_url: str) -> dict[str, Any]:
    """A batch's GET entry answered exactly as the same GET over HTTP (search with its links,
    includes and lenient handling, conditional reads): a batch entry sees committed state only,
    so it need not run on the writer as a transaction's reads do."""
    from fhir_hub.app import dispatch  # the router: imported late, it imports this module

    request = raw["request"]
    headers = {"accept": "application/fhir+json"}
    for field, header in (("ifNoneMatch", "if-none-match"), ("ifModifiedSince", "if-modified-since")):
        if request.get(field) is not None:
            headers[header] = str(request[field])
    req = Request(entry.method, list(entry.segments), list(entry.query), headers, b"", base_url,
                  urlencode(list(entry.query)))
    answer = await dispatch(hub, req)
    out: dict[str, Any] = {}
    if answer.body and entry.method == "GET":
        out["resource"] = orjson.Fragment(answer.body)
    response: dict[str, Any] = {"status": _STATUS_TEXT.get(answer.status, str(answer.status))}
    for name, value in answer.headers:
        key = {b"etag": "etag", b"last-modified": "lastModified", b"location": "location"}.get(name.lower())
        if key is not None:
            response[key] = value.decode()
    out["response"] = response
    return out


async def _batch_entry(hub: Any, raw: Any, index: int, base_url: str, with_body: bool) -> dict[str, Any]:
    try:
        entry = parse_entry(raw, index, base_url, hub.settings.validate, indexer=hub.store.indexer,
                            required=hub.settings.require_profile, form=hub.store.index_form)
        if entry.method in ("GET", "HEAD") and entry.operation is None:
            return await _batch_read(hub, entry, raw, base_url)
        for holder in entry.holders or ():
            if holder["reference"].startswith("urn:uuid:"):
                raise FhirError(400, error("invalid", "references between batch entries are not allowed "
                                           "(use a transaction)", path_of(entry.resource, holder, f"{entry.where}.resource")))
        results = await hub.store.transact(lambda tx: execute(tx, [entry], hub, base_url, with_body))
        return results[0]
    except FhirError as exc:
        return _entry_error(exc)
