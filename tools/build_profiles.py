"""Build the VN Core profiles: differentials written here, snapshots generated against the R4 base.

Why a script: a StructureDefinition's snapshot is long and mechanical (every element of the base,
with the profile's constraints merged in, slices inserted and datatypes expanded where the profile
reaches inside them); writing it by hand would drift from the differential. The differentials below
are the reviewed source; this script turns them, once, at development time, into one JSON file
per StructureDefinition under ``fhir_hub/profiles/data/`` (differential and snapshot), plus the
enumerable R4 ValueSets their bindings name that the terminology catalogue does not hold
(``r4-valuesets.json``). The files are committed; a test checks that they match a rebuild.

Usage::

    python tools/build_profiles.py [--shared PATH_TO_SHARED] [--out OUTPUT_DIR]

``--shared`` defaults to the ``shared`` folder beside the repository root (the folder holding
``fhir-r4/definitions`` and ``vn/code-lists``).

Snapshot generation (``fhir_hub.profiles.snapshot``, shared with the outpatient template build;
profiling.html#snapshot, simplified to what these differentials use): the base snapshot is copied; each differential element, in order, is merged onto the element with the
same id (``min``, ``max``, ``type``, ``fixed[x]``, ``pattern[x]``, ``binding``, ``short``,
``definition``, ``mustSupport``, ``slicing``; ``constraint`` is appended). A slice
(``Patient.identifier:cccd``) is a copy of the unsliced element inserted after the last element of
its block. A child that is not in the snapshot yet (``Patient.identifier:cccd.system``) makes its
parent expand: the children of the unsliced element when the snapshot has them (backbone
elements), else the elements of the parent's datatype from the R4 type definitions. A constraint
may only narrow the base (``min`` up, ``max`` down, types a subset): the script refuses otherwise.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from fhir_hub.profiles.snapshot import SnapshotError, coding, el, inv, slicing, snapshot

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = REPO_ROOT / "fhir_hub" / "profiles" / "data"
CORE = "http://fhir.ehealth.gov.vn/core"
SD = f"{CORE}/StructureDefinition"
CS = f"{CORE}/CodeSystem"
VS = f"{CORE}/ValueSet"
SID = f"{CORE}/sid"
R4 = "http://hl7.org/fhir/StructureDefinition"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VERSION = "0.1.0"
DATE = "2026-12-02"
#: The 10-digit social-insurance number (mã số BHXH): the draft IG has no NamingSystem for it, so,
#: as for every other system without a published one, a ``urn:fhir-hub:`` placeholder (see README).
BHXH_SYSTEM = "urn:fhir-hub:sid:bhxh"
#: Practising-certificate number (chứng chỉ hành nghề, CCHN) of a health worker: no published system.
CCHN_SYSTEM = "urn:fhir-hub:sid:cchn"
#: The local index code of a lab result (MA_CHI_SO, DMDC catalogue), as the claims mapping writes it.
LAB_INDEX_SYSTEM = "urn:fhir-hub:vn-dmdc:chi-so"

# --------------------------------------------------------------------------- differential helpers


def identifier_slice(base: str, name: str, system: str, short: str, *, min: int = 0, max: str = "1",
                     type_code: str | None = None, regex: str | None = None, regex_human: str = "",
                     assigner: bool = False, key: str = "") -> list[dict[str, Any]]:
    """A slice of ``<base>.identifier`` told apart by ``system`` (value discriminator)."""
    sid = f"{base}.identifier:{name}"
    out = [el(sid, short=short, min=min, max=max)]
    if type_code:
        out.append(el(f"{sid}.type", patternCodeableConcept={"coding": [{"system": V2_0203, "code": type_code}]}))
    out.append(el(f"{sid}.system", min=1, fixedUri=system))
    value: dict[str, Any] = {"min": 1}
    if regex:
        value["constraint"] = [inv(key, "error", regex_human, f"matches('{regex}')")]
    out.append(el(f"{sid}.value", **value))
    if assigner:
        out.append(el(f"{sid}.assigner", min=1, short="The facility that assigned the number"))
    return out


def extension_slice(base: str, name: str, url: str, short: str, max: str = "1") -> dict[str, Any]:
    return el(f"{base}.extension:{name}", short=short, min=0, max=max,
              type=[{"code": "Extension", "profile": [url]}])


# --------------------------------------------------------------------------- the profiles


def _cccd_prefixes(shared: Path) -> list[str]:
    with (shared / "vn" / "code-lists" / "provinces_pre2025.csv").open(encoding="utf-8") as f:
        return sorted({row["cccd_birth_registration_prefix"] for row in csv.DictReader(f)})


def _cccd_invariants(shared: Path) -> list[dict[str, Any]]:
    """The personal ID's structure (digits 1-3 birth-registration province, 4 century and sex, 5-6 birth
    year): no check digit exists, so an inconsistency is a warning. Each has a native implementation in
    ``fhir_hub.validation.profile`` (tested against fhirpathpy on these very expressions)."""
    ids = f"identifier.where(system = '{SID}/national_id' and value.matches('^[0-9]{{12}}$')).value"
    prefixes = " | ".join(f"'{p}'" for p in _cccd_prefixes(shared))
    return [
        inv("vn-pat-1", "warning",
            "The birth year in the personal ID (century digit 4, year digits 5-6) matches birthDate",
            f"birthDate.empty() or {ids}.all((1900 + (substring(3, 1).toInteger() div 2) * 100 + "
            "substring(4, 2).toInteger()).toString() = %resource.birthDate.toString().substring(0, 4))"),
        inv("vn-pat-2", "warning",
            "The sex in the personal ID (digit 4: even male, odd female) matches gender",
            f"(gender = 'male' or gender = 'female').not() or {ids}.all(((substring(3, 1).toInteger() mod 2) = 0) "
            "= (%resource.gender = 'male'))"),
        inv("vn-pat-3", "warning",
            "The personal ID starts with a pre-2025 birth-registration province code (001-096), "
            "unless the birth was registered abroad (a country code)",
            f"{ids}.all(substring(0, 3) in ({prefixes}))"),
    ]


def patient(shared: Path) -> dict[str, Any]:
    b = "Patient"
    diff = [
        el(b, constraint=_cccd_invariants(shared)),
        el(f"{b}.extension", slicing=slicing("url")),
        extension_slice(b, "ethnicity", f"{SD}/extension-race", "Ethnic group (dân tộc, 54 groups)"),
        extension_slice(b, "nationality", f"{SD}/extension-nationality", "Nationality (quốc tịch)"),
        extension_slice(b, "occupation", f"{SD}/extension-occupation", "Occupation (nghề nghiệp)"),
        el(f"{b}.identifier", slicing=slicing("system"), min=1),
        *identifier_slice(b, "cccd", f"{SID}/national_id", "Personal ID (số định danh cá nhân / CCCD), 12 digits",
                          type_code="NI", regex="^[0-9]{12}$", regex_human="A personal ID has 12 digits",
                          key="vn-id-cccd"),
        *identifier_slice(b, "cmnd", f"{SID}/citizen_id", "Old ID card (CMND), 9 digits (12 on 2012-2016 cards)",
                          type_code="NI", regex="^[0-9]{9}([0-9]{3})?$",
                          regex_human="An old ID card number (CMND) has 9 digits (12 on 2012-2016 cards)",
                          key="vn-id-cmnd"),
        *identifier_slice(b, "bhxh", BHXH_SYSTEM, "Social-insurance number (mã số BHXH), 10 digits",
                          type_code="SS", regex="^[0-9]{10}$",
                          regex_human="A social-insurance number (BHXH) has 10 digits", key="vn-id-bhxh"),
        *identifier_slice(b, "bhyt", f"{SID}/insurance_number", "Health-insurance card (thẻ BHYT), 15 characters",
                          max="*", type_code="SB", regex="^[A-Z]{2}[1-5][0-9]{12}$",
                          regex_human="A BHYT card number has 15 characters: object code (2 letters), benefit "
                          "level (1-5), province (2 digits) and the 10-digit BHXH number", key="vn-id-bhyt"),
        *identifier_slice(b, "passport", f"{SID}/passport_number", "Passport number (số hộ chiếu)", max="*",
                          type_code="PPN"),
        *identifier_slice(b, "facility", f"{SID}/patient-internal-id",
                          "Patient number at one facility (MA_BN); assigner is the facility", max="*",
                          type_code="PI", assigner=True),
        el(f"{b}.name", min=1, short="Vietnamese name: family (họ), given = middle name(s) (đệm) and "
           "given name (tên); text holds the whole name in its usual order"),
        el(f"{b}.name.text", min=1),
        el(f"{b}.gender", min=1),
        el(f"{b}.birthDate", min=1),
        el(f"{b}.address", type=[{"code": "Address", "profile": [f"{SD}/vn-core-address"]}]),
    ]
    return profile("vn-core-patient", "VNCorePatient", "VN Core Patient", "Patient", f"{R4}/Patient", diff,
                   "Người bệnh: identifiers of the personal ID, old ID card, BHXH, BHYT card, passport and "
                   "facility patient number; Vietnamese name; ethnic group, nationality, occupation; address "
                   "with administrative-unit codes. Aligned with the draft VN Core IG's vn-core-patient (which "
                   "derives from IPS; this one derives from R4 Patient).")


def address() -> dict[str, Any]:
    b = "Address"
    diff = [
        el(b, constraint=[inv("vn-addr-1", "warning",
                               "The province (state) and ward codes of one address come from the same code-list "
                               "generation (pre-2025 or 2025)",
                               f"extension('{SD}/extension-administrative-address').all("
                               "(extension('state').value.coding.system | extension('ward').value.coding.system)"
                               ".select(endsWith('pre2025')).distinct().count() <= 1)")]),
        el(f"{b}.extension", slicing=slicing("url")),
        extension_slice(b, "administrativeAddress", f"{SD}/extension-administrative-address",
                        "Administrative-unit codes (province, district, ward), pre-2025 or 2025 lists"),
        el(f"{b}.text", min=1, short="The whole address as written"),
    ]
    return profile("vn-core-address", "VNCoreAddress", "VN Core Address", "Address", f"{R4}/Address", diff,
                   "Địa chỉ: the address as text plus its administrative-unit codes.", kind="complex-type")


def encounter() -> dict[str, Any]:
    b = "Encounter"
    diff = [
        el(f"{b}.identifier", slicing=slicing("system")),
        *identifier_slice(b, "visit", f"{SID}/VisitNumber",
                          "Visit identifier (MA_LK), scoped by facility: '<facility code>/<MA_LK>'"),
        *identifier_slice(b, "record", f"{SID}/MRN", "Medical record number (MA_HSBA / mã bệnh án)"),
        *identifier_slice(b, "archive", f"{SID}/ArchiveNumber", "Archive number (mã lưu trữ)"),
        el(f"{b}.type", slicing=slicing("coding.system")),
        el(f"{b}.type:visitType", min=0, max="1", short="Visit type (MA_LOAI_KCB, QĐ 130)",
           patternCodeableConcept={"coding": [{"system": f"{CS}/vn-qd130-ma-loai-kcb"}]},
           binding={"strength": "required", "valueSet": f"{VS}/vn-qd130-ma-loai-kcb"}),
        el(f"{b}.subject", min=1, type=[{"code": "Reference", "targetProfile": [f"{R4}/Patient"]}]),
        el(f"{b}.serviceProvider", type=[{"code": "Reference", "targetProfile": [f"{R4}/Organization"]}]),
    ]
    return profile("vn-core-encounter", "VNCoreEncounter", "VN Core Encounter", "Encounter", f"{R4}/Encounter",
                   diff, "Lượt khám chữa bệnh: facility-scoped visit identifiers, visit type, patient. Aligned "
                   "with the draft VN Core IG's vn-core-encounter.")


def encounter_outpatient() -> dict[str, Any]:
    b = "Encounter"
    diff = [
        el(f"{b}.class", patternCoding=coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB")),
        el(f"{b}.identifier:visit", min=1),
        el(f"{b}.type", min=1),
        el(f"{b}.type:visitType", min=1),
        el(f"{b}.period", min=1),
        el(f"{b}.period.start", min=1),
        el(f"{b}.serviceProvider", min=1, short="The facility (Organization with its 5-character facility code)"),
    ]
    return profile("vn-core-encounter-outpatient", "VNCoreEncounterOutpatient", "VN Core Encounter (outpatient)",
                   "Encounter", f"{SD}/vn-core-encounter", diff,
                   "Lượt khám ngoại trú: class AMB, visit type, visit identifier, period and facility required.")


#: LOINC vital sign -> UCUM units allowed (the R4 vital-sign profiles' units, plus g and [lb_av] for weight).
VITAL_UNITS: dict[str, tuple[str, ...]] = {
    "29463-7": ("kg", "g", "[lb_av]"),  # body weight
    "8302-2": ("cm", "[in_i]"),  # body height
    "8310-5": ("Cel", "[degF]"),  # body temperature
    "8867-4": ("/min",),  # heart rate
    "9279-1": ("/min",),  # respiratory rate
    "2708-6": ("%",),  # oxygen saturation
    "59408-5": ("%",),  # oxygen saturation by pulse oximetry
    "39156-5": ("kg/m2",),  # BMI
    "9843-4": ("cm", "[in_i]"),  # head circumference
    "8480-6": ("mm[Hg]",),  # systolic
    "8462-4": ("mm[Hg]",),  # diastolic
}


def _units_expression() -> str:
    parts = []
    for code, units in VITAL_UNITS.items():
        allowed = " or ".join(f"code = '{u}'" for u in units)
        parts.append(f"(code.coding.where(system = '{LOINC}' and code = '{code}').exists() implies "
                     f"value.ofType(Quantity).all(system = '{UCUM}' and ({allowed})))")
    return " and ".join(parts)


def observation_vitals() -> dict[str, Any]:
    b = "Observation"
    diff = [
        el(b, constraint=[inv("vn-vs-1", "error",
                               "A vital sign with a known LOINC code has a value in one of its UCUM units "
                               "(body weight kg, height cm, temperature Cel, heart and respiratory rate /min, "
                               "SpO2 %, BMI kg/m2, blood pressure mm[Hg])", _units_expression())]),
        el(f"{b}.code.coding", slicing=slicing("system")),
        el(f"{b}.code.coding:loinc", min=1, max="*", short="The LOINC code of the vital sign"),
        el(f"{b}.code.coding:loinc.system", min=1, fixedUri=LOINC),
        el(f"{b}.code.coding:loinc.code", min=1),
        el(f"{b}.encounter", type=[{"code": "Reference", "targetProfile": [f"{R4}/Encounter"]}]),
    ]
    return profile("vn-core-observation-vital-signs", "VNCoreObservationVitalSigns", "VN Core vital signs",
                   "Observation", f"{R4}/vitalsigns", diff,
                   "Dấu hiệu sinh tồn: R4's vital-signs profile (category vital-signs, LOINC code, subject, "
                   "effective time) with the UCUM unit of each common vital sign checked.")


def observation_lab() -> dict[str, Any]:
    b = "Observation"
    diff = [
        el(b, constraint=[
            inv("vn-lab-1", "error", "A lab result is coded with LOINC or the local index code (MA_CHI_SO)",
                f"code.coding.where(system = '{LOINC}' or system = '{LAB_INDEX_SYSTEM}').exists()"),
            inv("vn-lab-2", "warning", "A quantity result carries a UCUM unit code",
                f"value.ofType(Quantity).all(system = '{UCUM}' and code.exists())"),
        ]),
        el(f"{b}.category", slicing=slicing("coding.code", "coding.system"), min=1),
        el(f"{b}.category:laboratory", min=1, max="1",
           patternCodeableConcept={"coding": [coding("http://terminology.hl7.org/CodeSystem/observation-category",
                                                     "laboratory")]}),
        el(f"{b}.code.coding", slicing=slicing("system")),
        el(f"{b}.code.coding:loinc", min=0, max="1", short="LOINC, when known"),
        el(f"{b}.code.coding:loinc.system", min=1, fixedUri=LOINC),
        el(f"{b}.code.coding:localIndex", min=0, max="1", short="Local index code (MA_CHI_SO)"),
        el(f"{b}.code.coding:localIndex.system", min=1, fixedUri=LAB_INDEX_SYSTEM),
        el(f"{b}.subject", min=1, type=[{"code": "Reference", "targetProfile": [f"{R4}/Patient"]}]),
    ]
    return profile("vn-core-observation-lab", "VNCoreObservationLab", "VN Core laboratory result", "Observation",
                   f"{R4}/Observation", diff,
                   "Kết quả xét nghiệm: category laboratory, the local index code (MA_CHI_SO) and LOINC when "
                   "known, UCUM units.")


def condition() -> dict[str, Any]:
    b = "Condition"
    diff = [
        el(f"{b}.code", min=1, binding={"strength": "extensible", "valueSet": f"{VS}/vn-icd10",
                                        "description": "ICD-10, Vietnamese edition (QĐ 4469/QĐ-BYT)"}),
        el(f"{b}.subject", type=[{"code": "Reference", "targetProfile": [f"{R4}/Patient"]}]),
        el(f"{b}.category", min=1),
    ]
    return profile("vn-core-condition", "VNCoreCondition", "VN Core Condition", "Condition", f"{R4}/Condition",
                   diff, "Chẩn đoán / bệnh: coded with ICD-10 VN where coded (text alone is accepted, as for an "
                   "admission diagnosis written in words), with a category.")


def coverage() -> dict[str, Any]:
    b = "Coverage"
    bhyt_regex = "^[A-Z]{2}[1-5][0-9]{12}$"
    diff = [
        el(b, constraint=[inv("vn-bhyt-1", "warning",
                               "The object code (first two letters of the card) is a BHYT object code",
                               f"subscriberId.empty() or subscriberId.substring(0, 2).memberOf('{VS}/vn-bhyt-object-code')"
                               )]),
        el(f"{b}.identifier", slicing=slicing("system"), min=1),
        *identifier_slice(b, "bhyt", f"{SID}/insurance_number", "BHYT card number, 15 characters", min=1,
                          regex=bhyt_regex, regex_human="A BHYT card number has 15 characters: object code "
                          "(2 letters), benefit level (1-5), province (2 digits) and the 10-digit BHXH number",
                          key="vn-id-bhyt"),
        el(f"{b}.type", min=1, patternCodeableConcept={"coding": [coding("http://terminology.hl7.org/CodeSystem/"
                                                                         "v3-ActCode", "PUBLICPOL")]}),
        el(f"{b}.subscriberId", constraint=[inv("vn-bhyt-2", "error", "The card number has 15 characters",
                                                 f"matches('{bhyt_regex}')")]),
        el(f"{b}.beneficiary", type=[{"code": "Reference", "targetProfile": [f"{R4}/Patient"]}]),
        el(f"{b}.period", min=1, short="Card validity (GT_THE_TU / GT_THE_DEN)"),
    ]
    return profile("vn-core-coverage-bhyt", "VNCoreCoverageBHYT", "VN Core Coverage (BHYT card)", "Coverage",
                   f"{R4}/Coverage", diff, "Thẻ bảo hiểm y tế: the card number, its validity and the public "
                   "payer. The draft IG has no Coverage profile; this URL is fhir-hub's.")


def organization() -> dict[str, Any]:
    b = "Organization"
    diff = [
        el(f"{b}.identifier", slicing=slicing("system"), min=1),
        *identifier_slice(b, "facilityCode", f"{SID}/provider-code",
                          "Facility code (mã cơ sở KCB, MA_CSKCB), 5 characters", regex="^[0-9A-Z]{5}$",
                          regex_human="A facility code has 5 characters", key="vn-id-cskcb"),
        *identifier_slice(b, "businessLicence", f"{SID}/provider-license-number", "Business registration number"),
        *identifier_slice(b, "operatingLicence", f"{SID}/provider-medical-license-number",
                          "Licence to operate as a health facility"),
        el(f"{b}.address", type=[{"code": "Address", "profile": [f"{SD}/vn-core-address"]}]),
    ]
    return profile("vn-core-provider", "VNCoreProvider", "VN Core health facility", "Organization",
                   f"{R4}/Organization", diff, "Cơ sở khám, chữa bệnh: identified by its facility code. Aligned "
                   "with the draft VN Core IG's vn-core-provider; name and type are not required, because claims "
                   "XML carries only the facility code.")


def practitioner() -> dict[str, Any]:
    b = "Practitioner"
    diff = [
        el(f"{b}.identifier", slicing=slicing("system")),
        *identifier_slice(b, "cchn", CCHN_SYSTEM, "Practising certificate number (chứng chỉ hành nghề, CCHN)",
                          type_code="LN"),
        *identifier_slice(b, "employee", f"{SID}/healthworker-employee-number", "Employee number (mã số nhân viên)",
                          type_code="EI"),
        *identifier_slice(b, "cccd", f"{SID}/national_id", "Personal ID (CCCD), 12 digits", type_code="NI",
                          regex="^[0-9]{12}$", regex_human="A personal ID has 12 digits", key="vn-id-cccd"),
        el(f"{b}.name", min=1, max="1"),
        el(f"{b}.name.text", min=1),
    ]
    return profile("vn-core-practitioner", "VNCorePractitioner", "VN Core Practitioner", "Practitioner",
                   f"{R4}/Practitioner", diff, "Nhân viên y tế: one name with its text, practising certificate, "
                   "employee number. Aligned with the draft VN Core IG's vn-core-practitioner.")


def _simple_extension(sid: str, name: str, title: str, value_set: str | None, strength: str,
                      context: str, text: str) -> dict[str, Any]:
    value: dict[str, Any] = {"min": 1, "type": [{"code": "CodeableConcept"}]}
    if value_set:
        value["binding"] = {"strength": strength, "valueSet": value_set}
    diff = [
        el("Extension", max="1"),
        el("Extension.extension", max="0"),
        el("Extension.url", fixedUri=f"{SD}/{sid}"),
        el("Extension.value[x]", **value),
    ]
    return profile(sid, name, title, "Extension", f"{R4}/Extension", diff, text, kind="complex-type",
                   context=[{"type": "element", "expression": context}])


def extensions() -> list[dict[str, Any]]:
    out = [
        _simple_extension("extension-race", "VNCoreEthnicGroup", "Ethnic group (dân tộc)", f"{VS}/vn-core-race",
                          "required", "Patient", "The ethnic group, from the 54 groups of the GSO list "
                          "(the draft IG names it 'race'; its 'ethic' extension is the religion)."),
        _simple_extension("extension-nationality", "VNCoreNationality", "Nationality (quốc tịch)",
                          "http://hl7.org/fhir/ValueSet/iso3166-1-2", "extensible", "Patient",
                          "Nationality as an ISO 3166-1 alpha-2 code (urn:iso:std:iso:3166)."),
        _simple_extension("extension-occupation", "VNCoreOccupation", "Occupation (nghề nghiệp)",
                          f"{VS}/vn-core-occupation-level2", "extensible", "Patient",
                          "Occupation, from the level-2 codes of QĐ 34/2020/QĐ-TTg (extensible: longer codes are "
                          "reported as a warning)."),
    ]
    units = [("state", "Province or centrally-run city (tỉnh / thành phố)", f"{VS}/vn-core-province-any"),
             ("district", "District (huyện), pre-2025 only: abolished from 2025-07-01", None),
             ("ward", "Commune, ward or special zone (xã / phường / đặc khu)", f"{VS}/vn-core-ward-any")]
    diff: list[dict[str, Any]] = [
        el("Extension", max="1"),
        el("Extension.extension", slicing=slicing("url", rules="closed")),
    ]
    for name, short, vs in units:
        value: dict[str, Any] = {"min": 1, "type": [{"code": "CodeableConcept"}]}
        if vs:  # extensible: claims XML keeps a code the list does not know (a merged unit's old code)
            value["binding"] = {"strength": "extensible", "valueSet": vs}
        diff += [el(f"Extension.extension:{name}", min=0, max="1", short=short),
                 el(f"Extension.extension:{name}.url", fixedUri=name),
                 el(f"Extension.extension:{name}.value[x]", **value)]
    diff += [el("Extension.url", fixedUri=f"{SD}/extension-administrative-address"),
             el("Extension.value[x]", max="0")]
    out.append(profile("extension-administrative-address", "VNCoreAdministrativeAddress",
                       "Administrative-unit codes of an address", "Extension", f"{R4}/Extension", diff,
                       "Province, district and ward codes of an address. The Coding's system says which list "
                       "the code comes from (…/vn-province-pre2025 or …/vn-province-2025, …/vn-ward-pre2025 or "
                       "…/vn-ward-2025), since a merged unit kept one predecessor's code; Coding.version may "
                       "carry the list's version.", kind="complex-type",
                       context=[{"type": "element", "expression": "Address"}]))
    return out


def extra_value_sets() -> list[dict[str, Any]]:
    """ValueSets the profiles bind to that draw on both generations of the administrative lists."""
    def vs(vid: str, title: str, systems: Iterable[str]) -> dict[str, Any]:
        return {"resourceType": "ValueSet", "id": vid, "url": f"{VS}/{vid}", "version": VERSION, "name": vid,
                "title": title, "status": "draft", "date": DATE, "publisher": "fhir-hub",
                "compose": {"include": [{"system": f"{CS}/{s}"} for s in systems]}}
    return [vs("vn-core-province-any", "Provinces, pre-2025 (63) and 2025 (34) lists",
               ("vn-province-pre2025", "vn-province-2025")),
            vs("vn-core-ward-any", "Communes, pre-2025 (10,051) and 2025 (3,321) lists",
               ("vn-ward-pre2025", "vn-ward-2025"))]


def profile(sid: str, name: str, title: str, type_: str, base: str, diff: list[Any], description: str,
            kind: str = "resource", context: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    flat: list[dict[str, Any]] = []
    for item in diff:
        flat.extend(item if isinstance(item, list) else [item])
    sd: dict[str, Any] = {
        "resourceType": "StructureDefinition", "id": sid, "url": f"{SD}/{sid}", "version": VERSION, "name": name,
        "title": title, "status": "draft", "date": DATE, "publisher": "fhir-hub (after the draft VN Core IG)",
        "description": description, "fhirVersion": "4.0.1", "kind": kind, "abstract": False, "type": type_,
        "baseDefinition": base, "derivation": "constraint", "differential": {"element": flat},
    }
    if context:
        sd["context"] = context
    return sd


# --------------------------------------------------------------------------- snapshot generation


class Base:
    """The R4 StructureDefinitions (resources, types, the vital-signs profiles) by URL."""

    def __init__(self, defs: Path):
        self.by_url: dict[str, dict[str, Any]] = {}
        for name in ("profiles-types.json", "profiles-resources.json", "profiles-others.json"):
            for entry in orjson.loads((defs / name).read_bytes())["entry"]:
                res = entry["resource"]
                if res["resourceType"] == "StructureDefinition":
                    self.by_url[res["url"]] = res

    def type_elements(self, code: str) -> list[dict[str, Any]]:
        return list(self.by_url[f"{R4}/{code}"]["snapshot"]["element"])


# --------------------------------------------------------------------------- R4 value sets


def _concepts(concepts: list[dict[str, Any]]) -> Iterable[str]:
    for c in concepts:
        yield c["code"]
        yield from _concepts(c.get("concept", []))


def r4_value_sets(defs: Path, urls: set[str]) -> dict[str, dict[str, list[str]]]:
    """``{url: {system: [codes]}}`` for each of ``urls`` whose R4 ValueSet is enumerable from concept lists
    and whole small code systems (no filters); the others are left out and their bindings unchecked."""
    resources: dict[str, dict[str, Any]] = {}
    for name in ("valuesets.json", "v3-codesystems.json", "v2-tables.json"):
        for entry in orjson.loads((defs / name).read_bytes())["entry"]:
            res = entry["resource"]
            resources.setdefault(f"{res['resourceType']}|{res['url']}", res)

    def enumerate_vs(url: str, depth: int = 0) -> dict[str, list[str]] | None:
        vs = resources.get(f"ValueSet|{url}")
        if vs is None or depth > 4 or "exclude" in vs.get("compose", {}):
            return None
        out: dict[str, list[str]] = {}
        for inc in vs.get("compose", {}).get("include", []):
            if inc.get("filter"):
                return None
            for ref in inc.get("valueSet", []):
                sub = enumerate_vs(ref.split("|", 1)[0], depth + 1)
                if sub is None:
                    return None
                for s, codes in sub.items():
                    out.setdefault(s, []).extend(codes)
            system = inc.get("system")
            if system is None:
                continue
            if inc.get("concept"):
                out.setdefault(system, []).extend(c["code"] for c in inc["concept"])
            else:
                cs = resources.get(f"CodeSystem|{system}")
                if cs is None or cs.get("content") != "complete":
                    return None
                out.setdefault(system, []).extend(_concepts(cs.get("concept", [])))
        return {s: sorted(set(c)) for s, c in out.items()}

    found = {}
    for url in sorted(urls):
        codes = enumerate_vs(url)
        if codes is not None:
            found[url] = codes
    return found


# --------------------------------------------------------------------------- main


def build(shared: Path) -> dict[str, Any]:
    """File name -> content."""
    base = Base(shared / "fhir-r4" / "definitions")
    sds = [patient(shared), address(), encounter(), encounter_outpatient(), observation_vitals(), observation_lab(),
           condition(), coverage(), organization(), practitioner(), *extensions()]
    built: dict[str, dict[str, Any]] = {}
    for sd in sds:  # bases before the profiles that derive from them
        parent = built.get(sd["baseDefinition"]) or base.by_url[sd["baseDefinition"]]
        sd["snapshot"] = {"element": snapshot(sd, parent["snapshot"]["element"], base)}
        built[sd["url"]] = sd
    bound = {e["binding"]["valueSet"].split("|", 1)[0] for sd in sds for e in sd["snapshot"]["element"]
             if e.get("binding", {}).get("strength") in ("required", "extensible") and "valueSet" in e["binding"]}
    files: dict[str, Any] = {f"StructureDefinition-{sd['id']}.json": sd for sd in sds}
    for vs in extra_value_sets():
        files[f"ValueSet-{vs['id']}.json"] = vs
    files["r4-valuesets.json"] = r4_value_sets(shared / "fhir-r4" / "definitions",
                                               {u for u in bound if not u.startswith(CORE)})
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared",
                        help="folder holding fhir-r4/definitions and vn/code-lists (default: beside the repo)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default: fhir_hub/profiles/data)")
    args = parser.parse_args(argv)
    if not (args.shared / "fhir-r4" / "definitions").is_dir():
        print(f"definitions not found under {args.shared}", file=sys.stderr)
        return 2
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    try:
        files = build(args.shared)
    except SnapshotError as exc:
        print(exc, file=sys.stderr)
        return 2
    for name, content in files.items():
        raw = orjson.dumps(content, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2) + b"\n"
        (out / name).write_bytes(raw)
        print(f"{name:60} {len(raw):>9,} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
