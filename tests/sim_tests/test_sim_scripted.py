"""The simulator's scripted answers (``/_sim/script``): exact texts, queued per account."""

from __future__ import annotations

import uuid

import requests

from tests.support.tools import script, stream_requests


def test_scripted_answers_are_consumed_in_order(client, simulator, token):
    script(simulator, token, "first 🚀", {"text": "second <b>&</b>", "steps": 5, "shape": "delta"})
    messages = [{"role": "user", "content": "hi"}]
    first = client.chat.completions.create(model="glm-4", messages=messages)
    assert first.choices[0].message.content == "first 🚀"
    chunks = client.chat.completions.create(model="glm-4", messages=messages, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "second <b>&</b>"
    third = client.chat.completions.create(model="glm-4", messages=messages)
    assert third.choices[0].message.content.startswith("你好！这是模拟回答")  # queue empty
    assert len(stream_requests(simulator, token)) == 3


def test_cuts_put_event_boundaries_where_asked(client, simulator, token):
    text = "abcdef"
    script(simulator, token, {"text": text, "cuts": [1, 2, 3, 4, 5], "shape": "delta"})
    chunks = list(
        client.chat.completions.create(
            model="glm-4", messages=[{"role": "user", "content": "x"}], stream=True
        )
    )
    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == text
    assert len(pieces) >= 2  # several upstream events (the proxy may batch ready ones)


def test_script_queue_is_per_account_and_validated(simulator, token):
    base = f"{simulator.base}/_sim/script"
    assert requests.post(base, json={"token": token, "answers": [{}]}, timeout=5).status_code == 400
    bad_cuts = {"token": token, "answers": [{"text": "x", "cuts": [0]}]}
    assert requests.post(base, json=bad_cuts, timeout=5).status_code == 400
    assert requests.post(base, json={"answers": [{"text": "x"}]}, timeout=5).status_code == 400
    resp = requests.post(base, json={"token": token, "answers": [{"text": "x"}]}, timeout=5)
    assert resp.json()["pending"][token] == 1


def test_echo_answers_with_what_the_prompt_holds(client, simulator, token):
    echo = {"text": "the word is {echo}.", "echo": r"word-(\w+)"}
    script(simulator, token, echo, echo)
    said = [{"role": "user", "content": "old word-one, then word-two"}]
    first = client.chat.completions.create(model="glm-4", messages=said)
    assert first.choices[0].message.content == "the word is two."  # the last match, group 1
    silent = [{"role": "user", "content": "nothing to quote"}]
    second = client.chat.completions.create(model="glm-4", messages=silent)
    assert "no match" in second.choices[0].message.content
    bad = {"token": token, "answers": [{"text": "x", "echo": "("}]}
    assert requests.post(f"{simulator.base}/_sim/script", json=bad, timeout=5).status_code == 400


def test_request_count_keeps_counting_once_the_log_is_full(simulator):
    """The log holds the last few hundred calls; counting its length misses every call made
    once it is full, which made "no new login" asserts pass vacuously and "one login" fail."""
    from tests.simulator.state import MAX_LOGGED_REQUESTS

    path = f"/_probe/{uuid.uuid4().hex}"
    for _ in range(MAX_LOGGED_REQUESTS + 5):
        requests.get(f"{simulator.base}{path}", timeout=5)
    before = simulator.request_count(path)
    requests.get(f"{simulator.base}{path}", timeout=5)
    assert len(simulator.requests_log(path)) <= MAX_LOGGED_REQUESTS  # the log dropped some
    assert simulator.request_count(path) == before + 1 == MAX_LOGGED_REQUESTS + 6
