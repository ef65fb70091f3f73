"""The tool-call scanner, block parser and argument validation (sans-IO).

Every sample is fed whole, one character at a time, and followed by junk
(h11's ``tr()`` idea): the deltas must be the same however the text is cut. The answer
filter is tested in ``test_toolcalls_filter.py``.
"""

from __future__ import annotations

import pytest

from glm_proxy.tools.calls import Block, CallScanner, RawCall, Text, parse_block
from glm_proxy.tools.definitions import (
    ToolDefinitionError,
    anthropic_specs,
    check_tool_choice,
    check_tools,
    tool_config,
)
from glm_proxy.tools.schema import Toolbox
from tests.support.tool_samples import CALL, TOOLS, WEATHER, cuts, scan


@pytest.mark.parametrize("pieces", cuts(CALL))
def test_scanner_splits_text_and_block_at_any_cut(pieces):
    events = scan(pieces)
    assert events[0] == Text("Let me check.\n")
    assert isinstance(events[1], Block) and events[1].closed
    assert '<parameter name="city">Paris</parameter>' in events[1].body
    assert len(events) == 2


def test_scanner_releases_a_false_prefix_and_holds_a_possible_one():
    scanner = CallScanner()
    assert scanner.feed("a <glm_to") == [Text("a ")]  # "<glm_to" might start a block
    assert scanner.feed("y> b") == [Text("<glm_toy> b")]
    assert scanner.feed("x <") == [Text("x ")]
    assert scanner.finish() == [Text("<")]


@pytest.mark.parametrize(
    "text",
    [
        '```xml\n<glm_tool_calls><invoke name="x"/></glm_tool_calls>\n```\nafter',
        "~~~~\n<glm_tool_calls>\n~~~\nstill code <glm_tool_calls>\n~~~~\n",
        "  ```\n<glm_tool_calls>\n```",
    ],
)
def test_markers_in_fenced_code_are_text(text):
    for pieces in cuts(text):
        assert scan(pieces) == [Text(text)]


def test_a_block_after_a_closed_fence_is_a_call():
    text = '```\ncode\n```\n<glm_tool_calls><invoke name="x"/></glm_tool_calls>'
    for pieces in cuts(text):
        events = scan(pieces)
        assert events[0] == Text("```\ncode\n```\n")
        assert isinstance(events[1], Block)


def test_end_marker_inside_cdata_does_not_end_the_block():
    body = (
        '<invoke name="write_file"><parameter name="path">a.md</parameter>'
        '<parameter name="content"><![CDATA[see </glm_tool_calls> and </parameter>]]>'
        "</parameter></invoke>"
    )
    text = "<glm_tool_calls>" + body + "</glm_tool_calls>tail"
    for pieces in cuts(text):
        assert scan(pieces) == [Block(body), Text("tail")]


def test_unclosed_block_at_the_end_is_reported_open():
    text = '<glm_tool_calls>\n<invoke name="x">'
    for pieces in cuts(text):
        assert scan(pieces) == [Block('\n<invoke name="x">', closed=False)]


def test_parse_block_values_verbatim():
    body = (
        '\n<invoke name="write_file">\n<parameter name="path">src/a "b".py</parameter>\n'
        '<parameter name="content">\n<![CDATA[if a < b && c:\n    print("]]]]><![CDATA[>")\n]]>\n'
        "</parameter>\n</invoke>\n"
        "<invoke name='get_weather'><parameter name=city>\nRome\n</parameter></invoke>"
    )
    calls, problem = parse_block(body)
    assert problem == ""
    assert calls[0] == RawCall(
        "write_file",
        {"path": 'src/a "b".py', "content": 'if a < b && c:\n    print("]]>")\n'},
    )
    assert calls[1] == RawCall("get_weather", {"city": "Rome"})


def test_parse_block_problems():
    assert parse_block("just words")[1]
    calls, _ = parse_block('<invoke name="x"><parameter name="a">open')
    assert "not closed" in calls[0].problem
    calls, _ = parse_block('<invoke name="x"><parameter name="a">1</parameter>')  # no </invoke>
    assert calls == [RawCall("x", {"a": "1"})]
    calls, _ = parse_block('<invoke name="x">{"a": 1,}</invoke>')
    assert calls == [RawCall("x", body='{"a": 1,}')]


