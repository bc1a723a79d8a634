"""Per-type profile policy: every write of a type must conform to the profiles the server names for it.

Why a server policy and not only ``meta.profile``: a claim is the client's choice, and a client that
claims nothing is checked against R4 alone. A hub that must hold only VN Core Patients says so once
(``FHIR_HUB_REQUIRE_PROFILE=Patient=<url>,Encounter=<url>``, or ``fhir-hub serve --require-profile``)
and every write of those types (create, update, patch, transaction and batch entries) is validated
against them, whatever the resource claims. A write that does not conform is refused with ``422
Unprocessable Entity`` and every issue, warnings included — the status R4 gives to "violated
applicable FHIR profiles" (http.html) and HAPI's validating interceptor answers; warnings alone do
not refuse a write.

The setting is a comma-separated list of ``Type=profile-url``; a type may be named more than once
(it must then conform to each). Unknown types, unknown profiles and a profile of another type are
refused when the settings are built, so a typo cannot leave the policy silently off.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import lru_cache
from typing import Any

from fhir_hub import definitions, profiles
from fhir_hub.errors import FhirError, Issue
from fhir_hub.validation import profile

__all__ = ["enforce", "issues", "parse", "required"]


@lru_cache(maxsize=8)
def parse(text: str) -> dict[str, tuple[str, ...]]:
    """``{type: profile urls}`` of a policy setting; ``ValueError`` naming the bad part."""
    out: dict[str, tuple[str, ...]] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        rtype, eq, url = (s.strip() for s in part.partition("="))
        if not eq or not rtype or not url:
            raise ValueError(f"FHIR_HUB_REQUIRE_PROFILE: {part!r} is not Type=profile-url")
        if not definitions.is_resource_type(rtype):
            raise ValueError(f"FHIR_HUB_REQUIRE_PROFILE: {rtype!r} is not an R4 resource type")
        sd = profiles.structure_definition(url)
        if sd is None:
            raise ValueError(f"FHIR_HUB_REQUIRE_PROFILE: profile {url!r} is not known to this server (known: "
                             f"{', '.join(profiles.profile_urls())})")
        if sd.get("type") != rtype:
            raise ValueError(f"FHIR_HUB_REQUIRE_PROFILE: profile {url!r} is for {sd.get('type')}, not {rtype}")
        if url not in out.get(rtype, ()):
            out[rtype] = (*out.get(rtype, ()), url)
    return out


def required(text: str, rtype: str) -> tuple[str, ...]:
    """The profiles the policy ``text`` requires of ``rtype`` (none when the policy is empty)."""
    return parse(text).get(rtype, ()) if text else ()


def issues(resource: dict[str, Any], text: str, structural: bool = False,
           skip: Collection[str] = ()) -> list[Issue]:
    """Every issue of ``resource`` against the profiles the policy requires of its type (R4 structure
    too when ``structural``), leaving out the profiles in ``skip`` (already checked by the caller);
    empty when the policy names none for the type."""
    urls = [u for u in required(text, str(resource.get("resourceType"))) if u not in skip]
    if not urls:
        return []
    return profile.validate_resource(resource, urls, structural=structural)


def enforce(resource: dict[str, Any], text: str, where: str | None = None, structural: bool = False) -> None:
    """On write: raise a 422 with every issue when ``resource`` has an error against a required
    profile; ``where`` re-roots the locations (``Bundle.entry[3].resource``)."""
    if not text:
        return
    refuse(resource, issues(resource, text, structural), where)


def refuse(resource: dict[str, Any], found: list[Issue], where: str | None) -> None:
    """A write refused: 422 with every issue (warnings included, R4's status for a profile
    violation) when any is an error; ``where`` re-roots the locations. Shared by the policy and
    the check of claimed profiles (``rest/validate.py``)."""
    if not any(i.severity in ("error", "fatal") for i in found):
        return
    if where is not None:
        rtype = str(resource.get("resourceType"))
        found = [profile.reroot(i, rtype, where) for i in found]
    raise FhirError(422, found)
