"""The terminology operations over HTTP (terminology-service.html), type level, GET and POST.

``CodeSystem/$lookup`` (codesystem-operation-lookup.html), ``CodeSystem/$validate-code``,
``ValueSet/$validate-code``, ``ValueSet/$expand`` (valueset-operation-expand.html) and
``ConceptMap/$translate``, answered from the shipped catalogue by :mod:`fhir_hub.terminology`.

Each operation declares its input parameters as the R4 OperationDefinition does (name, type,
cardinality; a test checks them against the definitions) and this module parses them the same
way from a query string or a ``Parameters`` body: a repeated 0..1 parameter, a value of the wrong
type or a body that is not a Parameters resource is a 400 naming the parameter. Parameters the
definition has but this server does not support (an inline ``valueSet``, ``context``,
``dependency``...) are a 400 too, rather than silently answering another question; unknown
names are ignored, as operations.html allows. An unknown code system, value set or concept
map is a 404 naming it. ``$expand`` answers the ValueSet itself (its one output is ``return``);
the others answer a ``Parameters`` resource.

In a query string a Coding is written ``system|code`` (a CodeableConcept needs a POST).
The work runs on a thread: the first request loads the catalogue (about 6 MB of JSON) and an
expansion of ICD-10 touches 12,000 concepts, neither of which should hold the event loop.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhir_hub.errors import FhirError, error, invalid, not_found
from fhir_hub.rest.wire import (
    CONTENT_TYPE_HEADER,
    Request,
    Response,
    dumps,
    parse_json,
    pretty,
    require_json_body,
)
from fhir_hub.search.dates import instant
from fhir_hub.terminology import catalogue, operations
from fhir_hub.terminology.operations import UnknownSystem, UnsupportedCompose

#: Resource types that have terminology operations here.
TYPES = frozenset({"CodeSystem", "ValueSet", "ConceptMap"})

_DEFINITION = "http://hl7.org/fhir/OperationDefinition/"

#: Value kinds of input parameters: the FHIR types each stands for.
_KINDS: dict[str, tuple[str, ...]] = {
    "string": ("code", "uri", "string", "canonical"),
    "integer": ("integer",),
    "boolean": ("boolean",),
    "Coding": ("Coding",),
    "CodeableConcept": ("CodeableConcept",),
}


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation: where it is defined, its supported inputs (name -> (kind, repeats)), the
    defined inputs it refuses, and the function that answers it."""

    rtype: str
    name: str
    inputs: dict[str, tuple[str, bool]]
    refused: tuple[str, ...]
    answer: Callable[[Args], dict[str, Any]]

    @property
    def definition(self) -> str:
        return f"{_DEFINITION}{self.rtype}-{self.name}"


@dataclass(slots=True)
class Args:
    """The parsed input parameters of one call: name -> values (str, int, bool or a dict)."""

    op: str
    values: dict[str, list[Any]] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        found = self.values.get(name)
        return found[0] if found else None

    def all(self, name: str) -> list[Any]:
        return self.values.get(name, [])


# ---- parameters --------------------------------------------------------------------------------


def _bad(op: str, name: str, text: str) -> FhirError:
    return invalid(f"${op}: {text}", name)


def _coding(op: str, name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(value.get(k, ""), str)
                                              for k in ("system", "version", "code", "display")):
        raise _bad(op, name, f"parameter {name!r} must be a Coding (system, version, code, display strings)")
    if not value.get("code"):
        raise _bad(op, name, f"the Coding in parameter {name!r} has no code")
    return value


def _codeable_concept(op: str, name: str, value: Any) -> dict[str, Any]:
    codings = value.get("coding") if isinstance(value, dict) else None
    if not isinstance(codings, list) or not codings:
        raise _bad(op, name, f"parameter {name!r} must be a CodeableConcept with at least one coding")
    return {"coding": [_coding(op, name, c) for c in codings]}


def _from_query(op: str, name: str, kind: str, raw: str) -> Any:
    if kind == "string":
        return raw
    if kind == "integer":
        if not raw.isdigit():
            raise _bad(op, name, f"parameter {name!r} must be a non-negative integer, not {raw!r}")
        return int(raw)
    if kind == "boolean":
        if raw not in ("true", "false"):
            raise _bad(op, name, f"parameter {name!r} must be true or false, not {raw!r}")
        return raw == "true"
    if kind == "Coding":
        system, bar, code = raw.rpartition("|")
        if not bar or not code:
            raise _bad(op, name, f"parameter {name!r} in a query string is written system|code, not {raw!r}")
        return {"system": system, "code": code} if system else {"code": code}
    raise _bad(op, name, f"parameter {name!r} ({kind}) can only be sent in a POST Parameters body")


