"""Memory one caller can make the server hold, tested as a hostile caller would try it.

Each case asserts a structural bound (bytes queued, labels exported, entries
kept, logins made), never a wall-clock or RSS figure: those are printed by
``tests/bench/bench_stalled.py``. Refusals are 4xx; the worker keeps serving.
"""

from __future__ import annotations

import re
import sys
import time
import types
import uuid

import gevent
import openai
import pytest
import requests

from glm_proxy.accounts import Account
from glm_proxy.config import Settings
from glm_proxy.pool.core import AccountPool
from glm_proxy.protocol.events import TextDelta
from glm_proxy.services.answer import AnswerJob, AnswerRequest
from glm_proxy.store import MemoryStore, keys
from glm_proxy.streaming.queue import item_bytes
from tests.conftest import start_proxy, stop_proxy

# -- an answer's queue is bounded in bytes ------------------------------------------------


def _job(limit: int) -> AnswerJob:
    settings = Settings.from_mapping({"STREAM_QUEUE_BYTES": str(limit), "STREAM_QUEUE_ITEMS": "64"})
    services = types.SimpleNamespace(settings=settings)
    return AnswerJob(services, (), AnswerRequest(assistant_id="a", build_payload=dict))


def test_queue_holds_at_most_its_byte_bound():
    job = _job(21_000)
    big = TextDelta("x" * 5_000)
    producer = gevent.spawn(lambda: [job.put(big) for _ in range(30)])
    gevent.sleep(0.01)
    # Far fewer than the 64 items the item bound allows: 4 of 5,100 bytes fit in 21,000.
    assert job.queue.qsize() == 4 and job.queued_bytes <= 21_000
    taken = [job.next_item(timeout=1) for _ in range(10)]
    gevent.sleep(0.01)
    assert all(t is big for t in taken)
    assert job.queued_bytes <= 21_000 and job.queue.qsize() == 4
    drained = 0
    while not producer.dead or job.queue.qsize():
        drained += job.next_item(timeout=1) is big
        gevent.sleep(0)
    assert drained == 20 and job.queued_bytes == 0
    assert item_bytes(big) == 100 + sys.getsizeof(big.text)
    assert item_bytes(TextDelta("🚀" * 1_000)) > 4_000  # emoji take 4 bytes a character


def test_one_item_larger_than_the_bound_still_passes():
    job = _job(1_000)
    huge = TextDelta("y" * 50_000)
    job.put(huge)
    assert job.queue.qsize() == 1
    assert job.next_item(timeout=1) is huge and job.queued_bytes == 0


# -- /metrics labels: a caller cannot mint new series ----------------------------------------


def test_random_methods_do_not_grow_metrics(proxy):
    before = requests.get(f"{proxy.base}/metrics", timeout=10).text
    for _ in range(40):
        method = "X" + uuid.uuid4().hex[:10].upper()
        resp = requests.request(method, f"{proxy.base}/v1/chat/completions", timeout=10)
        assert 400 <= resp.status_code < 500
    after = requests.get(f"{proxy.base}/metrics", timeout=10).text
    methods = set(re.findall(r'^glm_proxy_requests_total\{.*method="([^"]+)"', after, re.M))
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}
    assert 'method="other"' in after
    assert len(after) - len(before) < 4_000  # a few new series, not one per request


# -- pass-through fan-out ----------------------------------------------------------------


def test_dead_tokens_count_toward_retries(simulator, tmp_path):
    server = start_proxy(simulator, tmp_path, GLM_RETRIES="1", PASSTHROUGH_MAX_TOKENS="8")
    try:
        tokens = [f"dead-{uuid.uuid4().hex}" for _ in range(8)]
        before = simulator.request_count("/refresh")
        resp = requests.post(
            f"{server.v1}/chat/completions",
            headers={"Authorization": "Bearer " + ",".join(tokens)},
            json={"model": "glm-4", "messages": [{"role": "user", "content": "hi"}]},
            timeout=60,
        )
        assert resp.status_code == 401, resp.text
        logins = simulator.request_count("/refresh") - before
        assert 1 <= logins <= 2 * 2  # GLM_RETRIES + 1 accounts tried (a retry each at most)
        too_many = requests.post(
            f"{server.v1}/chat/completions",
            headers={"Authorization": "Bearer " + ",".join(tokens + ["rt-one-more"])},
            json={"model": "glm-4", "messages": [{"role": "user", "content": "hi"}]},
            timeout=60,
        )
        assert too_many.status_code == 401
        assert too_many.json()["error"]["code"] == "too_many_tokens"
        assert requests.get(f"{server.base}/healthz", timeout=5).status_code == 200
    finally:
        stop_proxy(server)
    for token in tokens:
        assert token not in server.logs()


