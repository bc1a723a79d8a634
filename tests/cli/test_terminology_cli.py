"""``fhir-hub terminology``: the shipped catalogue answered offline, with exit codes a script can use."""

from __future__ import annotations

from typer.testing import CliRunner

from fhir_hub.cli.main import app

runner = CliRunner()
CORE = "http://fhir.ehealth.gov.vn/core/"


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["terminology", *args], terminal_width=200)
    return result.exit_code, result.output


def test_lookup_shows_display_designation_and_parent() -> None:
    code, out = run("lookup", CORE + "CodeSystem/vn-icd10", "E11.9")
    assert code == 0 and "Bệnh đái tháo đường" in out and "Non-insuline-dependent" in out and "E11" in out
    assert run("lookup", CORE + "CodeSystem/vn-icd10", "NOPE")[0] == 1
    assert run("lookup", "urn:not-shipped", "x")[0] == 2


def test_validate_code_against_value_sets_and_code_systems() -> None:
    gender = ("http://hl7.org/fhir/ValueSet/administrative-gender", "--system", "http://hl7.org/fhir/administrative-gender")
    assert run("validate-code", gender[0], "male", *gender[1:])[0] == 0
    code, out = run("validate-code", gender[0], "man", *gender[1:])
    assert code == 1 and "invalid" in out
    assert run("validate-code", CORE + "CodeSystem/vn-core-race", "01")[0] == 0
    assert run("validate-code", "urn:none", "x")[0] == 2


def test_expand_with_a_folded_filter_and_translate_old_to_new() -> None:
    code, out = run("expand", CORE + "ValueSet/vn-province-2025", "--filter", "ho chi minh")
    assert code == 0 and "79" in out and "Hồ Chí Minh" in out and "1 code(s)" in out
    assert run("expand", CORE + "ValueSet/vn-province-2025", "--filter", "zzzz")[0] == 1
    code, out = run("translate", "74", "--system", CORE + "CodeSystem/vn-province-pre2025")
    assert code == 0 and "79" in out and "wider" in out
    assert run("translate", "74", "--map", "urn:no-map")[0] == 2
