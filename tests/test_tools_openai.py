"""Tool calling on /v1/chat/completions: official SDK, real server, scripted model answers."""

from __future__ import annotations

import json

import openai
import pytest
from openai.lib.streaming.chat import ChatCompletionStreamState

from tests.tool_support import (
    CODE,
    TOOLS,
    WEATHER,
    WEATHER_CALL,
    WRITE_CALL,
    call_block,
    invoke,
    prompt_text,
    script,
    stream_requests,
)

# Both upstream protocols: the parser sits behind the translator, whatever the event shapes.
pytestmark = pytest.mark.profiles("2026", "2025")

USER = [{"role": "user", "content": "What's the weather in Paris?"}]
CHUNKS: dict[int, list] = {}  # a streamed completion's raw chunks, by id(completion)


def ask(client, *, stream: bool, **kwargs):
    """A completion, streamed or not; streamed chunks are folded by the SDK's own helper."""
    kwargs = {"model": "glm-4", "messages": USER, "tools": TOOLS, **kwargs}
    if not stream:
        return client.chat.completions.create(**kwargs)
    state = ChatCompletionStreamState(input_tools=kwargs["tools"])
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    for chunk in chunks:
        state.handle_chunk(chunk)
    completion = state.get_final_completion()
    CHUNKS[id(completion)] = chunks
    return completion


def calls(completion) -> list[tuple[str, dict]]:
    message = completion.choices[0].message
    return [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls or []]


@pytest.mark.parametrize("stream", [False, True])
def test_one_call(client, simulator, token, stream):
    script(simulator, token, WEATHER_CALL)
    completion = ask(client, stream=stream)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert calls(completion) == [("get_weather", {"city": "Paris", "days": 3})]
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_") and call.type == "function"
    assert not choice.message.content
    sent = prompt_text(stream_requests(simulator, token)[-1])
    assert '<tool name="get_weather">' in sent and '<tool name="write_file">' in sent
    assert simulator.wait_deleted(token)["conversations_alive"] == []


