"""Tools and structured output in one request: a tool turn is a tool turn.

With ``tools`` and a JSON schema (Chat ``response_format``, Responses
``text.format``, Anthropic ``output_config.format``) a turn that ends in a
tool call is returned as a normal tool call (``finish_reason: tool_calls`` /
``stop_reason: tool_use``); the schema applies to the final text answer only.
Each case scripts the model: first a tool call, then the final JSON; the
simulator must see exactly those two requests (no re-ask).
"""

from __future__ import annotations

import json

import anthropic
import pytest

from glm_proxy.protocol.events import Finished, TextDelta, ToolCallArguments, ToolCallStart
from glm_proxy.protocol.parsers.structured import JsonSpec, StructuredFilter
from tests.tool_support import WEATHER, WEATHER_CALL, prompt_text, script, stream_requests

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp": {"type": "integer"}},
    "required": ["city", "temp"],
    "additionalProperties": False,
}
ANSWER = {"city": "Paris", "temp": 21}
QUESTION = "How warm is Paris? Use the tool."


def _script_turns(simulator, token):
    script(simulator, token, "Let me check.\n" + WEATHER_CALL, json.dumps(ANSWER))


def _two_requests_no_reask(simulator, token):
    sent = [prompt_text(r) for r in stream_requests(simulator, token)]
    assert len(sent) == 2, sent
    assert "tool-call block described above" in sent[0]  # the schema binds the final answer
    assert "sunny, 21C" in sent[1]


# -- the filter itself -------------------------------------------------------------------


@pytest.mark.parametrize("final", [False, True])
def test_filter_passes_a_tool_turn_through(final):
    filt = StructuredFilter(JsonSpec(SCHEMA), final=final)
    out = []
    for delta in (
        TextDelta("Let me "),
        TextDelta("check."),
        ToolCallStart(0, "call_1", "get_weather"),
        ToolCallArguments(0, '{"city": "Paris"}'),
        Finished("tool_calls"),
    ):
        out += filt.feed(delta)
    out += filt.finish()
    assert out == [
        TextDelta("Let me check."),
        ToolCallStart(0, "call_1", "get_weather"),
        ToolCallArguments(0, '{"city": "Paris"}'),
        Finished("tool_calls"),
    ]


# -- Chat Completions ---------------------------------------------------------------------


def _chat(client, messages, stream):
    kwargs = {
        "model": "glm-4",
        "messages": messages,
        "tools": [WEATHER],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True},
        },
    }
    if not stream:
        choice = client.chat.completions.create(**kwargs).choices[0]
        calls = [
            (c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or ()
        ]
        return choice.finish_reason, choice.message.content, calls
    content, finish, calls = "", None, {}
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        content += choice.delta.content or ""
        for call in choice.delta.tool_calls or ():
            entry = calls.setdefault(call.index, ["", "", ""])
            entry[0] = call.id or entry[0]
            entry[1] += (call.function.name or "") if call.function else ""
            entry[2] += (call.function.arguments or "") if call.function else ""
        finish = choice.finish_reason or finish
    return finish, content, [tuple(v) for _, v in sorted(calls.items())]


@pytest.mark.parametrize("stream", [False, True])
def test_chat_tool_turn_then_structured_answer(client, simulator, token, stream):
    _script_turns(simulator, token)
    messages = [{"role": "user", "content": QUESTION}]
    finish, content, calls = _chat(client, messages, stream)
    assert finish == "tool_calls"
    assert [(name, json.loads(args)) for _, name, args in calls] == [
        ("get_weather", {"city": "Paris", "days": 3})
    ]
    assert (content or "").strip() == "Let me check."
    call_id, name, arguments = calls[0]
    messages += [
        {
            "role": "assistant",
            "content": content,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21C"},
    ]
    finish, content, calls = _chat(client, messages, stream)
    assert finish == "stop" and not calls
    assert json.loads(content) == ANSWER
    _two_requests_no_reask(simulator, token)


# -- Responses ----------------------------------------------------------------------------

RESPONSES_WEATHER = {"type": "function", **WEATHER["function"]}


def _respond(client, items, stream):
    kwargs = {
        "model": "glm-4",
        "input": items,
        "tools": [RESPONSES_WEATHER],
        "text": {"format": {"type": "json_schema", "name": "weather", "schema": SCHEMA}},
    }
    if not stream:
        return client.responses.create(**kwargs)
    events = list(client.responses.create(**kwargs, stream=True))
    assert events[-1].type == "response.completed", [e.type for e in events]
    assert not any(e.type == "error" for e in events)
    return events[-1].response


@pytest.mark.parametrize("stream", [False, True])
def test_responses_tool_turn_then_structured_answer(client, simulator, token, stream):
    _script_turns(simulator, token)
    items: list = [{"role": "user", "content": QUESTION}]
    first = _respond(client, items, stream)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == {"city": "Paris", "days": 3}
    items += [
        {
            "type": "function_call",
            "call_id": calls[0].call_id,
            "name": "get_weather",
            "arguments": calls[0].arguments,
        },
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"},
    ]
    second = _respond(client, items, stream)
    assert json.loads(second.output_text) == ANSWER
    _two_requests_no_reask(simulator, token)


# -- Anthropic Messages ---------------------------------------------------------------------

ANTHROPIC_WEATHER = {
    "name": "get_weather",
    "description": WEATHER["function"]["description"],
    "input_schema": WEATHER["function"]["parameters"],
}


def _message(claude, messages, stream):
    kwargs = {
        "model": "claude-opus-4-8",
        "max_tokens": 1024,
        "messages": messages,
        "tools": [ANTHROPIC_WEATHER],
        "output_config": {"format": {"type": "json_schema", "schema": SCHEMA}},
    }
    if not stream:
        return claude.messages.create(**kwargs)
    with claude.messages.stream(**kwargs) as events:
        return events.get_final_message()


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_tool_turn_then_structured_answer(proxy, simulator, token, stream):
    claude = anthropic.Anthropic(base_url=proxy.base, api_key=token, max_retries=0, timeout=30)
    _script_turns(simulator, token)
    messages: list = [{"role": "user", "content": QUESTION}]
    first = _message(claude, messages, stream)
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert [(u.name, u.input) for u in uses] == [("get_weather", {"city": "Paris", "days": 3})]
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": uses[0].id, "content": "sunny, 21C"}
            ],
        },
    ]
    second = _message(claude, messages, stream)
    assert second.stop_reason == "end_turn"
    text = "".join(b.text for b in second.content if b.type == "text")
    assert json.loads(text) == ANSWER
    _two_requests_no_reask(simulator, token)
