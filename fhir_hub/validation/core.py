"""Validation of a resource against its R4 core StructureDefinition: what the structural pass does not
cover.

Why a second pass: :mod:`.structure` checks the element model (cardinality, types, JSON form, required
code bindings) in tens of microseconds, on every write. The core profile says more, and this pass
checks it, walking the resource once with the same element model:

* the invariants of the resource, its backbone elements and every datatype used (:mod:`.invariants`),
  reported at the element they are on;
* Reference targets: a literal reference (``Patient/1``) naming a type the element does not allow, and
  a reference that resolves inside the resource or its Bundle (:mod:`.references`) to a resource of a
  type not allowed;
* extensions with a known definition (:mod:`.extensions`): used where their context allows, with a
  value of an allowed type (or none, for a complex one), as a modifier exactly when they are one;
* contained resources, ``Bundle.entry.resource`` and every other resource inside, each as a resource
  of its own (``%resource``), the container being ``%rootResource`` of contained ones.

* required bindings on CodeableConcept and Coding elements whose value set is enumerable
  (``Condition.clinicalStatus``; ``data/r4-bindings.json``): a coding of the value set, not text only.

Not checked here: the required ``code`` bindings (the structural pass has those), bindings that are not
required (extensible ones are guidance for the core resources; the VN profiles' extensible bindings are
:mod:`.profile`'s), value sets that cannot be enumerated offline (UCUM units, LOINC answer lists),
``contextInvariant`` of extensions.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import orjson

from fhir_hub import definitions
from fhir_hub.errors import Issue
from fhir_hub.validation import extensions, references, structure
from fhir_hub.validation.extensions import Place
from fhir_hub.validation.invariants import Rule, rules
from fhir_hub.validation.profile import ProfileIssue, _render

__all__ = ["validate", "validate_rules"]

_Path = Any


class _Ctx:
    """Per-resource walking state: the resource (``%resource``), the container (``%rootResource``),
    what its references resolve to, and the issues found."""

    __slots__ = ("res", "root", "scope", "out", "invariants")

    def __init__(self, res: dict[str, Any], root: dict[str, Any], scope: references.Scope, out: list[Issue],
                 invariants: bool = True):
        self.res = res
        self.root = root
        self.scope = scope
        self.out = out
        self.invariants = invariants


# A required binding: value set URL, its code systems, its codes
_Binding = tuple[str, frozenset[str], frozenset[str]]
# (json key) -> (element type, FHIRPath step, element path in its type, step of the path from the resource,
#                 targets or None, kind of the child, required binding or None)
_Spec = tuple[str, str, str, str, frozenset[str] | None, str, _Binding | None]


@cache
def _bindings() -> dict[str, _Binding]:
    blob = resources.files("fhir_hub.validation").joinpath("data", "r4-bindings.json").read_bytes()
    return {path: (url, frozenset(systems), frozenset(codes)) for path, (url, systems, codes) in orjson.loads(blob).items()}


_SPECS: dict[str, dict[str, _Spec]] = {}


def _specs(tname: str) -> dict[str, _Spec]:
    """The walking plan of a type, built on first use (a dict lookup after that: this is per node)."""
    found = _SPECS.get(tname)
    if found is not None:
        return found
    prims = definitions.primitive_types()
    out: dict[str, _Spec] = {}
    for key, el in definitions.type_model(tname).items():
        t: str = el["type"]
        choice = el.get("choice")
        stem = choice + "[x]" if choice else key
        seg = f"{choice}.ofType({t if t in prims else key[len(choice):]})" if choice else key
        epath = f"{tname}.{stem}"
        targets = frozenset(el["targets"]) if "targets" in el and "Resource" not in el["targets"] else None
        if t in prims:
            kind = "primitive"
        elif t == "Resource":
            kind = "resource"
        elif "." in t:
            kind = "backbone"
        else:
            kind = "datatype"
        binding = _bindings().get(epath) if t in ("CodeableConcept", "Coding") else None
        out[key] = (t, seg, epath, stem, targets, kind, binding)
    _SPECS[tname] = out
    return out


def _failed(rule: Rule, path: _Path, ctx: _Ctx) -> None:
    ctx.out.append(ProfileIssue(
        rule.severity, "invariant", f"Constraint {rule.key} failed: {rule.human}", (_render(path),),
        f"Ràng buộc {rule.key} không thỏa: {rule.human}"))


def _check_rules(found: tuple[Rule, ...], value: Any, path: _Path, ctx: _Ctx) -> None:
    for rule in found:
        try:
            ok = rule.holds(value, ctx.res, ctx.root)
        except Exception as exc:  # an expression fhirpathpy cannot evaluate must not break validation
            ctx.out.append(ProfileIssue(
                "warning", "not-supported", f"Constraint {rule.key} could not be evaluated: {exc}",
                (_render(path),), f"Không đánh giá được ràng buộc {rule.key}: {exc}"))
            continue
        if not ok:
            _failed(rule, path, ctx)


def _check_target(value: Any, allowed: frozenset[str], path: _Path, ctx: _Ctx) -> None:
    ref = value.get("reference")
    if not isinstance(ref, str):
        return
    kind = references.literal_type(ref)
    if kind is not None and not definitions.is_resource_type(kind) and "://" in ref:
        kind = None  # an absolute URL that is not a FHIR RESTful one: its target's type is unknown
    if kind is None:
        target = references.resolve(ref, ctx.scope)
        kind = target.get("resourceType") if target is not None else None
    if isinstance(kind, str) and kind not in allowed:
        shown = ", ".join(sorted(allowed))
        ctx.out.append(ProfileIssue(
            "error", "invalid", f"Reference to {kind} is not allowed here; allowed: {shown}",
            (_render((path, "reference")),), f"Tham chiếu tới {kind} không được phép ở đây; được phép: {shown}"))


def _check_binding(value: dict[str, Any], t: str, binding: _Binding, path: _Path, ctx: _Ctx) -> None:
    """A required binding on a CodeableConcept or Coding: some coding has a code of the value set (in one
    of its systems, when the coding names one)."""
    url, systems, codes = binding
    codings = value.get("coding") if t == "CodeableConcept" else [value]
    coded = [c for c in codings or () if isinstance(c, dict) and "code" in c]
    if any(c["code"] in codes and c.get("system", next(iter(systems), None)) in systems for c in coded):
        return
    if not coded and "coding" not in value and t == "CodeableConcept" and "text" not in value:
        return  # only extensions: nothing to judge
    shown = ", ".join(f"{c.get('system')}|{c['code']}" for c in coded) or "text only"
    ctx.out.append(ProfileIssue(
        "error", "code-invalid", f"No code from the required value set {url}: {shown}", (_render(path),),
        f"Không có mã nào thuộc tập giá trị bắt buộc {url}: {shown}"))


def _allowed(d: extensions.Definition, at: _Where) -> bool:
    """The context check, building the element's full path only when its type path and type do not decide."""
    if isinstance(at, Place):
        return extensions.allowed(d, at)
    ctx = d.context
    if not ctx or "Element" in ctx or at[2] in ctx or at[3] in ctx:
        return True
    return extensions.allowed(d, _place(at))


