"""``n``: several choices for one request, on a pool and on one account, streamed and not,
with stop strings and length limits per choice (against the real server, scripted answers)."""

from __future__ import annotations

import re
import threading

import openai
import pytest
import requests

from glm_proxy.protocol.usage import estimate_tokens
from tests.conftest import start_proxy, stop_proxy
from tests.support.answers import REACT, REACT_KEPT, said
from tests.support.chat import sse_events, user
from tests.support.tools import script
from tests.support.waiting import wait_until

# -- n --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool3(simulator, tmp_path_factory):
    import uuid

    tokens = [f"rt-pool-{uuid.uuid4().hex}" for _ in range(3)]
    key = "sk-controls-" + uuid.uuid4().hex
    server = start_proxy(
        simulator,
        tmp_path_factory.mktemp("pool3"),
        ACCOUNTS=",".join(tokens),
        API_KEYS=f"team:{key}",
    )
    yield server, tokens, key
    stop_proxy(server)


def script_pool(simulator, tokens: list[str], delay: float) -> set[str]:
    answers = set()
    for number, token in enumerate(tokens):
        text = f"Answer number {number} from its own account."
        answers.add(text)
        script(simulator, token, said(*re.findall(r"\S+\s*", text), delay=delay))
    return answers


def test_n_three_distinct_choices_concurrently_on_a_pool(pool3, simulator):
    server, tokens, key = pool3
    client = openai.OpenAI(base_url=server.v1, api_key=key, max_retries=0, timeout=30)
    expected = script_pool(simulator, tokens, delay=0.25)  # ~1.75 s per answer
    done: list = []
    asking = threading.Thread(
        target=lambda: done.append(
            client.chat.completions.create(model="glm-4", messages=user("n3"), n=3)
        )
    )
    asking.start()
    # concurrently: at one moment all three accounts stream their answer
    wait_until(
        lambda: all(simulator.account(t).get("active_streams") for t in tokens) or done,
        30,
        "three streams at once",
    )
    assert not done, "the three answers were not streamed at the same time"
    asking.join(timeout=30)
    [completion] = done
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert {c.message.content for c in completion.choices} == expected
    assert completion.usage.completion_tokens == sum(estimate_tokens(t) for t in expected)
    for token in tokens:
        assert simulator.wait_deleted(token)["conversations_alive"] == []


def test_n_three_streamed_choices_interleave(pool3, simulator):
    server, tokens, key = pool3
    expected = script_pool(simulator, tokens, delay=0.1)
    resp = requests.post(
        f"{server.v1}/chat/completions",
        json={"model": "glm-4", "messages": user("n3 stream"), "n": 3, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
        stream=True,
    )
    assert resp.status_code == 200
    events, raw = sse_events(resp)
    assert [line for line in raw if line.strip()][-1] == b"data: [DONE]"
    assert events[-1] == {"done": True}
    chunks = [e for e in events if e.get("choices")]
    assert len({c["id"] for c in chunks}) == 1
    order = [c["choices"][0]["index"] for c in chunks]
    texts = {
        i: "".join(
            c["choices"][0]["delta"].get("content") or ""
            for c in chunks
            if c["choices"][0]["index"] == i
        )
        for i in range(3)
    }
    assert set(texts.values()) == expected
    first_end = min(max(k for k, i in enumerate(order) if i == idx) for idx in range(3))
    assert len(set(order[:first_end])) > 1  # interleaved, not one choice after another
    finals = [c["choices"][0] for c in chunks if c["choices"][0]["finish_reason"]]
    assert sorted(f["index"] for f in finals) == [0, 1, 2]
    roles = [c["choices"][0]["index"] for c in chunks if c["choices"][0]["delta"].get("role")]
    assert sorted(roles) == [0, 1, 2]


def test_n_on_a_single_account_runs_one_after_another(client, simulator, token):
    script(simulator, token, said("first answer"), said("second answer"))
    completion = client.chat.completions.create(model="glm-4", messages=user("n2"), n=2)
    assert sorted(c.message.content for c in completion.choices) == [
        "first answer",
        "second answer",
    ]
    assert [c.index for c in completion.choices] == [0, 1]
    account = simulator.wait_deleted(token)
    assert account["max_concurrent_streams"] == 1 and account["rejected_concurrent"] == 0


def test_n_with_stop_and_length_applies_to_each_choice(client, simulator, token):
    script(simulator, token, said(*REACT), said("Thought: short\nObservation: x"))
    completion = client.chat.completions.create(
        model="glm-4", messages=user("n2"), n=2, stop=["Observation:"]
    )
    assert sorted(c.message.content for c in completion.choices) == [
        REACT_KEPT,
        "Thought: short\n",
    ]
    assert {c.finish_reason for c in completion.choices} == {"stop"}


def test_n_stream_hangup_deletes_every_choice_conversation(pool3, simulator):
    server, tokens, key = pool3
    script_pool(simulator, tokens, delay=0.4)  # ~2.8 s per answer
    before = {t: simulator.account(t).get("stream_count", 0) for t in tokens}
    resp = requests.post(
        f"{server.v1}/chat/completions",
        json={"model": "glm-4", "messages": user("n3 hangup"), "n": 3, "stream": True},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
        stream=True,
    )
    lines = resp.iter_lines()
    assert next(line for line in lines if line.startswith(b"data: "))
    resp.close()
    for token in tokens:
        wait_until(
            lambda t=token: simulator.account(t).get("stream_count", 0) > before[t],
            10,
            "every choice's upstream stream",
        )
        account = simulator.wait_deleted(token, timeout=10)
        assert account["stream_count"] == before[token] + 1
        assert account["conversations_alive"] == []
        # the simulator notices the closed connection at its next write
        wait_until(
            lambda t=token: simulator.account(t)["active_streams"] == 0, 10, "the streams to end"
        )
    # the pool is free again: a new request is served at once
    client = openai.OpenAI(base_url=server.v1, api_key=key, max_retries=0, timeout=30)
    assert client.chat.completions.create(model="glm-4", messages=user("after")).choices
