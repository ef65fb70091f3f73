"""The admin API end to end: list, re-check, disable/enable accounts; secrets stay masked."""

from __future__ import annotations

import concurrent.futures

import pytest
import requests

from glm_proxy.accounts import fingerprint
from tests.conftest import start_proxy, stop_proxy
from tests.support.team import admin, ask, assert_no_secrets, new_key, new_tokens, stream_entries
from tests.support.waiting import wait_until


@pytest.fixture
def server(simulator, tmp_path):
    good = new_tokens(2)
    dead = new_tokens(1, prefix="dead")
    key, admin_key = new_key("alice"), new_key("admin")
    proxy = start_proxy(
        simulator,
        tmp_path,
        ACCOUNTS=",".join([*good, *dead]),
        API_KEYS=f"alice:{key}",
        ADMIN_KEY=admin_key,
        COOLDOWN_BASE="30",
    )
    yield {"proxy": proxy, "good": good, "dead": dead[0], "key": key, "admin": admin_key}
    stop_proxy(proxy)
    assert_no_secrets(proxy.logs(), [*good, *dead, key, admin_key])


def accounts(server) -> dict[str, dict]:
    data = admin(server["proxy"], server["admin"], "GET", "/accounts")["data"]
    return {a["id"]: a for a in data}


def test_admin_needs_the_admin_key(server) -> None:
    base = server["proxy"].base
    assert requests.get(f"{base}/admin/accounts", timeout=10).status_code == 401
    wrong = {"Authorization": f"Bearer {server['key']}"}  # a team key is not an admin key
    assert requests.get(f"{base}/admin/accounts", headers=wrong, timeout=10).status_code == 401
    ok = {"x-api-key": server["admin"]}
    assert requests.get(f"{base}/admin/accounts", headers=ok, timeout=10).status_code == 200
    missing = requests.post(
        f"{base}/admin/accounts/000000000000/disable",
        headers={"Authorization": f"Bearer {server['admin']}"},
        timeout=10,
    )
    assert missing.status_code == 404


def test_list_is_masked_and_complete(server) -> None:
    resp = requests.get(
        f"{server['proxy'].base}/admin/accounts",
        headers={"Authorization": f"Bearer {server['admin']}"},
        timeout=10,
    )
    for token in [*server["good"], server["dead"]]:
        assert token not in resp.text
    listed = resp.json()["data"]
    assert [a["id"] for a in listed] == [fingerprint(t) for t in [*server["good"], server["dead"]]]
    first = listed[0]
    assert first["token"] == f"<secret {fingerprint(server['good'][0])}>"
    assert {
        "state",
        "in_flight",
        "last_error",
        "cooldown_until",
        "requests_served",
        "max_streams",
        "last_used",
    } <= set(first)
    assert first["state"] == "active" and first["in_flight"] == 0


def test_dead_account_is_shown_dead_and_requests_still_succeed(server, simulator) -> None:
    for n in range(4):
        assert ask(server["proxy"], server["key"], f"admin-dead-{n}")
    dead = accounts(server)[fingerprint(server["dead"])]
    assert dead["state"] == "dead" and "40102" in dead["last_error"]
    assert simulator.account(server["dead"])["refresh_failures"] == 1  # tried once, never again
    served = sum(a["requests_served"] for a in accounts(server).values())
    assert served == 4
    # Re-checking a dead token keeps it dead; enabling it is the operator's call.
    fp = fingerprint(server["dead"])
    assert (
        admin(server["proxy"], server["admin"], "POST", f"/accounts/{fp}/check")["state"] == "dead"
    )
    assert (
        admin(server["proxy"], server["admin"], "POST", f"/accounts/{fp}/enable")["state"]
        == "active"
    )


def test_check_refreshes_and_detects_a_revoked_token(server, simulator) -> None:
    token = server["good"][0]
    fp = fingerprint(token)
    before = simulator.account(token).get("refresh_count", 0)
    assert (
        admin(server["proxy"], server["admin"], "POST", f"/accounts/{fp}/check")["state"]
        == "active"
    )
    assert simulator.account(token)["refresh_count"] == before + 1
    requests.post(f"{simulator.base}/_sim/tokens/dead", json={"token": token}, timeout=5)
    checked = admin(server["proxy"], server["admin"], "POST", f"/accounts/{fp}/check")
    assert checked["state"] == "dead" and "40102" in checked["last_error"]


def test_disable_and_enable(server, simulator) -> None:
    keep, off = server["good"]
    admin(server["proxy"], server["admin"], "POST", f"/accounts/{fingerprint(off)}/disable")
    assert accounts(server)[fingerprint(off)]["state"] == "disabled"
    for n in range(3):
        ask(server["proxy"], server["key"], f"admin-disabled-{n}")
        assert stream_entries(simulator, f"admin-disabled-{n}")[-1]["account"] == keep
    admin(server["proxy"], server["admin"], "POST", f"/accounts/{fingerprint(off)}/enable")
    assert accounts(server)[fingerprint(off)]["state"] == "active"


def test_in_flight_is_visible(server, simulator) -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as workers:
        slow = workers.submit(
            ask, server["proxy"], server["key"], "admin-slow [[sim:long n=40 delay=0.05]]"
        )
        wait_until(lambda: stream_entries(simulator, "admin-slow"), 20, "slow stream started")
        busy = wait_until(
            lambda: [a for a in accounts(server).values() if a["in_flight"] == 1],
            10,
            "an account in flight",
        )
        assert len(busy) == 1
        assert slow.result(timeout=30)
    assert all(a["in_flight"] == 0 for a in accounts(server).values())


def test_client_disconnect_releases_the_lease(server, simulator) -> None:
    """A client hanging up mid-stream frees the account at once (not after the TTL)."""
    resp = requests.post(
        f"{server['proxy'].v1}/chat/completions",
        headers={"Authorization": f"Bearer {server['key']}"},
        json={
            "model": "glm-4",
            "stream": True,
            "messages": [{"role": "user", "content": "admin-hangup [[sim:long n=400 delay=0.05]]"}],
        },
        stream=True,
        timeout=30,
    )
    lines = resp.iter_lines()
    assert any(line.startswith(b"data: ") and b"content" in line for line in lines)
    owner = stream_entries(simulator, "admin-hangup")[-1]["account"]
    assert accounts(server)[fingerprint(owner)]["in_flight"] == 1
    resp.close()  # hang up
    wait_until(lambda: accounts(server)[fingerprint(owner)]["in_flight"] == 0, 10, "lease released")
    wait_until(lambda: simulator.account(owner)["streams_aborted"] >= 1, 10, "upstream closed")
