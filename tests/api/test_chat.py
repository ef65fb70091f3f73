"""Chat completions end to end: real gunicorn server, official SDK, upstream simulator."""

from __future__ import annotations

import re
import time

import openai
import pytest
import requests

from tests.support.chat import SIM_TEXT, last_stream_request, post, sse_events, user

AGENT = "65c046a531d3fcb034918abe"


def stream_text(client, **kwargs) -> tuple[str, str, list]:
    chunks = list(client.chat.completions.create(stream=True, **kwargs))
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(
        getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices
    )
    return content, reasoning, chunks


THINKING_MODE = {"2026": "thinking", "2025": "zero"}  # chat_mode of the thinking mode


def test_non_stream_basic(client, simulator, token):
    completion = client.chat.completions.create(model="glm-4", messages=user("hello"))
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content.startswith(SIM_TEXT)
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens >= 1
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    assert completion.id  # the upstream conversation id
    assert simulator.wait_deleted(token)["conversations_deleted"] == [completion.id]


@pytest.mark.parametrize(
    "directive",
    [
        "",
        "[[sim:think]]",
        "[[sim:search]]",
        "[[sim:search_late]]",
        "[[sim:code]]",
        "[[sim:image]]",
        "[[sim:multi]]",
        "[[sim:unknown_types]]",
    ],
)
@pytest.mark.parametrize("shape", ["all", "current", "delta"])
def test_stream_and_non_stream_agree(client, directive, shape):
    prompt = f"question {directive[:-2] + f' shape={shape}]]' if directive else ''}"
    model = "glm-4-think" if "think" in directive else "glm-4"
    full = client.chat.completions.create(model=model, messages=user(prompt))
    content, reasoning, chunks = stream_text(client, model=model, messages=user(prompt))
    same_urls = re.compile(r"[0-9a-f]{24}")  # generated image URLs carry the message id
    assert same_urls.sub("ID", content) == same_urls.sub("ID", full.choices[0].message.content)
    assert reasoning == (getattr(full.choices[0].message, "reasoning_content", None) or "")
    assert "【" not in content and "turn0search" not in content
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_stream_chunk_shapes_and_headers(proxy, token):
    resp = post(
        proxy, token, {"model": "glm-4", "stream": True, "messages": user("hi")}, stream=True
    )
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Accel-Buffering"] == "no"
    payloads, raw = sse_events(resp)
    assert payloads[-1] == {"done": True}
    assert sum(1 for p in payloads if p.get("done")) == 1
    chunks = payloads[:-1]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert b"data: " not in [line.strip() for line in raw]  # never an empty data event
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text.startswith(SIM_TEXT)


def test_reasoning_content_stream_and_final(client, simulator, token, profile):
    content, reasoning, _ = stream_text(
        client, model="glm-4-think", messages=user("hi [[sim:think]]")
    )
    assert reasoning.startswith("让我想一想")
    assert content.startswith("思考完毕")
    assert last_stream_request(simulator, token)["stream"]["chat_mode"] == THINKING_MODE[profile]
    full = client.chat.completions.create(model="glm-4-think", messages=user("x [[sim:think]]"))
    assert full.choices[0].message.reasoning_content.startswith("让我想一想")
    assert full.usage.completion_tokens_details.reasoning_tokens > 0


def test_reasoning_effort_selects_reasoning_mode(client, simulator, token, profile):
    client.chat.completions.create(model="glm-4", messages=user("a"), reasoning_effort="high")
    assert last_stream_request(simulator, token)["stream"]["chat_mode"] == THINKING_MODE[profile]
    client.chat.completions.create(model="glm-4", messages=user("b"))
    assert last_stream_request(simulator, token)["stream"]["chat_mode"] in (None, "")


def test_model_modes(client, simulator, token):
    client.chat.completions.create(model="glm-4-deepresearch", messages=user("a"))
    assert last_stream_request(simulator, token)["stream"]["chat_mode"] == "deep_research"
    silent = client.chat.completions.create(model="glm-4-silent", messages=user("b [[sim:think]]"))
    assert not getattr(silent.choices[0].message, "reasoning_content", None)
    assert "让我想一想" not in silent.choices[0].message.content


def test_citations_become_markdown(client):
    early = client.chat.completions.create(model="glm-4", messages=user("q [[sim:search]]"))
    text = early.choices[0].message.content
    assert "【" not in text and "†" not in text
    assert "(https://example.com/source-1)" in text
    assert "(https://example.org/source-2)" in text
    late = client.chat.completions.create(model="glm-4", messages=user("q [[sim:search_late]]"))
    text = late.choices[0].message.content
    assert "turn0search" not in text and "【" not in text
    assert "(https://example.com/r0)" in text and "(https://example.org/r1)" in text


def test_code_output_rendered_once(client):
    text = (
        client.chat.completions.create(model="glm-4", messages=user("run [[sim:code]]"))
        .choices[0]
        .message.content
    )
    assert text.count("```python") == 1
    assert text.count("print(6 * 7)") == 1
    assert text.count("42\n") == 1
    assert "Code done" in text


def test_generated_images_become_markdown(client):
    text = (
        client.chat.completions.create(model="glm-4", messages=user("draw [[sim:image]]"))
        .choices[0]
        .message.content
    )
    assert text.count("![") == 1 and "_0_0.png)" in text


def test_content_filter(client, simulator, token):
    full = client.chat.completions.create(model="glm-4", messages=user("bad [[sim:intervene]]"))
    assert full.choices[0].finish_reason == "content_filter"
    assert "内容不合规 (simulated filter)" in full.choices[0].message.content
    content, _, chunks = stream_text(client, model="glm-4", messages=user("bad [[sim:intervene]]"))
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert content == full.choices[0].message.content
    assert not simulator.wait_deleted(token)["conversations_alive"]


