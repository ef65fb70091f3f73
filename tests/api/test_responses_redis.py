"""Stored responses shared through Redis: two proxy processes (one with two workers) on one
Redis serve the same conversation, and a cancel reaches a stream running elsewhere."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import start_proxy, stop_proxy
from tests.support.redis_fixture import redis_server, redis_url  # noqa: F401


@pytest.fixture
def pair(simulator, redis_url, tmp_path):  # noqa: F811
    first = start_proxy(simulator, tmp_path, **redis_url.env())
    second = start_proxy(simulator, tmp_path, **redis_url.env(), WEB_CONCURRENCY="2")
    yield first, second
    stop_proxy(first)
    stop_proxy(second)


def sdk(proxy, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=proxy.v1, api_key=token, max_retries=0, timeout=30)


def test_responses_across_processes(pair, simulator, token):
    a, b = (sdk(p, token) for p in pair)
    first = a.responses.create(model="glm-4", input="one")
    second = b.responses.create(model="glm-4", input="two", previous_response_id=first.id)
    third = a.responses.create(model="glm-4", input="three", previous_response_id=second.id)
    assert "turn 3)" in third.output_text
    conversations = {
        r["body"]["conversation_id"]
        for r in simulator.requests_log("/assistant/stream")
        if r.get("account") == token and r.get("stream")
    }
    assert len(conversations - {""}) == 1
    assert b.responses.retrieve(third.id).output_text == third.output_text
    b.responses.delete(third.id)
    assert not simulator.wait_deleted(token)["conversations_alive"]
    with pytest.raises(openai.NotFoundError):
        a.responses.retrieve(third.id)


def test_cancel_reaches_a_stream_on_another_process(pair, token):
    a, b = (sdk(p, token) for p in pair)
    with a.responses.stream(model="glm-4", input="go [[sim:long n=200 delay=0.05]]") as stream:
        events = []
        for event in stream:
            events.append(event)
            if event.type == "response.output_text.delta":
                break
        response_id = events[0].response.id
        assert b.responses.cancel(response_id).status == "cancelled"
        events.extend(stream)
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.status == "cancelled"
    assert b.responses.retrieve(response_id).status == "cancelled"
