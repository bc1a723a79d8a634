"""Validation against StructureDefinition snapshots (the VN Core profiles), compiled once per profile.

Why compiled: validation of claimed profiles runs on the write path and over whole files in the
stewards' CLI, so a resource must cost tens of microseconds, not the milliseconds of walking a
snapshot. :func:`plan` turns a snapshot into a tree of :class:`_Node` holding only the elements
whose definition says more than the R4 base (a tighter cardinality, a fixed or pattern value, a
binding that can be checked, narrower types or reference targets, a type profile, slicing, an
invariant the base does not have) plus the path down to them; everything else is the structural
validator's job (:mod:`fhir_hub.validation.structure`), which :func:`validate_resource` runs first.

What a plan checks, on an orjson-parsed dict:

* cardinality (``min``/``max``) of elements, of slices (items matched) and of a choice group;
* ``fixed[x]`` (equal) and ``pattern[x]`` (contains: every property of the pattern is there, every
  item of a pattern array matches some item);
* choice types narrowed by the profile (``effective[x]`` only dateTime or Period);
* slicing (of repeating elements, and of the one value of a choice element), with ``value``/``pattern`` discriminators on a path (``system``,
  ``url``, ``coding.system``): the slice's value comes from the fixed/pattern of the element at that
  path, the slice's own pattern, or for an extension slice the extension's URL; ``exists`` (the
  element at the path is required, or prohibited, in the slice); ``type`` (a resource's
  ``resourceType``, a choice element's type: ``value`` finds ``valueQuantity``, and ``$this`` on a sliced
  ``value[x]`` is the type its JSON key names); ``profile`` (the value
  at the path meets one of the slice's type profiles, known to this server); items that match no slice
  are fine unless the slicing is ``closed``;
* bindings, ``required`` (error) and ``extensible`` (warning when no coding is in the ValueSet and
  one uses a system the ValueSet draws on; other systems are what "extensible" allows), on code,
  Coding, CodeableConcept and Quantity, against the VN ValueSets of :mod:`fhir_hub.terminology`, the
  ValueSets the profiles add, and the enumerable R4 ValueSets shipped with the profiles; a display
  that is not the code's is a warning; a ValueSet that is none of these is not checked;
* type profiles (an extension slice is checked against the extension's plan, ``Patient.address``
  against VN Core Address) and reference target profiles: a literal ``Type/id`` of a type no
  ``targetProfile`` is for, and a target that resolves (contained, or an entry of the Bundle being
  validated, :data:`BUNDLE`) of another type or not meeting the target profile of its type;
* invariants the profile adds (``constraint`` with a non-R4 ``source``): the ones shipped have a
  native implementation in :data:`_NATIVE` (tested against fhirpathpy on the same expressions);
  any other is evaluated by fhirpathpy, compiled once.

Not checked here: R4's own invariants, reference types and extension contexts (:mod:`.core` has them;
:func:`validate_resource` runs its extension and reference checks), ``mustSupport``, ``ordered``
slicing, targets that do not travel with the reference.

Every issue is a :class:`ProfileIssue`: severity, issue-type code, the FHIRPath location (indexed,
``Patient.identifier[1].value``) and a message in English and Vietnamese; ``to_json`` writes the one
asked for as ``diagnostics`` and the other as its standard ``translation`` extension.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from fhir_hub import definitions, profiles
from fhir_hub.errors import Issue
from fhir_hub.validation import codes, references, structure

__all__ = ["ProfileIssue", "UnknownProfile", "outcome", "plan", "validate", "validate_resource"]

TRANSLATION = "http://hl7.org/fhir/StructureDefinition/translation"
_R4_SD = "http://hl7.org/fhir/StructureDefinition/"
_BIG = 1 << 30


class UnknownProfile(LookupError):
    """No shipped StructureDefinition has this URL."""


@dataclass(frozen=True, slots=True)
class ProfileIssue(Issue):
    """An OperationOutcome issue with its message in Vietnamese too (``diagnostics`` is English)."""

    vi: str = ""

    def to_json(self, lang: str = "en") -> dict[str, Any]:
        out = Issue.to_json(self)
        if self.vi:
            first, other, other_lang = ((self.vi, self.diagnostics, "en") if lang == "vi"
                                        else (self.diagnostics, self.vi, "vi"))
            out["diagnostics"] = first
            out["_diagnostics"] = {"extension": [{"url": TRANSLATION, "extension": [
                {"url": "lang", "valueCode": other_lang}, {"url": "content", "valueString": other}]}]}
        return out


def outcome(issues: list[Issue], lang: str = "en") -> dict[str, Any]:
    """The OperationOutcome of a validation, messages in ``lang`` first (one ``information`` issue when
    clean): what ``$validate`` answers and the CLI prints, without importing the REST layer."""
    if not issues:
        issues = [ProfileIssue("information", "informational", "No issues found", (), "Không có lỗi nào")]
    return {"resourceType": "OperationOutcome",
            "issue": [i.to_json(lang) if isinstance(i, ProfileIssue) else i.to_json() for i in issues]}


# --------------------------------------------------------------------------- messages

_MESSAGES: dict[str, tuple[str, str]] = {
    "min": ("{what} has {n} item(s); the profile requires at least {min}",
            "{what} có {n} mục; hồ sơ yêu cầu ít nhất {min}"),
    "max": ("{what} has {n} item(s); the profile allows at most {max}",
            "{what} có {n} mục; hồ sơ cho phép tối đa {max}"),
    "fixed": ("Value must be exactly {value}", "Giá trị phải đúng là {value}"),
    "pattern": ("Value must match {value}", "Giá trị phải khớp với {value}"),
    "type": ("Type {found} is not allowed here; allowed: {allowed}",
             "Kiểu {found} không được phép ở đây; được phép: {allowed}"),
    "closed": ("Item matches none of the slices of {what}, and the slicing is closed",
               "Mục không khớp với lát cắt nào của {what}, và việc phân lát là đóng"),
    "required-binding": ("No code from the required value set {vs}: {codes}",
                         "Không có mã nào thuộc tập giá trị bắt buộc {vs}: {codes}"),
    "extensible-binding": ("No code from the value set {vs} (extensible): {codes}",
                           "Không có mã nào thuộc tập giá trị {vs} (mở rộng được): {codes}"),
    "text-only": ("Only text, no code, for the required value set {vs}",
                  "Chỉ có văn bản, không có mã, cho tập giá trị bắt buộc {vs}"),
    "display": ("Display {display!r} is not the display of {concept} ({expected!r})",
                "Tên hiển thị {display!r} không phải của mã {concept} ({expected!r})"),
    "target-profile": ("The referenced {found} does not conform to {profiles}",
                       "{found} được tham chiếu không tuân theo {profiles}"),
    "target": ("Reference to {found} is not allowed here; allowed: {allowed}",
               "Tham chiếu tới {found} không được phép ở đây; được phép: {allowed}"),
    "invariant": ("Constraint {key} failed: {human}", "Ràng buộc {key} không thỏa: {human}"),
    "invariant-error": ("Constraint {key} could not be evaluated: {error}",
                        "Không đánh giá được ràng buộc {key}: {error}"),
    "resource-type": ("Profile {profile} is for {expected}, not {found}",
                      "Hồ sơ {profile} dành cho {expected}, không phải {found}"),
    "unknown-profile": ("Profile {profile} is not known to this server; not checked",
                        "Máy chủ không biết hồ sơ {profile}; không kiểm tra"),
}

#: Vietnamese text of the shipped invariants (their English ``human`` is in the StructureDefinition).
_INVARIANTS_VI: dict[str, str] = {
    "vn-pat-1": "Năm sinh trong số định danh cá nhân (chữ số thứ 4 chỉ thế kỷ, chữ số 5-6 chỉ năm) khớp với ngày sinh",
    "vn-pat-2": "Giới tính trong số định danh cá nhân (chữ số thứ 4: chẵn là nam, lẻ là nữ) khớp với giới tính",
    "vn-pat-3": "Số định danh cá nhân bắt đầu bằng mã tỉnh nơi đăng ký khai sinh (001-096, danh mục trước 2025), "
                "trừ khi khai sinh ở nước ngoài (mã quốc gia)",
    "vn-id-cccd": "Số định danh cá nhân (CCCD) gồm 12 chữ số",
    "vn-id-cmnd": "Số chứng minh nhân dân gồm 9 chữ số (12 chữ số với thẻ cấp 2012-2016)",
    "vn-id-bhxh": "Mã số BHXH gồm 10 chữ số",
    "vn-id-bhyt": "Mã thẻ BHYT gồm 15 ký tự: mã đối tượng (2 chữ cái), mức hưởng (1-5), mã tỉnh (2 chữ số) "
                  "và mã số BHXH 10 chữ số",
    "vn-id-cskcb": "Mã cơ sở khám, chữa bệnh gồm 5 ký tự",
    "vn-addr-1": "Mã tỉnh và mã xã của một địa chỉ thuộc cùng một danh mục (trước 2025 hoặc 2025)",
    "vn-vs-1": "Dấu hiệu sinh tồn có mã LOINC đã biết phải có đơn vị UCUM phù hợp (cân nặng kg, chiều cao cm, "
               "nhiệt độ Cel, mạch và nhịp thở /min, SpO2 %, BMI kg/m2, huyết áp mm[Hg])",
    "vn-lab-1": "Kết quả xét nghiệm được mã hóa bằng LOINC hoặc mã chỉ số (MA_CHI_SO)",
    "vn-lab-2": "Kết quả dạng số lượng có mã đơn vị UCUM",
    "vn-bhyt-1": "Mã đối tượng (hai chữ cái đầu của thẻ) thuộc danh mục đối tượng BHYT",
    "vn-bhyt-2": "Mã thẻ BHYT gồm 15 ký tự",
    "vs-1": "Thời điểm đo có ít nhất ngày, tháng, năm",
    "vs-2": "Không có thành phần hoặc thành viên thì phải có giá trị hoặc lý do thiếu dữ liệu",
    "vs-3": "Mỗi thành phần có giá trị hoặc lý do thiếu dữ liệu",
}


def _issue(out: list[Issue], severity: str, code: str, path: Any, message: str, **args: Any) -> None:
    en, vi = _MESSAGES[message]
    out.append(ProfileIssue(severity, code, en.format(**args), (_render(path),), vi.format(**args)))


def _render(path: Any) -> str:
    parts: list[str] = []
    while type(path) is tuple:
        parts.append(f".{path[1]}[{path[2]}]" if len(path) == 3 else "." + path[1])
        path = path[0]
    parts.append(path)
    parts.reverse()
    return "".join(parts)


def _show(value: Any) -> str:
    import orjson

    text = orjson.dumps(value).decode() if not isinstance(value, str) else repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


# --------------------------------------------------------------------------- value helpers


def _matches_pattern(value: Any, pattern: Any) -> bool:
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        return all(k in value and _matches_pattern(value[k], p) for k, p in pattern.items())
    if isinstance(pattern, list):
        items = value if isinstance(value, list) else [value]
        return all(any(_matches_pattern(v, p) for v in items) for p in pattern)
    return bool(value == pattern)


def _pattern_test(pattern: Any) -> Callable[[Any], bool]:
    """:func:`_matches_pattern` against this one ``pattern``, compiled: the pattern's structure is
    walked once here, not for every value (identifier types, codings: a check on most resources)."""
    if isinstance(pattern, dict):
        parts = tuple((k, _pattern_test(p)) for k, p in pattern.items())

        def holds_dict(value: Any) -> bool:
            if not isinstance(value, dict):
                return False
            for k, test in parts:
                if k not in value or not test(value[k]):
                    return False
            return True

        return holds_dict
    if isinstance(pattern, list):
        tests = tuple(_pattern_test(p) for p in pattern)

        def holds_list(value: Any) -> bool:
            items = value if isinstance(value, list) else [value]
            return all(any(test(v) for v in items) for test in tests)

        return holds_list

    def holds(value: Any) -> bool:
        return bool(value == pattern)

    return holds


def _values(obj: Any, steps: tuple[str, ...]) -> list[Any]:
    """The values at a dotted path (lists flattened), as FHIRPath would navigate them."""
    current = [obj]
    for step in steps:
        nxt: list[Any] = []
        for item in current:
            if isinstance(item, dict) and step in item:
                v = item[step]
                nxt.extend(v if isinstance(v, list) else [v])
        current = nxt
    return current


# --------------------------------------------------------------------------- bindings


@lru_cache(maxsize=65536)
def _vn_member(vs_url: str, system: str | None, code: str) -> tuple[bool, str | None]:
    """Is (system, code) in the VN ValueSet ``vs_url``; the code's display when it is in the list."""
    bound = codes.value_set(vs_url)
    if bound is not None and bound.members is not None:
        return bound.member(system, code)
    from fhir_hub import terminology

    vs = terminology.value_set(vs_url) or profiles.value_set(vs_url)
    if vs is None:
        return False, None
    try:
        ok, _message, display = terminology.validate_in_valueset(vs, code, system)
    except (terminology.UnknownSystem, terminology.UnsupportedCompose):
        return False, None
    return ok, display


