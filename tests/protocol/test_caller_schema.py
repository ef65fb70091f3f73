"""Caller schemas checked and run safely (``protocol/parsers/caller_schema``, ``schema_walk``,
``schema_budget``): pure functions, no server."""

from __future__ import annotations

import pytest

from glm_proxy.protocol.parsers import caller_schema
from glm_proxy.protocol.parsers.schema_budget import BudgetExceeded, SchemaBudget, check_budget
from glm_proxy.protocol.parsers.schema_walk import (
    MAX_REF_CHAIN,
    SchemaWalkError,
    check_references,
    json_depth,
)


def problem(schema: dict) -> caller_schema.SchemaProblem:
    with pytest.raises(caller_schema.SchemaProblem) as info:
        caller_schema.check(schema)
    return info.value


def errors(schema: dict, value: object):
    caller_schema.check(schema)
    return caller_schema.safe_errors(caller_schema.validator(schema), value)


def test_backtracking_pattern_runs_in_linear_time():
    schema = {"type": "string", "pattern": "^(a+)+$"}
    error = errors(schema, "a" * 5000 + "!")  # with backtracking: longer than the universe
    assert error is not None and "does not match" in error.message
    assert errors(schema, "aaaa") is None


def test_pattern_properties_and_additional_properties_use_re2():
    schema = {
        "type": "object",
        "patternProperties": {"^(a+)+$": {"type": "integer"}},
        "additionalProperties": False,
    }
    assert errors(schema, {"aaa": 1}) is None
    assert errors(schema, {"aaa": "x"}).validator == "type"
    assert errors(schema, {"a" * 3000 + "!": 1}).validator == "additionalProperties"


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=a)b", r"(?<!x)y"])
def test_patterns_re2_cannot_run_are_refused_with_their_path(pattern):
    exc = problem({"type": "object", "properties": {"w": {"type": "string", "pattern": pattern}}})
    assert exc.path == ("properties", "w", "pattern")
    assert "backreferences or lookaround" in str(exc)


def test_pattern_property_key_re2_cannot_run_is_refused():
    exc = problem({"type": "object", "patternProperties": {r"(x)\1": {}}})
    assert exc.path == ("patternProperties", r"(x)\1")


def test_unevaluated_properties_beside_pattern_properties_is_refused():
    exc = problem({"patternProperties": {"^a": {}}, "allOf": [{"unevaluatedProperties": False}]})
    assert exc.path == ("allOf", 0, "unevaluatedProperties")


@pytest.mark.parametrize(
    "schema, path",
    [
        ({"$ref": "#"}, ()),
        ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, ("$defs", "a")),
        ({"anyOf": [{"$ref": "#"}]}, ()),
        ({"$defs": {"a": {"$anchor": "A", "not": {"$ref": "#A"}}}}, ("$defs", "a")),
        ({"if": {"$ref": "#/then"}, "then": {"$ref": "#/if"}}, ("if",)),
    ],
)
def test_reference_loops_on_one_level_are_refused(schema, path):
    with pytest.raises(SchemaWalkError, match="loop") as info:
        check_references(schema)
    assert info.value.path == path


def test_references_through_properties_and_items_are_recursion_not_loops():
    tree = {
        "type": "object",
        "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}},
        "$defs": {"x": {"allOf": [{"$ref": "#/$defs/y"}]}, "y": {"type": "string"}},
    }
    check_references(tree)
    caller_schema.check(tree)


def test_reference_chain_longer_than_the_bound_is_refused():
    defs = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(MAX_REF_CHAIN + 5)}
    defs[f"d{MAX_REF_CHAIN + 5}"] = {"type": "string"}
    with pytest.raises(SchemaWalkError, match="chain"):
        check_references({"$ref": "#/$defs/d0", "$defs": defs})


