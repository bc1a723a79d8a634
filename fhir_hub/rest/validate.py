"""``$validate`` at type and instance level (resource-operation-validate.html), and the check of
claimed profiles on write.

``POST [base]/[type]/$validate`` and ``POST [base]/[type]/[id]/$validate``. The body is the resource
itself, or a ``Parameters`` with ``resource`` (and optionally ``profile`` and ``mode``); ``profile``
and ``mode`` may also be query parameters. The resource is validated structurally (R4) and against
the given VN profile, else against the shipped profiles it claims in ``meta.profile``; a Bundle's
entries are checked against what each claims. ICD-10 sex and age rules
(:mod:`fhir_hub.validation.icd_rules`) run on Conditions, with the Patient from the same Bundle or
the store. The answer is ``200`` with an OperationOutcome (one
``information`` issue when nothing was found), because the operation succeeded whatever the
verdict; a request that cannot be run (no body, wrong type, unknown profile or mode, an id that
contradicts the URL, an instance that does not exist for ``delete``) is a 4xx. ``Accept-Language:
vi`` puts the Vietnamese message in ``diagnostics`` and the English one in its ``translation``
extension (the default is the reverse).

``mode`` says which write the client means to make, so the answer predicts it:

* ``create``: also the server's per-type profile policy (:mod:`fhir_hub.validation.policy`) and the
  relative references a write would refuse (target missing or deleted, when references are enforced).
* ``update``: as ``create``, and against the stored resource: the id (body, else the URL's) must
  name it; the update would create it when there is none (information); a ``meta.versionId`` older
  than the current version and profiles the stored version claims but this one drops are warnings.
* ``delete``: the resource may be left out; the instance must exist (404, 410 when deleted); every
  resource still referring to it is a warning (this server deletes anyway, leaving those references
  dangling), at most :data:`MAX_REFERRERS` of them.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_hub import definitions, profiles
from fhir_hub.errors import FhirError, Issue, error, gone, invalid, not_found
from fhir_hub.rest.references import iter_reference_holders, parse_relative, strip_base
from fhir_hub.rest.wire import (
    CONTENT_TYPE_HEADER,
    Request,
    Response,
    dumps,
    parse_json,
    pretty,
    require_json_body,
)
from fhir_hub.search import parameters
from fhir_hub.search.query import Clause, ReferenceValue
from fhir_hub.validation import icd_rules, policy, profile
from fhir_hub.validation.profile import ProfileIssue, outcome

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Resource-validate"
_MODES = ("create", "update", "delete")
#: Referring resources a ``delete`` check reports before it stops looking.
MAX_REFERRERS = 20


def language(req: Request) -> str:
    """``vi`` when ``Accept-Language`` prefers Vietnamese over English, else ``en``."""
    for part in req.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("vi"):
            return "vi"
        if tag.startswith("en") or tag == "*":
            return "en"
    return "en"


def _from_parameters(body: dict[str, Any]) -> tuple[Any, str | None, str | None]:
    resource = profile_url = mode = None
    for i, p in enumerate(body.get("parameter") or ()):
        if not isinstance(p, dict):
            raise invalid("$validate: a parameter must be an object", f"Parameters.parameter[{i}]")
        name = p.get("name")
        if name == "resource":
            resource = p.get("resource")
        elif name == "profile":
            profile_url = p.get("valueUri", p.get("valueCanonical"))
        elif name == "mode":
            mode = p.get("valueCode")
    return resource, profile_url, mode


def _request(req: Request, rtype: str) -> tuple[Any, str | None, str | None]:
    """``(resource or None, profile, mode)`` from the body and the query string (the body wins)."""
    profile_url, mode = req.param("profile"), req.param("mode")
    if not req.body:
        return None, profile_url, mode
    require_json_body(req)
    body = parse_json(req.body)
    if not isinstance(body, dict):
        raise FhirError(400, error("structure", "$validate: the body must be a resource or Parameters"))
    if body.get("resourceType") != "Parameters" or rtype == "Parameters":
        return body, profile_url, mode
    resource, from_body, body_mode = _from_parameters(body)
    return resource, from_body or profile_url, body_mode or mode


def _profile_urls(profile_url: str | None) -> list[str] | None:
    if not profile_url:
        return None
    if profiles.structure_definition(profile_url) is None:
        known = ", ".join(profiles.profile_urls())
        raise FhirError(400, error("not-supported", f"$validate: profile {profile_url!r} is not known to this "
                                   f"server (known: {known})", "profile"))
    return [profile_url]


async def handle_validate(hub: Any, req: Request, rtype: str, rid: str | None = None) -> Response:
    """``POST [base]/[rtype]/$validate`` and ``POST [base]/[rtype]/[rid]/$validate``."""
    from fhir_hub.rest.write import check_id, check_type

    check_type(rtype)
    if rid is not None:
        check_id(rid)
    resource, profile_url, mode = _request(req, rtype)
    if mode is not None and mode not in _MODES:
        raise invalid(f"$validate: mode {mode!r} is not one of {', '.join(_MODES)}", "mode")
    urls = _profile_urls(profile_url)
    if mode == "delete":
        if rid is None:
            raise invalid("$validate: mode delete names the resource to delete: POST [type]/[id]/$validate",
                          "mode")
        issues = await _delete_checks(hub, rtype, rid)
    else:
        if resource is None:
            raise invalid("$validate: no resource to validate (the body, or the 'resource' parameter; only "
                          "mode delete may leave it out)", "resource")
        if not isinstance(resource, dict) or resource.get("resourceType") != rtype:
            found = resource.get("resourceType") if isinstance(resource, dict) else None
            raise invalid(f"$validate: the resource is a {found!r}, not a {rtype!r} as the URL says",
                          "resourceType")
        target = _target_id(resource, rid, mode)
        issues = profile.validate_tree(resource, urls, defaults=False)
        if mode is not None:
            checked = urls if urls is not None else [u.split("|", 1)[0] for u in profile.claimed(resource)]
            issues.extend(policy.issues(resource, hub.settings.require_profile, skip=checked))
            if hub.settings.enforce_references:
                issues.extend(await _dangling(hub, resource, req.base_url))
        if mode == "update" and target is not None:
            issues.extend(await _update_checks(hub, rtype, target, resource))
        issues.extend(await _icd_issues(hub, resource))
    return Response(200, dumps(outcome(issues, language(req)), pretty(req)), [CONTENT_TYPE_HEADER])


def _note(severity: str, code: str, en: str, vi: str, *where: str) -> ProfileIssue:
    return ProfileIssue(severity, code, en, where, vi)


def _target_id(resource: dict[str, Any], rid: str | None, mode: str | None) -> str | None:
    """The id the checks are about; an id in the body that contradicts the URL is a 400, as for PUT."""
    body_id = resource.get("id")
    if rid is not None and body_id is not None and body_id != rid:
        raise invalid(f"$validate: the resource id {body_id!r} does not match the URL's {rid!r}", "id")
    if mode == "update" and rid is None and not isinstance(body_id, str):
        raise FhirError(400, error("required", "$validate: mode update needs the id of the resource to update "
                                   "(in the resource, or POST [type]/[id]/$validate)", "id"))
    return rid if rid is not None else body_id if isinstance(body_id, str) else None


async def _update_checks(hub: Any, rtype: str, rid: str, resource: dict[str, Any]) -> list[Issue]:
    """What an update of the stored ``rtype/rid`` to ``resource`` would change or trip over."""
    stored = await hub.store.read(rtype, rid)
    me = f"{rtype}/{rid}"
    if stored is None or stored.body is None:
        what, vi = ("was deleted", "đã bị xóa") if stored is not None else ("does not exist", "không tồn tại")
        return [_note("information", "informational", f"{me} {what}: the update would create it",
                      f"{me} {vi}: cập nhật sẽ tạo mới", rtype)]
    out: list[Issue] = []
    old = orjson.loads(stored.body)
    meta = resource.get("meta")
    vid = meta.get("versionId") if isinstance(meta, dict) else None
    if isinstance(vid, str) and vid != str(stored.vid):
        out.append(_note(
            "warning", "conflict",
            f"meta.versionId is {vid} but the current version of {me} is {stored.vid}: this copy is not of "
            f"the current version (an update with If-Match W/\"{vid}\" would fail with 412)",
            f"meta.versionId là {vid} nhưng phiên bản hiện tại của {me} là {stored.vid}: bản này không phải "
            f"của phiên bản hiện tại (cập nhật với If-Match W/\"{vid}\" sẽ bị từ chối, 412)",
            f"{rtype}.meta.versionId"))
    kept = set(profile.claimed(resource))
    for url in profile.claimed(old):
        if url not in kept:
            out.append(_note(
                "warning", "business-rule",
                f"the stored version {stored.vid} claims profile {url}; this update drops the claim",
                f"phiên bản đã lưu {stored.vid} khai báo hồ sơ {url}; bản cập nhật này bỏ khai báo đó",
                f"{rtype}.meta.profile"))
    if _content(old) == _content(resource):
        out.append(_note("information", "informational",
                         f"no change from the current version {stored.vid} of {me} (meta aside)",
                         f"không khác phiên bản hiện tại {stored.vid} của {me} (trừ meta)", rtype))
    return out


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in ("meta", "id")}


async def _dangling(hub: Any, resource: dict[str, Any], base_url: str) -> list[Issue]:
    """The relative references a write would refuse (409): target missing or deleted."""
    rtype = str(resource.get("resourceType"))
    if rtype == "Bundle":
        return []  # its entries may refer to each other; a transaction resolves them as it writes
    out: list[Issue] = []
    seen: dict[str, str] = {}
    for holder, path in iter_reference_holders(resource, rtype):
        ref = strip_base(str(holder["reference"]), base_url)
        parsed = parse_relative(ref)
        if parsed is None or parsed[2] is not None:
            continue  # absolute, logical or versioned: not what a write checks here
        key = f"{parsed[0]}/{parsed[1]}"
        if key not in seen:
            v = await hub.store.read(parsed[0], parsed[1])
            seen[key] = "missing" if v is None else "deleted" if v.body is None else "live"
        if seen[key] != "live":
            en, vi = (("is deleted", "đã bị xóa") if seen[key] == "deleted"
                      else ("does not exist", "không tồn tại"))
            out.append(_note("error", "not-found",
                             f"reference {ref!r}: the target {en}; the write would be refused (409)",
                             f"tham chiếu {ref!r}: đích {vi}; thao tác ghi sẽ bị từ chối (409)",
                             f"{path}.reference"))
    return out


async def _delete_checks(hub: Any, rtype: str, rid: str) -> list[Issue]:
    """``mode=delete``: the instance must exist; each resource still referring to it is a warning."""
    stored = await hub.store.read(rtype, rid)
    me = f"{rtype}/{rid}"
    if stored is None:
        raise not_found(f"{me} is not known: nothing to delete")
    if stored.body is None:
        raise gone(f"{me} is already deleted (version {stored.vid})")
    found = await referrers(hub.store, rtype, rid, MAX_REFERRERS + 1)
    out: list[Issue] = []
    for source_type, source_id, param in found[:MAX_REFERRERS]:
        source = f"{source_type}/{source_id}"
        out.append(_note("warning", "business-rule",
                         f"{source} refers to {me} (search parameter {param!r}); deleting {me} leaves that "
                         "reference dangling",
                         f"{source} tham chiếu tới {me} (tham số tìm kiếm {param!r}); xóa {me} sẽ để lại tham "
                         "chiếu treo"))
    if len(found) > MAX_REFERRERS:
        out.append(_note("information", "informational",
                         f"more resources refer to {me}; only the first {MAX_REFERRERS} are listed",
                         f"còn tài nguyên khác tham chiếu tới {me}; chỉ liệt kê {MAX_REFERRERS} cái đầu"))
    if not out:
        out.append(_note("information", "informational", f"{me} may be deleted: nothing refers to it",
                         f"có thể xóa {me}: không có tài nguyên nào tham chiếu tới"))
    return out


async def referrers(store: Any, rtype: str, rid: str, limit: int) -> list[tuple[str, str, str]]:
    """``(type, id, search parameter)`` of live resources whose indexed references name ``rtype/rid``,
    one row per resource, up to ``limit``: one indexed query per reference search parameter that may
    point at ``rtype`` (about 240 for a Patient)."""
    target = (ReferenceValue(f"{rtype}/{rid}"),)
    out: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for source_type in sorted(definitions.resource_types()):
        for code, sp in sorted(parameters.params_for(source_type).items()):
            if sp.type != "reference" or (sp.targets and rtype not in sp.targets):
                continue
            for source_id in await store.find(source_type, [Clause(code, "reference", target)], limit):
                if (source_type, source_id) not in seen:
                    seen.add((source_type, source_id))
                    out.append((source_type, source_id, code))
                    if len(out) >= limit:
                        return out
    return out


async def _icd_issues(hub: Any, resource: dict[str, Any]) -> list[Issue]:
    """ICD-10 sex and age rules on a Condition or a Bundle's Conditions, each against its Patient:
    from the Bundle, else read from the store."""
    known: dict[str, dict[str, Any]] = {}
    for pid in icd_patients(resource):
        v = await hub.store.read("Patient", pid)
        if v is not None and v.body is not None:
            known[f"Patient/{pid}"] = orjson.loads(v.body)
    return icd_rules.check(resource, known)


def icd_patients(resource: dict[str, Any]) -> list[str]:
    """The ids of the stored Patients the ICD-10 rules read for ``resource`` (its Conditions' subjects
    that it does not hold): the other resources a ``$validate`` without ``mode`` looks at."""
    out = []
    for ref in icd_rules.outside_subjects(resource):
        parsed = parse_relative(ref)
        if parsed is not None and parsed[0] == "Patient" and parsed[2] is None:
            out.append(parsed[1])
    return out


def requested(req: Request, rtype: str) -> tuple[Any, str | None]:
    """``(resource or None, mode)`` of a ``$validate`` request, read as :func:`handle_validate` reads
    them (for the enforcement point, ``auth/enforce.py``); a body that is not JSON is a 400."""
    resource, _, mode = _request(req, rtype)
    return resource, mode


def check_claimed(resource: dict[str, Any], where: str | None = None) -> None:
    """On write: a resource claiming shipped VN profiles in ``meta.profile`` must conform to them
    (422 with every issue, warnings included, when it does not). Claims of other profiles are
    ignored here, as are Bundle entries (a transaction checks each entry as it writes it)."""
    urls = [u for u in profile.claimed(resource) if profiles.structure_definition(u) is not None]
    if not urls:
        return
    issues: list[Issue] = []
    for u in urls:
        issues.extend(profile.validate(resource, u))
    policy.refuse(resource, issues, where)
