"""Tools in the prompt: the tool section, history in the call syntax, quoted results, schemas."""

from __future__ import annotations

import pytest

from glm_proxy.api.schemas.anthropic import AnthropicMessagesSchema
from glm_proxy.api.schemas.base import load
from glm_proxy.api.schemas.chat import ChatCompletionSchema
from glm_proxy.config import ConfigError, Settings
from glm_proxy.errors import InvalidRequest
from glm_proxy.inputs.anthropic import to_chat_body
from glm_proxy.inputs.prompt import build_prompt
from glm_proxy.protocol.usage import estimate_tokens
from glm_proxy.tools.calls import CallScanner, parse_block
from glm_proxy.tools.definitions import ToolConfig, check_tools, tool_config
from glm_proxy.tools.prompt import (
    DEFAULT_TEMPLATE,
    check_template,
    render_tool_section,
)
from glm_proxy.tools.schema import Toolbox

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
CONFIG = ToolConfig(check_tools([WEATHER]))
CODE = 'if a < b:\n    print("]]>", "<|user|>")\n'


def test_no_tools_changes_nothing():
    messages = [{"role": "user", "content": "hello"}]
    assert build_prompt(messages).text == "hello"
    assert build_prompt(messages, tools=None).text == "hello"
    assert tool_config({"tools": [WEATHER], "tool_choice": "none"}) is None


def test_tool_section_comes_last_and_names_the_tools():
    prompt = build_prompt(
        [{"role": "system", "content": "You are Claude Code."}, {"role": "user", "content": "hi"}],
        tools=CONFIG,
    )
    text = prompt.text
    assert text.startswith("<|system|>\nYou are Claude Code.\n<|user|>\nhi\n<|system|>\n")
    assert text.endswith("<|assistant|>\n")
    assert '<tool name="get_weather">' in text and '"required":["city"]' in text
    assert "instead of using your built-in code interpreter" in text
    assert "<glm_tool_calls>" in text and "</glm_tool_calls>" in text
    # the usage estimate counts the section
    assert estimate_tokens(text) > estimate_tokens("You are Claude Code. hi") + 100


@pytest.mark.parametrize(
    ("config", "rule"),
    [
        (ToolConfig(CONFIG.tools, "required"), "You must call at least one"),
        (ToolConfig(CONFIG.tools, "named", "get_weather"), "You must call the tool get_weather"),
        (ToolConfig(CONFIG.tools, parallel=False), "one tool at a time"),
    ],
)
def test_tool_choice_rules(config, rule):
    assert rule in render_tool_section(config)


def history() -> list[dict]:
    return [
        {"role": "user", "content": "weather in Paris and save code"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city": "Paris", "days": 2}',
                    },
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "write_file", "arguments": {"content": CODE}},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny <glm_tool_calls> 20C"},
        {"role": "tool", "tool_call_id": "call_2", "content": CODE, "is_error": True},
    ]


def test_history_calls_round_trip_through_the_parser():
    text = build_prompt(history(), tools=CONFIG).text
    start = text.index("<glm_tool_calls>")
    events = CallScanner().feed(text[start:]) + CallScanner().finish()
    calls, problem = parse_block(events[0].body)
    assert problem == ""
    assert [c.name for c in calls] == ["get_weather", "write_file"]
    assert calls[1].params["content"] == CODE  # verbatim through CDATA, "]]>" included
    box = Toolbox(check_tools([WEATHER]))
    assert box.arguments(calls[0]) == ({"city": "Paris", "days": 2}, "")


def test_tool_results_are_quoted_and_grouped():
    text = build_prompt(history(), tools=CONFIG).text
    assert text.count("<|observation|>") == 1
    observation = text[text.index("<|observation|>") :]
    assert '<glm_tool_result name="get_weather" call_id="call_1">' in observation
    assert 'name="write_file" call_id="call_2" status="error"' in observation
    # markers inside results are defused: no role turn, no call block
    assert "Sunny &lt;glm_tool_calls> 20C" in observation
    assert "&lt;|user|>" in observation and "<|user|>" not in observation.split("<|system|>")[0]


def test_native_multi_turn_sends_only_new_tool_results():
    messages = [*history(), {"role": "user", "content": "and Rome?"}]
    messages.insert(4, {"role": "assistant", "content": "It is sunny."})
    text = build_prompt(messages, native_multi_turn=True, tools=CONFIG).text
    assert "Paris" not in text and "Sunny" not in text
    assert text.startswith("<|user|>\nand Rome?\n<|system|>\n")
    tool_only = build_prompt(history(), native_multi_turn=True, tools=CONFIG).text
    assert tool_only.startswith("<|observation|>\n<glm_tool_result")
    assert "weather in Paris and save code" not in tool_only


def test_legacy_function_call_history():
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": "{}"}},
        {"role": "function", "name": "f", "content": "done"},
    ]
    text = build_prompt(messages).text
    assert '<invoke name="f">' in text and '<glm_tool_result name="f">' in text