def test_stream_chunks_follow_openai_shape(client, simulator, token):
    script(
        simulator,
        token,
        "Let me check.\n" + call_block(invoke("get_weather", city="Oslo"), WRITE_CALL),
    )
    completion = ask(client, stream=True)
    deltas = [c.choices[0].delta for c in CHUNKS[id(completion)] if c.choices]
    pieces = [tc for d in deltas for tc in d.tool_calls or []]
    starts = [tc for tc in pieces if tc.id]
    assert [(tc.index, tc.function.name) for tc in starts] == [
        (0, "get_weather"),
        (1, "write_file"),
    ]
    assert len({tc.id for tc in starts}) == 2
    for tc in pieces:
        if not tc.id:
            assert tc.function.name is None  # the name is sent once
    finishes = [c.choices[0].finish_reason for c in CHUNKS[id(completion)] if c.choices]
    assert finishes[-1] == "tool_calls" and finishes.count("tool_calls") == 1
    assert completion.choices[0].message.content == "Let me check.\n"
    assert calls(completion) == [
        ("get_weather", {"city": "Oslo"}),
        ("write_file", {"path": "src/f.py", "content": CODE}),
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_parallel_calls_and_parallel_false(client, simulator, token, stream):
    block = call_block(invoke("get_weather", city="Paris"), invoke("get_weather", city="Rome"))
    script(simulator, token, block, block)
    both = ask(client, stream=stream)
    assert [a["city"] for _, a in calls(both)] == ["Paris", "Rome"]
    ids = [c.id for c in both.choices[0].message.tool_calls]
    assert len(set(ids)) == 2
    one = ask(client, stream=stream, parallel_tool_calls=False)
    assert calls(one) == [("get_weather", {"city": "Paris"})]
    assert "one tool at a time" in prompt_text(stream_requests(simulator, token)[-1])


@pytest.mark.parametrize("shape", ["all", "current", "delta"])
def test_call_split_at_every_boundary(client, simulator, token, shape):
    text = "Checking the weather 🌦.\n" + call_block(invoke("get_weather", city="São Paulo"))
    cuts = list(range(1, len(text)))
    script(simulator, token, {"text": text, "cuts": cuts, "shape": shape, "chunk": 5})
    completion = ask(client, stream=True)
    assert completion.choices[0].message.content == "Checking the weather 🌦.\n"
    assert calls(completion) == [("get_weather", {"city": "São Paulo"})]
    assert completion.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
def test_start_marker_in_a_code_fence_is_text(client, simulator, token, stream):
    text = "The syntax looks like this:\n```xml\n" + WEATHER_CALL + "\n```\nThat's all."
    script(simulator, token, text)
    completion = ask(client, stream=stream)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == text
    assert not completion.choices[0].message.tool_calls


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_arguments_are_corrected_once(client, simulator, token, stream, proxy):
    bad = call_block(invoke("get_weather", city="Paris", days="three"))
    script(simulator, token, bad, WEATHER_CALL)
    completion = ask(client, stream=stream)
    assert calls(completion) == [("get_weather", {"city": "Paris", "days": 3})]
    first, second = stream_requests(simulator, token)[-2:]
    assert second["conversation_id"] == first["conversation"]  # same upstream conversation
    correction = prompt_text(second)
    assert "could not be used" in correction and "'days'" in correction
    assert "three" not in correction  # the correction names the rule, not the value
    assert simulator.wait_deleted(token)["conversations_alive"] == []


@pytest.mark.parametrize("stream", [False, True])
def test_unknown_tool_twice_returns_the_text(client, simulator, token, stream, proxy):
    bad = call_block(invoke("get_wether", city="Paris"))
    script(simulator, token, bad, bad)
    completion = ask(client, stream=stream)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == bad
    assert not completion.choices[0].message.tool_calls
    assert "no tool named 'get_wether'" in prompt_text(stream_requests(simulator, token)[-1])
    assert "tool call block returned as text: there is no tool named 'get_wether'" in proxy.logs()
    assert token not in proxy.logs()


def test_prose_streamed_before_an_invalid_call_becomes_text(client, simulator, token):
    bad = call_block(invoke("get_weather"))  # city missing
    text = "Sure, checking now.\n" + bad
    script(simulator, token, {"text": text, "cuts": [20], "delay": 0.3})
    completion = ask(client, stream=True)
    assert completion.choices[0].message.content == text
    assert len(stream_requests(simulator, token)) == 1  # the prose was shown: no retry


@pytest.mark.parametrize("stream", [False, True])
def test_required_without_a_call(client, simulator, token, stream):
    script(simulator, token, "I'd rather chat.", WEATHER_CALL)
    completion = ask(client, stream=stream, tool_choice="required")
    assert calls(completion) == [("get_weather", {"city": "Paris", "days": 3})]
    assert completion.choices[0].message.content in (None, "")  # the first try is discarded
    assert "must call a tool" in prompt_text(stream_requests(simulator, token)[-1])
    # the model refuses twice: documented outcome is its text with finish_reason "stop"
    script(simulator, token, "No.", "Still no.")
    completion = ask(client, stream=stream, tool_choice="required")
    assert completion.choices[0].message.content == "Still no."
    assert completion.choices[0].finish_reason == "stop"


def test_named_tool_choice(client, simulator, token):
    script(simulator, token, WEATHER_CALL, call_block(WRITE_CALL))
    forced = {"type": "function", "function": {"name": "write_file"}}
    completion = ask(client, stream=False, tool_choice=forced)
    assert calls(completion) == [("write_file", {"path": "src/f.py", "content": CODE})]
    requests_seen = stream_requests(simulator, token)
    assert "You must call the tool write_file" in prompt_text(requests_seen[-2])
    assert "must call 'write_file', not 'get_weather'" in prompt_text(requests_seen[-1])


def test_tool_choice_none_sends_no_tool_section(client, simulator, token):
    script(simulator, token, WEATHER_CALL)
    completion = ask(client, stream=False, tool_choice="none")
    assert completion.choices[0].message.content == WEATHER_CALL
    assert completion.choices[0].finish_reason == "stop"
    assert "<tools>" not in prompt_text(stream_requests(simulator, token)[-1])


def test_usage_counts_the_tool_section(client, simulator, token):
    script(simulator, token, "hi", "hi")
    plain = client.chat.completions.create(model="glm-4", messages=USER)
    with_tools = ask(client, stream=False)
    assert with_tools.usage.prompt_tokens > plain.usage.prompt_tokens + 200


def test_tool_results_feed_the_second_step(client, simulator, token):
    script(simulator, token, WEATHER_CALL, "It is sunny in Paris, 21°C.")
    first = ask(client, stream=False, extra_body={"keep_conversation": True})
    call = first.choices[0].message.tool_calls[0]
    messages = [
        *USER,
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny", "c": 21}'},
    ]
    second = ask(client, stream=True, messages=messages, extra_body={"conversation_id": first.id})
    assert second.choices[0].message.content == "It is sunny in Paris, 21°C."
    assert second.choices[0].finish_reason == "stop"
    sent = prompt_text(stream_requests(simulator, token)[-1])
    assert sent.startswith("<|observation|>\n<glm_tool_result")
    assert f'name="get_weather" call_id="{call.id}"' in sent
    assert '{"sky": "sunny", "c": 21}' in sent
    assert "What's the weather" not in sent  # only the new tool result goes upstream


def test_flattened_history_carries_calls_and_results(client, simulator, token):
    script(simulator, token, "Done.")
    messages = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
    ]
    completion = ask(client, stream=False, messages=messages)
    assert completion.choices[0].message.content == "Done."
    sent = prompt_text(stream_requests(simulator, token)[-1])
    assert '<|assistant|>\n<glm_tool_calls>\n<invoke name="get_weather">' in sent
    assert '<glm_tool_result name="get_weather" call_id="call_a">' in sent


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        (
            {"tools": [{"type": "function", "function": {"name": "bad name"}}]},
            "tools[0].function.name",
        ),
        (  # a tool left out of the offer (unknown type) cannot be forced
            {
                "tools": [{"type": "custom", "custom": {"name": "x"}}, WEATHER],
                "tool_choice": {"type": "function", "function": {"name": "x"}},
            },
            "tool_choice.function.name",
        ),
        (  # the index named is the one the client sent, past a left-out tool
            {"tools": [{"type": "custom", "custom": {"name": "x"}}, {"type": "function"}]},
            "tools[1].function",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice.function.name",
        ),
        ({"tools": [], "tool_choice": "required"}, "tool_choice"),
    ],
)
def test_malformed_tools_are_400(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="glm-4", messages=USER, **kwargs)
    assert info.value.status_code == 400
    assert info.value.body["param"] == param


