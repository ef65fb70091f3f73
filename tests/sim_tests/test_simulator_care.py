"""The simulator's account care (tests/simulator/care.py), spoken to directly over HTTP."""

from __future__ import annotations

from tests.support.simulator_harness import REFRESH, new_token, read_all
from tests.support.simulator_harness import config as config  # noqa: F401 - fixtures of the harness
from tests.support.simulator_harness import sim as sim  # noqa: F401

MEMBER = "/chatglm/member-api/member"


def test_guest_tokens_are_refused_or_flagged(sim, config) -> None:
    guest = "guest-" + new_token()
    refused = sim.post(REFRESH, guest, json={})
    assert refused.json()["status"] != 0 and "访客" in refused.json()["message"]
    config(guest_mode="flag")
    assert sim.post(REFRESH, guest, json={}).json()["result"]["is_guest"] is True


def test_the_verification_page_follows_cumulative_volume(sim, config) -> None:
    config(verify_after=2, verify_window=60.0)
    access = sim.access(new_token())
    for n in range(2):
        assert b'"finish"' in read_all(sim.stream(access, f"q{n}"))
    page = sim.stream(access, "one too many")
    assert page.headers["Content-Type"].startswith("text/html")
    assert "访问验证" in page.text
    assert sim.stream(access, "still").headers["Content-Type"].startswith("text/html")


def test_answers_spend_points_and_the_daily_claim_tops_up_once(sim, config) -> None:
    config(credits=100, credit_cost=100, daily_credits=200)
    token = new_token()
    access = sim.access(token)
    assert sim.get(f"{MEMBER}/member_info", access).json()["result"]["left_score"] == "100"
    assert b'"finish"' in read_all(sim.stream(access, "spend it"))
    refused = sim.stream(access, "no points left").json()
    assert "积分不足" in refused["message"]
    assert sim.post(f"{MEMBER}/daily_login_score", access, json={}).json()["status"] == 0
    again = sim.post(f"{MEMBER}/daily_login_score", access, json={}).json()
    assert (again["status"], again["message"]) == (10001, "今日已领取")
    assert sim.get(f"{MEMBER}/member_info", access).json()["result"]["left_score"] == "200"
    config(day=1)
    assert sim.post(f"{MEMBER}/daily_login_score", access, json={}).json()["status"] == 0