@pytest.mark.parametrize(
    "ref, message",
    [
        ("http://127.0.0.1:9/x.json", "nothing is fetched"),
        ("other.json#/a", "nothing is fetched"),
        ("#/$defs/missing", "does not resolve"),
        ("#nowhere", "names no anchor"),
        ("#/enum", "must point at a subschema"),
    ],
)
def test_references_that_leave_the_schema_or_resolve_nowhere_are_refused(ref, message):
    schema = {"enum": [{"a": 1}], "properties": {"a": {"$ref": ref}}}
    with pytest.raises(SchemaWalkError, match=message) as info:
        check_references(schema)
    assert info.value.path == ("properties", "a", "$ref")


def test_metaschema_and_own_id_references_are_followed():
    check_references({"$ref": "https://json-schema.org/draft/2020-12/schema"})
    check_references(
        {
            "$id": "https://example.com/s",
            "$defs": {"a": {}},
            "$ref": "https://example.com/s#/$defs/a",
        }
    )


def test_large_properties_checked_in_pieces_report_the_deep_path():
    props = {f"p{i}": {"type": "string"} for i in range(100)}
    props["p77"] = {"type": "object", "properties": {"q": {"type": "strin"}}}
    exc = problem({"type": "object", "properties": props})
    assert exc.path == ("properties", "p77", "properties", "q", "type")


def test_checks_are_cached_by_content():
    schema = {"type": "object", "properties": {"z": {"type": "integer", "minimum": 3}}}
    key = caller_schema.schema_key(schema)
    caller_schema.check(schema, key)
    assert caller_schema.is_cached(key)
    assert (
        caller_schema.schema_key(
            {"properties": {"z": {"minimum": 3, "type": "integer"}}, "type": "object"}
        )
        == key
    )


def test_too_deep_to_serialise_is_a_problem_not_a_crash():
    schema: dict = {}
    for _ in range(400):
        schema = {"properties": {"a": schema}}
    with pytest.raises(caller_schema.SchemaProblem, match="nests too deeply"):
        caller_schema.schema_key(schema)


def test_value_too_deep_for_a_recursive_schema_is_unusable_not_a_crash():
    schema = {"type": "array", "items": {"$ref": "#"}}
    value: list = []
    for _ in range(900):
        value = [value]
    with pytest.raises(caller_schema.UnusableSchema):
        errors(schema, value)


def test_json_depth_stops_past_its_limit():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert json_depth(deep, 64) == 65
    assert json_depth({"a": [1, {"b": 2}]}, 64) == 3


BUDGET = SchemaBudget(max_bytes=10_000, max_properties=50, max_depth=10, max_pattern_length=20)


def tool(params: dict) -> dict:
    return {"type": "function", "function": {"name": "f", "parameters": params}}


@pytest.mark.parametrize(
    "body, setting, param",
    [
        (
            {"tools": [tool({"properties": {f"p{i}": {} for i in range(30)}})] * 2},
            "MAX_SCHEMA_PROPERTIES",
            "tools[1].function.parameters",
        ),
        (
            {"tools": [tool({"description": "x" * 20_000})]},
            "MAX_SCHEMA_BYTES",
            "tools[0].function.parameters",
        ),
        (
            {"text": {"format": {"schema": {"properties": {"a": {"pattern": "a" * 21}}}}}},
            "MAX_SCHEMA_PATTERN_LENGTH",
            "text.format.schema.properties.a.pattern",
        ),
        (
            {"tools": [{"name": "f", "input_schema": {"a": [[[[[[[[[[[1]]]]]]]]]]]}}]},
            "MAX_SCHEMA_DEPTH",
            "tools[0].input_schema",
        ),
    ],
)
def test_budget_names_the_limit_and_the_schema(body, setting, param):
    with pytest.raises(BudgetExceeded) as info:
        check_budget(body, BUDGET)
    assert info.value.setting == setting
    assert info.value.param == param
    assert setting in str(info.value)


def test_budget_lets_ordinary_requests_through():
    check_budget({"tools": [tool({"properties": {"a": {"type": "string"}}})]}, BUDGET)
    check_budget({"messages": []}, BUDGET)
