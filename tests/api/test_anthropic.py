"""``/v1/messages`` with the official Anthropic SDK, against the simulator."""

from __future__ import annotations

import anthropic
import pytest
import requests

from tests.support.chat import SIM_TEXT


@pytest.fixture
def claude(proxy, token):
    return anthropic.Anthropic(base_url=proxy.base, api_key=token, max_retries=0, timeout=30)


def test_message_non_stream(claude, simulator, token):
    message = claude.messages.create(
        model="glm-4",
        max_tokens=256,
        system="be brief",
        messages=[{"role": "user", "content": "hello"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[-1].type == "text"
    assert message.content[-1].text.startswith(SIM_TEXT)
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert simulator.wait_deleted(token)["conversations_alive"] == []


def test_message_stream_matches_non_stream(claude):
    kwargs = {
        "model": "glm-4",
        "max_tokens": 256,
        "messages": [{"role": "user", "content": "q [[sim:search]]"}],
    }
    full = claude.messages.create(**kwargs)
    with claude.messages.stream(**kwargs) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == full.content[-1].text
    assert final.content[-1].text == text
    assert final.stop_reason == "end_turn"
    assert "【" not in text


def test_thinking_blocks(claude):
    kwargs = {
        "model": "glm-4",
        "max_tokens": 2048,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x [[sim:think]]"}]}],
    }
    full = claude.messages.create(**kwargs)
    assert [b.type for b in full.content] == ["thinking", "text"]
    assert full.content[0].thinking.startswith("让我想一想")
    with claude.messages.stream(**kwargs) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == full.content[0].thinking


def test_refusal_on_content_filter(claude):
    message = claude.messages.create(
        model="glm-4", max_tokens=64, messages=[{"role": "user", "content": "[[sim:intervene]]"}]
    )
    assert message.stop_reason == "refusal"
    assert "内容不合规" in message.content[-1].text


def test_errors_use_the_anthropic_shape(proxy, token):
    resp = requests.post(
        f"{proxy.base}/v1/messages",
        json={"model": "glm-4", "messages": [{"role": "user", "content": "x"}]},
        headers={"x-api-key": token, "anthropic-version": "2023-06-01"},
        timeout=10,
    )
    assert resp.status_code == 400
    body = resp.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    resp = requests.post(
        f"{proxy.base}/v1/messages",
        json={"model": "glm-4", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]},
        timeout=10,
    )
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("block", "param"),
    [
        ({"type": "image", "source": "abc"}, "messages[0].content[0].source"),
        ({"type": "document", "source": ["x"]}, "messages[0].content[0].source"),
        (
            {"type": "tool_result", "tool_use_id": "t1", "content": [5]},
            "messages[0].content[0].content[0]",
        ),
    ],
)
def test_malformed_content_block_is_an_anthropic_400(proxy, token, block, param):
    resp = requests.post(
        f"{proxy.base}/v1/messages",
        json={
            "model": "glm-4",
            "max_tokens": 8,
            "messages": [{"role": "user", "content": [block]}],
        },
        headers={"x-api-key": token, "anthropic-version": "2023-06-01"},
        timeout=10,
    )
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert param in body["error"]["message"]


def test_anthropic_answers_count_their_tokens(simulator, tmp_path_factory, token):
    """Per-key usage (admin API) counts /v1/messages like /v1/chat/completions."""
    from tests.conftest import start_proxy, stop_proxy

    server = start_proxy(simulator, tmp_path_factory.mktemp("usage"), ADMIN_KEY="adm-usage")

    def tokens() -> dict:
        resp = requests.get(
            f"{server.base}/admin/usage?window=1h",
            headers={"Authorization": "Bearer adm-usage"},
            timeout=10,
        )
        return next(d for d in resp.json()["data"] if d["key"] == "(passthrough)")["windows"]["1h"]

    try:
        claude = anthropic.Anthropic(base_url=server.base, api_key=token, max_retries=0)
        kwargs = {
            "model": "glm-4",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "x"}],
        }
        before = tokens()
        message = claude.messages.create(**kwargs)
        after_one = tokens()
        with claude.messages.stream(**kwargs) as stream:
            stream.get_final_message()
        after_two = tokens()
    finally:
        stop_proxy(server)
    assert after_one["requests"] == before["requests"] + 1
    assert after_one["completion_tokens"] - before["completion_tokens"] == (
        message.usage.output_tokens
    )
    assert after_one["prompt_tokens"] - before["prompt_tokens"] == message.usage.input_tokens
    assert after_two["completion_tokens"] - after_one["completion_tokens"] == (
        message.usage.output_tokens
    )


def test_conversation_continues_with_the_message_id(claude, simulator, token):
    """README: pass the previous response's ``id`` as ``conversation_id`` (here ``msg_<id>``)."""
    first = claude.messages.create(
        model="glm-4",
        max_tokens=64,
        messages=[{"role": "user", "content": "one"}],
        extra_body={"keep_conversation": True},
    )
    second = claude.messages.create(
        model="glm-4",
        max_tokens=64,
        messages=[{"role": "user", "content": "two"}],
        extra_body={"conversation_id": first.id},
    )
    assert "turn 2" in second.content[-1].text
    assert second.id == first.id
    conversation_id = first.id.removeprefix("msg_")
    assert conversation_id in simulator.account(token)["conversations_alive"]
