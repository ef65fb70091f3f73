"""Huge ``messages`` arrays: capped before validation, and never freezing the worker.

One gevent worker serves everyone, so the tests check what other clients
see: a ``/healthz`` polled while the big request is handled keeps answering.
How long it waits at worst is a figure, not an assert: ``tests/bench/bench_hostile.py``
prints it for both cases.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import orjson
import pytest
import requests

from tests.conftest import start_proxy, stop_proxy
from tests.support.waiting import wait_until


def with_healthz_probed(base: str, action: Callable[[], requests.Response]) -> requests.Response:
    """The response of ``action``, run while /healthz is probed: every probe, and one after
    the request, is answered 200 (the worker was neither killed nor left frozen)."""
    statuses: list[int] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            statuses.append(requests.get(f"{base}/healthz", timeout=60).status_code)
            time.sleep(0.02)  # pacing: one probe every 20 ms

    poller = threading.Thread(target=poll)
    poller.start()
    wait_until(lambda: statuses, 30, "the first /healthz answer")
    try:
        resp = action()
    finally:
        after = len(statuses)
        wait_until(lambda: len(statuses) > after, 60, "a /healthz answer after the request")
        done.set()
        poller.join()
    assert set(statuses) == {200}, statuses
    return resp


def post_raw(base: str, path: str, token: str, raw: bytes) -> requests.Response:
    return requests.post(
        f"{base}{path}",
        data=raw,
        headers={
            "Authorization": f"Bearer {token}",
            "x-api-key": token,
            "anthropic-version": "2023-06-01",
            "Content-Type": "application/json",
        },
        timeout=120,
    )


def test_a_20mb_messages_array_is_refused_without_freezing_the_worker(proxy, token):
    messages = [{"role": "user", "content": "hello"}] * 600_000
    raw = orjson.dumps({"model": "glm-4", "messages": messages})
    assert len(raw) > 19_000_000
    resp = with_healthz_probed(
        proxy.base, lambda: post_raw(proxy.base, "/v1/chat/completions", token, raw)
    )
    assert resp.status_code == 400, resp.text[:300]
    error = resp.json()["error"]
    assert error["param"] == "messages"
    assert error["code"] == "too_many_messages"
    assert "MAX_MESSAGES" in error["message"] and "5000" in error["message"]
    # The items are counted before the body is parsed (parsing 20 MB of tiny objects is
    # one C call of about 0.25 s); validating and flattening 600k messages used to
    # freeze every other request for 6-30 s (bench_hostile.py prints the slowest
    # /healthz meanwhile).


def test_a_body_of_tiny_values_past_max_json_values_is_refused(proxy, token):
    """A field nobody reads still costs its parse: 1.5 million values are refused unparsed."""
    hello = [{"role": "user", "content": "hi"}]
    raw = orjson.dumps({"model": "glm-4", "messages": hello, "extra": [0] * 1_500_000})
    resp = with_healthz_probed(
        proxy.base, lambda: post_raw(proxy.base, "/v1/chat/completions", token, raw)
    )
    assert resp.status_code == 400, resp.text[:300]
    error = resp.json()["error"]
    assert error["code"] == "too_many_values"
    assert "MAX_JSON_VALUES" in error["message"]
    resp = post_raw(proxy.base, "/v1/messages", token, raw)  # the Anthropic route, its shape
    assert resp.status_code == 400
    assert resp.json()["type"] == "error" and "MAX_JSON_VALUES" in resp.json()["error"]["message"]


@pytest.fixture(scope="module")
def small_caps(simulator, tmp_path_factory):
    server = start_proxy(
        simulator,
        tmp_path_factory.mktemp("caps"),
        MAX_MESSAGES="50",
        MAX_CONTENT_PARTS="60",
        MAX_TOOLS="5",
    )
    yield server
    stop_proxy(server)


def chat(messages: list[dict]) -> bytes:
    return orjson.dumps({"model": "glm-4", "messages": messages})


def test_messages_at_the_cap_are_served(small_caps, token):
    messages = [{"role": "user", "content": f"m{i}"} for i in range(50)]
    resp = post_raw(small_caps.base, "/v1/chat/completions", token, chat(messages))
    assert resp.status_code == 200, resp.text


def test_one_message_over_the_cap_is_400(small_caps, token):
    messages = [{"role": "user", "content": f"m{i}"} for i in range(51)]
    resp = post_raw(small_caps.base, "/v1/chat/completions", token, chat(messages))
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert (error["param"], error["code"]) == ("messages", "too_many_messages")
    assert "50" in error["message"]


def test_content_parts_over_the_cap_are_400_naming_the_message(small_caps, token):
    parts = [{"type": "text", "text": "p"}] * 3
    messages = [{"role": "user", "content": parts} for _ in range(30)]  # 90 parts
    resp = post_raw(small_caps.base, "/v1/chat/completions", token, chat(messages))
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == "too_many_content_parts"
    assert error["param"] == "messages[20].content"  # the 61st part is in the 21st message
    assert "MAX_CONTENT_PARTS" in error["message"]


def test_anthropic_route_is_capped_too_in_its_own_shape(small_caps, token):
    body = {
        "model": "glm-4",
        "max_tokens": 10,
        "system": [{"type": "text", "text": "s"}] * 61,
        "messages": [{"role": "user", "content": "hi"}],
    }
    resp = post_raw(small_caps.base, "/v1/messages", token, orjson.dumps(body))
    assert resp.status_code == 400
    payload = resp.json()
    assert payload["type"] == "error"
    assert "MAX_CONTENT_PARTS" in payload["error"]["message"]
    body = {**body, "system": "s", "messages": [{"role": "user", "content": "hi"}] * 51}
    resp = post_raw(small_caps.base, "/v1/messages", token, orjson.dumps(body))
    assert resp.status_code == 400
    assert "MAX_MESSAGES" in resp.json()["error"]["message"]


@pytest.fixture(scope="module")
def roomy(simulator, tmp_path_factory):
    server = start_proxy(
        simulator,
        tmp_path_factory.mktemp("roomy"),
        MAX_MESSAGES="500000",
        MAX_CONTENT_PARTS="1000000",
        MAX_JSON_VALUES="5000000",
    )
    yield server
    stop_proxy(server)


def test_per_message_work_under_the_caps_lets_others_run(roomy, token):
    """Validation and prompt building of a long history run in slices, not one block."""
    turn = [{"type": "text", "text": "hello"}, {"type": "text", "text": "again"}]
    messages = [{"role": "user", "content": turn}, {"role": "assistant", "content": "ok"}]
    raw = chat(messages * 120_000)  # 240k messages, 16 MB
    resp = with_healthz_probed(
        roomy.base, lambda: post_raw(roomy.base, "/v1/chat/completions", token, raw)
    )
    assert resp.status_code == 200, resp.text[:300]
    # Without the slicing this stalled /healthz for 4-10 s (bench_hostile.py prints it).


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_too_many_tools_are_400(small_caps, token, path):
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    if path == "/v1/messages":
        tool = {"name": "f", "input_schema": {"type": "object"}}
    body = {"model": "glm-4", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    ok = post_raw(small_caps.base, path, token, orjson.dumps({**body, "tools": [tool] * 5}))
    assert ok.status_code != 400 or "MAX_TOOLS" not in ok.text
    resp = post_raw(small_caps.base, path, token, orjson.dumps({**body, "tools": [tool] * 6}))
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert "MAX_TOOLS" in error["message"]
    if path == "/v1/chat/completions":
        assert (error["param"], error["code"]) == ("tools", "too_many_tools")
