"""Request-level controls against the real server: what is refused, accepted and counted.

``logprobs`` and ``n`` beyond the cap are refused loudly, every Anthropic
``thinking`` type current SDKs send is accepted, ``/v1/messages/count_tokens``
counts by the usage estimator, and every error on an Anthropic route (404,
405 and 413 included) comes in Anthropic's error shape.
"""

from __future__ import annotations

import anthropic
import openai
import pytest
import requests

from tests.conftest import start_proxy, stop_proxy
from tests.support.chat import last_stream_request

ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


@pytest.fixture
def claude(proxy, token):
    return anthropic.Anthropic(base_url=proxy.base, api_key=token, max_retries=0, timeout=30)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# -- OpenAI: refused loudly -----------------------------------------------------------------


@pytest.mark.parametrize("extra", [{"logprobs": True}, {"logprobs": True, "top_logprobs": 3}])
def test_logprobs_is_a_400_that_says_why(client, simulator, token, extra):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="glm-4", messages=user("hi"), **extra)
    body = info.value.body
    assert body["param"] == "logprobs"
    assert "log" in body["message"] and "upstream" in body["message"]
    assert simulator.account(token).get("stream_count", 0) == 0  # nothing was asked upstream


def test_logprobs_false_is_fine(client):
    completion = client.chat.completions.create(model="glm-4", messages=user("hi"), logprobs=False)
    assert completion.choices[0].message.content


def test_n_above_the_cap_is_a_400_naming_it(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="glm-4", messages=user("hi"), n=5)
    assert info.value.body["param"] == "n"
    assert "at most 4" in info.value.body["message"]


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "xml"}, "response_format"),
        ({"type": "json_schema"}, "response_format"),
        ({"type": "json_schema", "json_schema": {"schema": {}}}, "response_format"),
        (
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}},
            "response_format.json_schema.schema",
        ),
    ],
)
def test_malformed_response_format_is_a_400(client, response_format, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="glm-4", messages=user("hi"), response_format=response_format
        )
    assert info.value.body["param"] == param


def test_stop_with_more_than_four_strings_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="glm-4", messages=user("hi"), stop=["a", "b", "c", "d", "e"]
        )
    assert info.value.body["param"] == "stop"


def test_lenient_logprobs_and_a_higher_cap_are_settings(simulator, tmp_path_factory, token):
    server = start_proxy(
        simulator, tmp_path_factory.mktemp("lenient"), LENIENT_LOGPROBS="true", MAX_CHOICES="6"
    )
    try:
        client = openai.OpenAI(base_url=server.v1, api_key=token, max_retries=0, timeout=30)
        completion = client.chat.completions.create(
            model="glm-4", messages=user("hi"), logprobs=True
        )
        assert completion.choices[0].message.content
        assert completion.choices[0].logprobs is None
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model="glm-4", messages=user("hi"), n=7)
        assert "at most 6" in info.value.body["message"]
    finally:
        stop_proxy(server)


# -- Anthropic: thinking types, count_tokens, error shape ------------------------------------


@pytest.mark.parametrize(
    ("thinking", "effort"),
    [
        ({"type": "enabled", "budget_tokens": 1024}, "high"),
        ({"type": "adaptive"}, "high"),
        ({"type": "adaptive", "display": "summarized"}, "high"),
        ({"type": "between_tools"}, None),
        ({"type": "disabled"}, "none"),
    ],
)
def test_every_thinking_type_the_sdk_sends_is_accepted(
    claude, client, simulator, token, thinking, effort
):
    """Each type selects the mode the same reasoning_effort selects on the chat endpoint."""
    extra = {"reasoning_effort": effort} if effort else {}
    client.chat.completions.create(model="glm-4", messages=user("hello"), **extra)
    expected = last_stream_request(simulator, token)["stream"]
    message = claude.messages.create(
        model="glm-4", max_tokens=256, messages=user("hello"), thinking=thinking
    )
    assert message.content[-1].type == "text"
    sent = last_stream_request(simulator, token)["stream"]
    assert sent["chat_mode"] == expected["chat_mode"]
    assert sent.get("reasoning_effort") == expected.get("reasoning_effort")


def test_unknown_thinking_type_is_an_anthropic_400(proxy, token):
    resp = requests.post(
        f"{proxy.base}/v1/messages",
        json={
            "model": "glm-4",
            "max_tokens": 64,
            "messages": user("x"),
            "thinking": {"type": "sometimes"},
        },
        headers={"x-api-key": token, **ANTHROPIC_HEADERS},
        timeout=10,
    )
    assert resp.status_code == 400
    assert resp.json()["type"] == "error"
    assert "thinking.type" in resp.json()["error"]["message"]


def test_count_tokens_matches_the_message_usage(claude, simulator, token):
    kwargs = {
        "model": "glm-4",
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "你好, how many tokens is this?"},
            {"role": "assistant", "content": "Some."},
            {"role": "user", "content": [{"type": "text", "text": "And now?"}]},
        ],
    }
    before = simulator.account(token).get("stream_count", 0)
    counted = claude.messages.count_tokens(**kwargs)
    assert counted.input_tokens > 10
    assert simulator.account(token).get("stream_count", 0) == before  # nothing sent upstream
    message = claude.messages.create(max_tokens=64, **kwargs)
    assert message.usage.input_tokens == counted.input_tokens