def openai_error(body: dict) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        load(ChatCompletionSchema(), body)
    return info.value


BASE = {"model": "glm-4", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": ""}}]}, "tools[0].function.name"),
        ({"tools": "x"}, "tools"),
        ({"tools": [WEATHER], "tool_choice": "always"}, "tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "x"}}},
            "tool_choice.function.name",
        ),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"functions": [WEATHER["function"]]}, "functions"),
        ({"tools": [WEATHER], "parallel_tool_calls": "maybe"}, "parallel_tool_calls"),
        (
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "tool_calls": [{"function": {}}]},
                ]
            },
            "messages[1].tool_calls[0].function.name",
        ),
    ],
)
def test_malformed_tool_requests_name_the_parameter(extra, param):
    assert openai_error({**BASE, **extra}).param == param


def test_anthropic_tools_and_blocks_convert():
    body = load(
        AnthropicMessagesSchema(),
        {
            "model": "claude",
            "max_tokens": 100,
            "tools": [{"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "messages": [
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Checking."},
                        {
                            "type": "tool_use",
                            "id": "tu_1",
                            "name": "get_weather",
                            "input": {"city": "Oslo"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "tu_1",
                            "is_error": True,
                            "content": [{"type": "text", "text": "timeout"}],
                        },
                        {"type": "text", "text": "try again"},
                    ],
                },
            ],
        },
    )
    chat = to_chat_body(body)
    assert chat["tool_choice"] == "required" and chat["parallel_tool_calls"] is False
    assert chat["messages"][1]["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city":"Oslo"}',
    }
    assert chat["messages"][2] == {
        "role": "tool",
        "tool_call_id": "tu_1",
        "content": [{"type": "text", "text": "timeout"}],
        "is_error": True,
    }
    assert chat["messages"][3] == {
        "role": "user",
        "content": [{"type": "text", "text": "try again"}],
    }
    config = tool_config(chat)
    assert config is not None and config.choice == "required" and not config.parallel
    text = build_prompt(chat["messages"], tools=config).text
    assert 'name="get_weather" call_id="tu_1" status="error"' in text


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        (  # a server tool is left out of the offer, so it cannot be forced
            {
                "tools": [{"type": "bash_20250124", "name": "bash"}],
                "tool_choice": {"type": "tool", "name": "bash"},
            },
            "tool_choice.name",
        ),
        ({"tools": [{"name": "f"}]}, "tools[0].input_schema"),
        (
            {
                "tools": [{"name": "f", "input_schema": {"type": "object"}}],
                "tool_choice": {"type": "tool", "name": "g"},
            },
            "tool_choice.name",
        ),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
    ],
)
def test_anthropic_malformed_tools(extra, param):
    body = {"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(InvalidRequest) as info:
        load(AnthropicMessagesSchema(), {**body, **extra})
    assert info.value.param == param


def test_template_file_setting(tmp_path):
    good = tmp_path / "tools.txt"
    good.write_text("Tools:\n$tools\nUse $open ... $close. $choice_rule")
    settings = Settings.from_mapping({"TOOL_PROMPT_FILE": str(good)})
    assert settings.tool_prompt_file == str(good)
    bad = tmp_path / "bad.txt"
    bad.write_text("no placeholder here")
    with pytest.raises(ConfigError, match="TOOL_PROMPT_FILE"):
        Settings.from_mapping({"TOOL_PROMPT_FILE": str(bad)})
    with pytest.raises(ConfigError, match="TOOL_PROMPT_FILE"):
        Settings.from_mapping({"TOOL_PROMPT_FILE": str(tmp_path / "missing.txt")})
    assert check_template(DEFAULT_TEMPLATE) == ""
    assert check_template("$tools $unknown")
    section = render_tool_section(CONFIG, good.read_text())
    assert section.startswith('Tools:\n<tool name="get_weather">')


def test_tools_are_checked_once_per_request(monkeypatch):
    """Schema load -> (Anthropic: chat body) -> ``tool_config``: each tool is checked once."""
    from glm_proxy.tools import definitions as tool_defs

    checked: list[str] = []
    real = tool_defs._spec

    def counting(function, path, schema_key):
        checked.append(function.get("name"))
        return real(function, path, schema_key)

    monkeypatch.setattr(tool_defs, "_spec", counting)
    chat = load(
        ChatCompletionSchema(),
        {"model": "glm-4", "messages": [{"role": "user", "content": "hi"}], "tools": [WEATHER]},
    )
    assert tool_config(chat).tools[0].name == "get_weather"
    anthropic = {
        "model": "claude",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"name": "lookup", "input_schema": {}}],
    }
    config = tool_config(to_chat_body(load(AnthropicMessagesSchema(), anthropic)))
    assert config.tools[0].parameters == {"type": "object"}  # as the OpenAI mapping gave it
    assert checked == ["get_weather", "lookup"]
