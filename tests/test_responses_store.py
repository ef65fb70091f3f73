"""Responses API end to end: stored responses, turns, cancellation and failures (real gunicorn
server, official SDK, upstream simulator)."""

from __future__ import annotations

import threading
import time

import openai
import orjson
import pytest
import requests

from tests.conftest import start_proxy, stop_proxy
from tests.simulator_harness import Sim
from tests.test_responses import CODEX_FIXTURE, SIM_TEXT, prompt_of, stream_requests


def test_previous_response_id_three_turns(client, simulator, token):
    first = client.responses.create(model="glm-4", input="turn one")
    second = client.responses.create(model="glm-4", input="turn two", previous_response_id=first.id)
    third = client.responses.create(
        model="glm-4", input="turn three", previous_response_id=second.id
    )
    assert "turn 3)" in third.output_text
    assert third.previous_response_id == second.id
    one, two, three = stream_requests(simulator, token)
    conversation = two["body"]["conversation_id"]
    assert one["body"]["conversation_id"] == ""
    assert conversation and three["body"]["conversation_id"] == conversation
    assert prompt_of(two) == "turn two" and prompt_of(three) == "turn three"
    account = simulator.account(token)
    assert account["conversations_alive"] == [conversation]


def test_retrieve_and_delete(client, simulator, token):
    created = client.responses.create(model="glm-4", input="keep me")
    fetched = client.responses.retrieve(created.id)
    assert fetched.id == created.id and fetched.output_text == created.output_text
    assert fetched.status == "completed"
    assert simulator.account(token)["conversations_alive"]
    client.responses.delete(created.id)
    assert not simulator.wait_deleted(token)["conversations_alive"]
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.retrieve(created.id)
    assert info.value.body["code"] == "response_not_found"
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)


def test_other_callers_cannot_see_a_response(client, proxy):
    created = client.responses.create(model="glm-4", input="mine")
    other = openai.OpenAI(base_url=proxy.v1, api_key="rt-someone-else", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="glm-4", input="x", previous_response_id=created.id)


def test_store_false_is_not_kept(client, simulator, token):
    created = client.responses.create(model="glm-4", input="forget me", store=False)
    assert created.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    assert not simulator.wait_deleted(token)["conversations_alive"]


def test_cancel_a_streaming_response(client, simulator, token):
    with client.responses.stream(model="glm-4", input="go [[sim:long n=200 delay=0.05]]") as stream:
        events = []
        for event in stream:
            events.append(event)
            if event.type == "response.output_text.delta":
                break
        response_id = events[0].response.id
        assert client.responses.retrieve(response_id).status == "in_progress"
        cancelled = client.responses.cancel(response_id)
        assert cancelled.status == "cancelled"
        events.extend(stream)
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.status == "cancelled"
    assert client.responses.retrieve(response_id).status == "cancelled"
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(response_id)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "glm-4"}, "input"),
        ({"model": "glm-4", "input": 3}, "input"),
        ({"model": "glm-4", "input": [{"type": "bogus"}]}, "input"),  # left out: nothing left
        ({"model": "glm-4", "input": [{"content": "x"}]}, "input[0].type"),
        ({"model": "glm-4", "input": [{"role": "tool", "content": "x"}]}, "input[0].role"),
        (
            {
                "model": "glm-4",
                "input": "x",
                "tools": [{"type": "file_search"}],
                "tool_choice": {"type": "function", "name": "file_search"},
            },
            "tool_choice.name",
        ),
        ({"model": "glm-4", "input": "x", "background": True}, "background"),
        ({"model": "glm-4", "input": "x", "reasoning": {"effort": "max"}}, "reasoning.effort"),
        (
            {
                "model": "glm-4",
                "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}],
            },
            "input[0].content[0]",
        ),
        ({"model": "glm-4", "input": "x", "previous_response_id": "nope"}, "previous_response_id"),
    ],
)
def test_bad_requests_are_400s(proxy, token, body, param):
    resp = requests.post(
        f"{proxy.v1}/responses",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param


def test_unknown_previous_response_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(
            model="glm-4", input="x", previous_response_id="resp_0123456789abcdef"
        )
    assert info.value.body["param"] == "previous_response_id"


@pytest.fixture(scope="module")
def short_proxy(simulator, tmp_path_factory):
    server = start_proxy(
        simulator,
        tmp_path_factory.mktemp("short"),
        RESPONSES_TTL="3",
        CONVERSATION_IDLE_TTL="0.5",
        SWEEP_INTERVAL="0.3",
    )
    yield server
    stop_proxy(server)


def test_expired_response_and_history_fallback(short_proxy, simulator, token):
    client = openai.OpenAI(base_url=short_proxy.v1, api_key=token, max_retries=0, timeout=30)
    first = client.responses.create(model="glm-4", input="remember the word kumquat")
    # The idle sweeper deletes the kept conversation; the stored history carries on.
    assert not simulator.wait_deleted(token)["conversations_alive"]
    second = client.responses.create(
        model="glm-4", input="which word?", previous_response_id=first.id
    )
    entry = stream_requests(simulator, token)[-1]
    assert entry["body"]["conversation_id"] == ""
    text = prompt_of(entry)
    assert text.index("kumquat") < text.index(first.output_text[:10]) < text.index("which word?")
    assert second.status == "completed"
    time.sleep(3.5)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="glm-4", input="x", previous_response_id=second.id)


