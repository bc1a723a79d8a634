"""``POST [base]/[type]/$validate`` (resource-operation-validate.html), and the check of claimed profiles on write.

The body is the resource itself, or a ``Parameters`` with ``resource`` (and optionally ``profile``
and ``mode``); ``profile`` may also be a query parameter. The resource is validated structurally
(R4) and against the given VN profile, else against the shipped profiles it claims in
``meta.profile``; a Bundle's entries are checked against what each claims. The answer is always
``200`` with an OperationOutcome (one ``information`` issue when nothing was found), because the
operation succeeded whatever the verdict; only a request that cannot be run (no body, wrong
type, unknown profile) is a 4xx. ``Accept-Language: vi`` puts the Vietnamese message in
``diagnostics`` and the English one in its ``translation`` extension (the default is the reverse).

``mode`` (create / update / delete) is accepted and does not change the checks: delete rules and
the instance-level form ``[type]/[id]/$validate`` are not built.
"""

from __future__ import annotations

from typing import Any

from fhir_hub import profiles
from fhir_hub.errors import FhirError, Issue, error, invalid
from fhir_hub.rest.wire import (
    CONTENT_TYPE_HEADER,
    Request,
    Response,
    dumps,
    parse_json,
    pretty,
    require_json_body,
)
from fhir_hub.validation import profile

DEFINITION = "http://hl7.org/fhir/OperationDefinition/Resource-validate"
_MODES = ("create", "update", "delete")


def language(req: Request) -> str:
    """``vi`` when ``Accept-Language`` prefers Vietnamese over English, else ``en``."""
    for part in req.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("vi"):
            return "vi"
        if tag.startswith("en") or tag == "*":
            return "en"
    return "en"


def outcome(issues: list[Issue], lang: str = "en") -> dict[str, Any]:
    """The OperationOutcome of a validation, messages in ``lang`` first."""
    if not issues:
        ok = profile.ProfileIssue("information", "informational", "No issues found", (), "Không có lỗi nào")
        issues = [ok]
    return {"resourceType": "OperationOutcome",
            "issue": [i.to_json(lang) if isinstance(i, profile.ProfileIssue) else i.to_json() for i in issues]}


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
    if resource is None:
        raise invalid("$validate: the Parameters have no 'resource'", "Parameters.parameter")
    return resource, profile_url, mode


async def handle_validate(hub: Any, req: Request, rtype: str) -> Response:
    """``POST [base]/[rtype]/$validate``."""
    require_json_body(req)
    body = parse_json(req.body)
    if not isinstance(body, dict):
        raise FhirError(400, error("structure", "$validate: the body must be a resource or Parameters"))
    profile_url = req.param("profile")
    mode = req.param("mode")
    resource: Any = body
    if body.get("resourceType") == "Parameters" and rtype != "Parameters":
        resource, from_body, body_mode = _from_parameters(body)
        profile_url = from_body or profile_url
        mode = body_mode or mode
    if mode is not None and mode not in _MODES:
        raise invalid(f"$validate: mode {mode!r} is not one of {', '.join(_MODES)}", "mode")
    if not isinstance(resource, dict) or resource.get("resourceType") != rtype:
        found = resource.get("resourceType") if isinstance(resource, dict) else None
        raise invalid(f"$validate: the resource is a {found!r}, not a {rtype!r} as the URL says", "resourceType")
    urls = None
    if profile_url:
        if profiles.structure_definition(profile_url) is None:
            raise FhirError(400, error("not-supported", f"$validate: profile {profile_url!r} is not known to this "
                                       f"server (known: {', '.join(profiles.profile_urls())})", "profile"))
        urls = [profile_url]
    issues = profile.validate_tree(resource, urls, defaults=False)
    return Response(200, dumps(outcome(issues, language(req)), pretty(req)), [CONTENT_TYPE_HEADER])


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
    if not any(i.severity in ("error", "fatal") for i in issues):
        return
    if where is not None:
        rtype = str(resource.get("resourceType"))
        issues = [profile.reroot(i, rtype, where) for i in issues]
    raise FhirError(422, issues)