def test_idle_passthrough_bookkeeping_is_forgotten():
    settings = Settings.from_mapping({"PASSTHROUGH_IDLE_TTL": "60"})
    store = MemoryStore()
    pooled = Account.from_token("rt-pooled")
    pool = AccountPool(settings, store, [])
    pool.entries = {pooled.fingerprint: types.SimpleNamespace(account=pooled)}
    long_ago = (time.time() - 3600) * 1000
    passers = [Account.from_token(f"rt-pass-{i}") for i in range(50)]
    store.zadd(keys.LRU, {a.fingerprint: long_ago for a in passers})
    store.zadd(keys.LRU, {pooled.fingerprint: long_ago})
    fresh = Account.from_token("rt-fresh")
    store.zadd(keys.LRU, {fresh.fingerprint: time.time() * 1000})
    assert pool.forget_idle_passthrough() == 50
    assert store.zscore(keys.LRU, pooled.fingerprint) is not None
    assert store.zscore(keys.LRU, fresh.fingerprint) is not None
    assert all(store.zscore(keys.LRU, a.fingerprint) is None for a in passers)
    assert pool._health_ttl(fresh.fingerprint) == 60


# -- stored responses: by reference, per-caller quota, global cap, chain limit ----------------


@pytest.fixture(scope="module")
def bounded(simulator, tmp_path_factory):
    server = start_proxy(
        simulator,
        tmp_path_factory.mktemp("responses-quota"),
        RESPONSES_KEY_QUOTA="400K",
        RESPONSES_MAX_BYTES="900K",
        RESPONSES_MAX_CHAIN="4",
    )
    yield server
    stop_proxy(server)


def _sdk(server, token: str | None = None) -> openai.OpenAI:
    token = token or f"rt-{uuid.uuid4().hex}"
    return openai.OpenAI(base_url=server.v1, api_key=token, max_retries=0, timeout=60)


def test_follow_ups_do_not_copy_the_history(bounded):
    """A 150 KB input and follow-ups: with a copy per turn the 400 KB quota would run out
    at the third turn; by reference the chain costs the input once."""
    client = _sdk(bounded)
    big = "z" * 150_000
    first = client.responses.create(model="glm-4", input=big)
    previous = first.id
    for n in range(3):
        turn = client.responses.create(
            model="glm-4", input=f"follow-up {n}", previous_response_id=previous
        )
        previous = turn.id
    items = client.responses.input_items.list(previous)
    assert [i.content[0].text for i in items.data] == ["follow-up 2"]
    assert client.responses.retrieve(first.id).id == first.id


def test_chain_length_is_bounded(bounded):
    client = _sdk(bounded)
    previous = client.responses.create(model="glm-4", input="start").id
    for n in range(3):
        previous = client.responses.create(
            model="glm-4", input=f"t{n}", previous_response_id=previous
        ).id
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="glm-4", input="one too many", previous_response_id=previous)
    assert info.value.body["code"] == "conversation_too_long"
    assert "RESPONSES_MAX_CHAIN" in info.value.message


def test_per_caller_quota_is_429_then_freed_by_deletes(bounded):
    client = _sdk(bounded)
    with pytest.raises(openai.APIStatusError) as too_big:
        client.responses.create(model="glm-4", input="q" * 500_000)
    assert too_big.value.status_code == 413
    assert "RESPONSES_KEY_QUOTA" in too_big.value.message
    made = []
    with pytest.raises(openai.RateLimitError) as info:
        for _ in range(10):
            made.append(client.responses.create(model="glm-4", input="w" * 120_000).id)
    assert 2 <= len(made) <= 4
    assert info.value.body["code"] == "responses_quota_exceeded"
    assert "RESPONSES_KEY_QUOTA" in info.value.message
    # Another caller is not affected, and store=false always works.
    assert _sdk(bounded).responses.create(model="glm-4", input="other caller").id
    assert client.responses.create(model="glm-4", input="unstored", store=False).id
    for response_id in made:
        client.responses.delete(response_id)
    assert client.responses.create(model="glm-4", input="w" * 120_000).id


def test_global_cap_evicts_the_oldest(bounded):
    callers = [_sdk(bounded) for _ in range(4)]
    firsts = [c.responses.create(model="glm-4", input="e" * 200_000).id for c in callers[:1]]
    for caller in callers[1:]:
        for _ in range(2):
            caller.responses.create(model="glm-4", input="f" * 150_000)
    with pytest.raises(openai.NotFoundError):
        callers[0].responses.retrieve(firsts[0])
    assert requests.get(f"{bounded.base}/healthz", timeout=5).status_code == 200