def _from_body(op: str, name: str, kind: str, param: dict[str, Any]) -> Any:
    keys = [k for k in param if k.startswith("value")]
    if len(keys) != 1 or "part" in param or "resource" in param:
        raise _bad(op, name, f"parameter {name!r} must have exactly one value[x] (a {kind})")
    value = param[keys[0]]
    if kind == "string":
        if not isinstance(value, str):
            raise _bad(op, name, f"parameter {name!r} must be a {'/'.join(_KINDS[kind])}")
        return value
    if kind == "integer":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _bad(op, name, f"parameter {name!r} must be a non-negative valueInteger")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _bad(op, name, f"parameter {name!r} must be a valueBoolean")
        return value
    if kind == "Coding":
        return _coding(op, name, value)
    return _codeable_concept(op, name, value)


def _body_parameters(req: Request, op: str) -> list[tuple[str, dict[str, Any]]]:
    if not req.body.strip():
        return []
    require_json_body(req)
    body = parse_json(req.body, f"${op} Parameters body")
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise invalid(f"${op}: the body must be a Parameters resource", "Parameters")
    params = body.get("parameter", [])
    if not isinstance(params, list):
        raise invalid(f"${op}: Parameters.parameter must be a list", "Parameters.parameter")
    out = []
    for i, p in enumerate(params):
        if not isinstance(p, dict) or not isinstance(p.get("name"), str):
            raise invalid(f"${op}: Parameters.parameter[{i}] has no name", f"Parameters.parameter[{i}]")
        out.append((p["name"], p))
    return out


def parse(req: Request, spec: Operation) -> Args:
    """The call's parameters: those of a POST body, then those of the query string (``_format``,
    ``_pretty`` and the like left out)."""
    args = Args(spec.name)
    given: list[tuple[str, Any, bool]] = [(n, p, True) for n, p in _body_parameters(req, spec.name)] if \
        req.method == "POST" else []
    given += [(n, raw, False) for n, raw in req.query if not n.startswith("_")]
    for name, value, in_body in given:
        if name in spec.refused:
            raise FhirError(400, error("not-supported", f"${spec.name}: parameter {name!r} is not supported by "
                                       "this server", name))
        if name not in spec.inputs:
            continue
        kind, repeats = spec.inputs[name]
        if not repeats and name in args.values:
            raise _bad(spec.name, name, f"parameter {name!r} may appear at most once")
        parsed = _from_body(spec.name, name, kind, value) if in_body else _from_query(spec.name, name, kind, value)
        args.values.setdefault(name, []).append(parsed)
    return args


def _required(args: Args, name: str, why: str) -> Any:
    value = args.get(name)
    if value is None or value == "":
        raise _bad(args.op, name, f"parameter {name!r} is required{why}")
    return value


def _param(name: str, kind: str, value: Any) -> dict[str, Any]:
    return {"name": name, f"value{kind}": value}


def _parameters(*params: dict[str, Any] | None) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [p for p in params if p is not None]}


def _unknown_system(url: str) -> FhirError:
    return not_found(f"code system {url} is not known to this server")


# ---- the operations ----------------------------------------------------------------------------


def _code_and_system(args: Args, system_param: str) -> tuple[str, str | None, str | None, str | None]:
    """``(code, system, version, display)`` from ``coding`` or from the separate parameters."""
    coding = args.get("coding")
    if coding is not None:
        return (coding["code"], coding.get("system") or args.get(system_param), coding.get("version"),
                coding.get("display"))
    code = _required(args, "code", " (or coding)")
    return code, args.get(system_param), args.get("version"), args.get("display")


def _versioned(system: str, version: str | None) -> str:
    return f"{system}|{version}" if version else system


def lookup(args: Args) -> dict[str, Any]:
    code, system, version, _ = _code_and_system(args, "system")
    if not system:
        raise _bad("lookup", "system", "parameter 'system' is required with code")
    try:
        found = operations.lookup_details(_versioned(system, version), code, args.get("displayLanguage"))
    except UnknownSystem:
        raise _unknown_system(_versioned(system, version)) from None
    if found is None:
        raise not_found(f"code {code!r} is not in {system}")
    wanted = set(args.all("property"))
    out = [_param("name", "String", found.name), _param("version", "String", found.version) if found.version
           else None, _param("display", "String", found.display)]
    if not wanted or "designation" in wanted:
        out += [{"name": "designation", "part": [_param("language", "Code", lang), _param("value", "String", value)]}
                for lang, value in found.designations]
    out += [{"name": "property", "part": [_param("code", "Code", prop), _param("value", kind.capitalize(), value)]}
            for prop, kind, value in found.properties if not wanted or prop in wanted]
    return _parameters(*out)


