"""Responses formatter: the typed event sequence, checked against the official SDK's own
event models and stream accumulator, and the non-stream ``response`` object built from the
same deltas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from openai import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from glm_proxy.errors import UpstreamError
from glm_proxy.protocol.events import (
    Citation,
    ConversationStarted,
    Delta,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallArguments,
    ToolCallStart,
)
from glm_proxy.protocol.formats.responses import (
    ResponseBuilder,
    ResponseCancelled,
    ResponsesWire,
    counter_ids,
    url_annotations,
)
from glm_proxy.protocol.sse import SSEDecoder, decode_json
from glm_proxy.protocol.translate import translate_all
from glm_proxy.services.responses import skeleton

RECORDINGS = Path(__file__).parent.parent / "recordings"
EVENT = TypeAdapter(ResponseStreamEvent)
BODY = {"model": "glm-4", "input": "hi"}


def recorded(name: str) -> list[Delta]:
    decoder = SSEDecoder()
    events = decoder.feed((RECORDINGS / name).read_bytes()) + decoder.finish()
    return translate_all(decode_json(e) for e in events if e.data)


def builder(custom: frozenset[str] = frozenset(), body: dict | None = None) -> ResponseBuilder:
    return ResponseBuilder(
        skeleton(body or BODY, "resp_test0001", 1700000000),
        prompt_text="hi",
        custom_tools=custom,
        new_id=counter_ids(),
    )


def run(deltas: list[Delta], b: ResponseBuilder | None = None) -> tuple[list[dict], dict]:
    b = b or builder()
    events = b.start()
    for delta in deltas:
        events.extend(b.feed(delta))
    events.extend(b.finish())
    return events, b.response()


def replay_with_sdk(events: list[dict[str, Any]], tools: list | None = None) -> Any:
    """Validate every event against the SDK's models and accumulate them as
    ``client.responses.stream()`` does; returns the SDK's final response."""
    state = ResponseStreamState(input_tools=tools or [], text_format=omit)
    for event in events:
        parsed = EVENT.validate_python(event)
        state.handle_event(parsed)
    return state._completed_response


def types(events: list[dict]) -> list[str]:
    return [e["type"] for e in events]


