"""Template check: which items of an outpatient record template an Encounter's resources record.

Pure: given the Encounter, the resources that may belong to it and the template (or the registry
to find it in), :func:`check` returns the items present (with the resources recording them) and
the items missing. An item is present when

* an Observation of the encounter (``Observation.encounter``) carries the item's code in
  ``code.coding`` and a value (``value[x]``, or a component with one), and is not
  ``entered-in-error`` or ``cancelled``;
* for a Condition item (the diagnoses), a Condition of the encounter (``Condition.encounter``, or
  named in ``Encounter.diagnosis``) has an ICD-10 VN code and is not ``entered-in-error``.

"Of the encounter" means the reference is one of the encounter's own names: ``Encounter/<id>``,
its absolute URL or its ``fullUrl`` in a Bundle (``urn:uuid:…``), given by the caller.

The template is the one named by ``Encounter.type`` (a coding of
:data:`~fhir_hub.profiles.registry.TEMPLATE_SYSTEM`), else by a ``meta.profile`` claim of a template
profile; the caller may name one instead. Used by ``Encounter/[id]/$template-check``
(:mod:`fhir_hub.rest.templates`) and ``fhir-hub profiles template-check``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fhir_hub import profiles
from fhir_hub.errors import Issue
from fhir_hub.profiles.registry import TEMPLATE_SYSTEM, Item, Registry, Template, registry
from fhir_hub.validation.profile import ProfileIssue

__all__ = ["Check", "Found", "ICD10_SYSTEM", "check", "issues", "parameters", "template_of"]

ICD10_SYSTEM = "http://fhir.ehealth.gov.vn/core/CodeSystem/vn-icd10"
_VOID = frozenset({"entered-in-error", "cancelled"})


@dataclass(frozen=True, slots=True)
class Found:
    item: Item
    #: references (``Observation/1``, ``urn:uuid:…``) of the resources recording the item
    resources: tuple[str, ...]


@dataclass(frozen=True)
class Check:
    template: Template
    present: list[Found] = field(default_factory=list)
    #: required items no resource records
    missing: list[Item] = field(default_factory=list)
    #: optional items no resource records
    absent: list[Item] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.missing


def template_of(encounter: dict[str, Any], reg: Registry | None = None) -> Template | None:
    reg = reg or registry()
    for cc in encounter.get("type") or ():
        for c in (cc.get("coding") or ()) if isinstance(cc, dict) else ():
            if isinstance(c, dict) and c.get("system") == TEMPLATE_SYSTEM and isinstance(c.get("code"), str):
                found = reg.template(c["code"])
                if found is not None:
                    return found
    meta = encounter.get("meta")
    for url in (meta.get("profile") or ()) if isinstance(meta, dict) else ():
        if isinstance(url, str) and url.split("|", 1)[0].startswith(profiles.TEMPLATE_PREFIX):
            found = reg.template(url.split("|", 1)[0][len(profiles.TEMPLATE_PREFIX):])
            if found is not None:
                return found
    return None


def _ref(value: Any) -> str | None:
    ref = value.get("reference") if isinstance(value, dict) else None
    return ref if isinstance(ref, str) else None


def _codes(resource: dict[str, Any]) -> set[tuple[str, str]]:
    code = resource.get("code")
    out = set()
    for c in (code.get("coding") or ()) if isinstance(code, dict) else ():
        if isinstance(c, dict) and isinstance(c.get("system"), str) and isinstance(c.get("code"), str):
            out.add((c["system"], c["code"]))
    return out


def _has_value(obs: dict[str, Any]) -> bool:
    if any(k.startswith("value") for k in obs):
        return True
    return any(isinstance(c, dict) and any(k.startswith("value") for k in c) for c in obs.get("component") or ())


def check(encounter: dict[str, Any], resources: Iterable[tuple[str, dict[str, Any]]], names: Iterable[str],
          template: Template | None = None, reg: Registry | None = None) -> Check:
    """``resources``: ``(reference, resource)`` pairs that may belong to the encounter; ``names``: the
    references by which they may point at it. Raises ``LookupError`` when no template applies."""
    template = template or template_of(encounter, reg)
    if template is None:
        raise LookupError("the Encounter names no outpatient template (Encounter.type of "
                          f"{TEMPLATE_SYSTEM}, or a template profile in meta.profile)")
    own = set(names)
    diagnosed = {r for d in encounter.get("diagnosis") or () if isinstance(d, dict)
                 if (r := _ref(d.get("condition"))) is not None}
    by_code: dict[tuple[str, str], list[str]] = {}
    conditions: list[str] = []
    for ref, res in resources:
        rtype = res.get("resourceType")
        if rtype == "Observation":
            if _ref(res.get("encounter")) not in own or res.get("status") in _VOID or not _has_value(res):
                continue
            for key in _codes(res):
                by_code.setdefault(key, []).append(ref)
        elif rtype == "Condition":
            linked = _ref(res.get("encounter")) in own or ref in diagnosed
            status = res.get("verificationStatus")
            void = isinstance(status, dict) and any(
                isinstance(c, dict) and c.get("code") == "entered-in-error" for c in status.get("coding") or ())
            if linked and not void and any(s == ICD10_SYSTEM for s, _ in _codes(res)):
                conditions.append(ref)
    result = Check(template)
    for item in template.items():
        refs = conditions if item.type == "Condition" else by_code.get((item.system, item.code), [])
        if refs:
            result.present.append(Found(item, tuple(refs)))
        elif item.required:
            result.missing.append(item)
        else:
            result.absent.append(item)
    return result


def issues(result: Check, where: str = "Encounter") -> list[Issue]:
    """One error per missing required item, naming it (English, with the Vietnamese translation)."""
    t = result.template
    return [ProfileIssue("error", "required", f"Required item '{i.en}' ({i.code}) of template '{t.en}' "
                         f"({t.code}) is not recorded", (where,),
                         f"Thiếu mục bắt buộc '{i.vi}' ({i.code}) của mẫu '{t.vi}' ({t.code})")
            for i in result.missing]


def _item_parts(item: Item, lang: str) -> list[dict[str, Any]]:
    return [{"name": "item", "valueCoding": {"system": item.system, "code": item.code, "display": item.en}},
            {"name": "name", "valueString": item.vi if lang == "vi" else item.en},
            {"name": "required", "valueBoolean": item.required}]


def parameters(result: Check, outcome: dict[str, Any], lang: str = "en") -> dict[str, Any]:
    """The operation's answer: ``template``, ``complete``, one ``present`` per recorded item (with its
    resources), one ``missing`` per required item not recorded, and the ``outcome``."""
    t = result.template
    params: list[dict[str, Any]] = [
        {"name": "template", "valueCoding": {"system": TEMPLATE_SYSTEM, "code": t.code,
                                             "display": t.vi if lang == "vi" else t.en}},
        {"name": "complete", "valueBoolean": result.complete},
    ]
    for f in result.present:
        params.append({"name": "present", "part": [*_item_parts(f.item, lang),
                                                   *({"name": "resource", "valueReference": {"reference": r}}
                                                     for r in f.resources)]})
    for i in result.missing:
        params.append({"name": "missing", "part": _item_parts(i, lang)})
    params.append({"name": "outcome", "resource": outcome})
    return {"resourceType": "Parameters", "parameter": params}