def test_count_tokens_errors_are_anthropic_shaped(proxy, token):
    resp = requests.post(
        f"{proxy.base}/v1/messages/count_tokens",
        json={"model": "glm-4"},
        headers={"x-api-key": token, **ANTHROPIC_HEADERS},
        timeout=10,
    )
    assert resp.status_code == 400
    assert resp.json()["type"] == "error"
    assert "messages" in resp.json()["error"]["message"]
    resp = requests.post(
        f"{proxy.base}/v1/messages/count_tokens", json={"model": "glm-4", "messages": user("x")}
    )
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("method", "path", "status", "kind"),
    [
        ("POST", "/v1/messages/batches", 404, "not_found_error"),
        ("GET", "/v1/messages", 405, "invalid_request_error"),
        ("GET", "/v1/messages/count_tokens", 405, "invalid_request_error"),
    ],
)
def test_routing_errors_on_anthropic_routes_use_the_anthropic_shape(
    proxy, token, method, path, status, kind
):
    resp = requests.request(
        method, proxy.base + path, headers={"x-api-key": token}, json={}, timeout=10
    )
    assert resp.status_code == status
    body = resp.json()
    assert body == {
        "type": "error",
        "error": {"type": kind, "message": body["error"]["message"]},
        "request_id": resp.headers["request-id"],  # as Anthropic's error bodies carry it
    }
    assert body["error"]["message"]


def test_unknown_path_from_an_anthropic_client_is_anthropic_shaped(proxy, token):
    resp = requests.get(
        f"{proxy.base}/v1/no-such-route", headers={"x-api-key": token, **ANTHROPIC_HEADERS}
    )
    assert resp.status_code == 404 and resp.json()["type"] == "error"
    resp = requests.get(f"{proxy.base}/v1/no-such-route", headers={"x-api-key": token})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    # an OpenAI route keeps OpenAI's shape, whatever headers the client sends
    resp = requests.post(
        f"{proxy.v1}/chat/completions", json={}, headers={"x-api-key": token, **ANTHROPIC_HEADERS}
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"]


def test_too_large_body_on_an_anthropic_route_is_anthropic_shaped(simulator, tmp_path_factory):
    server = start_proxy(simulator, tmp_path_factory.mktemp("small"), MAX_REQUEST_BODY="1K")
    try:
        resp = requests.post(
            f"{server.base}/v1/messages",
            data=b'{"x": "' + b"a" * 4096 + b'"}',
            headers={"x-api-key": "rt-x", "content-type": "application/json"},
            timeout=10,
        )
        assert resp.status_code == 413
        assert resp.json()["type"] == "error"
        assert resp.json()["error"]["type"] == "request_too_large"
        resp = requests.post(
            f"{server.base}/v1/chat/completions",
            data=b'{"x": "' + b"a" * 4096 + b'"}',
            headers={"authorization": "Bearer rt-x", "content-type": "application/json"},
            timeout=10,
        )
        assert resp.status_code == 413
        assert resp.json()["error"]["code"] == "payload_too_large"  # OpenAI shape stays
    finally:
        stop_proxy(server)


def test_n_with_a_kept_conversation_is_a_400(client):
    for extra in ({"keep_conversation": True}, {"conversation_id": "abcdef123456"}):
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model="glm-4", messages=user("hi"), n=2, extra_body=extra
            )
        assert info.value.body["param"] == "n"


# -- Anthropic fields onto the chat request (pure) -------------------------------------------


@pytest.mark.parametrize(
    ("thinking", "field", "effort"),
    [
        (None, "max_tokens", None),
        ({"type": "disabled"}, "max_tokens", "none"),
        ({"type": "between_tools"}, "max_tokens", None),
        ({"type": "enabled", "budget_tokens": 1024}, "max_completion_tokens", "high"),
        ({"type": "adaptive"}, "max_completion_tokens", "high"),
    ],
)
def test_anthropic_limit_counts_thinking_only_when_thinking_is_on(thinking, field, effort):
    from glm_proxy.api.schemas.anthropic import AnthropicMessagesSchema
    from glm_proxy.api.schemas.base import load
    from glm_proxy.inputs.anthropic import to_chat_body

    body = {"model": "glm-4", "max_tokens": 77, "messages": user("x"), "stop_sequences": ["Z"]}
    if thinking:
        body["thinking"] = thinking
    chat = to_chat_body(load(AnthropicMessagesSchema(), body))
    assert chat[field] == 77
    other = ({"max_tokens", "max_completion_tokens"} - {field}).pop()
    assert other not in chat
    assert chat.get("reasoning_effort") == effort
    assert chat["stop"] == ["Z"]


def test_anthropic_output_config_maps_to_response_format_and_effort():
    from glm_proxy.api.schemas.anthropic import AnthropicMessagesSchema
    from glm_proxy.api.schemas.base import load
    from glm_proxy.inputs.anthropic import to_chat_body

    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    body = {
        "model": "glm-4",
        "max_tokens": 64,
        "messages": user("x"),
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "max", "format": {"type": "json_schema", "schema": schema}},
    }
    chat = to_chat_body(load(AnthropicMessagesSchema(), body))
    assert chat["reasoning_effort"] == "xhigh"
    assert chat["response_format"]["json_schema"]["schema"] == schema
