"""Why accounts stop working, end to end: the simulator refuses one way, the pool says why.

For each reason (docs/accounts.md) the simulator refuses the first account in
that way; the account's state and reason change, the caller's request moves to
the other account (or gets the documented error), and the admin API and
``/metrics`` show the reason.
"""

from __future__ import annotations

import re
import time
import uuid

import openai
import pytest
import requests

from glm_proxy.accounts import fingerprint
from glm_proxy.upstream.refusals import next_reset
from tests.conftest import start_proxy, stop_proxy
from tests.support.team import admin, ask, assert_no_secrets, new_key, new_tokens

# fault kind -> (reason, state the account ends in)
REFUSALS = {
    "verify_page": ("verification_required", "cooling"),
    "out_of_credits": ("out_of_credits", "cooling"),
    "rate_429": ("rate_limited", "cooling"),
    "banned": ("banned", "dead"),
    "risk_control": ("risk_control", "cooling"),
    "unknown_refusal": ("unknown", "cooling"),
}


@pytest.fixture
def pool(simulator, tmp_path):
    """A team proxy over two fresh accounts, ``first`` tried first."""
    first, second = new_tokens(2)
    key, admin_key = new_key("team"), new_key("admin")
    proxy = start_proxy(
        simulator,
        tmp_path,
        ACCOUNTS=f"{first} name=first,{second} name=second",
        API_KEYS=f"team:{key}",
        ADMIN_KEY=admin_key,
    )
    yield {"proxy": proxy, "first": first, "second": second, "key": key, "admin": admin_key}
    stop_proxy(proxy)
    assert_no_secrets(proxy.logs(), [first, second, key, admin_key])


def metric(proxy, admin_key: str, state: str, reason: str) -> float | None:
    text = requests.get(
        f"{proxy.base}/metrics", headers={"Authorization": f"Bearer {admin_key}"}, timeout=10
    ).text
    pattern = rf'^glm_proxy_accounts\{{reason="{reason}",state="{state}"\}} ([0-9.]+)$'
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else None


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_each_refusal_is_named_and_the_request_moves_on(pool, simulator, kind) -> None:
    reason, state = REFUSALS[kind]
    simulator.fault(pool["first"], kind)
    before = time.time()
    assert ask(pool["proxy"], pool["key"], f"hello {kind}")  # served by the second account
    assert simulator.account(pool["second"])["streams_completed"] == 1
    assert not simulator.account(pool["first"]).get("streams_completed")

    view = admin(pool["proxy"], pool["admin"], "GET", f"/accounts/{fingerprint(pool['first'])}")
    assert (view["state"], view["reason"]) == (state, reason)
    assert view["fix"]
    report = admin(pool["proxy"], pool["admin"], "GET", "/pool")
    assert report["reasons"] == {reason: 1}
    assert report["states"][state] == 1 and report["states"]["active"] == 1
    line = next(a for a in report["accounts"] if a["name"] == "first")
    assert line["reason"] == reason
    assert metric(pool["proxy"], pool["admin"], state, reason) == 1.0
    assert metric(pool["proxy"], pool["admin"], "active", "") == 1.0
    if kind == "out_of_credits":  # rests until the upstream's midnight (Asia/Shanghai)
        assert line["next_try_at"] == time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(next_reset(before, 8.0))
        )
    if kind == "verify_page":  # a long rest, not the few seconds of a transient error
        assert view["cooldown_until"] and line["next_try_at"] >= time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(before + 500)
        )
    if kind == "unknown_refusal":  # the upstream's code and message are kept
        assert "10777" in view["last_error"] and "something new" in view["last_error"]
    assert f"account:{fingerprint(pool['first'])}: {state} ({reason})" in pool["proxy"].logs()


