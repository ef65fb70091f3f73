"""What the console makes outlives a restart, and every process shows the same console.

Default setup (memory store): accounts, keys and usage history made in the
console are in SQLite under ``DATA_DIR`` and come back after a restart. With
Redis, two servers (one of them with two workers) share keys, accounts, usage
and even the signed-in session.
"""

from __future__ import annotations

import sqlite3

import pytest
import requests
from cryptography.fernet import Fernet

from glm_proxy.accounts import fingerprint
from tests.conftest import start_proxy, stop_proxy
from tests.support.console import ConsoleUser, activity, requests_this_hour, table_rows
from tests.support.redis_fixture import redis_server, redis_url  # noqa: F401
from tests.support.team import ask, assert_no_secrets, new_key, new_tokens
from tests.support.waiting import wait_until


def _pool(proxy, admin_key: str) -> dict[str, dict]:
    resp = requests.get(
        f"{proxy.base}/admin/accounts", headers={"Authorization": f"Bearer {admin_key}"}, timeout=10
    )
    return {a["id"]: a for a in resp.json()["data"]}


def _usage_of(user: ConsoleUser, key: str) -> int:
    """Requests of ``key`` in the Usage page's per-key table (all hours shown)."""
    rows = table_rows(user.page("/usage"))
    return sum(int(r[2]) for r in rows if len(r) == 7 and r[1] == key)


def test_console_data_survives_a_restart(simulator, tmp_path) -> None:
    admin_key, file_key = new_key("admin"), new_key("alice")
    env = {"ADMIN_KEY": admin_key, "API_KEYS": f"alice:{file_key}", "DATA_DIR": str(tmp_path / "d")}
    token = new_tokens(1)[0]
    first = start_proxy(simulator, tmp_path, **env)
    try:
        user = ConsoleUser(first, admin_key)
        user.signin()
        user.add_account(token, name="kept")
        secret = user.create_key("kept-key", rpm="50")
        assert ask(first, secret, "hello")
        wait_until(lambda: _usage_of(user, "kept-key") == 1, 10, "the request is counted")
    finally:
        stop_proxy(first)
    second = start_proxy(simulator, tmp_path, **env)
    try:
        pool = _pool(second, admin_key)
        assert pool[fingerprint(token)]["source"] == "console"
        assert ask(second, secret, "hello again")  # the key and the account both came back
        user = ConsoleUser(second, admin_key)
        user.signin()
        wait_until(lambda: _usage_of(user, "kept-key") == 2, 10, "usage history kept")
        keys_page = user.page("/keys")
        assert "kept-key" in keys_page and "alice" in keys_page
        seen = [row for row in activity(user) if row["key"] == "kept-key"]
        assert len(seen) == 2 and {r["account"] for r in seen} == {fingerprint(token)}
    finally:
        stop_proxy(second)
    for proxy in (first, second):
        assert_no_secrets(proxy.logs(), [token, secret, admin_key, file_key])


def test_two_servers_on_redis_show_the_same_console(simulator, tmp_path, redis_url) -> None:  # noqa: F811
    admin_key = new_key("admin")
    env = {"ADMIN_KEY": admin_key, **redis_url.env(), "DATA_DIR": ""}
    one = start_proxy(simulator, tmp_path, **env)
    two = start_proxy(simulator, tmp_path, **env, WEB_CONCURRENCY="2")
    try:
        user = ConsoleUser(one, admin_key)
        user.signin()
        token = new_tokens(1)[0]
        user.add_account(token, name="shared")
        secret = user.create_key("shared-key")
        # Each of the second server's workers learns the key and the account.
        for n in range(6):
            assert ask(two, secret, f"hello {n}")
        other = ConsoleUser(two, admin_key)
        other.http.cookies.update(user.http.cookies)  # one session for every process
        page = other.page("/accounts")
        assert fingerprint(token) in page
        assert "shared-key" in other.page("/keys")
        wait_until(lambda: _usage_of(user, "shared-key") == 6, 10, "usage from the other server")
        assert requests_this_hour(user.page("/")) == requests_this_hour(other.page("/"))
        rows_one = [r for r in activity(user) if r["key"] == "shared-key"]
        rows_two = [r for r in activity(other) if r["key"] == "shared-key"]
        assert len(rows_one) == 6 and rows_one == rows_two
        other.page("/keys")
        assert other.post("/keys/shared-key/revoke").status_code == 303

        def refused_everywhere() -> bool:
            return all(
                requests.post(
                    f"{proxy.v1}/chat/completions",
                    headers={"Authorization": f"Bearer {secret}"},
                    json={"model": "glm-4", "messages": [{"role": "user", "content": "hi"}]},
                    timeout=10,
                ).status_code
                == 401
                for proxy in (one, two, two, two)
            )

        wait_until(refused_everywhere, 10, "the revoked key is refused by every worker")
    finally:
        stop_proxy(one)
        stop_proxy(two)
    for proxy in (one, two):
        assert_no_secrets(proxy.logs(), [token, secret, admin_key])


