"""``fhir-hub profiles check``: lint StructureDefinitions (and the Questionnaires beside them) before they ship.

What :func:`lint` reports, per resource:

* **snapshot vs differential**: every differential element is in the snapshot, with the same
  ``min``, ``max``, ``type``, ``fixed[x]``, ``pattern[x]``, ``binding``, ``slicing`` and
  ``sliceName``, and each of its constraints (by key); snapshot ids are unique, each element's
  parent is there, the first element is the type; a snapshot element is no looser than the
  base's element of the same id (``min`` not lower, ``max`` not higher);
* **broken references**: ``baseDefinition``, type ``profile`` and ``targetProfile`` URLs, and a
  Questionnaire item's ``definition`` (``url#path``: the profile and the element) resolve — to the
  resources linted, the shipped VN Core profiles, R4 Observation (shipped as a base), or R4 itself
  (its resource and datatype names and its Observation profiles);
* **bindings to missing ValueSets**: every binding of a profile's differential, and every snapshot
  binding outside ``hl7.org``, names a ValueSet of the terminology catalogue, of the shipped
  profiles, of the resources linted or an enumerable R4 one (the R4 base's own bindings inherited
  unchanged are not re-checked); a Questionnaire's ``answerValueSet`` too;
* **invariants that do not compile**: every constraint not from R4 compiles with fhirpathpy; and the
  profile compiles into the server's validator plan (:func:`fhir_hub.validation.profile.plan` would
  refuse, e.g., a ``type`` discriminator).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fhir_hub import definitions, profiles, terminology
from fhir_hub.profiles import build

__all__ = ["Finding", "lint"]

R4 = "http://hl7.org/fhir/StructureDefinition/"
#: R4's own Observation profiles (observation-vitalsigns and its children), which a profile may derive from.
R4_PROFILES = frozenset({"vitalsigns", "vitalspanel", "bodyheight", "bodyweight", "bmi", "bodytemp", "heartrate",
                         "resprate", "oxygensat", "bp", "headcircum"})
_COMPARED = ("min", "max", "type", "binding", "slicing", "sliceName")


@dataclass(frozen=True, slots=True)
class Finding:
    severity: str
    resource: str
    where: str
    message: str


def _r4_known(url: str) -> bool:
    if not url.startswith(R4):
        return False
    name = url[len(R4):]
    return name in definitions.type_names() or name in R4_PROFILES


class _Context:
    def __init__(self, resources: list[dict[str, Any]]):
        self.sds = {r["url"]: r for r in resources if r.get("resourceType") == "StructureDefinition" and "url" in r}
        self.value_sets = {r["url"] for r in resources if r.get("resourceType") == "ValueSet" and "url" in r}

    def sd(self, url: str) -> dict[str, Any] | None:
        url = url.split("|", 1)[0]
        return self.sds.get(url) or build.base_definition(url)

    def resolves(self, url: str) -> bool:
        return self.sd(url) is not None or _r4_known(url.split("|", 1)[0])

    def value_set_known(self, url: str) -> bool:
        url = url.split("|", 1)[0]
        return (url in self.value_sets or terminology.value_set(url) is not None or profiles.value_set(url) is not None
                or profiles.r4_codes(url) is not None or definitions.value_set_codes(url) is not None)


def _max(v: Any) -> float:
    return float("inf") if v in (None, "*") else float(v)


def _lint_sd(sd: dict[str, Any], ctx: _Context, out: list[Finding]) -> None:
    url = str(sd.get("url", sd.get("id", "?")))

    def report(where: str, message: str, severity: str = "error") -> None:
        out.append(Finding(severity, url, where, message))

    base_url = sd.get("baseDefinition")
    base = ctx.sd(base_url) if isinstance(base_url, str) else None
    if not isinstance(base_url, str) or not ctx.resolves(base_url):
        report("baseDefinition", f"base {base_url!r} does not resolve")
    snap = (sd.get("snapshot") or {}).get("element") or []
    diff = (sd.get("differential") or {}).get("element") or []
    if not snap:
        report("snapshot", "no snapshot")
        return
    by_id: dict[str, dict[str, Any]] = {}
    for e in snap:
        eid = e.get("id", "")
        if eid in by_id:
            report(eid, "duplicate element id in the snapshot")
        by_id[eid] = e
        parent = eid.rpartition(".")[0]
        if parent and parent not in by_id and parent.rpartition(":")[0] not in by_id:
            report(eid, f"its parent {parent} is not in the snapshot before it")
    if snap[0].get("path") != sd.get("type"):
        report(snap[0].get("id", "?"), f"the snapshot starts with {snap[0].get('path')!r}, not the type {sd.get('type')!r}")
    for d in diff:
        eid = d.get("id", "")
        s = by_id.get(eid)
        if s is None:
            report(eid, "differential element missing from the snapshot")
            continue
        for key, value in d.items():
            if (key in _COMPARED or key.startswith(("fixed", "pattern"))) and s.get(key) != value:
                report(eid, f"snapshot {key} {s.get(key)!r} differs from the differential's {value!r}")
        keys = {c.get("key") for c in s.get("constraint", ())}
        for c in d.get("constraint", ()):
            if c.get("key") not in keys:
                report(eid, f"constraint {c.get('key')} of the differential is not in the snapshot")
        binding = d.get("binding")
        if isinstance(binding, dict) and binding.get("valueSet") and not ctx.value_set_known(binding["valueSet"]):
            report(eid, f"binding to ValueSet {binding['valueSet']} that is not known")
    base_by_id = {e["id"]: e for e in (base or {}).get("snapshot", {}).get("element", ())}
    for e in snap:
        eid = e.get("id", "")
        b = base_by_id.get(eid)
        if b is not None:
            if int(e.get("min", 0)) < int(b.get("min", 0)):
                report(eid, f"min {e.get('min')} is below the base's {b.get('min')}")
            if _max(e.get("max")) > _max(b.get("max")):
                report(eid, f"max {e.get('max')} is above the base's {b.get('max')}")
        for t in e.get("type", ()):
            for ref in (*t.get("profile", ()), *t.get("targetProfile", ())):
                if not ctx.resolves(ref):
                    report(eid, f"type reference {ref} does not resolve")
        binding = e.get("binding")
        vs = binding.get("valueSet") if isinstance(binding, dict) else None
        if isinstance(vs, str) and "hl7.org" not in vs and not ctx.value_set_known(vs):
            report(eid, f"binding to ValueSet {vs} that is not known")
        for c in e.get("constraint", ()):
            source = c.get("source") or ""
            if source.startswith(R4) and _r4_known(source):
                continue
            if c.get("expression"):
                try:
                    _compile(c["expression"])
                except Exception as exc:  # fhirpathpy raises its parser's errors as they come
                    report(eid, f"invariant {c.get('key')} does not compile: {exc}")
    if sd.get("kind") == "resource" and not out:
        from fhir_hub.validation import profile

        try:
            profile._build(sd)
        except (ValueError, KeyError) as exc:
            report(url, f"the validator cannot compile this profile: {exc}")


#: FHIRPath functions (N1 and the FHIR additions of fhirpath.html#functions) an invariant may call, and the
#: operators a "(" may follow.
FUNCTIONS = frozenset("""
empty exists all allTrue anyTrue allFalse anyFalse subsetOf supersetOf count distinct isDistinct where select
repeat ofType single first last tail skip take intersect exclude union combine iif toBoolean convertsToBoolean
toInteger convertsToInteger toDate convertsToDate toDateTime convertsToDateTime toDecimal convertsToDecimal
toQuantity convertsToQuantity toString convertsToString toTime convertsToTime indexOf substring startsWith
endsWith contains upper lower replace matches replaceMatches length toChars children descendants trace now
timeOfDay today not as is abs ceiling exp floor ln log power round sqrt truncate extension hasValue getValue
resolve memberOf conformsTo htmlChecks elementDefinition slice checkModifiers subsumes subsumedBy aggregate
and or xor implies in div mod
""".split())
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")


def _compile(expression: str) -> None:
    """Parse strictly (fhirpathpy's own parse recovers from syntax errors silently) and refuse a call of a
    function FHIRPath does not define. Not evaluated: element-level invariants need their element."""
    from antlr4 import CommonTokenStream, InputStream, Token
    from antlr4.error.ErrorListener import ErrorListener
    from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
    from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

    class _Raise(ErrorListener):  # type: ignore[misc]
        def syntaxError(self, recognizer: Any, symbol: Any, line: int, column: int, msg: str, e: Any) -> None:
            raise ValueError(f"column {column + 1}: {msg}")

    lexer = FHIRPathLexer(InputStream(expression))
    lexer.removeErrorListeners()
    lexer.addErrorListener(_Raise())
    tokens = CommonTokenStream(lexer)
    parser = FHIRPathParser(tokens)
    parser.removeErrorListeners()
    parser.addErrorListener(_Raise())
    parser.expression()
    if tokens.LA(1) != Token.EOF:
        raise ValueError(f"unexpected {tokens.LT(1).text!r} after the expression")
    for name in _CALL.findall(_STRING.sub("''", expression)):
        if name not in FUNCTIONS:
            raise ValueError(f"unknown function {name}()")


def _lint_questionnaire(q: dict[str, Any], ctx: _Context, out: list[Finding]) -> None:
    url = str(q.get("url", q.get("id", "?")))

    def walk(items: list[dict[str, Any]]) -> None:
        for item in items:
            link = str(item.get("linkId"))
            definition = item.get("definition")
            if isinstance(definition, str):
                target, _, path = definition.partition("#")
                sd = ctx.sd(target)
                if sd is None:
                    out.append(Finding("error", url, link, f"definition {definition} names no known profile"))
                elif path and not any(e.get("path") == path for e in sd["snapshot"]["element"]):
                    out.append(Finding("error", url, link, f"definition {definition}: no element {path}"))
            avs = item.get("answerValueSet")
            if isinstance(avs, str) and not ctx.value_set_known(avs):
                out.append(Finding("error", url, link, f"answerValueSet {avs} that is not known"))
            walk(item.get("item") or [])

    walk(q.get("item") or [])


def lint(resources: list[dict[str, Any]]) -> list[Finding]:
    """Findings for the StructureDefinitions and Questionnaires among ``resources`` (others are context)."""
    ctx = _Context(resources)
    out: list[Finding] = []
    for res in resources:
        found: list[Finding] = []
        if res.get("resourceType") == "StructureDefinition":
            _lint_sd(res, ctx, found)
        elif res.get("resourceType") == "Questionnaire":
            _lint_questionnaire(res, ctx, found)
        out.extend(found)
    return out
