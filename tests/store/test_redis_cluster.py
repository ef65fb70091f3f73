"""Two server processes sharing one real Redis, driven concurrently with the openai SDK.

The second process runs two gunicorn workers, so three workers share the
pool. Everything is asserted on the simulator's own bookkeeping (concurrent
streams, refreshes, conversations) and the admin API, never on timing beyond
generous deadlines.
"""

from __future__ import annotations

import concurrent.futures
import os
import subprocess
import sys
import time

import openai
import pytest

from glm_proxy.accounts import fingerprint
from tests.conftest import ROOT, free_port, start_proxy, stop_proxy
from tests.support.redis_fixture import redis_server, redis_url  # noqa: F401
from tests.support.team import (
    LONG,
    admin,
    ask,
    assert_no_secrets,
    client,
    kill_hard,
    new_key,
    new_tokens,
    stream_entries,
)
from tests.support.waiting import wait_until


@pytest.fixture
def cluster(simulator, redis_url, tmp_path):  # noqa: F811
    """``cluster(n_accounts, **env)`` -> two proxies (1 and 2 workers) on one Redis."""
    started = []
    secrets: list[str] = []

    def make(tokens: list[str], **env: str) -> dict:
        key, admin_key = new_key("team"), new_key("admin")
        common = {
            "ACCOUNTS": ",".join(tokens),
            "API_KEYS": f"team:{key}",
            "ADMIN_KEY": admin_key,
            **redis_url.env(),
            "QUEUE_TIMEOUT": "60",
            **env,
        }
        first = start_proxy(simulator, tmp_path, **common)
        second = start_proxy(simulator, tmp_path, **common, WEB_CONCURRENCY="2")
        started.extend([first, second])
        secrets.extend([*tokens, key, admin_key])
        return {"proxies": [first, second], "key": key, "admin": admin_key, "tokens": tokens}

    yield make
    for proxy in started:
        if proxy.proc.poll() is None:
            stop_proxy(proxy)
    for proxy in started:
        assert_no_secrets(proxy.logs(), secrets)


def test_more_requests_than_accounts(cluster, simulator) -> None:
    """K accounts, 3K concurrent requests over 3 workers: never two streams on one account,
    exactly one token refresh per account, every request answered."""
    tokens = new_tokens(3)
    c = cluster(tokens)

    def one(n: int) -> str:
        proxy = c["proxies"][n % 2]
        return ask(proxy, c["key"], f"many-{n} {LONG}", stream=bool(n % 3))

    with concurrent.futures.ThreadPoolExecutor(9) as workers:
        answers = list(workers.map(one, range(9)))
    assert all("第20句" in a for a in answers)
    streams = 0
    for token in tokens:
        account = simulator.account(token)
        assert account["max_concurrent_streams"] == 1, account
        assert account["rejected_concurrent"] == 0
        assert account["refresh_count"] == 1  # single flight across processes
        streams += account["stream_count"]
    assert streams == 9


def test_queue_is_served_in_order_of_arrival(cluster, simulator) -> None:
    (token,) = new_tokens(1)
    c = cluster([token])
    with concurrent.futures.ThreadPoolExecutor(6) as workers:
        holder = workers.submit(
            ask, c["proxies"][0], c["key"], "order-hold [[sim:long n=30 delay=0.05]]"
        )
        wait_until(lambda: stream_entries(simulator, "order-hold"), 20, "holder streaming")
        waiters = []
        for n in range(5):
            proxy = c["proxies"][n % 2]
            waiters.append(workers.submit(ask, proxy, c["key"], f"order-w{n}-", stream=True))
            time.sleep(0.2)  # arrivals are spaced so their order is defined
        assert holder.result(timeout=60)
        assert all(w.result(timeout=60) for w in waiters)
    started = [stream_entries(simulator, f"order-w{n}-")[0]["time"] for n in range(5)]
    assert started == sorted(started), "waiters were not served in order of arrival"


def test_queue_deadline_gives_429_with_retry_after(cluster, simulator) -> None:
    (token,) = new_tokens(1)
    c = cluster([token], QUEUE_TIMEOUT="1")
    with concurrent.futures.ThreadPoolExecutor(1) as workers:
        holder = workers.submit(
            ask, c["proxies"][0], c["key"], "deadline-hold [[sim:long n=60 delay=0.05]]"
        )
        wait_until(lambda: stream_entries(simulator, "deadline-hold"), 20, "holder streaming")
        for proxy, stream in ((c["proxies"][1], True), (c["proxies"][0], False)):
            with pytest.raises(openai.RateLimitError) as caught:  # the deadline, not the holder
                ask(proxy, c["key"], "deadline-waiter", stream=stream)
            assert int(caught.value.response.headers["Retry-After"]) >= 1
            assert caught.value.body["type"] == "rate_limit_error"
        assert holder.result(timeout=60)
    assert ask(c["proxies"][1], c["key"], "deadline-after")
    assert simulator.account(token)["max_concurrent_streams"] == 1


