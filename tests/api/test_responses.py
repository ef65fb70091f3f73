"""Responses API end to end: real gunicorn server, official SDK, upstream simulator."""

from __future__ import annotations

import base64

import orjson
import requests

from tests.simulator.scripts import (
    ERROR_PARTIAL,
    SEARCH_SOURCES,
    THINK_ANSWER,
    THINK_REASONING,
)
from tests.support.fileserver import image_bytes
from tests.support.responses import SIM_TEXT, prompt_of, stream_requests


def test_text_response(client, simulator, token):
    response = client.responses.create(model="glm-4", input="hello")
    assert response.id.startswith("resp_")
    assert response.object == "response" and response.status == "completed"
    assert response.output_text.startswith(SIM_TEXT)
    (message,) = response.output
    assert message.type == "message" and message.role == "assistant"
    assert message.status == "completed"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert response.store is True and response.model == "glm-4"
    (entry,) = stream_requests(simulator, token)
    assert prompt_of(entry) == "hello"


def test_instructions_and_message_items(client, simulator, token):
    client.responses.create(
        model="glm-4",
        instructions="You are terse.",
        input=[
            {"role": "developer", "content": "Answer in English."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q1"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "a1"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA"},
            {"role": "user", "content": "q2"},
        ],
        store=False,
    )
    text = prompt_of(stream_requests(simulator, token)[-1])
    order = [text.index(s) for s in ("You are terse.", "Answer in English.", "q1", "a1", "q2")]
    assert order == sorted(order)
    assert "gAAA" not in text
    assert not simulator.wait_deleted(token)["conversations_alive"]


THINKING_MODE = {"2026": "thinking", "2025": "zero"}  # chat_mode of the thinking mode


def test_reasoning_model(client, simulator, token, profile):
    response = client.responses.create(model="glm-4-think", input="hi [[sim:think]]")
    reasoning, message = response.output
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].type == "summary_text"
    assert reasoning.summary[0].text == THINK_REASONING
    assert response.output_text == THINK_ANSWER
    assert response.usage.output_tokens_details.reasoning_tokens > 0
    effort = client.responses.create(model="glm-4", input="x", reasoning={"effort": "high"})
    assert effort.reasoning.effort == "high"
    assert stream_requests(simulator, token)[-1]["stream"]["chat_mode"] == THINKING_MODE[profile]


def test_search_citations_are_annotations(client, simulator, token):
    response = client.responses.create(
        model="glm-4", input="news? [[sim:search]]", tools=[{"type": "web_search"}]
    )
    assert stream_requests(simulator, token)[-1]["body"]["meta_data"]["is_networking"] is True
    content = response.output[0].content[0]
    urls = {a.url for a in content.annotations}
    assert urls == {s["url"] for s in SEARCH_SOURCES}
    for annotation in content.annotations:
        assert annotation.type == "url_citation" and annotation.title
        span = content.text[annotation.start_index : annotation.end_index]
        assert span.endswith(f"]({annotation.url})")


def test_image_input(client, simulator, token):
    png = image_bytes("PNG", (64, 48))
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    response = client.responses.create(
        model="glm-4",
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "what is this?"},
                    {"type": "input_image", "image_url": url, "detail": "auto"},
                ],
            }
        ],
    )
    assert response.status == "completed"
    uploads = [u for u in simulator.state()["uploads"] if u["account"] == token]
    assert len(uploads) == 1 and uploads[0]["content_type"] == "image/png"
    items = [c["item"] for c in stream_requests(simulator, token)[-1]["stream"]["content"]]
    assert any(i["type"] == "image" for i in items)


STREAM_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.reasoning_summary_part.added",
    "response.reasoning_summary_text.delta",
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
    "response.output_item.done",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def test_stream_event_sequence_matches_non_stream(client):
    with client.responses.stream(model="glm-4-think", input="hi [[sim:think]]") as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    collapsed = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
    assert collapsed == STREAM_ORDER
    assert [e.sequence_number for e in events] == list(range(len(events)))
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    full = client.responses.create(model="glm-4-think", input="hi [[sim:think]]")
    assert streamed == final.output_text == full.output_text == THINK_ANSWER
    assert final.output[0].summary[0].text == full.output[0].summary[0].text
    assert events[0].response.id == final.id
    assert client.responses.retrieve(final.id).output_text == THINK_ANSWER


def test_stream_keepalive_and_raw_sse(proxy, token):
    resp = requests.post(
        f"{proxy.v1}/responses",
        json={"model": "glm-4", "input": "slow [[sim:slow]]", "stream": True},
        headers={"Authorization": f"Bearer {token}"},
        stream=True,
        timeout=30,
    )
    assert resp.headers["content-type"].startswith("text/event-stream")
    lines = list(resp.iter_lines())
    assert b": keep-alive" in lines
    names = [line[len(b"event: ") :].decode() for line in lines if line.startswith(b"event: ")]
    datas = [orjson.loads(line[6:]) for line in lines if line.startswith(b"data: ")]
    assert names == [d["type"] for d in datas]
    assert names[-1] == "response.completed"


def test_upstream_error_mid_stream(client, simulator, token):
    with client.responses.stream(model="glm-4", input="x [[sim:error]]", store=False) as stream:
        events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[-2:] == ["error", "response.failed"]
    assert ERROR_PARTIAL in "".join(
        e.delta for e in events if e.type == "response.output_text.delta"
    )
    assert events[-1].response.status == "failed"
    assert events[-1].response.error.code == "server_error"
    assert not simulator.wait_deleted(token)["conversations_alive"]
    with client.responses.stream(model="glm-4", input="x [[sim:error]]") as stream:
        stored = list(stream)[-1].response.id
    assert client.responses.retrieve(stored).status == "failed"
