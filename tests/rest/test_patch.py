"""Tests for fhir_hub.rest.patch: JSON Patch (RFC 6902) and FHIRPath Patch (R4 fhirpatch.html)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fhir_hub.errors import FhirError
from fhir_hub.rest.patch import apply_fhirpath_patch, apply_json_patch, default_is_repeating


def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": "urn:mrn", "value": "42"}],
        "name": [
            {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
            {"use": "nickname", "given": ["Jim"]},
        ],
        "telecom": [{"system": "phone", "value": "555-1234", "use": "home"}],
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{"url": "urn:ext:time", "valueTime": "14:35:00"}]},
    }


def observation() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "valueQuantity": {"value": 72.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    }


def raises(status: int, fn: Any, *args: Any) -> FhirError:
    with pytest.raises(FhirError) as info:
        fn(*args)
    assert info.value.status == status, info.value.issues
    return info.value


def diag(err: FhirError) -> str:
    return err.issues[0].diagnostics


# ================================================================ JSON Patch


class TestJsonPatchOps:
    def test_add_member(self) -> None:
        out = apply_json_patch(patient(), [{"op": "add", "path": "/gender", "value": "male"}])
        assert out["gender"] == "male"

    def test_add_replaces_existing_member(self) -> None:
        out = apply_json_patch(patient(), [{"op": "add", "path": "/birthDate", "value": "2000-01-01"}])
        assert out["birthDate"] == "2000-01-01"

    def test_add_inserts_at_array_index(self) -> None:
        out = apply_json_patch(patient(), [{"op": "add", "path": "/name/0/given/0", "value": "Dr"}])
        assert out["name"][0]["given"] == ["Dr", "Peter", "James"]

    def test_add_at_array_length_and_dash_append(self) -> None:
        ops = [
            {"op": "add", "path": "/name/0/given/2", "value": "A"},
            {"op": "add", "path": "/name/0/given/-", "value": "B"},
        ]
        out = apply_json_patch(patient(), ops)
        assert out["name"][0]["given"] == ["Peter", "James", "A", "B"]

    def test_remove_member_and_array_element(self) -> None:
        ops = [{"op": "remove", "path": "/_birthDate"}, {"op": "remove", "path": "/name/1"}]
        out = apply_json_patch(patient(), ops)
        assert "_birthDate" not in out
        assert [n["use"] for n in out["name"]] == ["official"]

    def test_replace(self) -> None:
        out = apply_json_patch(
            patient(), [{"op": "replace", "path": "/telecom/0/value", "value": "555-9999"}]
        )
        assert out["telecom"][0]["value"] == "555-9999"

    def test_move_member_and_within_array(self) -> None:
        ops = [
            {"op": "move", "from": "/name/1", "path": "/name/0"},
            {"op": "move", "from": "/birthDate", "path": "/deceasedDateTime"},
        ]
        out = apply_json_patch(patient(), ops)
        assert [n["use"] for n in out["name"]] == ["nickname", "official"]
        assert out["deceasedDateTime"] == "1974-12-25" and "birthDate" not in out

    def test_move_to_same_place_is_noop(self) -> None:
        assert apply_json_patch(patient(), [{"op": "move", "from": "/name", "path": "/name"}]) == patient()

    def test_copy_is_deep(self) -> None:
        ops = [
            {"op": "copy", "from": "/telecom/0", "path": "/telecom/-"},
            {"op": "replace", "path": "/telecom/1/use", "value": "work"},
        ]
        out = apply_json_patch(patient(), ops)
        assert [t["use"] for t in out["telecom"]] == ["home", "work"]

    def test_test_passes(self) -> None:
        ops = [
            {
                "op": "test",
                "path": "/name/0",
                "value": {"given": ["Peter", "James"], "family": "Chalmers", "use": "official"},
            },
            {"op": "test", "path": "/identifier/0/value", "value": "42"},
        ]
        assert apply_json_patch(patient(), ops) == patient()

    def test_escapes(self) -> None:
        doc = {"resourceType": "Basic", "id": "b", "a/b": 1, "m~n": 2, "~1": 3}
        ops = [
            {"op": "replace", "path": "/a~1b", "value": 10},
            {"op": "replace", "path": "/m~0n", "value": 20},
            {"op": "replace", "path": "/~01", "value": 30},
        ]
        assert apply_json_patch(doc, ops) == {
            "resourceType": "Basic",
            "id": "b",
            "a/b": 10,
            "m~n": 20,
            "~1": 30,
        }

    def test_empty_key_pointer(self) -> None:
        doc = {"resourceType": "Basic", "id": "b", "": {"x": 1}}
        assert apply_json_patch(doc, [{"op": "replace", "path": "//x", "value": 2}])[""] == {"x": 2}

    def test_root_replace_keeping_identity(self) -> None:
        new = {"resourceType": "Patient", "id": "p1", "active": True}
        assert apply_json_patch(patient(), [{"op": "replace", "path": "", "value": new}]) == new

    def test_input_not_mutated_and_value_not_aliased(self) -> None:
        original = patient()
        value = {"system": "email", "value": "a@b.c"}
        out = apply_json_patch(original, [{"op": "add", "path": "/telecom/-", "value": value}])
        assert original == patient()
        out["telecom"][-1]["value"] = "changed"
        assert value["value"] == "a@b.c"

    def test_empty_patch_is_copy(self) -> None:
        original = patient()
        out = apply_json_patch(original, [])
        assert out == original and out is not original

    def test_unknown_members_ignored(self) -> None:
        out = apply_json_patch(patient(), [{"op": "remove", "path": "/telecom", "value": "ignored", "x": 1}])
        assert "telecom" not in out


class TestJsonPatchTestOp:
    def test_failing_test_is_422_naming_index_and_path(self) -> None:
        ops = [
            {"op": "add", "path": "/gender", "value": "male"},
            {"op": "test", "path": "/birthDate", "value": "1999-01-01"},
        ]
        err = raises(422, apply_json_patch, patient(), ops)
        assert "operation 1 (test)" in diag(err)
        assert "/birthDate" in diag(err) and "1999-01-01" in diag(err) and "1974-12-25" in diag(err)

    @pytest.mark.parametrize(
        ("actual", "expected", "equal"),
        [
            (1, 1.0, True),
            (1, True, False),
            (0, False, False),
            ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, True),
            ([1, 2], [2, 1], False),
            (None, None, True),
            ("1", 1, False),
        ],
    )
    def test_equality_rules(self, actual: Any, expected: Any, equal: bool) -> None:
        doc = {"resourceType": "Basic", "id": "b", "x": actual}
        ops = [{"op": "test", "path": "/x", "value": expected}]
        if equal:
            assert apply_json_patch(doc, ops) == doc
        else:
            raises(422, apply_json_patch, doc, ops)


class TestJsonPatchMalformed:
    @pytest.mark.parametrize(
        ("operations", "fragment"),
        [
            ({"op": "add"}, "must be a JSON array"),
            ("nope", "must be a JSON array"),
            (["add"], "operation 0: must be a JSON object"),
            ([{"path": "/a"}], "operation 0: missing member 'op'"),
            ([{"op": "frob", "path": "/a"}], 'operation 0: unknown op "frob"'),
            ([{"op": ["add"], "path": "/a"}], "unknown op"),
            (
                [{"op": "remove", "path": "/a"}, {"op": "add", "value": 1}],
                "operation 1 (add): missing member 'path'",
            ),
            ([{"op": "add", "path": 3, "value": 1}], "member 'path' must be a string"),
            ([{"op": "add", "path": "/a"}], "operation 0 (add): missing member 'value'"),
            ([{"op": "replace", "path": "/a"}], "operation 0 (replace): missing member 'value'"),
            ([{"op": "test", "path": "/a"}], "operation 0 (test): missing member 'value'"),
            ([{"op": "move", "path": "/a"}], "operation 0 (move): missing member 'from'"),
            ([{"op": "copy", "path": "/a", "from": 1}], "member 'from' must be a string"),
            ([{"op": "remove", "path": "a"}], "is not a JSON Pointer"),
            ([{"op": "copy", "path": "/a", "from": "b"}], "from 'b' is not a JSON Pointer"),
            ([{"op": "remove", "path": "/a~2b"}], "'~' not followed by '0' or '1'"),
            ([{"op": "remove", "path": "/a~"}], "'~' not followed by '0' or '1'"),
            ([{"op": "move", "from": "/name", "path": "/name/0"}], "into its own child"),
        ],
    )
    def test_400(self, operations: Any, fragment: str) -> None:
        err = raises(400, apply_json_patch, patient(), operations)
        assert fragment in diag(err)
        assert err.issues[0].code == "invalid"

    def test_syntax_checked_before_anything_applies(self) -> None:
        # operation 0 would fail with 422, but the malformed operation 1 wins: the document is bad.
        ops = [{"op": "remove", "path": "/nope"}, {"op": "bogus", "path": "/a"}]
        assert "operation 1" in diag(raises(400, apply_json_patch, patient(), ops))


class TestJsonPatchUnprocessable:
    @pytest.mark.parametrize(
        ("operations", "fragments"),
        [
            (
                [{"op": "remove", "path": "/gender"}],
                ["operation 0 (remove)", "'/gender'", "no member 'gender'"],
            ),
            (
                [{"op": "replace", "path": "/name/5/family", "value": "X"}],
                ["'/name/5/family'", "index 5 is out of range"],
            ),
            ([{"op": "add", "path": "/name/3", "value": {}}], ["'/name/3'", "past the end"]),
            ([{"op": "add", "path": "/name/x", "value": {}}], ["'x' is not an array index"]),
            ([{"op": "remove", "path": "/name/01"}], ["'01' is not an array index"]),
            ([{"op": "remove", "path": "/name/-"}], ["'-' is not an array index"]),
            (
                [{"op": "add", "path": "/missing/child", "value": 1}],
                ["'/missing/child'", "no member 'missing'"],
            ),
            ([{"op": "add", "path": "/birthDate/x", "value": 1}], ["not an object or array"]),
            ([{"op": "copy", "from": "/nope", "path": "/x"}], ["from '/nope' does not exist"]),
            ([{"op": "move", "from": "/nope", "path": "/x"}], ["from '/nope' does not exist"]),
            ([{"op": "test", "path": "/nope", "value": 1}], ["path '/nope' does not exist"]),
            ([{"op": "remove", "path": ""}], ["cannot remove the whole resource"]),
        ],
    )
    def test_422(self, operations: list[Any], fragments: list[str]) -> None:
        err = raises(422, apply_json_patch, patient(), operations)
        for fragment in fragments:
            assert fragment in diag(err)

    def test_second_operation_named(self) -> None:
        ops = [{"op": "add", "path": "/gender", "value": "male"}, {"op": "remove", "path": "/active"}]
        assert "operation 1 (remove)" in diag(raises(422, apply_json_patch, patient(), ops))

    @pytest.mark.parametrize(
        "op",
        [
            {"op": "replace", "path": "/id", "value": "other"},
            {"op": "remove", "path": "/id"},
            {"op": "replace", "path": "/resourceType", "value": "Practitioner"},
            {"op": "move", "from": "/id", "path": "/identifier/0/value"},
            {"op": "replace", "path": "", "value": {"resourceType": "Patient", "id": "p2"}},
            {"op": "replace", "path": "", "value": ["not", "an", "object"]},
        ],
    )
    def test_identity_protected(self, op: dict[str, Any]) -> None:
        err = raises(422, apply_json_patch, patient(), [op])
        assert "operation 0" in diag(err)

    def test_failed_patch_leaves_input_untouched(self) -> None:
        original = patient()
        ops = [{"op": "remove", "path": "/name"}, {"op": "test", "path": "/id", "value": "x"}]
        raises(422, apply_json_patch, original, ops)
        assert original == patient()


# JSON values without NaN/inf (not JSON) and with ints inside the float-exact range.
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=12,
)
_keys = st.text(alphabet="ab/~01-", min_size=0, max_size=4).filter(lambda k: k not in ("resourceType", "id"))


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


class TestJsonPatchProperties:
    @settings(max_examples=60, deadline=None)
    @given(body=st.dictionaries(_keys, _json, max_size=4), key=_keys, value=_json)
    def test_add_then_remove_is_identity(self, body: dict[str, Any], key: str, value: Any) -> None:
        doc = {"resourceType": "Basic", "id": "b", **body}
        doc.pop(key, None)
        pointer = "/" + _escape(key)
        ops = [{"op": "add", "path": pointer, "value": value}, {"op": "remove", "path": pointer}]
        assert apply_json_patch(doc, ops) == doc

    @settings(max_examples=60, deadline=None)
    @given(body=st.dictionaries(_keys, _json, min_size=1, max_size=4), data=st.data())
    def test_test_and_replace_with_current_value_is_identity(
        self, body: dict[str, Any], data: st.DataObject
    ) -> None:
        doc = {"resourceType": "Basic", "id": "b", **body}
        # walk down to a random existing location
        key = data.draw(st.sampled_from(sorted(body)))
        tokens, current = [key], body[key]
        while isinstance(current, dict | list) and current and data.draw(st.booleans()):
            if isinstance(current, dict):
                k = data.draw(st.sampled_from(sorted(current)))
                tokens.append(k)
                current = current[k]
            else:
                i = data.draw(st.integers(0, len(current) - 1))
                tokens.append(str(i))
                current = current[i]
        pointer = "".join("/" + _escape(t) for t in tokens)
        ops = [
            {"op": "test", "path": pointer, "value": copy.deepcopy(current)},
            {"op": "replace", "path": pointer, "value": copy.deepcopy(current)},
            {"op": "copy", "from": pointer, "path": "/copied"},
            {"op": "test", "path": "/copied", "value": copy.deepcopy(current)},
            {"op": "remove", "path": "/copied"},
        ]
        doc.pop("copied", None)
        assert apply_json_patch(doc, ops) == doc


# ============================================================ FHIRPath Patch


def op(type_: str, path: str, **parts: Any) -> dict[str, Any]:
    """One ``operation`` parameter. ``value`` is a dict of the value part's content
    (``{"valueString": "x"}`` or ``{"part": [...]}``); ints are valueInteger, the rest valueString."""
    out: list[dict[str, Any]] = [
        {"name": "type", "valueCode": type_},
        {"name": "path", "valueString": path},
    ]
    for name, value in parts.items():
        if name == "value":
            out.append({"name": "value", **value})
        elif isinstance(value, int):
            out.append({"name": name, "valueInteger": value})
        else:
            out.append({"name": name, "valueString": value})
    return {"name": "operation", "part": out}


def params(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(ops)}


def fp(resource: dict[str, Any], *ops: dict[str, Any]) -> dict[str, Any]:
    return apply_fhirpath_patch(resource, params(*ops))


class TestFhirPathAdd:
    def test_add_telecom(self) -> None:
        value = {"valueContactPoint": {"system": "email", "value": "peter@example.org"}}
        out = fp(patient(), op("add", "Patient", name="telecom", value=value))
        assert out["telecom"][-1] == {"system": "email", "value": "peter@example.org"}
        assert len(out["telecom"]) == 2

    def test_add_creates_absent_list(self) -> None:
        res = patient()
        del res["telecom"]
        out = fp(res, op("add", "Patient", name="telecom", value={"valueContactPoint": {"value": "1"}}))
        assert out["telecom"] == [{"value": "1"}]

    def test_add_absent_single_valued(self) -> None:
        out = fp(patient(), op("add", "Patient", name="gender", value={"valueCode": "male"}))
        assert out["gender"] == "male"

    def test_add_existing_single_valued_is_422(self) -> None:
        err = raises(
            422, fp, patient(), op("add", "Patient", name="birthDate", value={"valueDate": "2000-01-01"})
        )
        assert "already has 'birthDate'" in diag(err) and "use replace" in diag(err)

    def test_add_into_nested_element(self) -> None:
        out = fp(
            patient(),
            op("add", "Patient.name.where(use = 'nickname')", name="family", value={"valueString": "C"}),
        )
        assert out["name"][1] == {"use": "nickname", "given": ["Jim"], "family": "C"}

    def test_add_complex_identifier_from_parts(self) -> None:
        value = {
            "part": [
                {"name": "system", "valueUri": "http://example.org/ssn"},
                {"name": "value", "valueString": "123-45-6789"},
            ]
        }
        out = fp(patient(), op("add", "Patient", name="identifier", value=value))
        assert out["identifier"][-1] == {"system": "http://example.org/ssn", "value": "123-45-6789"}

    def test_add_complex_nested_parts_lists_and_choice(self) -> None:
        value = {
            "part": [
                {"name": "use", "valueCode": "maiden"},
                {"name": "given", "valueString": "Ann"},
                {"name": "given", "valueString": "Marie"},
                {"name": "prefix", "valueString": "Ms"},
                {"name": "period", "part": [{"name": "end", "valueDateTime": "2000"}]},
                {
                    "name": "extension",
                    "part": [{"name": "url", "valueUri": "urn:e"}, {"name": "value", "valueBoolean": True}],
                },
            ]
        }
        out = fp(patient(), op("add", "Patient", name="name", value=value))
        assert out["name"][-1] == {
            "use": "maiden",
            "given": ["Ann", "Marie"],
            "prefix": ["Ms"],
            "period": {"end": "2000"},
            "extension": [{"url": "urn:e", "valueBoolean": True}],
        }

    def test_add_contact_with_single_valued_name(self) -> None:
        value = {"part": [{"name": "name", "valueHumanName": {"text": "a name"}}]}
        out = fp(patient(), op("add", "Patient", name="contact", value=value))
        assert out["contact"] == [{"name": {"text": "a name"}}]

    def test_add_choice_element_uses_type_suffix(self) -> None:
        obs = observation()
        del obs["valueQuantity"]
        out = fp(obs, op("add", "Observation", name="value", value={"valueString": "positive"}))
        assert out["valueString"] == "positive" and "value" not in out

    def test_add_choice_element_taken_by_other_type_is_422(self) -> None:
        err = raises(
            422, fp, observation(), op("add", "Observation", name="value", value={"valueString": "x"})
        )
        assert "already has 'valueQuantity'" in diag(err)

    def test_add_choice_element_with_disallowed_type_is_422(self) -> None:
        obs = observation()
        del obs["valueQuantity"]
        err = raises(422, fp, obs, op("add", "Observation", name="value", value={"valueHumanName": {}}))
        assert "does not allow type HumanName" in diag(err)

    def test_add_choice_element_without_type_is_422(self) -> None:
        obs = observation()
        del obs["valueQuantity"]
        value = {"part": [{"name": "value", "valueDecimal": 1}]}
        err = raises(422, fp, obs, op("add", "Observation", name="value", value=value))
        assert "choice element" in diag(err)

    def test_add_extension_with_choice_value_in_parts(self) -> None:
        value = {"part": [{"name": "url", "valueUri": "urn:x"}, {"name": "value", "valueCode": "abc"}]}
        out = fp(patient(), op("add", "Patient", name="extension", value=value))
        assert out["extension"] == [{"url": "urn:x", "valueCode": "abc"}]

    def test_add_contained_resource(self) -> None:
        org = {"resourceType": "Organization", "id": "o", "name": "Org"}
        out = fp(patient(), op("add", "Patient", name="contained", value={"resource": org}))
        assert out["contained"] == [org]
        # and the contained resource can then be addressed by type-aware paths
        out = fp(out, op("replace", "Patient.contained.where(id = 'o').name", value={"valueString": "New"}))
        assert out["contained"][0]["name"] == "New"

    def test_add_to_primitive_is_422(self) -> None:
        err = raises(422, fp, patient(), op("add", "Patient.birthDate", name="x", value={"valueString": "y"}))
        assert "primitive" in diag(err)

    def test_add_path_without_match_is_422(self) -> None:
        err = raises(
            422, fp, patient(), op("add", "Patient.contact", name="gender", value={"valueCode": "male"})
        )
        assert "matched no element" in diag(err)

    def test_is_repeating_hook(self) -> None:
        out = apply_fhirpath_patch(
            patient(),
            params(op("add", "Patient", name="gender", value={"valueCode": "male"})),
            is_repeating=lambda path: True if path == "Patient.gender" else None,
        )
        assert out["gender"] == ["male"]

    def test_primitive_extension_carried(self) -> None:
        value = {
            "valueString": "Pete",
            "_valueString": {"extension": [{"url": "urn:e", "valueBoolean": True}]},
        }
        out = fp(patient(), op("add", "Patient.name[0]", name="given", value=value))
        assert out["name"][0]["given"] == ["Peter", "James", "Pete"]
        assert out["name"][0]["_given"] == [
            None,
            None,
            {"extension": [{"url": "urn:e", "valueBoolean": True}]},
        ]


class TestFhirPathInsert:
    def test_insert_given_at_0(self) -> None:
        out = fp(patient(), op("insert", "Patient.name[0].given", index=0, value={"valueString": "Dr"}))
        assert out["name"][0]["given"] == ["Dr", "Peter", "James"]

    def test_insert_at_end(self) -> None:
        out = fp(
            patient(),
            op("insert", "Patient.name.where(use='official').given", index=2, value={"valueString": "Z"}),
        )
        assert out["name"][0]["given"] == ["Peter", "James", "Z"]

    def test_insert_into_absent_list(self) -> None:
        out = fp(patient(), op("insert", "Patient.name[1].prefix", index=0, value={"valueString": "Mr"}))
        assert out["name"][1]["prefix"] == ["Mr"]

    def test_insert_complex(self) -> None:
        value = {"part": [{"name": "system", "valueCode": "email"}, {"name": "value", "valueString": "x@y"}]}
        out = fp(patient(), op("insert", "Patient.telecom", index=0, value=value))
        assert out["telecom"][0] == {"system": "email", "value": "x@y"}

    def test_insert_index_out_of_range_is_422(self) -> None:
        err = raises(
            422, fp, patient(), op("insert", "Patient.name[0].given", index=3, value={"valueString": "x"})
        )
        assert "index 3 is out of range" in diag(err) and "2 item(s)" in diag(err)
        assert "operation 0 (insert)" in diag(err)

    def test_insert_into_ambiguous_owner_is_422(self) -> None:
        err = raises(
            422, fp, patient(), op("insert", "Patient.name.given", index=0, value={"valueString": "x"})
        )
        assert "matched 2 elements" in diag(err)

    def test_insert_into_single_value_is_422(self) -> None:
        err = raises(
            422, fp, patient(), op("insert", "Patient.birthDate", index=0, value={"valueDate": "2000"})
        )
        assert "not a list" in diag(err)

    def test_insert_keeps_primitive_extensions_aligned(self) -> None:
        res = patient()
        res["name"][0]["_given"] = [None, {"id": "j"}]
        out = fp(res, op("insert", "Patient.name[0].given", index=0, value={"valueString": "Dr"}))
        assert out["name"][0]["_given"] == [None, None, {"id": "j"}]


class TestFhirPathDelete:
    def test_delete_nickname(self) -> None:
        out = fp(patient(), op("delete", "Patient.name.where(use='nickname')"))
        assert [n["use"] for n in out["name"]] == ["official"]

    def test_delete_nothing_matched_is_noop(self) -> None:
        assert fp(patient(), op("delete", "Patient.name.where(use='maiden')")) == patient()
        assert fp(patient(), op("delete", "Observation.status")) == patient()

    def test_delete_primitive_removes_its_extension(self) -> None:
        out = fp(patient(), op("delete", "Patient.birthDate"))
        assert "birthDate" not in out and "_birthDate" not in out

    def test_delete_last_item_removes_list(self) -> None:
        out = fp(patient(), op("delete", "Patient.telecom[0]"))
        assert "telecom" not in out

    def test_delete_list_item_keeps_extensions_aligned(self) -> None:
        res = patient()
        res["name"][0]["_given"] = [{"id": "p"}, {"id": "j"}]
        out = fp(res, op("delete", "Patient.name[0].given[0]"))
        assert out["name"][0]["given"] == ["James"] and out["name"][0]["_given"] == [{"id": "j"}]

    def test_delete_with_first_last_and(self) -> None:
        out = fp(patient(), op("delete", "Patient.name.first().given.last()"))
        assert out["name"][0]["given"] == ["Peter"]
        out = fp(patient(), op("delete", "Patient.telecom.where(system = 'phone' and use = 'home')"))
        assert "telecom" not in out

    def test_delete_two_matches_is_422(self) -> None:
        err = raises(422, fp, patient(), op("delete", "Patient.name"))
        assert "matched 2 elements" in diag(err) and "delete needs exactly one" in diag(err)

    def test_delete_extension_by_url(self) -> None:
        res = patient()
        res["extension"] = [{"url": "urn:a", "valueString": "a"}, {"url": "urn:b", "valueString": "b"}]
        out = fp(res, op("delete", "Patient.extension('urn:a')"))
        assert out["extension"] == [{"url": "urn:b", "valueString": "b"}]
        out = fp(res, op("delete", "Patient.extension.where(value = 'b')"))
        assert out["extension"] == [{"url": "urn:a", "valueString": "a"}]

    def test_delete_resource_itself_is_422(self) -> None:
        assert "resource itself" in diag(raises(422, fp, patient(), op("delete", "Patient")))


class TestFhirPathReplace:
    def test_replace_birth_date_keeps_extension(self) -> None:
        out = fp(patient(), op("replace", "Patient.birthDate", value={"valueDate": "1975-01-01"}))
        assert out["birthDate"] == "1975-01-01"
        assert out["_birthDate"] == patient()["_birthDate"]

    def test_replace_without_type_prefix(self) -> None:
        out = fp(patient(), op("replace", "telecom[0].value", value={"valueString": "0"}))
        assert out["telecom"][0]["value"] == "0"

    def test_replace_observation_value_quantity_value(self) -> None:
        for path in (
            "Observation.valueQuantity.value",
            "Observation.value.value",
            "Observation.value.ofType(Quantity).value",
        ):
            out = fp(observation(), op("replace", path, value={"valueDecimal": 80.1}))
            assert out["valueQuantity"] == {**observation()["valueQuantity"], "value": 80.1}

    def test_replace_choice_with_other_type_renames_in_place(self) -> None:
        obs = observation()
        obs["note"] = [{"text": "after"}]
        out = fp(obs, op("replace", "Observation.value", value={"valueString": "heavy"}))
        assert "valueQuantity" not in out
        assert list(out) == ["resourceType", "id", "status", "code", "valueString", "note"]

    def test_replace_choice_with_disallowed_type_is_422(self) -> None:
        err = raises(422, fp, observation(), op("replace", "Observation.value", value={"valueAddress": {}}))
        assert "does not allow type Address" in diag(err)

    def test_replace_complex_with_parts(self) -> None:
        value = {"part": [{"name": "system", "valueUri": "urn:new"}, {"name": "value", "valueString": "7"}]}
        out = fp(patient(), op("replace", "Patient.identifier[0]", value=value))
        assert out["identifier"] == [{"system": "urn:new", "value": "7"}]

    def test_replace_list_item(self) -> None:
        out = fp(patient(), op("replace", "Patient.name[1].given[0]", value={"valueString": "Jimmy"}))
        assert out["name"][1]["given"] == ["Jimmy"]

    def test_replace_missing_is_422(self) -> None:
        err = raises(422, fp, patient(), op("replace", "Patient.gender", value={"valueCode": "male"}))
        assert "matched no element" in diag(err)

    def test_replace_wrong_resource_type_matches_nothing(self) -> None:
        err = raises(422, fp, patient(), op("replace", "Observation.status", value={"valueCode": "final"}))
        assert "matched no element" in diag(err)

    def test_replace_two_matches_is_422(self) -> None:
        err = raises(422, fp, patient(), op("replace", "Patient.name.given", value={"valueString": "x"}))
        assert "matched 3 elements" in diag(err)
        assert err.issues[0].expression == ("Patient.name.given",)

    @pytest.mark.parametrize(
        "operation",
        [
            op("replace", "Patient.id", value={"valueId": "p2"}),
            op("delete", "Patient.id"),
            op("replace", "Patient.resourceType", value={"valueString": "Practitioner"}),
        ],
    )
    def test_identity_protected(self, operation: dict[str, Any]) -> None:
        err = raises(422, fp, patient(), operation)
        assert "must not change" in diag(err) and err.issues[0].code == "business-rule"

    def test_add_id_when_absent_is_422(self) -> None:
        res = patient()
        del res["id"]
        raises(422, fp, res, op("add", "Patient", name="id", value={"valueId": "x"}))


class TestFhirPathMove:
    def test_move(self) -> None:
        out = fp(patient(), op("move", "Patient.name", source=1, destination=0))
        assert [n["use"] for n in out["name"]] == ["nickname", "official"]

    def test_move_within_nested_list(self) -> None:
        res = patient()
        res["name"][0]["given"].append("Paul")
        res["name"][0]["_given"] = [{"id": "a"}]
        out = fp(res, op("move", "Patient.name[0].given", source=0, destination=2))
        assert out["name"][0]["given"] == ["James", "Paul", "Peter"]
        assert out["name"][0]["_given"] == [None, None, {"id": "a"}]

    @pytest.mark.parametrize(("source", "destination", "which"), [(2, 0, "source"), (0, 2, "destination")])
    def test_move_out_of_range_is_422(self, source: int, destination: int, which: str) -> None:
        err = raises(422, fp, patient(), op("move", "Patient.name", source=source, destination=destination))
        assert f"{which} index 2 is out of range" in diag(err)


class TestFhirPathSequence:
    def test_several_operations_in_order_and_input_untouched(self) -> None:
        original = patient()
        out = apply_fhirpath_patch(
            original,
            params(
                op(
                    "add",
                    "Patient",
                    name="telecom",
                    value={"valueContactPoint": {"system": "email", "value": "e"}},
                ),
                op("replace", "Patient.birthDate", value={"valueDate": "1975-01-01"}),
                op("delete", "Patient.name.where(use='nickname')"),
                op("insert", "Patient.name[0].given", index=0, value={"valueString": "Dr"}),
                op("move", "Patient.telecom", source=1, destination=0),
            ),
        )
        assert original == patient()
        assert out["telecom"][0]["system"] == "email"
        assert out["name"] == [{"use": "official", "family": "Chalmers", "given": ["Dr", "Peter", "James"]}]

    def test_error_names_failing_operation_index(self) -> None:
        ops = (
            op("delete", "Patient.birthDate"),
            op("replace", "Patient.birthDate", value={"valueDate": "2000"}),
        )
        assert "operation 1 (replace)" in diag(raises(422, fp, patient(), *ops))

    def test_empty_parameters_is_copy(self) -> None:
        assert apply_fhirpath_patch(patient(), {"resourceType": "Parameters"}) == patient()


class TestFhirPathMalformed:
    @pytest.mark.parametrize(
        ("body", "fragment", "expression"),
        [
            ([], "must be a Parameters resource", None),
            ({"resourceType": "Patient"}, 'got "Patient"', None),
            ({"resourceType": "Parameters", "parameter": {}}, "must be an array", "Parameters.parameter"),
            (
                params({"name": "op", "part": []}),
                'operation 0: parameter is named "op"',
                "Parameters.parameter[0].name",
            ),
            (params({"name": "operation"}), "needs its parts", "Parameters.parameter[0]"),
            (
                params({"name": "operation", "part": [{"name": "path", "valueString": "Patient"}]}),
                "missing part 'type'",
                "Parameters.parameter[0]",
            ),
            (
                params({"name": "operation", "part": [{"name": "type", "valueCode": "delete"}]}),
                "missing part 'path'",
                "Parameters.parameter[0]",
            ),
            (
                params(op("delete", "Patient.x"), op("frob", "Patient")),
                'operation 1: unknown type "frob"',
                "Parameters.parameter[1].part[0]",
            ),
            (
                params(op("delete", "Patient", color="red")),
                'part 2 has unknown name "color"',
                "Parameters.parameter[0].part[2]",
            ),
            (
                params(
                    {
                        "name": "operation",
                        "part": [
                            {"name": "type", "valueCode": "delete"},
                            {"name": "type", "valueCode": "add"},
                        ],
                    }
                ),
                "part 'type' is given more than once",
                "Parameters.parameter[0].part[1]",
            ),
            (
                params(
                    {
                        "name": "operation",
                        "part": [{"name": "type", "valueInteger": 1}, {"name": "path", "valueString": "P"}],
                    }
                ),
                "part 'type' needs a non-empty string",
                "Parameters.parameter[0].part[0]",
            ),
            (params(op("add", "Patient", name="gender")), "operation 0 (add): missing part 'value'", None),
            (
                params(op("add", "Patient", value={"valueCode": "x"})),
                "operation 0 (add): missing part 'name'",
                None,
            ),
            (
                params(op("add", "Patient", name="a.b", value={"valueCode": "x"})),
                "is not an element name",
                None,
            ),
            (params(op("insert", "Patient.name", value={"valueString": "x"})), "missing part 'index'", None),
            (
                params(op("insert", "Patient.name", index=-1, value={"valueString": "x"})),
                "part 'index' needs a non-negative valueInteger",
                None,
            ),
            (params(op("move", "Patient.name", source=0)), "missing part 'destination'", None),
            (
                params(op("move", "Patient.name", source="0", destination=1)),
                "part 'source' needs a non-negative valueInteger",
                None,
            ),
            (
                params(op("replace", "Patient.birthDate", value={})),
                "part 'value' has no value",
                "Parameters.parameter[0].part[2]",
            ),
            (
                params(op("replace", "Patient.birthDate", value={"valueDate": "2000", "part": []})),
                "exactly one of",
                None,
            ),
            (
                params(op("replace", "Patient.name[0]", value={"part": [{"valueString": "x"}]})),
                "nested part 0 of the value needs a 'name'",
                "Parameters.parameter[0].part[2].part[0]",
            ),
            (
                params(op("replace", "Patient.contained[0]", value={"resource": {"id": "x"}})),
                "resource without a resourceType",
                None,
            ),
            (params(op("delete", "Patient.name[x]")), "indexer", "Parameters.parameter[0].part[1]"),
            (params(op("delete", "Patient.name.")), "ends where an element name was expected", None),
            (params(op("delete", "Patient.name | Patient.telecom")), "unexpected '|'", None),
            (
                params(op("delete", "Patient.managingOrganization.resolve().name")),
                "function resolve() is not supported",
                None,
            ),
            (params(op("delete", "Patient.name.where(use = 'x'")), "unbalanced", None),
            (params(op("delete", "Patient.name.where()")), "where() needs a criterion", None),
            (params(op("delete", "Patient.extension(url)")), "extension() needs the extension url", None),
            (
                params(op("insert", "Patient.name[0]", index=0, value={"valueString": "x"})),
                "must end with the name of the list",
                None,
            ),
            (
                params(op("move", "Patient", source=0, destination=0)),
                "must end with the name of the list",
                None,
            ),
        ],
    )
    def test_400(self, body: Any, fragment: str, expression: str | None) -> None:
        err = raises(400, apply_fhirpath_patch, patient(), body)
        assert fragment in diag(err)
        if expression is not None:
            assert err.issues[0].expression == (expression,)

    def test_bad_where_criterion_is_400(self) -> None:
        err = raises(400, fp, patient(), op("delete", "Patient.name.where(use = )"))
        assert "cannot evaluate where(use =)" in diag(err) and "operation 0 (delete)" in diag(err)

    def test_type_as_value_string_accepted(self) -> None:
        body = params(
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueString": "delete"},
                    {"name": "path", "valueString": "Patient.gender"},
                ],
            }
        )
        assert apply_fhirpath_patch(patient(), body) == patient()


class TestDefaultIsRepeating:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("Patient.name", True),
            ("Patient.contact.name", False),
            ("Organization.name", False),
            ("Patient.address", True),
            ("Location.address", False),
            ("Patient.identifier", True),
            ("Reference.identifier", False),
            ("HumanName.given", True),
            ("Patient.birthDate", False),
            ("telecom", True),
        ],
    )
    def test_table(self, path: str, expected: bool) -> None:
        assert default_is_repeating(path) is expected
