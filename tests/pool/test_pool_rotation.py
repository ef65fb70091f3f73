"""Following refresh-token rotation so a pool survives restarts.

The simulator is switched to rotate the refresh token on every refresh and to
kill the one presented (the E3 behaviour in the protocol notes, §5.1). With
``FOLLOW_TOKEN_ROTATION`` the proxy keeps using the newest token and writes it
back into ``ACCOUNTS_FILE``, so even the memory store survives a restart.
"""

from __future__ import annotations

import pytest
import requests

from glm_proxy.accounts import fingerprint
from tests.conftest import start_proxy, stop_proxy
from tests.support.redis_fixture import redis_server, redis_url  # noqa: F401
from tests.support.team import admin, ask, assert_no_secrets, new_key, new_tokens


@pytest.fixture
def rotating(simulator):
    simulator.config(rotate_refresh=True, rotate_invalidates_old=True)
    yield simulator
    simulator.config(rotate_refresh=False, rotate_invalidates_old=False)


def test_rotation_is_followed_and_persisted_across_restarts(rotating, tmp_path) -> None:
    (original,) = new_tokens(1)
    accounts_file = tmp_path / "accounts.txt"
    accounts_file.write_text(f"# pool\n{original} name=main\n")
    key, admin_key = new_key("team"), new_key("admin")
    env = {
        "ACCOUNTS_FILE": str(accounts_file),
        "API_KEYS": f"team:{key}",
        "ADMIN_KEY": admin_key,
        "FOLLOW_TOKEN_ROTATION": "true",
    }
    logs = []
    for restart in range(2):
        server = start_proxy(rotating, tmp_path, **env)
        try:
            assert ask(server, key, f"rotation run {restart}")
            listed = admin(server, admin_key, "GET", "/accounts")["data"]
            assert [a["id"] for a in listed] == [fingerprint(original)]  # same identity
            assert listed[0]["name"] == "main"
        finally:
            stop_proxy(server)
            logs.append(server.logs())
        line = accounts_file.read_text().splitlines()[1]
        token, *options = line.split()
        assert token != original and token.startswith("sim-rt-")
        assert options == ["name=main", f"id={fingerprint(original)}"]
    account = rotating.account(original)
    assert account["refresh_count"] == 2  # one refresh per run, each with the newest token
    assert original in rotating.state()["dead_refresh_tokens"]
    assert_no_secrets("".join(logs), [original, token, key, admin_key])


def test_a_new_token_on_a_dead_accounts_line_brings_it_back(rotating, tmp_path, request):
    """With Redis, a followed rotation, then the rotated token revoked: the operator logs
    in again and pastes the new token over the old one (the line keeps ``id=``). After a
    restart the account serves again, with the new token, without an admin call."""
    (original,) = new_tokens(1)
    accounts_file = tmp_path / "accounts.txt"
    accounts_file.write_text(f"{original} name=main\n")
    key, admin_key = new_key("team"), new_key("admin")
    env = {
        **request.getfixturevalue("redis_url").env(),
        "ACCOUNTS_FILE": str(accounts_file),
        "API_KEYS": f"team:{key}",
        "ADMIN_KEY": admin_key,
        "FOLLOW_TOKEN_ROTATION": "true",
    }
    ident = fingerprint(original)
    server = start_proxy(rotating, tmp_path, **env)
    try:
        assert ask(server, key, "before the revocation")
        rotated = accounts_file.read_text().split()[0]
        requests.post(f"{rotating.base}/_sim/tokens/dead", json={"token": rotated}, timeout=5)
        checked = admin(server, admin_key, "POST", f"/accounts/{ident}/check")
        assert checked["state"] == "dead"
    finally:
        stop_proxy(server)

    (new_login,) = new_tokens(1)
    accounts_file.write_text(accounts_file.read_text().replace(rotated, new_login))
    assert f"id={ident}" in accounts_file.read_text()
    server = start_proxy(rotating, tmp_path, **env)
    try:
        (listed,) = admin(server, admin_key, "GET", "/accounts")["data"]
        assert listed["id"] == ident and listed["state"] == "active"
        assert ask(server, key, "after the new login")
    finally:
        stop_proxy(server)
    assert rotating.account(new_login)["refresh_count"] == 1  # the new token was used
    assert_no_secrets(server.logs(), [original, rotated, new_login, key, admin_key])