def test_concurrent_streams_cancel_only_their_own(client):
    """A cancel reaches only the response it names."""
    results: dict[str, list] = {}

    def run(name: str, prompt: str) -> None:
        with client.responses.stream(model="glm-4", input=prompt) as stream:
            results[name] = list(stream)

    slow = threading.Thread(target=run, args=("slow", "a [[sim:long n=40 delay=0.05]]"))
    slow.start()
    quick = client.responses.create(model="glm-4", input="b")
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(quick.id)
    slow.join(30)
    assert results["slow"][-1].type == "response.completed"


def test_codex_shaped_request_is_answered(proxy, simulator, token):
    request = orjson.loads(CODEX_FIXTURE.read_bytes())
    resp = requests.post(
        f"{proxy.v1}/responses",
        json=request,
        headers={"Authorization": f"Bearer {token}", "OpenAI-Beta": "responses=experimental"},
        stream=True,
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    events = [orjson.loads(line[6:]) for line in resp.iter_lines() if line.startswith(b"data: ")]
    assert events[0]["type"] == "response.created"
    assert events[-1]["type"] == "response.completed"
    final = events[-1]["response"]
    assert final["store"] is False and final["status"] == "completed"
    assert final["output_text"].startswith(SIM_TEXT)
    text = prompt_of(stream_requests(simulator, token)[-1])
    assert "Thanks. Now summarise" in text and "sum_two" in text
    assert "gAAAA" not in text  # reasoning items are dropped
    assert not simulator.wait_deleted(token)["conversations_alive"]


@pytest.mark.parametrize("stream", [False, True])
def test_gone_upstream_conversation_falls_back_to_history(client, simulator, token, stream):
    first = client.responses.create(model="glm-4", input="remember the word quince")
    (entry,) = stream_requests(simulator, token)
    sim = Sim(simulator.base)
    conversation = simulator.account(token)["conversations_alive"][0]
    deleted = sim.post(
        "/chatglm/backend-api/assistant/conversation/delete",
        sim.access(token),
        json={"assistant_id": entry["body"]["assistant_id"], "conversation_id": conversation},
    )
    assert deleted.json()["status"] == 0
    if stream:
        with client.responses.stream(
            model="glm-4", input="which word?", previous_response_id=first.id
        ) as events:
            second = events.get_final_response()
    else:
        second = client.responses.create(
            model="glm-4", input="which word?", previous_response_id=first.id
        )
    assert second.status == "completed" and second.output_text.startswith(SIM_TEXT)
    tried, replayed = stream_requests(simulator, token)[-2:]
    assert tried["body"]["conversation_id"] == conversation
    assert replayed["body"]["conversation_id"] == ""
    assert "quince" in prompt_of(replayed)


def test_content_filter_is_incomplete(client, simulator, token):
    response = client.responses.create(model="glm-4", input="bad [[sim:intervene]]", store=False)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "content_filter"
    with client.responses.stream(model="glm-4", input="bad [[sim:intervene]]") as stream:
        events = list(stream)
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.output_text == response.output_text


@pytest.mark.parametrize("stream", [False, True])
def test_dead_token_is_401_before_the_stream(proxy, stream):
    dead = openai.OpenAI(base_url=proxy.v1, api_key="dead-token-x", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        if stream:
            with dead.responses.stream(model="glm-4", input="x") as events:
                list(events)
        else:
            dead.responses.create(model="glm-4", input="x")


def test_a_dead_token_fails_over_to_the_next(proxy, simulator, token):
    both = openai.OpenAI(
        base_url=proxy.v1, api_key=f"dead-{token[3:]},{token}", max_retries=0, timeout=30
    )
    with both.responses.stream(model="glm-4", input="fail over") as stream:
        final = stream.get_final_response()
    assert final.status == "completed"
    assert stream_requests(simulator, token)[-1]["stream"]
    again = both.responses.create(model="glm-4", input="again", previous_response_id=final.id)
    assert "turn 2)" in again.output_text


def test_input_items_lists_this_turns_input(client, proxy, token):
    first = client.responses.create(model="glm-4", input="first turn")
    second = client.responses.create(
        model="glm-4",
        previous_response_id=first.id,
        input=[
            {"role": "user", "content": "second turn"},
            {"role": "user", "content": [{"type": "input_text", "text": "and more"}]},
        ],
    )
    items = list(client.responses.input_items.list(second.id, order="asc"))
    assert [i.type for i in items] == ["message", "message"]
    assert items[0].content[0].text == "second turn" and items[0].id
    assert items[1].content[0].type == "input_text"
    newest_first = client.responses.input_items.list(second.id, limit=1)
    assert [i.id for i in newest_first.data] == [items[1].id] and newest_first.has_more
    rest = client.responses.input_items.list(second.id, limit=1, after=items[1].id)
    assert [i.id for i in rest.data] == [items[0].id] and not rest.has_more
    (only,) = client.responses.input_items.list(first.id).data
    assert only.content[0].text == "first turn"
    resp = requests.get(
        f"{proxy.v1}/responses/{second.id}/input_items?limit=0",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "limit"