def test_dead_account_is_taken_out_after_its_first_40102(cluster, simulator) -> None:
    (dead,) = new_tokens(1, prefix="dead")
    good = new_tokens(2)
    c = cluster([dead, *good])
    with concurrent.futures.ThreadPoolExecutor(6) as workers:
        answers = list(
            workers.map(lambda n: ask(c["proxies"][n % 2], c["key"], f"dead-{n} {LONG}"), range(6))
        )
    assert all(answers)
    assert simulator.account(dead)["refresh_failures"] == 1
    assert simulator.account(dead).get("stream_count", 0) == 0
    for proxy in c["proxies"]:  # both processes see the same health
        state = admin(proxy, c["admin"], "GET", f"/accounts/{fingerprint(dead)}")
        assert state["state"] == "dead"
    assert ask(c["proxies"][1], c["key"], "dead-after")
    assert simulator.account(dead)["refresh_failures"] == 1


def test_a_crashed_process_frees_its_lease_within_the_ttl(cluster, simulator) -> None:
    (token,) = new_tokens(1)
    c = cluster([token], LEASE_TTL="2", QUEUE_TIMEOUT="30")
    doomed, survivor = c["proxies"]
    fp = fingerprint(token)
    with concurrent.futures.ThreadPoolExecutor(1) as workers:
        crashing = workers.submit(
            ask, doomed, c["key"], "crash-me [[sim:long n=400 delay=0.05]]", stream=True
        )
        wait_until(lambda: stream_entries(simulator, "crash-me"), 20, "doomed stream started")
        assert admin(survivor, c["admin"], "GET", f"/accounts/{fp}")["in_flight"] == 1
        kill_hard(doomed)
        with pytest.raises(openai.APIError):
            crashing.result(timeout=30)
    wait_until(
        lambda: admin(survivor, c["admin"], "GET", f"/accounts/{fp}")["in_flight"] == 0,
        2 + 5,
        "the dead process's lease expired",
    )
    assert ask(survivor, c["key"], "after the crash")


def test_conversation_affinity_and_idle_sweeper_across_processes(cluster, simulator) -> None:
    tokens = new_tokens(2)
    c = cluster(tokens, CONVERSATION_IDLE_TTL="2", SWEEP_INTERVAL="0.3")
    first, second = c["proxies"]
    done = client(first, c["key"]).chat.completions.create(
        model="glm-4",
        messages=[{"role": "user", "content": "affinity turn 1"}],
        extra_body={"keep_conversation": True},
    )
    conversation = done.id
    owner = stream_entries(simulator, "affinity turn 1")[-1]["account"]
    for n, proxy in ((2, second), (3, first), (4, second)):
        client(proxy, c["key"]).chat.completions.create(
            model="glm-4",
            messages=[{"role": "user", "content": f"affinity turn {n}"}],
            extra_body={"conversation_id": conversation},
        )
        # Least recently used would pick the other account: affinity wins.
        assert stream_entries(simulator, f"affinity turn {n}")[-1]["account"] == owner
    assert simulator.account(owner)["conversation_turns"][conversation] == 4
    with pytest.raises(openai.NotFoundError) as caught:
        client(second, c["key"]).chat.completions.create(
            model="glm-4",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"conversation_id": "0123456789abcdef01234567"},
        )
    assert caught.value.body["code"] == "conversation_not_found"
    # Idle for CONVERSATION_IDLE_TTL: one of the three workers deletes it, once.
    wait_until(
        lambda: conversation in simulator.account(owner)["conversations_deleted"],
        20,
        "the idle conversation was swept",
    )
    time.sleep(1.0)  # the scenario: a window for a duplicate sweep to show up in
    deletes = [
        r
        for r in simulator.requests_log()
        if "delete" in r["path"]
        and conversation
        in [
            (r.get("body") or {}).get("conversation_id"),
            *(r.get("body") or {}).get("conversation_ids", []),
        ]
    ]
    assert len(deletes) == 1
    with pytest.raises(openai.NotFoundError):
        client(first, c["key"]).chat.completions.create(
            model="glm-4",
            messages=[{"role": "user", "content": "too late"}],
            extra_body={"conversation_id": conversation},
        )


def test_memory_store_with_two_workers_refuses_to_start(simulator, tmp_path) -> None:
    env = {
        **os.environ,
        "WEB_CONCURRENCY": "2",
        "REDIS_URL": "",
        "STORE": "",
        "PORT": str(free_port()),
        "HOST": "127.0.0.1",
        "GLM_BASE_URL": simulator.glm_base_url,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "REDIS_URL" in output and "2 workers" in output
