"""The two wire formats, read back by the official SDKs' own stream helpers.

Each ``Wire`` turns a recorded delta list into the exact bytes the server
sends; the bytes are served to ``openai``/``anthropic`` clients through an
in-memory HTTP transport, and the SDKs' accumulators (``chat.completions.stream``
and ``messages.stream``) must rebuild the same answer that ``collect()``
returns for the non-stream request.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from glm_proxy.errors import UpstreamError
from glm_proxy.protocol.events import (
    ConversationStarted,
    Delta,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallArguments,
    ToolCallStart,
)
from glm_proxy.protocol.formats.anthropic import MessagesWire
from glm_proxy.protocol.formats.openai import ChatWire
from glm_proxy.protocol.sse import SSEDecoder

TOOL_ANSWER: list[Delta] = [
    ConversationStarted("conv1", "m1"),
    ReasoningDelta("The user wants weather."),
    TextDelta("Let me check."),
    ToolCallStart(0, "call_abc", "get_weather"),
    ToolCallArguments(0, '{"city": '),
    ToolCallArguments(0, '"Paris"}'),
    ToolCallStart(1, "call_def", "get_time"),
    ToolCallArguments(1, '{"tz": "CET"}'),
    Finished("tool_calls"),
]
ONLY_TOOL: list[Delta] = [
    ToolCallStart(0, "call_1", "lookup"),
    ToolCallArguments(0, '{"q": "x"}'),
    Finished("tool_calls"),
]


def chat_wire(**kw: Any) -> ChatWire:
    return ChatWire(
        model="glm-4", created=1700000000, prompt_text="hi", response_id=lambda: "chatcmpl-1", **kw
    )


def messages_wire() -> MessagesWire:
    return MessagesWire(model="glm-4", prompt_text="hi", response_id=lambda: "msg_1")


def wire_bytes(wire: Any, deltas: list[Delta], keepalive_every: int = 0) -> bytes:
    out = [wire.keepalive(), wire.open()]
    for i, delta in enumerate(deltas):
        out.append(wire.feed(delta))
        if keepalive_every and i % keepalive_every == 0:
            out.append(wire.keepalive())
    out.append(wire.finish(None))
    return b"".join(out)


def http_client(body: bytes, content_type: str = "text/event-stream", lib: Any = httpx) -> Any:
    """An HTTP client whose every request gets ``body`` back (``lib``: the SDK's httpx)."""

    def handler(request: Any) -> Any:
        return lib.Response(200, content=body, headers={"content-type": content_type})

    return lib.Client(transport=lib.MockTransport(handler))


def openai_client(body: bytes, content_type: str = "text/event-stream"):
    import openai

    return openai.OpenAI(
        base_url="http://proxy.test/v1",
        api_key="k",
        http_client=http_client(body, content_type),
        max_retries=0,
    )


def anthropic_client(body: bytes, content_type: str = "text/event-stream"):
    import anthropic

    major = int(anthropic.__version__.split(".")[0])
    lib = pytest.importorskip("httpx2") if major >= 2 else httpx  # 2.x moved to httpx2
    return anthropic.Anthropic(
        base_url="http://proxy.test",
        api_key="k",
        http_client=http_client(body, content_type, lib),
        max_retries=0,
    )


def chunks(data: bytes) -> list[dict[str, Any]]:
    decoder = SSEDecoder()
    events = decoder.feed(data) + decoder.finish()
    return [orjson.loads(e.data) for e in events if e.data and e.data != "[DONE]"]


# -- OpenAI Chat Completions -------------------------------------------------------------


def test_tool_call_chunks_are_shaped_as_openai_streams_them() -> None:
    deltas = [c["choices"][0]["delta"] for c in chunks(wire_bytes(chat_wire(), TOOL_ANSWER))]
    calls = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    assert calls == [
        [
            {
                "index": 0,
                "id": "call_abc",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ],
        [{"index": 0, "function": {"arguments": '{"city": '}}],
        [{"index": 0, "function": {"arguments": '"Paris"}'}}],
        [
            {
                "index": 1,
                "id": "call_def",
                "type": "function",
                "function": {"name": "get_time", "arguments": ""},
            }
        ],
        [{"index": 1, "function": {"arguments": '{"tz": "CET"}'}}],
    ]
    last = chunks(wire_bytes(chat_wire(), TOOL_ANSWER))[-1]["choices"][0]
    assert (last["delta"], last["finish_reason"]) == ({}, "tool_calls")


@pytest.mark.parametrize("style", ["reasoning_content", "think_tags", "hidden"])
def test_openai_stream_helper_accumulates_tool_calls(style: str) -> None:
    body = wire_bytes(chat_wire(reasoning_style=style), TOOL_ANSWER, keepalive_every=2)
    client = openai_client(body)
    with client.chat.completions.stream(
        model="glm-4", messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [(c.id, c.type, c.function.name, c.function.arguments) for c in calls] == [
        ("call_abc", "function", "get_weather", '{"city": "Paris"}'),
        ("call_def", "function", "get_time", '{"tz": "CET"}'),
    ]
    expected = chat_wire(reasoning_style=style).collect(TOOL_ANSWER)["choices"][0]["message"]
    assert choice.message.content == expected["content"]
    assert expected["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'


def test_non_stream_tool_calls_keep_prose_and_null_empty_content() -> None:
    import openai.types.chat as types

    body = chat_wire().collect(TOOL_ANSWER)
    parsed = types.ChatCompletion.model_validate(body)
    message = parsed.choices[0].message
    assert message.content == "Let me check."
    assert parsed.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in message.tool_calls] == ["get_weather", "get_time"]
    only = chat_wire().collect(ONLY_TOOL)
    assert only["choices"][0]["message"]["content"] is None
    assert only["choices"][0]["message"]["tool_calls"] == [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"q": "x"}'},
        }
    ]
    # arguments count as completion tokens
    assert only["usage"]["completion_tokens"] > 0


def test_openai_sdk_reads_non_stream_tool_calls() -> None:
    body = orjson.dumps(chat_wire().collect(ONLY_TOOL))
    client = openai_client(body, "application/json")
    completion = client.chat.completions.create(
        model="glm-4", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.tool_calls[0].function.arguments == '{"q": "x"}'
    assert completion.choices[0].message.content is None


@pytest.mark.parametrize(
    ("finished", "reason"),
    [(Finished("length"), "length"), (Finished("stop", stop_sequence="END"), "stop")],
)
def test_openai_finish_reasons(finished: Finished, reason: str) -> None:
    deltas = [TextDelta("abc"), finished]
    last = chunks(wire_bytes(chat_wire(), deltas))[-1]["choices"][0]
    assert last["finish_reason"] == reason
    assert chat_wire().collect(deltas)["choices"][0]["finish_reason"] == reason


def test_openai_usage_chunk_and_error_event() -> None:
    data = wire_bytes(chat_wire(include_usage=True), [TextDelta("abc"), Finished("stop")])
    assert data.endswith(b"data: [DONE]\n\n")
    assert chunks(data)[-1]["usage"]["completion_tokens"] == 1
    error = chunks(chat_wire().error(UpstreamError("boom")))
    assert error == [UpstreamError("boom").to_dict()]


# -- Anthropic Messages ------------------------------------------------------------------


def test_anthropic_stream_events_for_tool_use() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(wire_bytes(messages_wire(), TOOL_ANSWER)) + decoder.finish()
    named = [(e.event, orjson.loads(e.data)) for e in events]
    starts = [p["content_block"] for n, p in named if n == "content_block_start"]
    assert [b["type"] for b in starts] == ["thinking", "text", "tool_use", "tool_use"]
    assert starts[1:] == [
        {"type": "text", "text": ""},
        {"type": "tool_use", "id": "toolu_abc", "name": "get_weather", "input": {}},
        {"type": "tool_use", "id": "toolu_def", "name": "get_time", "input": {}},
    ]
    assert "signature" in starts[0]
    pieces = [
        p["delta"]
        for n, p in named
        if n == "content_block_delta" and p["delta"]["type"] == "input_json_delta"
    ]
    assert pieces[0] == {"type": "input_json_delta", "partial_json": '{"city": '}
    stops = [p["index"] for n, p in named if n == "content_block_stop"]
    assert stops == [0, 1, 2, 3]
    delta = [p for n, p in named if n == "message_delta"][0]["delta"]
    assert delta == {"stop_reason": "tool_use", "stop_sequence": None}


def test_anthropic_stream_helper_accumulates_tool_use_and_thinking() -> None:
    client = anthropic_client(wire_bytes(messages_wire(), TOOL_ANSWER, keepalive_every=1))
    with client.messages.stream(
        model="glm-4", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert final.content[0].thinking == "The user wants weather."
    assert isinstance(final.content[0].signature, str)
    assert final.content[1].text == "Let me check."
    assert (final.content[2].id, final.content[2].name) == ("toolu_abc", "get_weather")
    assert final.content[2].input == {"city": "Paris"}
    assert final.content[3].input == {"tz": "CET"}
    assert final.stop_reason == "tool_use"
    collected = messages_wire().collect(TOOL_ANSWER)
    assert [b["type"] for b in collected["content"]] == ["thinking", "text", "tool_use", "tool_use"]
    assert collected["content"][2]["input"] == {"city": "Paris"}
    assert collected["stop_reason"] == "tool_use"


def test_anthropic_non_stream_tool_use_only_has_no_empty_text_block() -> None:
    import anthropic.types as types

    body = messages_wire().collect(ONLY_TOOL)
    message = types.Message.model_validate(body)
    assert [b.type for b in message.content] == ["tool_use"]
    assert message.content[0].input == {"q": "x"}
    assert message.usage.output_tokens > 0


@pytest.mark.parametrize(
    ("finished", "stop_reason", "stop_sequence"),
    [
        (Finished("length"), "max_tokens", None),
        (Finished("stop", stop_sequence="END"), "stop_sequence", "END"),
        (Finished("stop"), "end_turn", None),
        (Finished("content_filter"), "refusal", None),
    ],
)
def test_anthropic_stop_reasons_stream_and_non_stream(
    finished: Finished, stop_reason: str, stop_sequence: str | None
) -> None:
    deltas = [TextDelta("abc"), finished]
    client = anthropic_client(wire_bytes(messages_wire(), deltas))
    with client.messages.stream(
        model="glm-4", max_tokens=100, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == (stop_reason, stop_sequence)
    collected = messages_wire().collect(deltas)
    assert (collected["stop_reason"], collected["stop_sequence"]) == (stop_reason, stop_sequence)


def test_anthropic_keepalive_is_a_ping_event() -> None:
    decoder = SSEDecoder()
    events = decoder.feed(messages_wire().keepalive())
    assert [(e.event, orjson.loads(e.data)) for e in events] == [("ping", {"type": "ping"})]