@lru_cache(maxsize=65536)
def _display_ok(vs_url: str, system: str, code: str, display: str) -> bool:
    """Is ``display`` a display of the code (a member of ``vs_url``)."""
    bound = codes.value_set(vs_url)
    if bound is not None and bound.members is not None:
        return bound.display_ok(system, code, display)
    from fhir_hub import terminology

    return terminology.validate_code(system, code, display)[0]


@cache
def _vs_systems(vs_url: str) -> frozenset[str]:
    bound = codes.value_set(vs_url)
    if bound is not None:
        return bound.systems
    from fhir_hub import terminology

    vs = terminology.value_set(vs_url) or profiles.value_set(vs_url)
    if vs is not None:
        return frozenset(i["system"] for i in vs.get("compose", {}).get("include", []) if "system" in i)
    found = profiles.r4_codes(vs_url)
    return frozenset(found or ())


def forget_codes() -> None:
    """Drop what was looked up in the code lists (an ``--ig`` package was loaded or unloaded)."""
    _vn_member.cache_clear()
    _display_ok.cache_clear()
    _vs_systems.cache_clear()
    _cccd_prefixes.cache_clear()


def _vn_value_set(vs_url: str) -> bool:
    """Is ``vs_url`` a ValueSet of the VN lists (or one the profiles add)."""
    if codes.value_set(vs_url) is not None:
        return True
    from fhir_hub import terminology

    return (terminology.value_set(vs_url) or profiles.value_set(vs_url)) is not None


