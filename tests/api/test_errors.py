"""Every error path: status codes, OpenAI error objects, retries, cleanup on failure."""

from __future__ import annotations

import openai
import orjson
import pytest
import requests

from tests.conftest import start_proxy, stop_proxy
from tests.support.chat import SIM_TEXT, post, sse_events, user
from tests.support.waiting import wait_until


def error_of(resp: requests.Response) -> dict:
    body = resp.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    return body["error"]


@pytest.fixture(scope="module")
def strict_proxy(simulator, tmp_path_factory):
    """A proxy with a small body cap, a short upstream read timeout and no retries."""
    server = start_proxy(
        simulator,
        tmp_path_factory.mktemp("strict"),
        MAX_REQUEST_BODY="64K",
        GLM_READ_TIMEOUT="1",
        GLM_RETRIES="0",
        STREAM_HEADER_WAIT="5",
    )
    yield server
    stop_proxy(server)


def test_missing_credentials_is_401(proxy):
    resp = requests.post(
        f"{proxy.v1}/chat/completions", json={"model": "glm-4", "messages": user("hi")}, timeout=10
    )
    assert resp.status_code == 401
    assert error_of(resp)["type"] == "authentication_error"


def test_x_api_key_is_accepted(proxy, token):
    resp = requests.post(
        f"{proxy.v1}/chat/completions",
        headers={"x-api-key": token},
        json={"model": "glm-4", "messages": user("hi")},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text


def test_invalid_json_is_400(proxy, token):
    resp = requests.post(
        f"{proxy.v1}/chat/completions",
        data=b"{not json",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert resp.status_code == 400
    assert error_of(resp)["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "glm-4"}, "messages"),
        ({"model": "glm-4", "messages": []}, "messages"),
        ({"model": "glm-4", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"model": "glm-4", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "glm-4", "messages": user("x"), "temperature": 3}, "temperature"),
        ({"model": "glm-4", "messages": user("x"), "stream": "yes please"}, "stream"),
        (
            {"model": "glm-4", "messages": user("x"), "reasoning_effort": "ultra"},
            "reasoning_effort",
        ),
    ],
)
def test_bad_input_names_the_param(proxy, token, body, param):
    resp = post(proxy, token, body)
    assert resp.status_code == 400, resp.text
    error = error_of(resp)
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_unknown_route_404_and_wrong_method_405(proxy):
    resp = requests.get(f"{proxy.v1}/nothing-here", timeout=10)
    assert resp.status_code == 404
    assert error_of(resp)["code"] == "not_found"
    resp = requests.get(f"{proxy.v1}/chat/completions", timeout=10)
    assert resp.status_code == 405
    assert error_of(resp)["code"] == "method_not_allowed"


def test_body_over_the_cap_is_413(strict_proxy, token):
    big = {"model": "glm-4", "messages": user("x" * 100_000)}
    resp = post(strict_proxy, token, big)
    assert resp.status_code == 413
    assert error_of(resp)["code"] == "payload_too_large"


def test_flaky_upstream_is_retried(client, simulator, token):
    simulator.fault(token, "http_500", count=2)
    completion = client.chat.completions.create(model="glm-4", messages=user("hi"))
    assert completion.choices[0].message.content.startswith(SIM_TEXT)
    attempts = [r for r in simulator.requests_log("/assistant/stream") if r.get("account") == token]
    assert len(attempts) == 3
    assert simulator.account(token)["stream_count"] == 1


def test_persistent_upstream_failure_is_502(client, simulator, token):
    simulator.fault(token, "http_500", count=10)
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="glm-4", messages=user("hi"))
    assert info.value.status_code == 502
    assert info.value.body["type"] == "upstream_error"


def test_non_sse_reply_is_never_passed_off_as_an_answer(client, simulator, token):
    simulator.fault(token, "non_sse", count=3)  # 1 attempt + GLM_RETRIES=2
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="glm-4", messages=user("hi"))
    assert info.value.status_code == 502
    assert "did not stream" in info.value.body["message"]
    assert "non-SSE answer (simulated)" in info.value.body["message"]
    simulator.fault(token, "non_sse", count=1)
    completion = client.chat.completions.create(model="glm-4", messages=user("hi"))
    assert completion.choices[0].message.content.startswith(SIM_TEXT)


def test_non_sse_in_stream_mode_is_an_error_status(proxy, simulator, token):
    simulator.fault(token, "non_sse", count=10)
    resp = post(proxy, token, {"model": "glm-4", "stream": True, "messages": user("hi")})
    assert resp.status_code == 502
    assert error_of(resp)["type"] == "upstream_error"


def test_upstream_timeout_is_504(strict_proxy, simulator, token):
    simulator.fault(token, "slow_first_byte", count=1, seconds=3)
    resp = post(strict_proxy, token, {"model": "glm-4", "messages": user("hi")})
    assert resp.status_code == 504
    assert error_of(resp)["type"] == "timeout_error"


def test_expired_access_token_is_refreshed_once(client, simulator, token):
    client.chat.completions.create(model="glm-4", messages=user("hi"))
    simulator.fault(token, "access_expired", count=1)
    completion = client.chat.completions.create(model="glm-4", messages=user("again"))
    assert completion.choices[0].message.content.startswith(SIM_TEXT)
    assert simulator.account(token)["refresh_count"] == 2


def test_single_refresh_for_concurrent_first_requests(proxy, simulator, token):
    import concurrent.futures

    client = openai.OpenAI(base_url=proxy.v1, api_key=token, max_retries=0)
    simulator.config(single_stream=False)
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(
                pool.map(
                    lambda i: client.chat.completions.create(model="glm-4", messages=user(str(i))),
                    range(8),
                )
            )
    finally:
        simulator.config(single_stream=True)
    assert len(results) == 8
    assert simulator.account(token)["refresh_count"] == 1