def _result(ok: bool, message: str, display: str | None) -> dict[str, Any]:
    return _parameters(_param("result", "Boolean", ok), _param("message", "String", message),
                       _param("display", "String", display) if display else None)


def _codings(args: Args, system_param: str) -> list[tuple[str, str | None, str | None]]:
    """``(code, system, display)`` of every coding to test: the CodeableConcept's, the Coding, or
    the code (with system and display)."""
    concept = args.get("codeableConcept")
    if concept is not None:
        return [(c["code"], c.get("system"), c.get("display")) for c in concept["coding"]]
    code, system, version, display = _code_and_system(args, system_param)
    return [(code, _versioned(system, version) if system else None, display)]


def _first_valid(checks: list[tuple[bool, str, str | None]]) -> dict[str, Any]:
    for ok, message, display in checks:
        if ok:
            return _result(True, message, display)
    return _result(False, "; ".join(m for _, m, _ in checks), next((d for _, _, d in checks if d), None))


def codesystem_validate_code(args: Args) -> dict[str, Any]:
    url = args.get("url")
    codings = _codings(args, "url")
    url = url or next((s for _, s, _ in codings if s), None)
    if not url:
        raise _bad("validate-code", "url", "parameter 'url' (the code system) is required")
    version = args.get("version")
    try:
        cs = operations.loaded_system(_versioned(url, version))
    except UnknownSystem:
        raise _unknown_system(_versioned(url, version)) from None
    checks: list[tuple[bool, str, str | None]] = []
    for code, system, display in codings:
        if system and system.split("|", 1)[0] != cs.url:
            checks.append((False, f"coding {system}|{code} is not of {cs.url}", None))
            continue
        ok, message = operations.validate_code(cs.url, code, display)
        shown = cs.concepts[code].get("display") if code in cs.concepts else None
        checks.append((ok, message, shown))
    return _first_valid(checks)


def _value_set(url: str) -> dict[str, Any]:
    vs = catalogue.value_set(url)
    if vs is None:
        raise not_found(f"value set {url} is not known to this server")
    return vs


def _compose_errors(exc: Exception) -> FhirError:
    if isinstance(exc, UnknownSystem):
        return _unknown_system(str(exc.args[0]))
    return FhirError(422, error("not-supported", str(exc)))


def valueset_validate_code(args: Args) -> dict[str, Any]:
    vs = _value_set(_required(args, "url", " (the value set)"))
    codings = _codings(args, "system")
    try:
        return _first_valid([operations.validate_in_valueset(vs, code, system, display)
                             for code, system, display in codings])
    except (UnknownSystem, UnsupportedCompose) as exc:
        raise _compose_errors(exc) from None


