"""Refusal reasons as pure rules: classification, rests, and the health they leave behind."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from glm_proxy.config import ConfigError, Settings
from glm_proxy.config.care import DEFAULT_REFUSALS
from glm_proxy.errors import AccountDead, AccountRefused, RefreshTokenExpired, UpstreamBusy
from glm_proxy.pool.health import Event, Health, State, transition
from glm_proxy.upstream.envelope import classify_failure
from glm_proxy.upstream.refusals import Reason, classify, next_reset, rest_until

SETTINGS = Settings.from_mapping({})
PAGE = "<!DOCTYPE html><html><head><title>访问验证</title></head><body>请完成验证</body></html>"


@pytest.mark.parametrize(
    ("http", "body", "reason", "kind"),
    [
        (400, {"status": 40012, "message": "blocked"}, "verification_required", None),
        (200, PAGE, "verification_required", AccountRefused),
        (429, {"status": 10061, "message": "请等待"}, "rate_limited", UpstreamBusy),
        (200, {"status": 10002, "message": "访客账号不可用"}, "guest_token", AccountDead),
        (200, {"status": 10015, "message": "账号已被封禁"}, "banned", AccountDead),
        (200, {"status": 10016, "message": "触发风控"}, "risk_control", AccountRefused),
        (200, {"status": 10018, "message": "积分不足"}, "out_of_credits", AccountRefused),
        (200, {"status": 10777, "message": "new"}, "unknown", None),
        (401, {"status": 40102, "message": "token expired (40102)"}, "token_expired", None),
    ],
)
def test_refusals_are_classified(http, body, reason, kind) -> None:
    raw = body.encode() if isinstance(body, str) else orjson.dumps(body)
    error = classify_failure(http, raw, SETTINGS.glm_busy_codes, SETTINGS.account_refusals)
    assert error.reason == reason
    if kind is not None:
        assert isinstance(error, kind)
    if reason == "token_expired":
        assert type(error) is RefreshTokenExpired


def test_a_gateway_error_page_is_not_the_account_s_fault() -> None:
    error = classify_failure(
        502, b"<html><body>502 Bad Gateway</body></html>", (), DEFAULT_REFUSALS
    )
    assert not hasattr(error, "reason")


def test_codes_win_over_words_and_the_table_is_a_setting() -> None:
    assert classify({40012}, "积分不足", DEFAULT_REFUSALS) is Reason.VERIFICATION_REQUIRED
    assert classify({10099}, "x", "10099=out_of_credits") is Reason.OUT_OF_CREDITS
    assert classify(set(), "x", "", http_status=429) is Reason.RATE_LIMITED
    with pytest.raises(ConfigError):
        Settings.from_mapping({"ACCOUNT_REFUSALS": "10099=sleepy"})


def test_spent_credits_rest_until_the_upstream_s_midnight() -> None:
    shanghai = dt.timezone(dt.timedelta(hours=8))
    now = dt.datetime(2026, 12, 7, 23, 30, tzinfo=shanghai).timestamp()
    reset = next_reset(now, 8.0)
    assert dt.datetime.fromtimestamp(reset, shanghai) == dt.datetime(
        2026, 12, 8, 0, 0, tzinfo=shanghai
    )
    assert rest_until("out_of_credits", 1, now, SETTINGS) == reset


def test_verification_rests_long_and_doubles() -> None:
    first = rest_until("verification_required", 1, 0.0, SETTINGS)
    second = rest_until("verification_required", 2, 0.0, SETTINGS)
    assert first == SETTINGS.account_verification_cooldown and second == 2 * first
    assert rest_until("rate_limited", 1, 0.0, SETTINGS) == SETTINGS.cooldown_base


def test_health_keeps_the_reason_until_the_account_recovers() -> None:
    cooling = transition(
        Health(), Event.FAILURE, 100.0, base=5, maximum=60, reason="out_of_credits", until=900.0
    )
    assert (cooling.state, cooling.reason, cooling.cooldown_until) == (
        State.COOLING,
        "out_of_credits",
        900.0,
    )
    assert Health.from_fields(cooling.to_fields()) == cooling
    back = transition(cooling, Event.SUCCESS, 1000.0, base=5, maximum=60)
    assert (back.state, back.reason) == (State.ACTIVE, "")
    dead = transition(Health(), Event.REJECTED, 1.0, base=5, maximum=60, reason="guest_token")
    assert (dead.state, dead.reason) == (State.DEAD, "guest_token")
