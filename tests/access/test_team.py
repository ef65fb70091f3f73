"""Team mode end to end: API keys in front of a server-held account pool.

A real proxy (gunicorn, memory store) with ``ACCOUNTS`` and ``API_KEYS``,
driven with the official ``openai`` SDK and ``requests``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import uuid

import openai
import pytest
import requests

from glm_proxy.access.auth import KeyRing, hash_key, load_keys, parse_key_entry
from glm_proxy.config import ConfigError, Settings
from tests.conftest import start_proxy, stop_proxy
from tests.support.team import (
    LONG,
    admin,
    ask,
    assert_no_secrets,
    jwt_token,
    new_key,
    new_tokens,
    stream_entries,
)
from tests.support.waiting import wait_until

# -- keys (pure) ----------------------------------------------------------------------


def test_key_entries_plain_and_hashed(tmp_path) -> None:
    key_file = tmp_path / "keys.txt"
    key_file.write_text(f"# team\ncarol:{hash_key('carol-secret')}\n\n")
    s = Settings.from_mapping(
        {"API_KEYS": "alice:alice-secret, bob:bob-secret", "API_KEYS_FILE": str(key_file)}
    )
    ring = KeyRing(load_keys(s))
    assert ring.names == ["alice", "bob", "carol"]
    assert ring.match("bob-secret").name == "bob"
    assert ring.match("carol-secret").name == "carol"  # only its hash is on disk
    assert ring.match("nobody") is None
    assert ring.match(hash_key("carol-secret")) is None  # the hash is not a key
    assert "alice-secret" not in repr(ring.keys)
    assert ring.keys[0].digest == hashlib.sha256(b"alice-secret").digest()


@pytest.mark.parametrize(
    ("entry", "message"),
    [("no-colon", "name:key"), ("bad name:k", "key name"), ("alice:", "name:key")],
)
def test_bad_key_entries_fail_at_start(entry: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_key_entry(entry, "API_KEYS")


def test_duplicate_key_names_fail_at_start() -> None:
    with pytest.raises(ConfigError, match="duplicate"):
        load_keys(Settings.from_mapping({"API_KEYS": "a:1,a:2"}))


# -- a team server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def team(simulator, tmp_path_factory):
    tokens = new_tokens(2)
    keys = {"alice": new_key("alice"), "bob": new_key("bob")}
    admin_key = new_key("admin")
    server = start_proxy(
        simulator,
        tmp_path_factory.mktemp("team"),
        ACCOUNTS=",".join(tokens),
        API_KEYS=",".join(f"{name}:{key}" for name, key in keys.items()),
        ADMIN_KEY=admin_key,
        KEY_RPM="0",
    )
    yield {"proxy": server, "tokens": tokens, "keys": keys, "admin": admin_key}
    stop_proxy(server)
    assert_no_secrets(server.logs(), [*tokens, *keys.values(), admin_key])


def test_a_team_key_is_served_by_the_pool(team, simulator) -> None:
    answer = ask(team["proxy"], team["keys"]["alice"], "hello from alice")
    assert "Simulated answer" in answer
    entries = stream_entries(simulator, "hello from alice")
    assert entries and entries[-1]["account"] in team["tokens"]


def test_x_api_key_header_is_accepted(team) -> None:
    resp = requests.post(
        f"{team['proxy'].v1}/chat/completions",
        headers={"x-api-key": team["keys"]["bob"]},
        json={"model": "glm-4", "messages": [{"role": "user", "content": "hi via x-api-key"}]},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text


def test_unknown_key_and_raw_refresh_token_are_401(team) -> None:
    for credential in ("sk-wrong", new_tokens(1)[0]):
        with pytest.raises(openai.AuthenticationError) as caught:
            ask(team["proxy"], credential, "let me in")
        body = caught.value.body
        assert body["code"] == "invalid_api_key"
        assert credential not in str(body)  # never echoed back
    resp = requests.post(f"{team['proxy'].v1}/chat/completions", json={}, timeout=10)
    assert resp.status_code == 401 and "API key" in resp.json()["error"]["message"]


def test_requests_are_spread_over_the_pool(team, simulator) -> None:
    """Least recently used first: two concurrent answers use both accounts."""
    with concurrent.futures.ThreadPoolExecutor(4) as workers:
        answers = list(
            workers.map(
                lambda n: ask(team["proxy"], team["keys"]["alice"], f"spread-{n} {LONG}"),
                range(4),
            )
        )
    assert all(answers)
    used = {e["account"] for n in range(4) for e in stream_entries(simulator, f"spread-{n} ")}
    assert used == set(team["tokens"])
    for token in team["tokens"]:
        account = simulator.account(token)
        assert account["max_concurrent_streams"] == 1 and account["rejected_concurrent"] == 0


def test_passthrough_can_be_combined_with_team_keys(simulator, tmp_path) -> None:
    (pool_token,) = new_tokens(1)
    own_token = jwt_token()  # with team keys, only JWT-shaped values are forwarded
    key = new_key("carol")
    server = start_proxy(
        simulator,
        tmp_path,
        ACCOUNTS=pool_token,
        API_KEYS=f"carol:{key}",
        ALLOW_PASSTHROUGH="true",
    )
    try:
        assert ask(server, key, "team-and-passthrough-1")
        assert ask(server, own_token, "team-and-passthrough-2")
        first = stream_entries(simulator, "team-and-passthrough-1")[-1]
        second = stream_entries(simulator, "team-and-passthrough-2")[-1]
        assert first["account"] == pool_token and second["account"] == own_token
        # No admin key configured: the admin API does not exist.
        assert requests.get(f"{server.base}/admin/accounts", timeout=10).status_code == 404
    finally:
        stop_proxy(server)
    assert_no_secrets(server.logs(), [pool_token, own_token, key])


def test_per_key_requests_per_minute(simulator, tmp_path) -> None:
    (token,) = new_tokens(1)
    keys = {"alice": new_key("alice"), "bob": new_key("bob")}
    server = start_proxy(
        simulator,
        tmp_path,
        ACCOUNTS=token,
        KEY_RPM="2",
        API_KEYS=",".join(f"{n}:{k}" for n, k in keys.items()),
    )
    try:
        ask(server, keys["alice"], "rpm 1")
        ask(server, keys["alice"], "rpm 2")
        with pytest.raises(openai.RateLimitError) as caught:
            ask(server, keys["alice"], "rpm 3")
        retry_after = int(caught.value.response.headers["Retry-After"])
        assert 1 <= retry_after <= 120
        assert "alice" in caught.value.message
        assert ask(server, keys["bob"], "rpm other key")  # limits are per key
    finally:
        stop_proxy(server)


def test_per_key_concurrency(simulator, tmp_path) -> None:
    tokens = new_tokens(2)
    key = new_key("alice")
    server = start_proxy(
        simulator,
        tmp_path,
        ACCOUNTS=",".join(tokens),
        API_KEYS=f"alice:{key}",
        KEY_MAX_CONCURRENT="1",
    )
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as workers:
            slow = workers.submit(ask, server, key, "[[sim:long n=40 delay=0.15]]", stream=True)
            # wait until the slow answer is streaming, then try a second one
            wait_until(
                lambda: stream_entries(simulator, "n=40 delay=0.15"), 20, "slow stream started"
            )
            with pytest.raises(openai.RateLimitError) as caught:
                ask(server, key, "second at once")
            assert caught.value.response.headers["Retry-After"] == "1"
            assert slow.result(timeout=30)
        assert ask(server, key, "after the slow one")  # the slot was given back
    finally:
        stop_proxy(server)


def test_usage_is_counted_per_key(team) -> None:
    before = admin(team["proxy"], team["admin"], "GET", "/usage?window=1h")["data"]
    bob_before = next(d for d in before if d["key"] == "bob")["windows"]["1h"]
    ask(team["proxy"], team["keys"]["bob"], "count me", stream=True)
    resp = requests.post(
        f"{team['proxy'].v1}/chat/completions",
        headers={"Authorization": f"Bearer {team['keys']['bob']}"},
        json={"model": "glm-4", "messages": []},
        timeout=10,
    )
    assert resp.status_code == 400
    after = admin(team["proxy"], team["admin"], "GET", "/usage")["data"]
    bob = next(d for d in after if d["key"] == "bob")["windows"]
    assert set(bob) == {"1h", "24h", "7d"}
    assert bob["1h"]["requests"] == bob_before["requests"] + 2
    assert bob["1h"]["errors"] == bob_before["errors"] + 1
    assert bob["1h"]["completion_tokens"] > bob_before["completion_tokens"]
    assert bob["24h"]["requests"] >= bob["1h"]["requests"]


def test_a_dead_pool_is_503_for_team_chat_not_401(simulator, tmp_path) -> None:
    """The first request after the pool's only account dies must not tell a team member
    to "log in again" (the SDK's AuthenticationError reads as a bad API key)."""
    key = new_key("dead")
    server = start_proxy(
        simulator, tmp_path, ACCOUNTS=f"dead-{uuid.uuid4().hex}", API_KEYS=f"team:{key}"
    )
    try:
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as info:
                ask(server, key, "hi", stream=stream)
            assert info.value.status_code == 503, info.value
            assert info.value.body["code"] == "service_unavailable"
    finally:
        stop_proxy(server)


def test_token_check_needs_a_team_key_when_passthrough_is_off(team, simulator) -> None:
    proxy, key = team["proxy"], team["keys"]["alice"]
    url = f"{proxy.base}/token/check"
    assert requests.post(url, json={"token": "rt-x"}, timeout=10).status_code == 401
    ok = requests.post(
        url, json={"token": "rt-x"}, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert ok.status_code == 200 and ok.json() == {"live": True}