def test_a_guest_token_in_the_pool_is_dead_with_the_fix_named(simulator, tmp_path) -> None:
    guest, real = f"guest-{uuid.uuid4().hex}", new_tokens(1)[0]
    key, admin_key = new_key("team"), new_key("admin")
    proxy = start_proxy(
        simulator,
        tmp_path,
        ACCOUNTS=f"{guest} name=guest,{real} name=real",
        API_KEYS=f"team:{key}",
        ADMIN_KEY=admin_key,
    )
    try:
        assert ask(proxy, key, "hello")
        assert simulator.account(real)["streams_completed"] == 1
        view = admin(proxy, admin_key, "GET", f"/accounts/{fingerprint(guest)}")
        assert (view["state"], view["reason"]) == ("dead", "guest_token")
        assert "log in" in view["fix"]
        assert admin(proxy, admin_key, "GET", "/pool")["reasons"] == {"guest_token": 1}
        assert metric(proxy, admin_key, "dead", "guest_token") == 1.0
        assert "guest_token" in proxy.logs()
        doctor = admin(proxy, admin_key, "POST", f"/accounts/{fingerprint(guest)}/doctor")
        assert not doctor["ok"] and "guest" in doctor["steps"][0]["detail"]
    finally:
        stop_proxy(proxy)
    assert_no_secrets(proxy.logs(), [guest, real, key, admin_key])


@pytest.mark.parametrize("mode", ["refuse", "flag"])
def test_a_pass_through_guest_token_gets_a_401_saying_so(simulator, proxy, mode) -> None:
    simulator.config(guest_mode=mode)
    try:
        guest = f"guest-{uuid.uuid4().hex}"
        sdk = openai.OpenAI(base_url=proxy.v1, api_key=guest, max_retries=0, timeout=30)
        for _ in range(2):  # the first refusal, then the remembered reason
            with pytest.raises(openai.AuthenticationError) as caught:
                sdk.chat.completions.create(
                    model="glm-5.3", messages=[{"role": "user", "content": "hi"}]
                )
            assert "guest" in str(caught.value) and "log in" in str(caught.value)
            assert caught.value.code == "guest_token"
    finally:
        simulator.config(guest_mode="refuse")


def test_a_banned_pass_through_token_gets_a_401_saying_so(simulator, proxy, token) -> None:
    simulator.fault(token, "banned")
    sdk = openai.OpenAI(base_url=proxy.v1, api_key=token, max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError) as caught:
        sdk.chat.completions.create(model="glm-5.3", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "banned" and "banned" in str(caught.value)


def test_an_account_with_spent_credits_is_tried_again_after_the_reset(simulator, tmp_path):
    """Spent credits: cooling until the upstream's midnight; a re-check brings it back."""
    first, second = new_tokens(2)
    key, admin_key = new_key("team"), new_key("admin")
    proxy = start_proxy(
        simulator,
        tmp_path,
        ACCOUNTS=f"{first} name=first,{second} name=second",
        API_KEYS=f"team:{key}",
        ADMIN_KEY=admin_key,
    )
    try:
        simulator.fault(first, "out_of_credits")
        assert ask(proxy, key, "one")
        fp = fingerprint(first)
        view = admin(proxy, admin_key, "GET", f"/accounts/{fp}")
        assert view["reason"] == "out_of_credits" and view["state"] == "cooling"
        for i in range(2):  # the cooling account is left alone meanwhile
            assert ask(proxy, key, f"more {i}")
        assert simulator.account(first).get("streams_completed", 0) == 0
        admin(proxy, admin_key, "POST", f"/accounts/{fp}/check")  # what the reset amounts to
        assert admin(proxy, admin_key, "GET", f"/accounts/{fp}")["reason"] is None
    finally:
        stop_proxy(proxy)


def test_a_lone_token_behind_a_verification_page_is_not_pressed_again(proxy, simulator, token):
    """One token, nowhere else to go: still no second request while it rests (429)."""
    simulator.fault(token, "verify_page")
    sdk = openai.OpenAI(base_url=proxy.v1, api_key=token, max_retries=0, timeout=30)
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.InternalServerError) as first:
        sdk.chat.completions.create(model="glm-5.3", messages=messages)
    assert first.value.status_code == 503 and "verification" in str(first.value)
    with pytest.raises(openai.RateLimitError) as second:
        sdk.chat.completions.create(model="glm-5.3", messages=messages)
    assert int(second.value.response.headers["Retry-After"]) >= 500
    streams = [r for r in simulator.requests_log("/assistant/stream") if r.get("account") == token]
    assert len(streams) == 1