def _check_extension(value: Any, modifier: bool, at: _Where, path: _Path, ctx: _Ctx) -> None:
    url = value.get("url")
    d = extensions.definition(url) if isinstance(url, str) else None
    if d is None:
        return
    if not _allowed(d, at):
        shown = ", ".join(sorted(d.context))
        where = _place(at).path
        ctx.out.append(ProfileIssue(
            "error", "structure", f"Extension {url} is not allowed on {where}; its context is: {shown}",
            (_render(path),), f"Phần mở rộng {url} không được dùng ở {where}; ngữ cảnh cho phép: {shown}"))
    if d.modifier != modifier:
        en = ("is a modifier extension: it must be in modifierExtension" if d.modifier
              else "is not a modifier extension: it must be in extension")
        vi = ("là phần mở rộng thay đổi nghĩa: phải nằm trong modifierExtension" if d.modifier
              else "không phải phần mở rộng thay đổi nghĩa: phải nằm trong extension")
        ctx.out.append(ProfileIssue("error", "structure", f"Extension {url} {en}", (_render(path),),
                                    f"Phần mở rộng {url} {vi}"))
    for key in value:
        if key.startswith("value"):
            if key not in d.value:
                shown = ", ".join(sorted(d.value)) or "none (a complex extension)"
                ctx.out.append(ProfileIssue(
                    "error", "structure", f"Extension {url} cannot hold {key}; allowed: {shown}", (_render(path),),
                    f"Phần mở rộng {url} không chứa được {key}; được phép: {shown}"))
            break