def _binding_checker(vs_url: str, strength: str, type_code: str) -> Callable[[Any, Any, list[Issue]], None] | None:
    """A check of one bound value, or ``None`` when the value set cannot be checked here."""
    r4 = profiles.r4_codes(vs_url)
    if r4 is None and not _vn_value_set(vs_url):
        return None
    r4_sets = {s: frozenset(c) for s, c in (r4 or {}).items()}
    all_codes = frozenset(c for cs in r4_sets.values() for c in cs)
    severity = "error" if strength == "required" else "warning"
    systems = _vs_systems(vs_url)

    def member(system: str | None, code: str) -> tuple[bool, str | None]:
        if r4 is not None:
            if system is None:
                return code in all_codes, None
            return code in r4_sets.get(system, ()), None
        return _vn_member(vs_url, system, code)

    def codings(value: Any) -> list[dict[str, Any]]:
        if type_code == "CodeableConcept":
            return [c for c in value.get("coding", ()) if isinstance(c, dict)] if isinstance(value, dict) else []
        return [value] if isinstance(value, dict) else []

    def check(value: Any, path: Any, out: list[Issue]) -> None:
        if type_code == "code":
            if isinstance(value, str) and not member(None, value)[0] and strength == "required":
                _issue(out, severity, "code-invalid", path, "required-binding", vs=vs_url, codes=repr(value))
            return
        if type_code == "Quantity":
            if isinstance(value, dict) and "code" in value:
                if not member(value.get("system"), str(value["code"]))[0]:
                    _issue(out, severity, "code-invalid", path, f"{strength}-binding", vs=vs_url,
                           codes=f"{value.get('system')}|{value['code']}")
            return
        found = codings(value)
        coded = [c for c in found if "code" in c]
        if not coded:
            if strength == "required" and not found and isinstance(value, dict) and value.get("text"):
                _issue(out, "error", "code-invalid", path, "text-only", vs=vs_url)
            return
        hit = False
        for c in coded:
            ok, display = member(c.get("system"), str(c["code"]))
            if ok:
                hit = True
                shown = c.get("display")
                if display and isinstance(shown, str) and not _display_ok(vs_url, c.get("system", ""), str(c["code"]),
                                                                          shown):
                    _issue(out, "warning", "code-invalid", path, "display", display=shown, concept=c["code"],
                           expected=display)
        if hit:
            return
        if strength == "extensible" and not any(c.get("system") in systems for c in coded):
            return  # a code of another system: what an extensible binding allows
        codes = ", ".join(f"{c.get('system')}|{c['code']}" for c in coded)
        _issue(out, severity, "code-invalid", path, f"{strength}-binding", vs=vs_url, codes=codes)

    return check


# --------------------------------------------------------------------------- native invariants
#
# Each takes (the item the constraint is on, the resource) and answers whether it holds. The
# expressions they stand for are in the StructureDefinitions; tests/validation compares each with
# fhirpathpy on the same inputs.

_NATIONAL_ID = "http://fhir.ehealth.gov.vn/core/sid/national_id"
_TWELVE = re.compile(r"[0-9]{12}").fullmatch


def _national_ids(res: dict[str, Any]) -> list[str]:
    return [i["value"] for i in res.get("identifier", ()) if isinstance(i, dict) and i.get("system") == _NATIONAL_ID
            and isinstance(i.get("value"), str) and _TWELVE(i["value"])]