def test_a_console_account_follows_token_rotation_across_restarts(simulator, tmp_path) -> None:
    simulator.config(rotate_refresh=True, rotate_invalidates_old=True)
    admin_key, key = new_key("admin"), new_key("team")
    env = {
        "ADMIN_KEY": admin_key,
        "API_KEYS": f"team:{key}",
        "FOLLOW_TOKEN_ROTATION": "true",
        "DATA_DIR": str(tmp_path / "d"),
    }
    (original,) = new_tokens(1)
    logs = []
    try:
        for restart in range(3):
            server = start_proxy(simulator, tmp_path, **env)
            try:
                if restart == 0:
                    user = ConsoleUser(server, admin_key)
                    user.signin()
                    user.add_account(original, name="rotating")
                assert ask(server, key, f"rotation run {restart}")  # the old token is dead
                assert list(_pool(server, admin_key)) == [fingerprint(original)]
            finally:
                stop_proxy(server)
                logs.append(server.logs())
    finally:
        simulator.config(rotate_refresh=False, rotate_invalidates_old=False)
    assert simulator.account(original)["refresh_count"] == 3
    assert original in simulator.state()["dead_refresh_tokens"]
    assert_no_secrets("".join(logs), [original, key, admin_key])


def _stored_account_bodies(redis, data_dir) -> list[str]:
    if redis is not None:
        return list(redis.client().hgetall(redis.prefix + "console:accounts").values())
    with sqlite3.connect(data_dir / "console.sqlite3") as db:
        return [body for (body,) in db.execute("SELECT body FROM accounts")]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_console_accounts_are_sealed_with_store_secret_key(
    backend, simulator, tmp_path, request
) -> None:
    """The console's account records hold refresh tokens and cookies: with STORE_SECRET_KEY they
    are sealed at rest like the store's own secrets, in Redis and in DATA_DIR alike."""
    admin_key, data_dir = new_key("admin"), tmp_path / "d"
    redis = request.getfixturevalue("redis_url") if backend == "redis" else None
    env = {
        "ADMIN_KEY": admin_key,
        "STORE_SECRET_KEY": Fernet.generate_key().decode(),
        "DATA_DIR": "" if redis else str(data_dir),
        **(redis.env() if redis else {}),
    }
    token = new_tokens(1)[0]
    first = start_proxy(simulator, tmp_path, **env)
    try:
        user = ConsoleUser(first, admin_key)
        user.signin()
        user.add_account(token, name="sealed")
        secret = user.create_key("sealed-key")
        assert ask(first, secret, "hello")
    finally:
        stop_proxy(first)
    (body,) = _stored_account_bodies(redis, data_dir)
    assert body.startswith("gAAAAA") and token not in body and "sealed" not in body
    second = start_proxy(simulator, tmp_path, **env)  # read back after a restart
    try:
        assert _pool(second, admin_key)[fingerprint(token)]["source"] == "console"
        assert ask(second, secret, "hello again")
    finally:
        stop_proxy(second)