def expand(args: Args) -> dict[str, Any]:
    url = _required(args, "url", " (the value set)")
    vs = _value_set(url)
    text, count, offset = args.get("filter"), args.get("count"), args.get("offset") or 0
    language = args.get("displayLanguage")
    try:
        found = operations.expand(vs, text, count, offset, language)
    except (UnknownSystem, UnsupportedCompose) as exc:
        raise _compose_errors(exc) from None
    used: list[dict[str, Any]] = [_param("used-codesystem", "Uri", s) for s in found.used_systems]
    for name, kind, value in (("filter", "String", text), ("count", "Integer", count),
                              ("offset", "Integer", args.get("offset")), ("displayLanguage", "Code", language)):
        if value is not None:
            used.append(_param(name, kind, value))
    contains = []
    for e in found.contains:
        entry = {"system": e.system, "code": e.code, "display": e.display}
        if e.version:
            entry["version"] = e.version
        contains.append(entry)
    expansion: dict[str, Any] = {"identifier": f"urn:uuid:{uuid.uuid4()}", "timestamp": instant(time.time_ns() // 1000),
                                 "total": found.total, "offset": found.offset, "parameter": used}
    if contains:
        expansion["contains"] = contains
    return {"resourceType": "ValueSet", **{k: v for k, v in vs.items() if k != "compose"}, "expansion": expansion}


def translate(args: Args) -> dict[str, Any]:
    url = args.get("url")
    codings = _codings(args, "system")
    if not url and not any(system for _, system, _ in codings):
        raise _bad("translate", "system", "parameter 'system' is required when no ConceptMap url is given")
    reverse = bool(args.get("reverse"))
    target_system = args.get("targetsystem")
    matches: list[operations.Match] = []
    for code, system, _ in codings:
        try:
            matches += operations.translate(code, url, system, target_system, reverse=reverse,
                                            source_scope=args.get("source"), target_scope=args.get("target"))
        except UnknownSystem:
            where = url or f"from {system or 'any system'} to {target_system or 'any system'}"
            raise not_found(f"no ConceptMap {where} is known to this server") from None
    ok = any(m.equivalence not in ("unmatched", "disjoint") for m in matches)
    shown = ", ".join(f"{s or ''}|{c}" for c, s, _ in codings)
    message = (f"{len(matches)} match(es) for {shown}" if matches else f"no mapping for {shown}")
    out = [_param("result", "Boolean", ok), _param("message", "String", message)]
    for m in matches:
        concept = {"system": m.system, "code": m.code}
        if m.display:
            concept["display"] = m.display
        out.append({"name": "match", "part": [_param("equivalence", "Code", m.equivalence),
                                              _param("concept", "Coding", concept),
                                              _param("source", "Uri", m.source)]})
    return _parameters(*out)


_S, _I, _B, _C, _CC = "string", "integer", "boolean", "Coding", "CodeableConcept"

OPERATIONS: dict[tuple[str, str], Operation] = {(op.rtype, op.name): op for op in (
    Operation("CodeSystem", "lookup",
              {"code": (_S, False), "system": (_S, False), "version": (_S, False), "coding": (_C, False),
               "displayLanguage": (_S, False), "property": (_S, True)},
              ("date",), lookup),
    Operation("CodeSystem", "validate-code",
              {"url": (_S, False), "code": (_S, False), "version": (_S, False), "display": (_S, False),
               "coding": (_C, False), "codeableConcept": (_CC, False)},
              ("codeSystem", "date", "abstract"), codesystem_validate_code),
    Operation("ValueSet", "validate-code",
              {"url": (_S, False), "code": (_S, False), "system": (_S, False), "display": (_S, False),
               "coding": (_C, False), "codeableConcept": (_CC, False)},
              ("context", "valueSet", "valueSetVersion", "systemVersion", "date", "abstract"),
              valueset_validate_code),
    Operation("ValueSet", "expand",
              {"url": (_S, False), "filter": (_S, False), "count": (_I, False), "offset": (_I, False),
               "displayLanguage": (_S, False)},
              ("valueSet", "valueSetVersion", "context", "contextDirection", "date", "exclude-system",
               "system-version", "check-system-version", "force-system-version"), expand),
    Operation("ConceptMap", "translate",
              {"url": (_S, False), "code": (_S, False), "system": (_S, False), "version": (_S, False),
               "coding": (_C, False), "codeableConcept": (_CC, False), "source": (_S, False),
               "target": (_S, False), "targetsystem": (_S, False), "reverse": (_B, False)},
              ("conceptMap", "conceptMapVersion", "dependency"), translate),
)}

#: The CapabilityStatement's ``rest.resource.operation`` entries, per type.
CAPABILITY_OPERATIONS: dict[str, list[dict[str, str]]] = {}
for _op in OPERATIONS.values():
    CAPABILITY_OPERATIONS.setdefault(_op.rtype, []).append({"name": _op.name, "definition": _op.definition})


#: R4 defines ``$lookup`` on CodeSystem only, yet R4's own transaction example
#: (``Bundle-bundle-transaction``) posts to ``ValueSet/$lookup``: that path answers as
#: ``CodeSystem/$lookup`` (README, deviations). It is not listed in the CapabilityStatement.
_ALIASES = {("ValueSet", "lookup"): ("CodeSystem", "lookup")}


def operation(rtype: str, segment: str) -> Operation:
    """The operation ``[rtype]/$[name]``, or a 404 naming what this server has."""
    key = (rtype, segment[1:])
    spec = OPERATIONS.get(_ALIASES.get(key, key))
    if spec is None:
        raise not_found(f"no operation {segment} on {rtype} (this server has "
                        f"{', '.join('$' + n for t, n in OPERATIONS if t == rtype)})")
    return spec


def invoke(req: Request, rtype: str, segment: str) -> dict[str, Any]:
    """Run an operation where blocking is fine (inside a bundle, on the writer)."""
    spec = operation(rtype, segment)
    return spec.answer(parse(req, spec))


async def handle(hub: Any, req: Request, rtype: str, segment: str) -> Response:
    """``GET`` or ``POST [base]/[rtype]/$[operation]``."""
    spec = operation(rtype, segment)
    args = parse(req, spec)
    answer = await asyncio.to_thread(spec.answer, args)
    return Response(200, dumps(answer, pretty(req)), [CONTENT_TYPE_HEADER])