def _cccd_year(item: Any, res: dict[str, Any]) -> bool:
    born = item.get("birthDate")
    if not isinstance(born, str):
        return True
    return all(str(1900 + (int(v[3]) // 2) * 100 + int(v[4:6])) == born[:4] for v in _national_ids(item))


def _cccd_sex(item: Any, res: dict[str, Any]) -> bool:
    gender = item.get("gender")
    if gender not in ("male", "female"):
        return True
    return all((int(v[3]) % 2 == 0) == (gender == "male") for v in _national_ids(item))


_PROVINCES_PRE2025 = "http://fhir.ehealth.gov.vn/core/CodeSystem/vn-province-pre2025"
_BHYT_OBJECTS = "http://fhir.ehealth.gov.vn/core/CodeSystem/vn-bhyt-object-code"


def _code_list(url: str) -> frozenset[str] | None:
    """The codes of a VN CodeSystem (precompiled, else from the catalogue), ``None`` when not loaded."""
    found = codes.code_list(url)
    if found is not None:
        return found
    from fhir_hub import terminology

    cs = terminology.code_system(url)
    return frozenset(cs.concepts) if cs is not None else None


@cache
def _cccd_prefixes() -> frozenset[str]:
    return frozenset("0" + code for code in (_code_list(_PROVINCES_PRE2025) or ()))


def _cccd_prefix(item: Any, res: dict[str, Any]) -> bool:
    prefixes = _cccd_prefixes()
    return all(v[:3] in prefixes for v in _national_ids(item))


_UCUM = "http://unitsofmeasure.org"
_LOINC = "http://loinc.org"
_VITAL_UNITS: dict[str, frozenset[str]] = {
    "29463-7": frozenset({"kg", "g", "[lb_av]"}), "8302-2": frozenset({"cm", "[in_i]"}),
    "8310-5": frozenset({"Cel", "[degF]"}), "8867-4": frozenset({"/min"}), "9279-1": frozenset({"/min"}),
    "2708-6": frozenset({"%"}), "59408-5": frozenset({"%"}), "39156-5": frozenset({"kg/m2"}),
    "9843-4": frozenset({"cm", "[in_i]"}), "8480-6": frozenset({"mm[Hg]"}), "8462-4": frozenset({"mm[Hg]"}),
}


def _vital_units(item: Any, res: dict[str, Any]) -> bool:
    code = item.get("code")
    q = item.get("valueQuantity")
    if not isinstance(code, dict) or not isinstance(q, dict):
        return True
    for c in code.get("coding", ()):
        if isinstance(c, dict) and c.get("system") == _LOINC:
            units = _VITAL_UNITS.get(c.get("code"))  # type: ignore[arg-type]
            if units is not None and not (q.get("system") == _UCUM and q.get("code") in units):
                return False
    return True


def _lab_coded(item: Any, res: dict[str, Any]) -> bool:
    code = item.get("code")
    return isinstance(code, dict) and any(isinstance(c, dict) and c.get("system") in (_LOINC, _LAB_INDEX)
                                          for c in code.get("coding", ()))


_LAB_INDEX = "urn:fhir-hub:vn-dmdc:chi-so"


def _lab_ucum(item: Any, res: dict[str, Any]) -> bool:
    q = item.get("valueQuantity")
    return not isinstance(q, dict) or (q.get("system") == _UCUM and "code" in q)


def _regex(pattern: str) -> Callable[[Any, dict[str, Any]], bool]:
    fullmatch = re.compile(pattern).search  # the FHIRPath matches() patterns are anchored themselves

    def holds(item: Any, res: dict[str, Any]) -> bool:
        return not isinstance(item, str) or fullmatch(item) is not None

    return holds


def _bhyt_object(item: Any, res: dict[str, Any]) -> bool:
    card = item.get("subscriberId")
    if not isinstance(card, str):
        return True
    found = _code_list(_BHYT_OBJECTS)
    return found is None or card[:2] in found


def _same_generation(item: Any, res: dict[str, Any]) -> bool:
    for ext in item.get("extension", ()):
        if isinstance(ext, dict) and ext.get("url", "").endswith("/extension-administrative-address"):
            kinds = {str(c.get("system", "")).endswith("pre2025")
                     for part in ext.get("extension", ()) if isinstance(part, dict) and part.get("url") in ("state",
                                                                                                            "ward")
                     for c in (part.get("valueCodeableConcept") or {}).get("coding", ()) if isinstance(c, dict)}
            if len(kinds) > 1:
                return False
    return True


def _full_date(item: Any, res: dict[str, Any]) -> bool:  # vs-1, on effective[x]
    return not isinstance(item, str) or len(item) >= 8


def _value_or_absent(item: Any, res: dict[str, Any]) -> bool:  # vs-3, on component
    return "dataAbsentReason" in item or any(k.startswith("value") for k in item)


def _vs2(item: Any, res: dict[str, Any]) -> bool:
    if "component" in item or "hasMember" in item:
        return True
    return "dataAbsentReason" in item or any(k.startswith("value") for k in item)


_NATIVE: dict[str, Callable[[Any, dict[str, Any]], bool]] = {
    "vn-pat-1": _cccd_year, "vn-pat-2": _cccd_sex, "vn-pat-3": _cccd_prefix, "vn-vs-1": _vital_units,
    "vn-lab-1": _lab_coded, "vn-lab-2": _lab_ucum, "vn-bhyt-1": _bhyt_object, "vn-addr-1": _same_generation,
    "vs-1": _full_date, "vs-2": _vs2, "vs-3": _value_or_absent,
}
_MATCHES = re.compile(r"matches\('(.*)'\)")


def _invariant(constraint: dict[str, Any]) -> Callable[[Any, dict[str, Any]], bool]:
    key = constraint["key"]
    native = _NATIVE.get(key)
    if native is not None:
        return native
    m = _MATCHES.fullmatch(constraint["expression"])
    if m is not None:
        return _regex(m.group(1))
    import fhirpathpy
    from fhirpathpy.models import models

    compiled = fhirpathpy.compile(constraint["expression"], models["r4"])

    def holds(item: Any, res: dict[str, Any]) -> bool:
        result = compiled(item, {"resource": res})
        return all(v is True for v in result) if result else True

    return holds


# --------------------------------------------------------------------------- the plan


def _typed_values(obj: Any, steps: tuple[str, ...]) -> list[tuple[Any, str | None]]:
    """The values at a path with their FHIR type where the JSON says it: a resource's ``resourceType``, or
    the type suffix of a choice element the last step names (``value`` finds ``valueQuantity``)."""
    if not steps:
        return [(obj, obj.get("resourceType") if isinstance(obj, dict) else None)]
    parents = _values(obj, steps[:-1])
    last = steps[-1]
    out: list[tuple[Any, str | None]] = []
    for parent in parents:
        if not isinstance(parent, dict):
            continue
        for key, v in parent.items():
            if key == last:
                items = v if isinstance(v, list) else [v]
                out.extend((x, x.get("resourceType") if isinstance(x, dict) else None) for x in items)
            elif key.startswith(last) and key[len(last):][:1].isupper():
                suffix = key[len(last):]
                out.append((v, _cap_prims().get(suffix, suffix)))
    return out


class _Slice:
    """A slice and how an item is recognised as one of it: for each discriminator, the path, its type
    (``value`` for value and pattern, ``exists``, ``type``, ``profile``) and what it must be."""

    __slots__ = ("name", "match", "node")

    def __init__(self, name: str, match: list[tuple[tuple[str, ...], str, Any]], node: _Node):
        self.name = name
        self.match = match
        self.node = node

    def matches(self, item: Any, res: dict[str, Any], item_type: str | None = None) -> bool:
        """Is ``item`` one of this slice; ``item_type`` is the type a choice element's JSON key says."""
        for steps, kind, want in self.match:
            if kind == "value":
                found = _values(item, steps) if steps else [item]
                if not any(_matches_pattern(v, want) for v in found):
                    return False
            elif kind == "exists":
                if bool(_values(item, steps) if steps else [item]) != want:
                    return False
            elif kind == "type":
                if not steps and item_type is not None:
                    if item_type not in want:
                        return False
                elif not any(t in want for _v, t in _typed_values(item, steps)):
                    return False
            elif not any(_conforms(v, want, res) for v in (_values(item, steps) if steps else [item])):
                return False
        return True


def _conforms(value: Any, urls: tuple[str, ...], res: dict[str, Any]) -> bool:
    """Does ``value`` meet one of the profiles ``urls`` (no error against its plan)."""
    for url in urls:
        p = _plan_or_none(url)
        if p is None or not isinstance(value, dict):
            continue
        if value.get("resourceType", p.type) != p.type and definitions.is_resource_type(p.type):
            continue
        found: list[Issue] = []
        p.check_value(value, "x", res, found)
        if not any(i.severity == "error" for i in found):
            return True
    return False


class _Node:
    """One element of a plan: where it is in the JSON and what to check on each of its values."""

    __slots__ = ("key", "keys", "allowed", "seg", "min", "max", "checks", "children", "slices", "closed",
                 "invariants", "what", "type_plans", "by_key", "targets", "slice_key", "slice_index")

    def __init__(self, key: str, what: str):
        self.key = key
        #: JSON keys an element may appear under (several for a choice), with their FHIRPath step
        self.keys: tuple[tuple[str, str], ...] = ((key, key),)
        self.allowed: frozenset[str] | None = None  # choice alternatives allowed by the profile
        self.seg = key
        self.min = 0
        self.max = _BIG
        self.checks: list[Callable[[Any, Any, list[Issue]], None]] = []
        self.children: list[_Node] = []
        self.slices: list[_Slice] = []
        self.closed = False
        self.invariants: list[tuple[dict[str, Any], Callable[[Any, dict[str, Any]], bool]]] = []
        self.what = what
        self.type_plans: list[str] = []  # profile URLs each value must also conform to
        self.by_key: dict[str, str] | None = None  # a choice: JSON key -> FHIRPath step
        self.targets: _Targets | None = None  # a Reference's target types and profiles
        #: slices told apart by one string-valued key (``url``, ``system``): that key, and value -> slice
        self.slice_key: str | None = None
        self.slice_index: dict[str, int] = {}

    def index_slices(self) -> None:
        """When every slice has one ``value`` discriminator on the same one-step path with a distinct
        string (an extension's ``url``, an identifier's ``system``: the common case), find an item's
        slice by a dictionary lookup instead of trying the slices in turn; :meth:`_Slice.matches`
        would pick the same slice (a string pattern matches an equal string only)."""
        self.slice_key, self.slice_index = None, {}
        if not self.slices:
            return
        index: dict[str, int] = {}
        keys = set()
        for k, sl in enumerate(self.slices):
            if len(sl.match) != 1:
                return
            steps, kind, want = sl.match[0]
            if kind != "value" or len(steps) != 1 or type(want) is not str or want in index:
                return
            keys.add(steps[0])
            index[want] = k
        if len(keys) == 1:
            self.slice_key, self.slice_index = keys.pop(), index

    def empty(self) -> bool:
        return (self.min == 0 and self.max == _BIG and not self.checks and not self.children and not self.slices
                and not self.invariants and not self.type_plans and self.allowed is None
                and self.targets is None)

    # -- walking

    def check_parent(self, obj: dict[str, Any], path: Any, res: dict[str, Any], out: list[Issue]) -> None:
        """Check this element among the keys of ``obj`` (its parent's value)."""
        found = None
        if self.by_key is None:
            if self.key in obj:
                found = (self.key, self.seg)
        else:
            by_key = self.by_key
            for k in obj:
                if k in by_key:
                    found = (k, by_key[k])
                    break
        if found is None:
            if self.min > 0:
                _issue(out, "error", "required", (path, self.seg), "min", what=self.what, n=0, min=self.min)
                return  # the element's own minimum says it; its required slices would say it again
            for sl in self.slices:
                if sl.node.min > 0:
                    _issue(out, "error", "required", (path, self.seg), "min", what=sl.node.what, n=0, min=sl.node.min)
            return
        json_key, seg = found
        value = obj[json_key]
        if self.allowed is not None and json_key not in self.allowed:
            _issue(out, "error", "structure", (path, seg), "type", found=json_key,
                   allowed=", ".join(sorted(self.allowed)))
            return
        if type(value) is list:
            n = len(value)
            if n < self.min:
                _issue(out, "error", "required", (path, seg), "min", what=self.what, n=n, min=self.min)
            elif n > self.max:
                _issue(out, "error", "structure", (path, seg), "max", what=self.what, n=n, max=self.max)
            if self.slices:
                self.check_sliced(value, path, seg, res, out)
            else:
                for i, item in enumerate(value):
                    self.check_value(item, (path, seg, i), res, out)
        elif self.slices:
            self.check_sliced([value], path, seg, res, out, single=True)
        else:
            self.check_value(value, (path, seg), res, out)

    def check_sliced(self, items: list[Any], path: Any, seg: str, res: dict[str, Any], out: list[Issue],
                     single: bool = False) -> None:
        """Match each item to its slice, then count the slices. ``single``: the one value of an element
        that does not repeat (a sliced choice, ``value[x]`` by type), whose type its JSON key says."""
        counts = [0] * len(self.slices)
        item_type = seg[seg.index(".ofType(") + 8:-1] if single and ".ofType(" in seg else None
        key, index = self.slice_key, self.slice_index
        for i, item in enumerate(items):
            where = (path, seg) if single else (path, seg, i)
            self.check_value(item, where, res, out)
            if key is not None and type(item) is dict and type(item.get(key)) is not list:
                k = index.get(item.get(key), -1)  # type: ignore[arg-type]
                if k >= 0:
                    counts[k] += 1
                    self.slices[k].node.check_value(item, where, res, out)
                elif self.closed:
                    _issue(out, "error", "structure", where, "closed", what=self.what)
                continue
            for k, sl in enumerate(self.slices):
                if sl.matches(item, res, item_type):
                    counts[k] += 1
                    sl.node.check_value(item, where, res, out)
                    break
            else:
                if self.closed:
                    _issue(out, "error", "structure", where, "closed", what=self.what)
        for k, sl in enumerate(self.slices):
            n = counts[k]
            if n < sl.node.min:
                _issue(out, "error", "required", (path, seg), "min", what=sl.node.what, n=n, min=sl.node.min)
            elif n > sl.node.max:
                _issue(out, "error", "structure", (path, seg), "max", what=sl.node.what, n=n, max=sl.node.max)

    def check_value(self, value: Any, path: Any, res: dict[str, Any], out: list[Issue]) -> None:
        for check in self.checks:
            check(value, path, out)
        if type(value) is dict:
            if self.targets is not None:
                _check_targets(self.targets, value, path, res, out)
            for child in self.children:
                child.check_parent(value, path, res, out)
            for url in self.type_plans:
                p = _plan_or_none(url)
                if p is not None:
                    p.check_value(value, path, res, out)
        for constraint, holds in self.invariants:
            try:
                ok = holds(value, res)
            except Exception as exc:  # a broken expression must not break validation
                _issue(out, "error", "invariant", path, "invariant-error", key=constraint["key"], error=exc)
                continue
            if not ok:
                severity = "warning" if constraint.get("severity") == "warning" else "error"
                vi = _INVARIANTS_VI.get(constraint["key"], constraint.get("human", ""))
                en = constraint.get("human", constraint["key"])
                out.append(ProfileIssue(severity, "invariant", f"Constraint {constraint['key']} failed: {en}",
                                        (_render(path),), f"Ràng buộc {constraint['key']} không thỏa: {vi}"))


@dataclass(frozen=True, slots=True)
class Plan:
    """A compiled profile: its URL, the resource or datatype it constrains, and the root node."""

    url: str
    type: str
    root: _Node

    def check_value(self, value: dict[str, Any], path: Any, res: dict[str, Any], out: list[Issue]) -> None:
        self.root.check_value(value, path, res, out)


def _prim_types() -> dict[str, dict[str, str]]:
    return definitions.primitive_types()


def _type_code(t: dict[str, Any]) -> str:
    code = str(t["code"])
    if code.startswith("http://hl7.org/fhirpath/System."):
        return "string"
    return code


def _base_alternatives(e: dict[str, Any], stem: str) -> frozenset[str]:
    base_path = e.get("base", {}).get("path", e["path"])
    parent = base_path.rsplit(".", 1)[0]
    try:
        model = definitions.type_model(parent)
    except KeyError:
        return frozenset()
    return frozenset(k for k, v in model.items() if v.get("choice") == stem)


def _json_key(stem: str, code: str) -> str:
    return stem + code[0].upper() + code[1:]


def _is_r4_source(source: str | None) -> bool:
    if not source:
        return True
    if not source.startswith(_R4_SD):
        return False
    return source[len(_R4_SD):] in definitions.type_names()


def _compile_element(e: dict[str, Any], node: _Node) -> None:
    """Fill ``node`` with what element ``e`` adds to the base."""
    base = e.get("base", {})
    base_min = int(base.get("min", 0))
    base_max = base.get("max", "*")
    emax = e.get("max", "*")
    if e.get("sliceName") or e.get("min", 0) > base_min:
        node.min = int(e.get("min", 0))
    if emax != "*" and (e.get("sliceName") or base_max == "*" or int(emax) < int(base_max)):
        node.max = int(emax)
    types = [_type_code(t) for t in e.get("type", ())]
    stem = e["path"].rsplit(".", 1)[-1]
    if stem.endswith("[x]"):
        stem = stem[:-3]
        every = _base_alternatives(e, stem)
        allowed = frozenset(_json_key(stem, c) for c in types)
        node.keys = tuple((k, _choice_seg(stem, k)) for k in sorted(every or allowed))
        node.by_key = dict(node.keys)
        if every and allowed < every:
            node.allowed = allowed
        node.seg = stem
    for key, value in e.items():
        if key.startswith("fixed"):
            node.checks.append(_fixed(value))
        elif key.startswith("pattern"):
            node.checks.append(_pattern(value))
    binding = e.get("binding")
    # a fixed value, or a pattern naming the code, is the profile's own choice of concept: no binding check
    has_value = any(k.startswith("fixed") or (k.startswith("pattern") and _names_code(v)) for k, v in e.items())
    if binding and binding.get("strength") in ("required", "extensible") and binding.get("valueSet") and not has_value:
        vs = binding["valueSet"].split("|", 1)[0]
        for code in dict.fromkeys(types):
            if code == "code" and definitions.value_set_codes(vs) is not None:
                continue  # the structural validator checks the model's required code bindings
            if code in ("code", "Coding", "CodeableConcept", "Quantity"):
                checker = _binding_checker(vs, binding["strength"], code)
                if checker is not None:
                    node.checks.append(_only_type(checker, code, node) if len(types) > 1 else checker)
    for t in e.get("type", ()):
        if t.get("profile"):
            node.type_plans.extend(p for p in t.get("profile", ()) if p.split("|", 1)[0] in profiles.urls())
        if t["code"] == "Reference" and t.get("targetProfile"):
            node.targets = _target_profiles(t["targetProfile"]) or node.targets
    for c in e.get("constraint", ()):
        if not _is_r4_source(c.get("source")) and c.get("expression"):
            node.invariants.append((c, _invariant(c)))


def _names_code(value: Any) -> bool:
    if isinstance(value, dict):
        return "code" in value or any(_names_code(v) for v in value.values())
    if isinstance(value, list):
        return any(_names_code(v) for v in value)
    return False


@cache
def _cap_prims() -> dict[str, str]:
    return {name[0].upper() + name[1:]: name for name in _prim_types()}


def _choice_seg(stem: str, json_key: str) -> str:
    """``valueQuantity`` -> ``value.ofType(Quantity)``, ``effectiveDateTime`` -> ``effective.ofType(dateTime)``."""
    suffix = json_key[len(stem):]
    return f"{stem}.ofType({_cap_prims().get(suffix, suffix)})"


def _only_type(check: Callable[[Any, Any, list[Issue]], None], code: str,
               node: _Node) -> Callable[[Any, Any, list[Issue]], None]:
    """A binding on a choice of several types applies to the value of that type only."""
    def run(value: Any, path: Any, out: list[Issue]) -> None:
        kind = "Quantity" if isinstance(value, dict) and "value" in value and code == "Quantity" else None
        if code == "Quantity" and kind is None:
            return
        if code == "CodeableConcept" and not (isinstance(value, dict) and ("coding" in value or "text" in value)):
            return
        check(value, path, out)
    return run


def _fixed(want: Any) -> Callable[[Any, Any, list[Issue]], None]:
    def check(value: Any, path: Any, out: list[Issue]) -> None:
        if value != want:
            _issue(out, "error", "value", path, "fixed", value=_show(want))
    return check


def _pattern(want: Any) -> Callable[[Any, Any, list[Issue]], None]:
    test = _pattern_test(want)

    def check(value: Any, path: Any, out: list[Issue]) -> None:
        if not test(value):
            _issue(out, "error", "value", path, "pattern", value=_show(want))
    return check


class _Targets:
    """What a Reference may point at: resource types, and for some types the profiles (other than the
    type's core one) a resolvable target must meet."""

    __slots__ = ("types", "profiles")

    def __init__(self, types: frozenset[str], profiles: dict[str, tuple[str, ...]]):
        self.types = types
        self.profiles = profiles  # type -> profile URLs; a type absent here needs no more than its core


def _target_profiles(urls: list[str]) -> _Targets | None:
    types: set[str] = set()
    needs: dict[str, list[str]] = {}
    core: set[str] = set()
    for url in urls:
        url = url.split("|", 1)[0]
        if url.startswith(_R4_SD) and definitions.is_resource_type(url[len(_R4_SD):]):
            types.add(url[len(_R4_SD):])
            core.add(url[len(_R4_SD):])
            continue
        sd = profiles.structure_definition(url)
        if sd is None or not definitions.is_resource_type(sd.get("type", "")):
            return None  # a target profile this server does not know: the targets cannot be judged
        types.add(sd["type"])
        needs.setdefault(sd["type"], []).append(url)
    return _Targets(frozenset(types), {t: tuple(u) for t, u in needs.items() if t not in core})


#: The entries of the Bundle being validated, by fullUrl and Type/id, for references to resolve in.
BUNDLE: ContextVar[dict[str, dict[str, Any]]] = ContextVar("BUNDLE", default={})  # noqa: B039 (never mutated)


def _check_targets(targets: _Targets, value: dict[str, Any], path: Any, res: dict[str, Any],
                   out: list[Issue]) -> None:
    """The literal type of the reference, and, when it resolves (contained, or in the same Bundle), the
    target's type and profile."""
    ref = value.get("reference")
    if not isinstance(ref, str):
        return
    where = (path, "reference")
    allowed = ", ".join(sorted(targets.types))
    kind = references.literal_type(ref)
    if kind is not None and definitions.is_resource_type(kind) and kind not in targets.types:
        _issue(out, "error", "invalid", where, "target", found=kind, allowed=allowed)
        return
    target = references.resolve(ref, references.contained_scope(res, BUNDLE.get()))
    if target is None:
        return
    rtype = target.get("resourceType")
    if rtype not in targets.types:
        _issue(out, "error", "invalid", where, "target", found=rtype, allowed=allowed)
        return
    wanted = targets.profiles.get(str(rtype))
    if wanted and not _conforms(target, wanted, target):
        _issue(out, "error", "invalid", where, "target-profile", found=rtype, profiles=", ".join(wanted))


def _discriminator(sd_elements: dict[str, dict[str, Any]], slice_el: dict[str, Any],
                   d: dict[str, Any]) -> tuple[tuple[str, ...], str, Any]:
    """What a slice's items look like at the discriminator ``d``'s path: (path steps, kind, value)."""
    path = d["path"]
    steps = tuple(path.split(".")) if path != "$this" else ()
    kind = d["type"]
    if kind in ("value", "pattern"):
        return steps, "value", _discriminator_value(sd_elements, slice_el, path)
    target = slice_el if path == "$this" else _child(sd_elements, slice_el["id"], path)
    if target is None:
        raise ValueError(f"{slice_el['id']}: no element for discriminator {path!r}")
    if kind == "exists":
        if target.get("min", 0) >= 1:
            return steps, "exists", True
        if target.get("max") == "0":
            return steps, "exists", False
        raise ValueError(f"{slice_el['id']}: exists discriminator {path!r} is neither required nor prohibited")
    if kind == "type":
        return steps, "type", frozenset(_type_code(t) for t in target.get("type", ()))
    if kind == "profile":
        urls = tuple(u.split("|", 1)[0] for t in target.get("type", ()) for u in t.get("profile", ()))
        if not urls:
            raise ValueError(f"{slice_el['id']}: profile discriminator {path!r} names no profile")
        return steps, "profile", urls
    raise ValueError(f"{slice_el['id']}: discriminator type {kind!r} is not supported")


def _child(sd_elements: dict[str, dict[str, Any]], sid: str, path: str) -> dict[str, Any] | None:
    """The element at ``path`` under ``sid``; a choice is found under its ``[x]`` name too."""
    return sd_elements.get(f"{sid}.{path}") or sd_elements.get(f"{sid}.{path}[x]")


def _discriminator_value(sd_elements: dict[str, dict[str, Any]], slice_el: dict[str, Any],
                         path: str) -> Any:
    sid = slice_el["id"]
    target = slice_el if path == "$this" else sd_elements.get(f"{sid}.{path}")
    if target is not None:
        for key, value in target.items():
            if key.startswith(("fixed", "pattern")):
                return value
    if path == "url":
        for t in slice_el.get("type", ()):
            for url in t.get("profile", ()):
                ext = profiles.structure_definition(url)
                if ext is not None:
                    for e in ext["snapshot"]["element"]:
                        if e["id"] == "Extension.url" and "fixedUri" in e:
                            return e["fixedUri"]
    for key, value in slice_el.items():
        if key.startswith(("fixed", "pattern")):
            found = _values(value, tuple(path.split(".")))
            if found:
                return found[0]
    raise ValueError(f"{sid}: no value for discriminator {path!r}")


def _build(sd: dict[str, Any]) -> Plan:
    elements: list[dict[str, Any]] = sd["snapshot"]["element"]
    by_id = {e["id"]: e for e in elements}
    root_el = elements[0]
    root = _Node(root_el["id"], root_el["id"])
    _compile_element(root_el, root)
    root.min, root.max = 0, _BIG
    nodes: dict[str, _Node] = {root_el["id"]: root}
    kept_children: dict[str, list[str]] = {}
    order: list[str] = []
    for e in elements[1:]:
        eid = e["id"]
        parent_id, _, last = eid.rpartition(".")
        name, _, slice_name = last.partition(":")
        node = _Node(name, eid)
        _compile_element(e, node)
        nodes[eid] = node
        order.append(eid)
        kept_children.setdefault(parent_id, []).append(eid)
    # attach bottom-up so that a node with a non-empty subtree is kept
    for eid in reversed(order):
        e = by_id[eid]
        node = nodes[eid]
        parent_id, _, last = eid.rpartition(".")
        name, _, slice_name = last.partition(":")
        if slice_name:
            sliced_id = f"{parent_id}.{name}"
            sliced = by_id[sliced_id]
            match = [_discriminator(by_id, e, d) for d in sliced["slicing"]["discriminator"]]
            nodes[sliced_id].slices.insert(0, _Slice(slice_name, match, node))
            continue
        if "slicing" in e:
            nodes[eid].closed = e["slicing"].get("rules") == "closed"
        if node.empty() or parent_id not in nodes:
            continue
        nodes[parent_id].children.insert(0, node)
    for node in nodes.values():
        node.index_slices()
    return Plan(sd["url"], sd["type"], root)


@cache
def plan(url: str) -> Plan:
    """The compiled plan of a shipped profile (``|version`` ignored); raises :class:`UnknownProfile`."""
    sd = profiles.structure_definition(url)
    if sd is None:
        raise UnknownProfile(url)
    return _build(sd)


def _plan_or_none(url: str) -> Plan | None:
    try:
        return plan(url.split("|", 1)[0])
    except UnknownProfile:
        return None


# --------------------------------------------------------------------------- public API


def validate(resource: dict[str, Any], url: str) -> list[Issue]:
    """Issues of ``resource`` (an orjson-parsed dict) against the profile ``url``: the profile's own
    constraints only, structure not included (see :func:`validate_resource`). Raises
    :class:`UnknownProfile` for a URL that is not shipped."""
    p = plan(url.split("|", 1)[0])
    out: list[Issue] = []
    rtype = resource.get("resourceType") if isinstance(resource, dict) else None
    if rtype != p.type:
        _issue(out, "error", "invalid", str(rtype or "Resource"), "resource-type", profile=p.url, expected=p.type,
               found=rtype)
        return out
    p.check_value(resource, rtype, resource, out)
    return out


def claimed(resource: dict[str, Any]) -> list[str]:
    """The ``meta.profile`` URLs of ``resource`` (whatever they are)."""
    meta = resource.get("meta")
    found = meta.get("profile") if isinstance(meta, dict) else None
    return [u for u in found if isinstance(u, str)] if isinstance(found, list) else []


def validate_resource(resource: Any, urls: list[str] | None = None, structural: bool = True,
                      invariants: bool = False) -> list[Issue]:
    """Structural issues and the core reference and extension checks (:mod:`.core`, without its FHIRPath
    invariants; Bundle entries included), then the issues against each profile: ``urls`` when given, else the shipped
    profiles the resource claims in ``meta.profile`` (a claim of an unknown profile is a warning), else
    :func:`fhir_hub.profiles.default_profiles`. Bundle entries are not checked against profiles here; see
    :func:`validate_tree`. With ``invariants`` the core profile's FHIRPath invariants are evaluated too
    (the full core validation, ~0.5 ms a resource: for files, not for every write)."""
    return _validate(resource, urls, structural, None, invariants)


def _validate(resource: Any, urls: list[str] | None, structural: bool, entries: bool | None,
              invariants: bool = False) -> list[Issue]:
    """:func:`validate_resource`, and with ``entries`` (not None) a Bundle's entries too, each against its
    profiles (its defaults when ``entries`` is true)."""
    out: list[Issue] = list(structure.validate(resource)) if structural else []
    if not isinstance(resource, dict):
        return out
    if urls is None:
        claims = claimed(resource)
        urls = [u for u in claims if _plan_or_none(u) is not None]
        for u in claims:
            if _plan_or_none(u) is None:
                _issue(out, "warning", "not-supported", f"{resource.get('resourceType')}.meta.profile",
                       "unknown-profile", profile=u)
        if not claims:
            urls = profiles.default_profiles(resource)
    found: list[Issue] = []
    for u in urls:
        found.extend(validate(resource, u))
    if entries is not None and resource.get("resourceType") == "Bundle":
        token = BUNDLE.set(references.bundle_index(resource))
        try:
            found.extend(_validate_entries(resource, entries))
        finally:
            BUNDLE.reset(token)
    if structural:
        from fhir_hub.validation import core  # core builds on this module's issues

        # one fault, one issue: what a profile reports at or under a place (an extension's value type, a
        # reference's target) is not repeated from the core checks
        said = [e for i in found for e in i.expression]
        out.extend(i for i in core.validate_rules(resource, invariants=invariants)
                   if not any(e == i.expression[0] or e.startswith(i.expression[0] + ".") for e in said))
    out.extend(found)
    return out


def reroot(issue: Issue, rtype: str, where: str) -> Issue:
    """The issue with its locations moved under ``where`` (``Bundle.entry[3].resource``)."""
    moved = tuple(where + e[len(rtype):] if e.startswith(rtype) else f"{where}.{e}" for e in issue.expression)
    if isinstance(issue, ProfileIssue):
        return ProfileIssue(issue.severity, issue.code, issue.diagnostics, moved, issue.vi)
    return Issue(issue.severity, issue.code, issue.diagnostics, moved)


def validate_tree(resource: Any, urls: list[str] | None = None, defaults: bool = True,
                  invariants: bool = False) -> list[Issue]:
    """:func:`validate_resource` on a resource and, for a Bundle, on each ``entry.resource`` too (each
    against what it claims, or its default VN profiles when ``defaults``), locations under
    ``Bundle.entry[i].resource``. ``urls`` apply to the top resource only; ``invariants`` as in
    :func:`validate_resource`."""
    if urls is None and not defaults and isinstance(resource, dict) and not claimed(resource):
        urls = []
    return _validate(resource, urls, True, defaults, invariants)


def _validate_entries(resource: dict[str, Any], defaults: bool) -> list[Issue]:
    """Each entry of a Bundle against its profiles (the Bundle's index set, for references to resolve)."""
    out: list[Issue] = []
    for i, entry in enumerate(resource.get("entry") or ()):
        inner = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(inner, dict) or not isinstance(inner.get("resourceType"), str):
            continue  # the structural pass has reported it
        wanted: list[str] | None = None if defaults or claimed(inner) else []
        found = validate_resource(inner, wanted, structural=False)
        rtype = inner["resourceType"]
        out.extend(reroot(x, rtype, f"Bundle.entry[{i}].resource") for x in found)
    return out
