"""The outpatient template registry: loading and its errors, the build of all 42 templates, the lint,
a conforming and an incomplete record per template, the CLI, and the shipped R4 base against a rebuild."""

from __future__ import annotations

import copy
import shutil
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from fhir_hub import profiles
from fhir_hub.cli.main import app
from fhir_hub.profiles import build, examples, lint, registry, template_check
from fhir_hub.profiles.registry import RegistryError
from fhir_hub.validation import profile, structure

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "fhir_hub" / "profiles" / "templates"
REG = registry.registry()
CODES = sorted(REG.templates)
runner = CliRunner()


@pytest.fixture(scope="module")
def built() -> build.Built:
    return build.shipped_build()


@pytest.fixture(scope="module")
def package_members(built: build.Built) -> dict[str, dict[str, Any]]:
    return build.unpack(build.package(built)[1])


def _pairs(bundle: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]], set[str]]:
    pairs = [(e["fullUrl"], e["resource"]) for e in bundle["entry"]]
    ref, enc = next(p for p in pairs if p[1]["resourceType"] == "Encounter")
    return enc, pairs, {ref}


# --------------------------------------------------------------------------- the registry


def test_the_registry_has_42_templates_4_from_tt32_forms() -> None:
    assert len(REG.templates) == 42
    assert {t.code: t.form for t in REG.templates.values() if t.form} == {
        "general": "15/BV-01", "dental": "16/BV-01", "traditional-medicine": "19/BV-01", "rehabilitation": "29/BV-01"}
    general = REG.template("general")
    assert general is not None and general.extends is None
    base = [i.code for i in general.items()]
    for t in REG.templates.values():
        assert t.vi and t.en
        if t.code != "general":  # every template is 15/BV-01 plus its own items, in that order
            assert t.extends == "general" and [i.code for i in t.items()][:len(base)] == base
    required = {i.code for i in general.required()}
    assert {"29299-5", "8867-4", "8310-5", "85354-9", "9279-1", "29463-7", "diagnosis", "18776-5"} <= required


def test_specialty_items() -> None:
    def req(code: str) -> set[str]:
        t = REG.template(code)
        assert t is not None
        return {i.code for i in t.required()}
    assert {"visual-acuity-right", "visual-acuity-left", "iop-right", "iop-left"} <= req("eye")
    assert "tooth-chart" in req("dental")
    assert {"11884-4", "11881-0", "55283-6"} <= req("obstetrics")
    assert "9843-4" in req("paediatrics") and "44261-6" in req("psychiatry") and "4548-4" in req("diabetes")
    assert {"20447-9", "24467-3"} <= req("hiv")
    nutrition = REG.template("nutrition")
    assert nutrition is not None and "39156-5" in {i.code for i in nutrition.required()}  # optional in general
    bp = REG.catalogue[(registry.LOINC, "85354-9")]
    assert [(c.code, c.unit) for c in bp.components] == [("8480-6", "mm[Hg]"), ("8462-4", "mm[Hg]")]


def test_loinc_codes_are_in_the_fragment_or_listed() -> None:
    from fhir_hub import terminology

    cs = terminology.code_system(registry.LOINC)
    assert cs is not None
    outside = {i.code for i in REG.used_items() if i.system == registry.LOINC and i.code not in cs.concepts}
    assert outside == set(REG.loinc_outside_fragment)
    readme = (SHIPPED / "README.md").read_text(encoding="utf-8")
    assert all(code in readme for code in outside)