def test_arguments_are_typed_coerced_and_validated():
    box = Toolbox(TOOLS)
    raw = RawCall(
        "get_weather",
        {
            "city": "123",
            "days": " 3 ",
            "metric": "True",
            "options": "{'hourly': 'false', 'hours': '12',}",
            "tags": '["a", "b",]',
        },
    )
    args, problem = box.arguments(raw)
    assert problem == ""
    assert args == {
        "city": "123",
        "days": 3,
        "metric": True,
        "options": {"hourly": False, "hours": 12},
        "tags": ["a", "b"],
    }
    assert box.arguments(RawCall("get_weather", body="{'city': 'Oslo', 'days': '2',}")) == (
        {"city": "Oslo", "days": 2},
        "",
    )


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (RawCall("nope", {}), "no tool named 'nope'"),
        (RawCall("", {}), "empty name"),
        (RawCall("get_weather", {"days": "2"}), "required parameter 'city'"),
        (RawCall("get_weather", {"city": "x", "days": "two"}), "must be of type integer"),
        (RawCall("get_weather", {"city": "x", "wind": "1"}), "Additional properties"),
        (RawCall("get_weather", body="[1, 2]"), "not an object"),
        (RawCall("get_weather", body="{nope"), "neither parameters nor JSON"),
    ],
)
def test_invalid_arguments_say_why_without_values(call, expected):
    args, problem = Toolbox(TOOLS).arguments(call)
    assert args is None
    assert expected in problem
    assert "two" not in problem  # the model's values are not repeated


def test_refs_and_optional_types_coerce():
    schema = {
        "type": "object",
        "properties": {
            "item": {"$ref": "#/$defs/Item"},
            "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        },
        "$defs": {"Item": {"type": "object", "properties": {"n": {"type": "number"}}}},
    }
    spec = check_tools([{"type": "function", "function": {"name": "f", "parameters": schema}}])
    args, problem = Toolbox(spec).arguments(RawCall("f", {"item": '{"n": "2.5"}', "limit": "null"}))
    assert (args, problem) == ({"item": {"n": 2.5}, "limit": None}, "")


@pytest.mark.parametrize(
    ("tools", "path"),
    [
        ("x", ()),
        ([1], (0,)),
        ([{"type": "custom", "custom": {}}], (0, "type")),
        ([{"type": "function"}], (0, "function")),
        ([{"type": "function", "function": {"name": ""}}], (0, "function", "name")),
        ([{"type": "function", "function": {"name": "a b"}}], (0, "function", "name")),
        (
            [{"type": "function", "function": {"name": "a", "parameters": {"type": "array"}}}],
            (0, "function", "parameters"),
        ),
        (
            [
                {
                    "type": "function",
                    "function": {
                        "name": "a",
                        "parameters": {"type": "object", "properties": {"x": {"type": "bogus"}}},
                    },
                }
            ],
            (0, "function", "parameters"),
        ),
        ([WEATHER, WEATHER], (1, "function", "name")),
    ],
)
def test_malformed_tools_are_refused_with_a_path(tools, path):
    with pytest.raises(ToolDefinitionError) as info:
        check_tools(tools)
    assert info.value.path == path


def test_tool_choice_and_config():
    names = {"get_weather"}
    assert check_tool_choice(None, names) == ("auto", None)
    assert check_tool_choice(None, set()) == ("none", None)
    assert check_tool_choice({"type": "function", "function": {"name": "get_weather"}}, names) == (
        "named",
        "get_weather",
    )
    for bad in ("sometimes", {"type": "function", "function": {"name": "x"}}, 3):
        with pytest.raises(ToolDefinitionError):
            check_tool_choice(bad, names)
    with pytest.raises(ToolDefinitionError):
        check_tool_choice("required", set())
    assert tool_config({"tools": [WEATHER], "tool_choice": "none"}) is None
    assert tool_config({"tools": []}) is None
    config = tool_config({"tools": [WEATHER], "parallel_tool_calls": False})
    assert config is not None and config.parallel is False and config.choice == "auto"


def test_anthropic_tools():
    specs = anthropic_specs([{"name": "f", "input_schema": {"type": "object"}}])
    assert specs[0].name == "f"
    with pytest.raises(ToolDefinitionError) as info:
        anthropic_specs([{"type": "web_search_20250305", "name": "web_search"}])
    assert info.value.path == (0, "type")
    with pytest.raises(ToolDefinitionError) as info:
        anthropic_specs([{"name": "f"}])
    assert info.value.path == (0, "input_schema")