def test_multi_turn_is_flattened(client, simulator, token):
    client.chat.completions.create(
        model="glm-4",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "second question"},
        ],
    )
    request = last_stream_request(simulator, token)
    texts = [
        c["item"].get("text")
        for c in request["stream"]["content"]
        if c["item"].get("type") == "text"
    ]
    assert len(request["body"]["messages"]) == 1
    text = texts[0]
    assert (
        text.index("You are terse.")
        < text.index("first question")
        < text.index("first answer")
        < text.index("second question")
    )
    assert "<|system|>" in text and "<|assistant|>" in text
    assert text.rstrip().endswith("<|assistant|>")


def test_conversation_continuation(client, simulator, token):
    first = client.chat.completions.create(
        model="glm-4", messages=user("one"), extra_body={"keep_conversation": True}
    )
    conversation_id = first.id
    second = client.chat.completions.create(
        model="glm-4",
        messages=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": first.choices[0].message.content},
            {"role": "user", "content": "two"},
        ],
        extra_body={"conversation_id": conversation_id},
    )
    assert "turn 2" in second.choices[0].message.content
    request = last_stream_request(simulator, token)
    assert request["body"]["conversation_id"] == conversation_id
    texts = [
        c["item"]["text"] for c in request["stream"]["content"] if c["item"].get("type") == "text"
    ]
    assert texts == ["two"]
    time.sleep(0.5)  # the scenario: a while after the answer, the conversation is still kept
    assert conversation_id in simulator.account(token)["conversations_alive"]


def test_unknown_conversation_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(
            model="glm-4",
            messages=user("x"),
            extra_body={"conversation_id": "0123456789abcdef01234567"},
        )
    assert info.value.body["code"] == "conversation_not_found"


def test_agent_id_model(client, simulator, token):
    client.chat.completions.create(model=AGENT, messages=user("hi agent"))
    assert last_stream_request(simulator, token)["stream"]["assistant_id"] == AGENT


def test_usage_chunk(proxy, token):
    resp = post(
        proxy,
        token,
        {
            "model": "glm-4",
            "stream": True,
            "messages": user("hi"),
            "stream_options": {"include_usage": True},
        },
        stream=True,
    )
    payloads, _ = sse_events(resp)
    usage_chunk = payloads[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] > 0
    assert payloads[-3]["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in payloads[-3] or payloads[-3]["usage"] is None


def test_every_standard_field_is_accepted(client):
    completion = client.chat.completions.create(
        model="glm-4",
        messages=[
            {"role": "developer", "content": "be nice"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": "ok", "reasoning_content": "hmm"},
            {"role": "user", "content": "again"},
        ],
        temperature=0.7,
        top_p=1,
        max_tokens=100,
        max_completion_tokens=100,
        n=1,
        stop=["\n\n"],
        presence_penalty=0.1,
        frequency_penalty=0.1,
        user="u1",
        seed=1,
        response_format={"type": "text"},
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        tool_choice="auto",
        reasoning_effort="none",
        logit_bias={"1": 1},
        metadata={"a": "b"},
        store=False,
        parallel_tool_calls=False,
    )
    assert completion.choices[0].message.content


def test_comma_separated_tokens_fail_over_from_dead_account(proxy, simulator, token):
    dead = "dead-" + token
    multi = openai.OpenAI(base_url=proxy.v1, api_key=f"{dead},{token}", max_retries=0)
    for _ in range(3):
        completion = multi.chat.completions.create(model="glm-4", messages=user("hi"))
        assert completion.choices[0].message.content.startswith(SIM_TEXT)
    assert simulator.account(token)["stream_count"] == 3


def test_dead_refresh_token_is_401_and_not_retried(proxy, simulator):
    dead = "dead-only-token"
    client = openai.OpenAI(base_url=proxy.v1, api_key=dead, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        client.chat.completions.create(model="glm-4", messages=user("hi"))
    assert info.value.body["code"] == "refresh_token_expired"
    assert "log in" in info.value.body["message"].lower()
    refreshes = [
        r
        for r in simulator.requests_log("/user/refresh")
        if r.get("account") == dead or "dead-only" in str(r.get("headers"))
    ]
    assert len(refreshes) <= 1


def test_token_check(proxy, token):
    live = requests.post(f"{proxy.base}/token/check", json={"token": token}, timeout=10)
    assert live.json() == {"live": True}
    dead = requests.post(f"{proxy.base}/token/check", json={"token": "dead-x"}, timeout=10)
    assert dead.json() == {"live": False}
    bad = requests.post(f"{proxy.base}/token/check", json={}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "token"


def test_models(client, proxy):
    models = client.models.list()
    ids = [m.id for m in models.data]
    assert "glm-4" in ids and "glm-4-think" in ids
    assert all(m.object == "model" and m.owned_by and m.created for m in models.data)
    assert client.models.retrieve("glm-4-think").id == "glm-4-think"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_health(proxy):
    assert requests.get(f"{proxy.base}/ping", timeout=5).text == "pong"
    assert requests.head(f"{proxy.base}/ping", timeout=5).status_code == 200
    assert requests.get(f"{proxy.base}/healthz", timeout=5).json()["status"] == "ok"


def test_cors_preflight(proxy):
    resp = requests.options(
        f"{proxy.v1}/chat/completions",
        headers={
            "Origin": "http://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-stainless-os",
        },
        timeout=5,
    )
    assert resp.status_code == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    allowed = resp.headers["Access-Control-Allow-Headers"].lower()
    for header in (
        "authorization",
        "content-type",
        "x-api-key",
        "anthropic-version",
        "x-stainless-os",
    ):
        assert header in allowed