def test_reasoning_then_cited_text_sequence():
    events, response = run(recorded("e2_think_search.sse"))
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    kinds = types(events)
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:5] == [
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
    ]
    reasoning_done = kinds.index("response.reasoning_summary_text.done")
    assert kinds[reasoning_done : reasoning_done + 6] == [
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
    ]
    tail = [k for k in kinds if k != "response.output_text.annotation.added"][-5:]
    assert tail == [
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = replay_with_sdk(events)
    assert final.output_text == response["output_text"]
    assert final.output[0].type == "reasoning"
    assert final.output[0].summary[0].text == "用户问北京天气，先搜索一下 🤔"
    assert response["status"] == "completed"
    streamed = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert streamed == response["output_text"]
    Response.model_validate(response)  # the non-stream object is a valid SDK Response


def test_citations_become_url_annotations():
    _, response = run(recorded("e2_think_search.sse"))
    message = response["output"][1]
    text = message["content"][0]["text"]
    annotations = message["content"][0]["annotations"]
    assert {a["url"] for a in annotations} == {
        "https://weather.example.cn/beijing",
        "https://aqi.example.com/bj?d=0527",
    }
    for a in annotations:
        span = text[a["start_index"] : a["end_index"]]
        assert span.startswith("[") and span.endswith(f"]({a['url']})")
        assert a["type"] == "url_citation" and a["title"]
    assert [a["start_index"] for a in annotations] == sorted(a["start_index"] for a in annotations)


def test_url_annotations_escape_like_the_translator():
    citation = Citation(1, "t", "https://x.example/a (b)")
    text = "see [1](https://x.example/a%20%28b%29)."
    (a,) = url_annotations(text, [citation])
    assert text[a["start_index"] : a["end_index"]] == "[1](https://x.example/a%20%28b%29)"


def test_usage_counts_reasoning():
    _, response = run([ReasoningDelta("想一想" * 10), TextDelta("answer"), Finished("stop")])
    usage = response["usage"]
    assert usage["output_tokens_details"]["reasoning_tokens"] == 30
    assert usage["output_tokens"] == 30 + 2
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_function_and_custom_tool_calls():
    deltas: list[Delta] = [
        ConversationStarted("conv1", "m1"),
        TextDelta("Let me look."),
        ToolCallStart(0, "call_a", "get_weather"),
        ToolCallArguments(0, '{"city": '),
        ToolCallArguments(0, '"Paris"}'),
        ToolCallStart(1, "call_b", "apply_patch"),
        ToolCallArguments(1, '{"input": "*** Begin Patch\\n*** End Patch"}'),
        Finished("tool_calls"),
    ]
    b = builder(frozenset({"apply_patch"}))
    events, response = run(deltas, b)
    kinds = types(events)
    assert kinds.count("response.function_call_arguments.delta") == 2
    i = kinds.index("response.function_call_arguments.done")
    assert kinds[i + 1 : i + 6] == [
        "response.output_item.done",
        "response.output_item.added",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
        "response.output_item.done",
    ]
    message, call, custom = response["output"]
    assert message["content"][0]["text"] == "Let me look."
    assert call == {
        "id": call["id"],
        "type": "function_call",
        "status": "completed",
        "call_id": "call_a",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    assert custom["type"] == "custom_tool_call" and custom["call_id"] == "call_b"
    assert custom["input"] == "*** Begin Patch\n*** End Patch"
    assert response["status"] == "completed"
    final = replay_with_sdk(events)
    assert [o.type for o in final.output] == ["message", "function_call", "custom_tool_call"]
    assert final.output[1].arguments == '{"city": "Paris"}'
    assert final.output[2].input == "*** Begin Patch\n*** End Patch"
    assert b.conversation_id == "conv1"


def test_content_filter_is_incomplete():
    events, response = run([TextDelta("partial"), Finished("content_filter", "filtered")])
    assert events[-1]["type"] == "response.incomplete"
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "content_filter"}
    replay_with_sdk(events)


def test_length_is_incomplete_max_output_tokens():
    _, response = run([TextDelta("cut"), Finished("length")])
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}


def test_failure_after_start_is_error_then_failed():
    b = builder()
    events = b.start() + b.feed(TextDelta("half an ans"))
    events += b.fail(UpstreamError("the upstream stream broke"))
    assert types(events)[-4:] == [
        "response.content_part.done",
        "response.output_item.done",
        "error",
        "response.failed",
    ]
    error = events[-2]
    assert error["message"] == "the upstream stream broke" and error["code"] == "upstream_error"
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "server_error"
    assert failed["output"][0]["status"] == "incomplete"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    for event in events:
        EVENT.validate_python(event)


def test_cancel_closes_items():
    b = builder()
    events = b.start() + b.feed(ReasoningDelta("hm")) + b.cancel()
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["status"] == "cancelled"
    assert events[-2]["item"]["status"] == "incomplete"


def test_empty_answer_completes():
    events, response = run([Finished("stop")])
    assert types(events) == ["response.created", "response.in_progress", "response.completed"]
    assert response["output"] == [] and response["output_text"] == ""


def test_interleaved_reasoning_opens_new_items():
    _, response = run(
        [ReasoningDelta("a"), TextDelta("b"), ReasoningDelta("c"), TextDelta("d"), Finished("stop")]
    )
    assert [o["type"] for o in response["output"]] == [
        "reasoning",
        "message",
        "reasoning",
        "message",
    ]
    assert response["output_text"] == "bd"
    assert len({o["id"] for o in response["output"]}) == 4