def _copy(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(SHIPPED, folder)
    return folder


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.mark.parametrize(("file", "old", "new", "message"), [
    ("items.yaml", "unit: /min, category: vital-signs}", "unit: /minute, category: vital-signs}",
     "items.yaml: item '8867-4': unknown UCUM unit '/minute'"),
    ("eye.yaml", "{code: iop-left, required: true}", "{code: iop-middle, required: true}",
     "eye.yaml: item 'iop-middle': item code unknown to the terminology"),
    ("eye.yaml", "{code: 70948-5, required: true}", "{code: 99999-9, required: true}",
     "eye.yaml: item '99999-9': item code unknown to the terminology"),
    ("items.yaml", "9843-4: {vi: Vòng đầu,", "12345-6: {vi: Vòng đầu,",
     "items.yaml: item '12345-6': LOINC code unknown to the terminology"),
    ("eye.yaml", "{code: iop-left, required: true}", "{code: iop-right, required: false}",
     "eye.yaml: item 'iop-right': duplicate item"),
    ("dental.yaml", "code: dental", "code: eye", "dental.yaml: the file of template 'eye' must be named eye.yaml"),
    ("eye.yaml", "extends: general", "extends: generic", "eye.yaml: extends 'generic', which is no template"),
    ("items.yaml", "type: Quantity, unit: cm, category: vital-signs}", "type: Quantity, unit: cm, category: vitals}",
     "unknown category 'vitals'"),
    ("items.yaml", 'valueSet: "http://fhir.ehealth.gov.vn/core/ValueSet/vn-icd10"',
     'valueSet: "http://fhir.ehealth.gov.vn/core/ValueSet/nope"', "item 'diagnosis': unknown ValueSet"),
    ("eye.yaml", "required: true}", "required: yes-please}", "eye.yaml: item 'visual-acuity-right': 'required' is"),
    ("eye.yaml", "  - id: eye\n", "  - id: eye\n    colour: blue\n", "eye.yaml: unknown key 'colour'"),
    ("eye.yaml", "title: {vi:", "title: [", "eye.yaml: not valid YAML"),
])
def test_registry_errors_name_the_file_and_item(tmp_path: Path, file: str, old: str, new: str, message: str) -> None:
    folder = _copy(tmp_path)
    _edit(folder / file, old, new)
    with pytest.raises(RegistryError) as exc:
        registry.load(folder)
    assert message in str(exc.value)


def test_duplicate_template_code_and_cycles(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    (folder / "eye2.yaml").write_text((folder / "eye.yaml").read_text(encoding="utf-8").replace("code: eye", "code: eye2"),
                                      encoding="utf-8")
    assert "eye2" in registry.load(folder).templates
    _edit(folder / "general.yaml", "form: 15/BV-01\n", "form: 15/BV-01\nextends: eye\n")
    with pytest.raises(RegistryError, match="extends it back"):
        registry.load(folder)


# --------------------------------------------------------------------------- the build


@pytest.mark.parametrize("code", CODES)
def test_each_template_builds(code: str, built: build.Built) -> None:
    t = REG.template(code)
    assert t is not None
    sds = build.template_structure_definitions()
    enc = sds[build.encounter_url(code)]
    assert enc["baseDefinition"] == profiles.ENCOUNTER_OUTPATIENT and enc["snapshot"]["element"]
    slice_el = next(e for e in enc["snapshot"]["element"] if e["id"] == "Encounter.type:template")
    assert slice_el["min"] == 1 and slice_el["patternCodeableConcept"]["coding"][0]["code"] == code
    for item in t.items():
        if item.type != "Condition":
            assert build.observation_url(item) in sds, item.code
    q = next(q for q in built.questionnaires if q["url"] == build.questionnaire_url(code))
    questions = [i for s in q["item"] for i in s["item"]]
    assert [i["linkId"] for i in questions] == [i.link_id for i in t.items()]
    assert [i["required"] for i in questions] == [i.required for i in t.items()]
    assert structure.validate(q) == []


def test_observation_profiles_by_kind(built: build.Built) -> None:
    by_url = {sd["url"]: sd for sd in built.observation_profiles}
    pulse = by_url[f"{build.PREFIX}obs-loinc-8867-4"]
    assert pulse["baseDefinition"] == profiles.VITAL_SIGNS
    assert by_url[f"{build.PREFIX}obs-loinc-4548-4"]["baseDefinition"] == profiles.LAB
    va = by_url[f"{build.PREFIX}obs-visual-acuity-right"]
    assert va["baseDefinition"] == build.R4_OBSERVATION
    value = next(e for e in va["snapshot"]["element"] if e["id"] == "Observation.value[x]")
    assert [t["code"] for t in value["type"]] == ["string"]
    assert len(built.observation_profiles) == len([i for i in REG.used_items() if i.type != "Condition"])


def test_the_package(package_members: dict[str, dict[str, Any]]) -> None:
    manifest = package_members["package/package.json"]
    assert manifest["name"] == build.PACKAGE_NAME and manifest["fhirVersions"] == ["4.0.1"]
    assert manifest["dependencies"] == {"hl7.fhir.r4.core": "4.0.1"}
    index = package_members["package/.index.json"]["files"]
    assert len(index) == len(package_members) - 2
    kinds: dict[str, int] = {}
    for f in index:
        kinds[f["resourceType"]] = kinds.get(f["resourceType"], 0) + 1
        assert f"package/{f['filename']}" in package_members
    assert kinds["Questionnaire"] == 42 and kinds["CodeSystem"] == 2
    assert kinds["StructureDefinition"] == 42 + len(profiles.urls()) + len(
        [i for i in REG.used_items() if i.type != "Condition"])
    assert build.package()[1] == build.package()[1]  # reproducible bytes


def test_profiles_check_passes_on_the_built_package(tmp_path: Path) -> None:
    out = runner.invoke(app, ["profiles", "build", "--out", str(tmp_path)])
    assert out.exit_code == 0, out.output
    [tgz] = list(tmp_path.glob("*.tgz"))
    assert tgz.name == f"{build.PACKAGE_NAME}-{build.VERSION}.tgz"
    out = runner.invoke(app, ["profiles", "check", str(tgz)])
    assert out.exit_code == 0, out.output
    assert "0 finding(s)" in out.output


def _break(members: dict[str, dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [copy.deepcopy(r) if k.endswith(name) else r for k, r in members.items()
            if not k.endswith(("package.json", ".index.json"))]


@pytest.mark.parametrize(("change", "message"), [
    (lambda sd: sd["snapshot"]["element"].__setitem__(
        next(i for i, e in enumerate(sd["snapshot"]["element"]) if e["id"] == "Encounter.type:template"),
        {**next(e for e in sd["snapshot"]["element"] if e["id"] == "Encounter.type:template"), "min": 0}),
     "snapshot min 0 differs from the differential's 1"),
    (lambda sd: sd.__setitem__("baseDefinition", "http://example.org/nope"), "base 'http://example.org/nope' does not resolve"),
    (lambda sd: sd["differential"]["element"][0].__setitem__("binding", {"strength": "required",
                                                                        "valueSet": "http://example.org/vs"}),
     "binding to ValueSet http://example.org/vs that is not known"),
    (lambda sd: sd["snapshot"]["element"][0].setdefault("constraint", []).append(
        {"key": "bad-1", "severity": "error", "human": "x", "expression": "value.where(", "source": sd["url"]}),
     "invariant bad-1 does not compile"),
    (lambda sd: sd["snapshot"]["element"][3].__setitem__("type", [{"code": "Reference", "targetProfile": [
        "http://example.org/StructureDefinition/Nope"]}]), "type reference http://example.org/StructureDefinition/Nope"),
])
def test_profiles_check_finds_problems(package_members: dict[str, dict[str, Any]], change: Any, message: str) -> None:
    resources = _break(package_members, "StructureDefinition-vn-template-eye.json")
    sd = next(r for r in resources if r["resourceType"] == "StructureDefinition" and r["id"] == "vn-template-eye")
    change(sd)
    findings = lint.lint(resources)
    assert findings and all(f.resource == build.encounter_url("eye") for f in findings)
    assert any(message in f.message for f in findings), findings


def test_profiles_check_finds_a_broken_questionnaire_definition(package_members: dict[str, dict[str, Any]]) -> None:
    resources = _break(package_members, "Questionnaire-vn-template-eye.json")
    q = next(r for r in resources if r.get("resourceType") == "Questionnaire" and r["id"] == "vn-template-eye")
    q["item"][0]["item"][0]["definition"] = "http://example.org/sd#Observation.value[x]"
    [finding] = lint.lint(resources)
    assert "names no known profile" in finding.message


def test_the_shipped_r4_base_matches_a_rebuild(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import build_template_base
    finally:
        sys.path.remove(str(ROOT / "tools"))
    assert build_template_base.main(["--shared", str(ROOT.parent / "shared"), "--out", str(tmp_path)]) == 0
    shipped = ROOT / "fhir_hub" / "profiles" / "base"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in shipped.iterdir())
    for p in tmp_path.iterdir():
        assert p.read_bytes() == (shipped / p.name).read_bytes(), p.name


# --------------------------------------------------------------------------- records per template


@pytest.mark.parametrize("code", CODES)
def test_a_conforming_record_validates_clean_and_a_missing_item_is_named(code: str) -> None:
    t = REG.template(code)
    assert t is not None
    bundle = examples.bundle(t)
    assert profile.validate_tree(bundle) == []
    enc, pairs, names = _pairs(bundle)
    result = template_check.check(enc, pairs, names)
    assert result.complete and len(result.present) == len(list(t.items()))
    # leave out the template's own last required item (the general record's diagnosis for `general`)
    gone = [i for i in t.required() if i.code not in {x.code for x in REG.template("general").required()}] \
        if code != "general" else [i for i in t.required() if i.type == "Condition"]
    item = gone[-1] if gone else t.required()[-1]
    incomplete = examples.bundle(t, omit=[item.code])
    assert [i.severity for i in profile.validate_tree(incomplete)
            if i.severity in ("error", "fatal")] == []  # each resource still conforms…
    enc, pairs, names = _pairs(incomplete)
    result = template_check.check(enc, pairs, names)
    assert not result.complete and result.missing == [item]  # …but the record lacks the item
    [issue] = template_check.issues(result)
    assert item.en in issue.diagnostics and item.vi in issue.vi


def test_the_validator_checks_template_profiles() -> None:
    t = REG.template("obstetrics")
    assert t is not None
    bundle = examples.bundle(t)
    for e in bundle["entry"]:
        r = e["resource"]
        code = r.get("code", {}).get("coding", [{}])[0].get("code")
        if code == "11884-4":
            r["valueQuantity"]["code"] = "d"
        if code == "55283-6":
            del r["encounter"]
        if r["resourceType"] == "Encounter":
            r["type"] = r["type"][:1]
    found = {(i.expression[0], i.diagnostics) for i in profile.validate_tree(bundle)}
    assert ("Bundle.entry[2].resource.type", "Encounter.type:template has 0 item(s); the profile requires at least 1") in found
    assert any(d.startswith("Constraint vn-tpl-unit failed: Gestational age Estimated is recorded in wk") for _, d in found)
    assert any(x.endswith(".encounter") for x, _ in found)


def test_template_check_rules() -> None:
    t = REG.template("general")
    assert t is not None
    bundle = examples.bundle(t)
    enc, pairs, names = _pairs(bundle)
    pulse = next(r for _, r in pairs if r.get("code", {}).get("coding", [{}])[0].get("code") == "8867-4")
    pulse["status"] = "entered-in-error"
    other = copy.deepcopy(next(r for _, r in pairs if r.get("code", {}).get("coding", [{}])[0].get("code") == "8310-5"))
    next(r for _, r in pairs if r.get("code", {}).get("coding", [{}])[0].get("code") == "8310-5")["encounter"] = {
        "reference": "Encounter/other"}
    del other["valueQuantity"]
    other["dataAbsentReason"] = {"text": "not measured"}
    pairs.append(("urn:uuid:x", other))
    result = template_check.check(enc, pairs, names)
    assert [i.code for i in result.missing] == ["8867-4", "8310-5"]
    enc2 = {**enc, "type": enc["type"][:1], "meta": {}}
    with pytest.raises(LookupError):
        template_check.check(enc2, pairs, names)
    assert template_check.template_of({**enc2, "meta": {"profile": [build.encounter_url("eye")]}}) == REG.template("eye")


def test_cli_template_check(tmp_path: Path) -> None:
    t = REG.template("hiv")
    assert t is not None
    ok, bad = tmp_path / "ok.json", tmp_path / "bad.json"
    ok.write_bytes(orjson.dumps(examples.bundle(t)))
    bad.write_bytes(orjson.dumps(examples.bundle(t, omit=["20447-9"])))
    out = runner.invoke(app, ["profiles", "template-check", str(ok)])
    assert out.exit_code == 0 and "complete" in out.output
    out = runner.invoke(app, ["profiles", "template-check", str(ok), str(bad), "--lang", "vi"])
    assert out.exit_code == 1 and "Tải lượng vi rút HIV" in out.output
    out = runner.invoke(app, ["profiles", "template-check", str(bad), "--format", "json"])
    doc = orjson.loads(out.stdout)
    assert doc[0]["missing"] == [{"code": "20447-9", "name": t.required()[-2].en}] and not doc[0]["complete"]
    out = runner.invoke(app, ["profiles", "template-check", str(ok), "--template", "eye"])
    assert out.exit_code == 1
    ok.write_bytes(orjson.dumps({"resourceType": "Patient"}))
    assert runner.invoke(app, ["profiles", "template-check", str(ok)]).exit_code == 2


def test_cli_build_reports_registry_errors(tmp_path: Path) -> None:
    folder = _copy(tmp_path)
    _edit(folder / "items.yaml", "unit: kg,", "unit: kilo,")
    out = runner.invoke(app, ["profiles", "build", "--registry", str(folder), "--out", str(tmp_path / "o")])
    assert out.exit_code == 2 and "unknown UCUM unit 'kilo'" in out.output
