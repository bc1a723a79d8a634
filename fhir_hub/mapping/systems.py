"""Identifier systems, CodeSystem and extension URLs the claims mapping writes.

The VN ones are the draft VN Core IG's (``http://fhir.ehealth.gov.vn/core``, NamingSystems in
``shared/vn/fhir-ig-refs``) and the CodeSystems ``fhir_hub/terminology`` builds; ``urn:fhir-hub:``
systems stand in where no published one exists (DMDC catalogue codes, claim line ids), so that
what is a placeholder is plain from the URL.  The specs refer to these by name (``sid.national_id``)
rather than repeating URLs.
"""

from __future__ import annotations

_CORE = "http://fhir.ehealth.gov.vn/core"
_TERM = "http://terminology.hl7.org/CodeSystem"

NATIONAL_ID = f"{_CORE}/sid/national_id"
INSURANCE_NUMBER = f"{_CORE}/sid/insurance_number"
PATIENT_INTERNAL_ID = f"{_CORE}/sid/patient-internal-id"
#: The facility code (MA_CSKCB), as the demo data writes it.
FACILITY_CODE = f"{_CORE}/sid/provider-code"
VISIT_NUMBER = f"{_CORE}/sid/VisitNumber"
MEDICAL_RECORD = f"{_CORE}/sid/MRN"
#: One claim line (facility, MA_LK, table, STT): lets a re-import update the resource it made.
CLAIM_LINE = "urn:fhir-hub:qd130:line"
#: Practising-certificate (licence) number of health workers, CCHN: the VN Core Practitioner
#: profile's ``cchn`` slice.
PRACTITIONER_LICENCE = "urn:fhir-hub:sid:cchn"
#: The social-insurance number (mã số BHXH) of staff who sign papers (MA_TTDV, MA_BS of XML7).
SOCIAL_INSURANCE = "urn:fhir-hub:sid:bhxh"
#: Numbers of papers a claim carries: discharge archive number, referral and re-exam papers.
PAPER_NUMBER = "urn:fhir-hub:qd130:paper"
#: Referral reasons (MA_LYDO_CT): a QĐ 130 list with no published CodeSystem.
REFERRAL_REASON = "urn:fhir-hub:qd130:ma-lydo-ct"
SNOMED = "http://snomed.info/sct"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
#: sha256 of an imported file.
FILE_SHA256 = "urn:fhir-hub:sha256"

ICD10_VN = f"{_CORE}/CodeSystem/vn-icd10"
ICD9_CM = "http://hl7.org/fhir/sid/icd-9-cm"
ETHNIC_GROUP = f"{_CORE}/CodeSystem/vn-core-race"
OCCUPATION = f"{_CORE}/CodeSystem/vn-core-occupation"
VISIT_TYPE = f"{_CORE}/CodeSystem/vn-qd130-ma-loai-kcb"
DISCHARGE_TYPE = f"{_CORE}/CodeSystem/vn-qd130-ma-loai-rv"
TREATMENT_RESULT = f"{_CORE}/CodeSystem/vn-qd130-ket-qua-dtri"
BHYT_OBJECT = f"{_CORE}/CodeSystem/vn-bhyt-object-code"
PROVINCE_PRE2025 = f"{_CORE}/CodeSystem/vn-province-pre2025"
PROVINCE_2025 = f"{_CORE}/CodeSystem/vn-province-2025"
WARD_PRE2025 = f"{_CORE}/CodeSystem/vn-ward-pre2025"
WARD_2025 = f"{_CORE}/CodeSystem/vn-ward-2025"
ADMIN_ADDRESS = f"{_CORE}/CodeSystem/vn-core-administrative-address"
#: DMDC catalogue codes (drugs, services, result indicators, routes, groups): no published system.
DMDC_DRUG = "urn:fhir-hub:vn-dmdc:thuoc"
DMDC_SERVICE = "urn:fhir-hub:vn-dmdc:dvkt"
DMDC_INDICATOR = "urn:fhir-hub:vn-dmdc:chi-so"
DMDC_ROUTE = "urn:fhir-hub:vn-dmdc:duong-dung"
DMDC_GROUP = "urn:fhir-hub:vn-dmdc:nhom"
DMDC_SUPPLY = "urn:fhir-hub:vn-dmdc:vtyt"
#: Nationality codes of QĐ 130 (MA_QUOCTICH, 3 digits, "000" Viet Nam): no published CodeSystem.
NATIONALITY = "urn:fhir-hub:qd130:ma-quoctich"
#: Department codes (MA_KHOA, QĐ 5937 annex 5) and a supply's model code (MA_HIEU_SP).
DEPARTMENT = "urn:fhir-hub:qd130:ma-khoa"
PRODUCT_MODEL = "urn:fhir-hub:qd130:ma-hieu-sp"
DRUG_REGISTRATION = "urn:fhir-hub:vn-dav:so-dang-ky"

RACE_EXT = f"{_CORE}/StructureDefinition/extension-race"
OCCUPATION_EXT = f"{_CORE}/StructureDefinition/extension-occupation"
ADMIN_ADDRESS_EXT = f"{_CORE}/StructureDefinition/extension-administrative-address"
BIRTH_TIME_EXT = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
#: On Provenance.entity (the record as sent): "TABLE: FIELD, FIELD (STT 2), …", the input fields
#: no resource holds, kept with the record (no published extension says this).
UNMAPPED_EXT = "urn:fhir-hub:StructureDefinition/unmapped-fields"

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V2_0203 = f"{_TERM}/v2-0203"
ACT_CODE = f"{_TERM}/v3-ActCode"
COVERAGE_CLASS = f"{_TERM}/coverage-class"
OBSERVATION_CATEGORY = f"{_TERM}/observation-category"
CONDITION_CATEGORY = f"{_TERM}/condition-category"
CONDITION_VERIFICATION = f"{_TERM}/condition-ver-status"
DIAGNOSIS_ROLE = f"{_TERM}/diagnosis-role"
PROVENANCE_ROLE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
V2_0074 = f"{_TERM}/v2-0074"

#: Names the specs may use in ``value: {sid: ...}`` / ``{system: ...}``.
BY_NAME: dict[str, str] = {k.lower(): v for k, v in globals().items() if k.isupper() and isinstance(v, str)}
