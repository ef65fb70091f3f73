"""Following refresh-token rotation so a pool survives restarts.

The simulator is switched to rotate the refresh token on every refresh and to
kill the one presented (the E3 behaviour in the protocol notes, §5.1). With
``FOLLOW_TOKEN_ROTATION`` the proxy keeps using the newest token and writes it
back into ``ACCOUNTS_FILE``, so even the memory store survives a restart.
"""

from __future__ import annotations

import pytest

from glm_proxy.accounts import fingerprint
from tests.conftest import start_proxy, stop_proxy
from tests.team_support import admin, ask, assert_no_secrets, new_key, new_tokens


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