@pytest.mark.parametrize("stream", [False, True])
def test_retry_before_the_first_byte_keeps_tool_calls(client, simulator, token, stream):
    simulator.fault(token, "http_500", count=1)
    script(simulator, token, WEATHER_CALL)
    completion = ask(client, stream=stream)
    assert calls(completion) == [("get_weather", {"city": "Paris", "days": 3})]
    assert [r["fault"] for r in stream_requests(simulator, token)] == ["http_500", None]


def test_non_stream_retry_after_a_mid_stream_drop(client, simulator, token):
    simulator.fault(token, "drop_mid_stream", count=1)
    long_call = {"text": "Checking.\n" + WEATHER_CALL, "steps": 8}
    script(simulator, token, long_call, long_call)
    completion = ask(client, stream=False)
    assert completion.choices[0].message.content == "Checking.\n"
    assert calls(completion) == [("get_weather", {"city": "Paris", "days": 3})]
    assert len(stream_requests(simulator, token)) == 2


def test_template_file_replaces_the_tool_section(simulator, tmp_path, token):
    from tests.conftest import start_proxy, stop_proxy

    template = tmp_path / "tools.txt"
    template.write_text(
        "CUSTOM TOOLS ($$ sign)\n$tools\nCall with $open ... $close.\n$choice_rule\n"
    )
    server = start_proxy(simulator, tmp_path, TOOL_PROMPT_FILE=str(template))
    try:
        client = openai.OpenAI(base_url=server.v1, api_key=token, max_retries=0, timeout=30)
        script(simulator, token, WEATHER_CALL)
        completion = ask(client, stream=False)
        assert calls(completion) == [("get_weather", {"city": "Paris", "days": 3})]
        sent = prompt_text(stream_requests(simulator, token)[-1])
        assert 'CUSTOM TOOLS ($ sign)\n<tool name="get_weather">' in sent
        assert "Call with <glm_tool_calls> ... </glm_tool_calls>." in sent
        assert "# Tools of the user's application" not in sent
    finally:
        stop_proxy(server)