def test_mid_stream_drop_ends_with_an_error_event(proxy, simulator, token):
    simulator.fault(token, "drop_mid_stream", count=1)
    resp = post(
        proxy,
        token,
        {"model": "glm-4", "stream": True, "messages": user("tell [[sim:long n=20]]")},
        stream=True,
    )
    assert resp.status_code == 200
    payloads, _ = sse_events(resp)
    assert "error" in payloads[-1]
    assert payloads[-1]["error"]["type"] == "upstream_error"
    assert not any(p.get("done") for p in payloads)
    content = "".join(
        p["choices"][0]["delta"].get("content") or "" for p in payloads[:-1] if p.get("choices")
    )
    assert content.startswith("第1句")  # content had been sent: not retried
    assert simulator.account(token)["stream_count"] == 1


def test_sdk_raises_on_mid_stream_error(client, simulator, token):
    simulator.fault(token, "drop_mid_stream", count=1)
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(
            model="glm-4", stream=True, messages=user("x [[sim:long n=20]]")
        ):
            pass


def test_client_disconnect_leaves_no_conversation(proxy, simulator, token):
    resp = post(
        proxy,
        token,
        {"model": "glm-4", "stream": True, "messages": user("go [[sim:long n=200 delay=0.05]]")},
        stream=True,
    )
    lines = resp.iter_lines()
    received = 0
    for line in lines:
        if line.startswith(b"data: {"):
            received += 1
            if received >= 5:
                break
    resp.close()  # the client hangs up mid-answer
    account = simulator.wait_deleted(token, timeout=15)
    assert account["conversations_alive"] == []
    assert len(account["conversations_deleted"]) == 1
    wait_until(lambda: simulator.account(token)["active_streams"] == 0, 10, "the stream to end")


def test_upstream_failure_still_deletes_the_conversation(client, simulator, token):
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(
            model="glm-4", stream=True, messages=user("x [[sim:error]]")
        ):
            pass
    assert simulator.wait_deleted(token)["conversations_alive"] == []


def test_keepalive_comments_while_upstream_is_silent(proxy, token):
    resp = post(
        proxy,
        token,
        {"model": "glm-4", "stream": True, "messages": user("wait [[sim:slow wait=3.5]]")},
        stream=True,
    )
    assert resp.status_code == 200
    payloads, raw = sse_events(resp)
    assert b": keep-alive" in raw
    assert payloads[-1] == {"done": True}
    text = "".join(
        p["choices"][0]["delta"].get("content") or "" for p in payloads[:-1] if p.get("choices")
    )
    assert text.startswith(SIM_TEXT)


def test_secrets_never_reach_the_logs(proxy, simulator, token):
    client = openai.OpenAI(base_url=proxy.v1, api_key=token, max_retries=0)
    client.chat.completions.create(model="glm-4", messages=user("hi"))
    simulator.fault(token, "http_500", count=10)
    logged = len(proxy.logs())
    with pytest.raises(openai.APIError):
        client.chat.completions.create(model="glm-4", messages=user("hi"))
    wait_until(lambda: "POST /v1/chat/completions" in proxy.logs()[logged:], 10, "its log line")
    logs = proxy.logs()
    assert "POST /v1/chat/completions 200" in logs
    assert token not in logs
    access_tokens = [
        r["headers"].get("Authorization", "") for r in simulator.requests_log("/assistant/stream")
    ]
    for header in access_tokens:
        value = header.removeprefix("Bearer ")
        if value:
            assert value not in logs
    assert orjson.dumps(token).decode() not in logs


def test_non_stream_answer_is_retried_after_a_mid_stream_drop(client, simulator, token):
    """Nothing reached the client yet, so a broken upstream stream is retried, not a 502."""
    simulator.fault(token, "drop_mid_stream", count=1)
    completion = client.chat.completions.create(
        model="glm-4", messages=user("x [[sim:long n=10 delay=0.01]]")
    )
    text = completion.choices[0].message.content
    assert text.count("第1句") == 1 and "第10句" in text  # the second answer, once
    assert completion.choices[0].finish_reason == "stop"
    account = simulator.wait_deleted(token)
    assert account["stream_count"] == 2
    assert len(account["conversations_deleted"]) == 2  # the broken one is deleted too
    assert completion.id in account["conversations_deleted"]


def test_anthropic_non_stream_answer_is_retried_after_a_mid_stream_drop(proxy, simulator, token):
    import anthropic

    simulator.fault(token, "drop_mid_stream", count=1)
    claude = anthropic.Anthropic(base_url=proxy.base, api_key=token, max_retries=0)
    message = claude.messages.create(
        model="glm-4", max_tokens=100, messages=user("x [[sim:long n=10 delay=0.01]]")
    )
    assert message.content[-1].text.count("第1句") == 1 and "第10句" in message.content[-1].text
    assert simulator.wait_deleted(token)["conversations_alive"] == []


def test_upstream_silent_mid_answer_is_a_timeout_in_time(strict_proxy, simulator, token):
    """The body's read timeout is kept by the worker's read watch (no timer per read)."""
    resp = post(
        strict_proxy,
        token,
        {"model": "glm-4", "stream": True, "messages": user("slow [[sim:long n=2 delay=4]]")},
    )
    # GLM_READ_TIMEOUT=1 ended it: waiting out the 4 s gap would have answered 200
    assert resp.status_code == 504, resp.text
    assert error_of(resp)["type"] == "timeout_error"
    assert "silent" in error_of(resp)["message"]
    assert simulator.wait_deleted(token, timeout=15)["conversations_alive"] == []