def test_wire_bytes_and_keepalive():
    wire = ResponsesWire(builder())
    opened = wire.open()
    assert opened.startswith(b"event: response.created\ndata: {")
    assert opened.count(b"\n\n") == 2
    body = wire.feed(TextDelta("x")) + wire.finish()
    decoder = SSEDecoder()
    events = decoder.feed(opened + body) + decoder.finish()
    for event in events:
        assert event.event == orjson.loads(event.data)["type"]
    assert wire.keepalive().startswith(b":")


@pytest.mark.parametrize("reasoning", [True, False])
def test_reasoning_can_be_hidden(reasoning):
    b = ResponseBuilder(skeleton(BODY, "resp_x00001", 1), include_reasoning=reasoning)
    _, response = run([ReasoningDelta("r"), TextDelta("t"), Finished("stop")], b)
    kinds = [o["type"] for o in response["output"]]
    assert kinds == (["reasoning", "message"] if reasoning else ["message"])


def test_wire_error_before_any_delta_still_opens_the_response():
    saved = []
    wire = ResponsesWire(builder(), on_end=saved.append)
    decoder = SSEDecoder()
    events = decoder.feed(wire.error(UpstreamError("broke early"))) + decoder.finish()
    assert [e.event for e in events] == [
        "response.created",
        "response.in_progress",
        "error",
        "response.failed",
    ]
    replay_with_sdk([orjson.loads(e.data) for e in events if e.event != "error"])
    assert saved and saved[0].status == "failed"
    assert wire.usage["completion_tokens"] == 0


def test_wire_cancel_and_collect():
    wire = ResponsesWire(builder())
    out = wire.open() + wire.feed(TextDelta("so far")) + wire.error(ResponseCancelled("stop"))
    assert b"event: error" not in out
    assert out.rstrip().splitlines()[-2] == b"event: response.incomplete"
    saved = []
    collector = ResponsesWire(builder(), on_end=saved.append)
    response = collector.collect([TextDelta("a"), TextDelta("b"), Finished("stop")])
    assert response["status"] == "completed" and response["output_text"] == "ab"
    assert collector.usage == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    assert saved[0] is collector.builder


TOOL_ANSWER: list[Delta] = [
    ConversationStarted("conv1", "m1"),
    ReasoningDelta("The user wants weather."),
    TextDelta("Let me check."),
    ToolCallStart(0, "call_abc", "get_weather"),
    ToolCallArguments(0, '{"city": '),
    ToolCallArguments(0, '"Paris"}'),
    ToolCallStart(1, "call_def", "apply_patch"),
    ToolCallArguments(1, '{"input": "*** Begin Patch"}'),
    Finished("tool_calls"),
]


@pytest.mark.parametrize("deltas", [TOOL_ANSWER, "e2_think_search.sse", "e2_intervene.sse"])
def test_sdk_stream_helper_rebuilds_the_collected_response(deltas):
    """The wire's bytes, served over HTTP to ``client.responses.stream()``, rebuild exactly the
    response ``collect()`` returns for the non-stream request."""
    import httpx
    import openai

    if isinstance(deltas, str):
        deltas = recorded(deltas)
    custom = frozenset({"apply_patch"})
    wire = ResponsesWire(builder(custom))
    parts = [wire.keepalive(), wire.open()]
    for delta in deltas:
        parts.extend([wire.feed(delta), wire.keepalive()])
    parts.append(wire.finish(None))

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=b"".join(parts), headers={"content-type": "text/event-stream"}
        )

    client = openai.OpenAI(
        base_url="http://proxy.test/v1",
        api_key="k",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )
    with client.responses.stream(model="glm-4", input="hi") as stream:
        events = list(stream)
        if events[-1].type == "response.completed":
            final = stream.get_final_response().model_dump(exclude_none=True)
        else:
            final = events[-1].response.model_dump(exclude_none=True)
    collected = ResponsesWire(builder(custom)).collect(deltas)
    assert final == Response.model_validate(collected).model_dump(exclude_none=True)
