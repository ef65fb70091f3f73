"""One busy key does not make the others wait: the line for accounts is round robin across keys.

The real server and the upstream simulator, two pool accounts and two API
keys. Key ``heavy`` opens a burst of streams; once the rest of the burst waits
in line (seen through ``GET /admin/queue``) key ``light`` asks once. Asserted
on the order the simulator saw the streams start, never on timing: light is
served at the next free account, before nearly all of heavy's queued
requests (first come, first served would put it behind all of them). On the
memory store with one worker, and on Redis with two workers. The wait itself,
in seconds, is measured by ``tests/bench/bench_fairness.py``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import socket
import uuid

import orjson
import pytest
import requests

from glm_proxy.access.auth import Caller, load_keys, parse_key_entry, passthrough_caller
from glm_proxy.config import ConfigError, Settings
from glm_proxy.store.fairness import FairShare
from tests.conftest import start_proxy, stop_proxy
from tests.support.redis_fixture import redis_server, redis_url  # noqa: F401
from tests.support.team import (
    LONG,
    admin,
    ask,
    assert_no_secrets,
    new_key,
    new_tokens,
    stream_entries,
)
from tests.support.waiting import wait_until

BURST = 16


@pytest.fixture
def team(simulator, tmp_path, request):
    """``team(**env)`` -> a proxy with two pool accounts and keys ``heavy`` and ``light``."""
    started = []
    secrets: list[str] = []

    def make(**env: str) -> dict:
        keys = {"heavy": new_key("heavy"), "light": new_key("light")}
        admin_key = new_key("admin")
        tokens = new_tokens(2)
        proxy = start_proxy(
            simulator,
            tmp_path,
            ACCOUNTS=",".join(tokens),
            API_KEYS=",".join(f"{name}:{key}" for name, key in keys.items()),
            ADMIN_KEY=admin_key,
            QUEUE_TIMEOUT="120",
            KEY_RPM="0",
            **env,
        )
        started.append(proxy)
        secrets.extend([*tokens, *keys.values(), admin_key])
        return {"proxy": proxy, "keys": keys, "admin": admin_key}

    yield make
    for proxy in started:
        stop_proxy(proxy)
        assert_no_secrets(proxy.logs(), secrets)


def waiting(team: dict) -> dict[str, int]:
    """Requests in line per caller, as the admin API reports them."""
    body = admin(team["proxy"], team["admin"], "GET", "/queue")
    return {row["caller"]: row["waiting"] for row in body["data"]}


def started(simulator, marker: str) -> list[float]:
    return [entry["time"] for entry in stream_entries(simulator, marker)]


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_a_light_key_is_served_before_a_heavy_burst(team, simulator, store, request) -> None:
    env = {}
    if store == "redis":
        env = {**request.getfixturevalue("redis_url").env(), "WEB_CONCURRENCY": "2"}
    t = team(**env)
    proxy, keys, tag = t["proxy"], t["keys"], uuid.uuid4().hex[:8]
    with concurrent.futures.ThreadPoolExecutor(BURST + 1) as pool:
        burst = [
            pool.submit(ask, proxy, keys["heavy"], f"h{tag}-{n} {LONG}", stream=bool(n % 2))
            for n in range(BURST)
        ]
        wait_until(lambda: waiting(t).get("key:heavy") == BURST - 2, 30, "heavy's burst in line")
        light = pool.submit(ask, proxy, keys["light"], f"l{tag} {LONG}", stream=True)
        assert "第20句" in light.result(timeout=120)
        assert all("第20句" in f.result(timeout=120) for f in burst)
    (light_start,) = started(simulator, f"l{tag}")
    heavy_starts = started(simulator, f"h{tag}-")
    assert len(heavy_starts) == BURST
    queued_before_light = sum(1 for s in heavy_starts[2:] if s < light_start)
    # The next free account goes to light; at most the other account, freed at about
    # the same moment, goes to heavy's first queued request.
    assert queued_before_light <= 2, (queued_before_light, BURST - 2)
    assert waiting(t) == {}


@pytest.mark.parametrize("stream", [True, False])
def test_a_waiter_that_hangs_up_leaves_the_line(team, simulator, stream) -> None:
    """Nothing is sent to a request in line; its hang-up still takes it out of the line."""
    t = team()
    proxy, keys, tag = t["proxy"], t["keys"], uuid.uuid4().hex[:8]
    hold = "[[sim:long n=60 delay=0.05]]"  # three seconds: both accounts stay busy
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        burst = [
            pool.submit(ask, proxy, keys["heavy"], f"h{tag}-{n} {hold}", stream=True)
            for n in range(3)
        ]
        wait_until(lambda: waiting(t).get("key:heavy") == 1, 30, "heavy's third in line")
        body = orjson.dumps(
            {"model": "glm-4", "stream": stream, "messages": [{"role": "user", "content": tag}]}
        )
        host, port = proxy.base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + keys["light"].encode() + b"\r\n"
                b"Content-Type: application/json\r\n"
                b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            wait_until(lambda: waiting(t).get("key:light") == 1, 30, "light in line")
        # the client hung up: the line drops it while both accounts are still busy
        wait_until(lambda: "key:light" not in waiting(t), 20, "the line dropped light")
        assert len(started(simulator, f"h{tag}-")) == 2
        assert all("第60句" in f.result(timeout=120) for f in burst)
    assert len(started(simulator, f"h{tag}-")) == 3
    assert started(simulator, tag) == started(simulator, f"h{tag}-")  # light never went upstream
    assert waiting(t) == {}


def test_per_key_concurrency_limit_still_holds(team, simulator) -> None:
    t = team(KEY_MAX_CONCURRENT="3")
    proxy, keys, tag = t["proxy"], t["keys"], uuid.uuid4().hex[:8]

    def one(key: str, prompt: str) -> int:
        resp = requests.post(
            f"{proxy.v1}/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "glm-4", "messages": [{"role": "user", "content": prompt}]},
            timeout=60,
        )
        return resp.status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        burst = [pool.submit(one, keys["heavy"], f"h{tag}-{n} {LONG}") for n in range(6)]
        statuses = sorted(f.result(timeout=60) for f in burst)
    assert statuses == [200, 200, 200, 429, 429, 429]
    assert len(started(simulator, f"h{tag}-")) == 3
    assert one(keys["light"], f"l{tag}") == 200


def test_key_weights_in_the_keys_file() -> None:
    """``name:key weight=N``: that key's share of turns; anything else after the key is refused."""
    alice = parse_key_entry("alice:sk-alice-1 weight=2", "API_KEYS_FILE")
    assert alice is not None and alice.weight == 2.0
    assert alice.digest == hashlib.sha256(b"sk-alice-1").digest()
    hashed = parse_key_entry(f"bob:sha256:{'ab' * 32}  weight=0.5", "API_KEYS_FILE")
    assert hashed is not None and hashed.weight == 0.5
    plain = parse_key_entry("carol:sk-carol", "API_KEYS")
    assert plain is not None and plain.weight == 1.0
    for bad in ("weight=0", "weight=-1", "weight=abc", "weight=1e9", "priority=2", "sk-more"):
        with pytest.raises(ConfigError, match="weight=N"):
            parse_key_entry(f"dave:sk-dave {bad}", "API_KEYS_FILE")
    settings = Settings.from_mapping({"API_KEYS": "a:sk-a weight=3, b:sk-b"})
    assert [k.weight for k in load_keys(settings)] == [3.0, 1.0]


def test_who_waits_in_line_is_never_a_secret() -> None:
    token = f"rt-{uuid.uuid4().hex}"
    team = Caller(accounts=(), key_name="alice", pooled=True, weight=2.0)
    assert team.share == FairShare("key:alice", 2.0)
    passthrough = passthrough_caller(f"{token},{token}")
    assert passthrough.share.name.startswith("passthrough:")
    assert token not in passthrough.share.name
    assert passthrough.share == passthrough_caller(token).share  # the same credential
    assert passthrough.share != passthrough_caller(f"rt-{uuid.uuid4().hex}").share