# Where a node is, for extension contexts, built lazily (most nodes carry no extension):
# (parent, stem, element path in its type, type, kind), or a Place at a resource's root.
_Where = Any


def _place(where: _Where) -> Place:
    if isinstance(where, Place):
        return where
    parent, stem, epath, t, kind = where
    return Place(f"{_place(parent).path}.{stem}", epath, t, kind)


def _walk(tname: str, obj: dict[str, Any], path: _Path, where: _Where, ctx: _Ctx) -> None:
    check = ctx.invariants
    if check:
        found = rules(tname)
        if found:
            _check_rules(found, obj, path, ctx)
        if len(obj) == 1 and "id" in obj:
            _check_rules(rules("Element"), obj, path, ctx)
    specs = _SPECS.get(tname) or _specs(tname)
    for key, value in obj.items():
        spec = specs.get(key)
        if spec is None:
            if key[:1] == "_":
                _walk_primitive_extensions(specs.get(key[1:]), value, path, where, ctx)
            continue  # unknown elements are the structural pass's
        t, seg, epath, stem, targets, kind, binding = spec
        if kind == "primitive":
            if check and t != epath:
                own = rules(epath)
                if own:
                    if type(value) is list:
                        for i, item in enumerate(value):
                            _check_rules(own, item, (path, seg, i), ctx)
                    else:
                        _check_rules(own, value, (path, seg), ctx)
            continue
        own = rules(epath) if check and t != epath else ()
        child = (where, stem, epath, t, kind)
        many = type(value) is list
        i = 0
        for item in value if many else (value,):
            at = (path, seg, i) if many else (path, seg)
            i += 1
            if own:
                _check_rules(own, item, at, ctx)
            if type(item) is not dict or not item:
                continue
            if kind == "resource":
                _resource(item, at, ctx, contained=key == "contained")
                continue
            if key == "extension" or key == "modifierExtension":
                _check_extension(item, key == "modifierExtension", where, at, ctx)
            if targets is not None:
                _check_target(item, targets, at, ctx)
            if binding is not None:
                _check_binding(item, t, binding, at, ctx)
            _walk(t, item, at, child, ctx)


def _walk_primitive_extensions(spec: _Spec | None, value: Any, path: _Path, where: _Where, ctx: _Ctx) -> None:
    """A ``_name`` sibling: the extensions of primitive ``name``, in the primitive's context."""
    if spec is None:
        return
    t, seg, epath, stem, _targets, kind, _binding = spec
    child = (where, stem, epath, t, kind)
    if type(value) is list:
        for i, item in enumerate(value):
            if type(item) is dict and item:
                _walk("Element", item, (path, seg, i), child, ctx)
    elif type(value) is dict and value:
        _walk("Element", value, (path, seg), child, ctx)


def _resource(res: dict[str, Any], path: _Path, ctx: _Ctx | None, contained: bool = False,
              bundle: dict[str, dict[str, Any]] | None = None) -> None:
    rtype = res.get("resourceType")
    if not isinstance(rtype, str) or not definitions.is_resource_type(rtype):
        return
    root = ctx.root if contained and ctx is not None else res
    index = bundle if bundle is not None else (ctx.scope[1] if ctx is not None else {})
    if rtype == "Bundle":
        index = references.bundle_index(res)
    out = ctx.out if ctx is not None else []
    inner = _Ctx(res, root, references.contained_scope(root, index), out, ctx.invariants if ctx is not None else True)
    _walk(rtype, res, path, Place(rtype, rtype, rtype, "resource"), inner)


def validate_rules(resource: Any, root: str | None = None, invariants: bool = True) -> list[Issue]:
    """The core-profile issues of ``resource`` beyond the structural ones (see the module docstring),
    located under ``root`` (default: the resource type). Without ``invariants`` only references and
    extensions are checked: no FHIRPath, cheap enough for every profile validation."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return []
    out: list[Issue] = []
    ctx = _Ctx(resource, resource, references.EMPTY, out, invariants)
    try:
        _resource(resource, root or resource["resourceType"], ctx)
    except RecursionError:
        out.append(Issue("error", "structure", "Content is nested too deeply", (str(root or "Resource"),)))
    return out


def validate(resource: Any) -> list[Issue]:
    """Every issue of ``resource`` against its R4 core StructureDefinition: structural, then the rest."""
    out = structure.validate(resource)
    out.extend(validate_rules(resource))
    return out
