"""Pacing accounts below their limits: budgets, spacing, ranking, and credits.

Budgets are checked end to end (a clean 429 with ``Retry-After`` from the
budgets, never an upstream request over budget), shared across two replicas on
Redis (one with two workers), and as store rules (memory and Redis alike).
"""

from __future__ import annotations

import time
import uuid

import openai
import pytest
import requests

from glm_proxy.accounts import fingerprint
from glm_proxy.pool.credits import upstream_day
from glm_proxy.store.base import AcquireRequest, SlotCandidate, Store
from glm_proxy.store.memory import MemoryStore
from glm_proxy.store.pacing import DAY_MS, PaceQuery
from tests.conftest import launch_simulator, start_proxy, stop_proxy, stop_simulator
from tests.support.redis_fixture import redis_server, redis_url  # noqa: F401
from tests.support.team import admin, ask, client, new_key, new_tokens


def over_budget(proxy, key: str) -> openai.RateLimitError:
    with pytest.raises(openai.RateLimitError) as caught:
        client(proxy, key).chat.completions.create(
            model="glm-5.3", messages=[{"role": "user", "content": "one more"}]
        )
    return caught.value


def retry_after(error: openai.RateLimitError) -> int:
    return int(error.response.headers["Retry-After"])


def test_an_account_over_its_hourly_budget_gets_a_clean_429(simulator, tmp_path) -> None:
    (token,) = new_tokens(1)
    key = new_key("team")
    proxy = start_proxy(
        simulator,
        tmp_path,
        ACCOUNTS=token,
        API_KEYS=f"team:{key}",
        ACCOUNT_MAX_PER_HOUR="2",
        QUEUE_TIMEOUT="2",
    )
    try:
        for i in range(2):
            assert ask(proxy, key, f"q{i}")
        error = over_budget(proxy, key)
        assert 3000 <= retry_after(error) <= 3600  # when the first answer leaves the hour
        assert "budget" in error.message
        assert simulator.account(token)["stream_count"] == 2  # the upstream never saw it
    finally:
        stop_proxy(proxy)


def test_the_minimum_gap_spaces_answers_on_one_account(simulator, tmp_path) -> None:
    (token,) = new_tokens(1)
    key, admin_key = new_key("team"), new_key("admin")
    proxy = start_proxy(
        simulator,
        tmp_path,
        ACCOUNTS=token,
        API_KEYS=f"team:{key}",
        ADMIN_KEY=admin_key,
        ACCOUNT_MIN_GAP="30",
        ACCOUNT_GAP_JITTER="0",
        QUEUE_TIMEOUT="1",
    )
    try:
        assert ask(proxy, key, "first")
        assert 25 <= retry_after(over_budget(proxy, key)) <= 31
        report = admin(proxy, admin_key, "GET", "/pool")
        assert report["budgets"]["min_gap"] == 30
        assert report["accounts"][0]["budget"]["free_at"] is not None
    finally:
        stop_proxy(proxy)


def test_budgets_are_shared_by_replicas_and_workers_on_redis(
    simulator,
    tmp_path,
    redis_url,  # noqa: F811
) -> None:
    tokens = new_tokens(2)
    key, admin_key = new_key("team"), new_key("admin")
    common = {
        "ACCOUNTS": ",".join(tokens),
        "API_KEYS": f"team:{key}",
        "ADMIN_KEY": admin_key,
        "ACCOUNT_MAX_PER_HOUR": "2",
        "QUEUE_TIMEOUT": "2",
        **redis_url.env(),
    }
    one = start_proxy(simulator, tmp_path, **common)
    two = start_proxy(simulator, tmp_path, **common, WEB_CONCURRENCY="2")
    try:
        for i in range(4):  # the pool's whole budget, spread over three workers
            assert ask((one, two)[i % 2], key, f"q{i}")
        for proxy in (one, two):
            assert 3000 <= retry_after(over_budget(proxy, key)) <= 3600
        assert [simulator.account(t)["stream_count"] for t in tokens] == [2, 2]
        report = admin(two, admin_key, "GET", "/pool")
        assert [a["budget"]["hour_used"] for a in report["accounts"]] == [2, 2]
        assert report["budgets"]["used_this_hour"] == 4
    finally:
        stop_proxy(one)
        stop_proxy(two)


# -- the store's rules, memory and Redis alike ------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def store(request) -> Store:
    if request.param == "memory":
        yield MemoryStore()
        return
    from glm_proxy.store.redis import RedisStore

    target = request.getfixturevalue("redis_url")
    s = RedisStore.from_url(target.url, prefix=target.prefix)
    yield s
    s.close()


def test_pace_books_only_within_the_budgets(store: Store) -> None:
    now = int(time.time() * 1000)
    query = PaceQuery(now, 60_000, hour_limit=2, day_limit=3)
    assert store.pace(query, ["a"], book="1")[0].booked
    later = PaceQuery(now + 10_000, 60_000, hour_limit=2, day_limit=3)
    assert store.pace(later, ["a"], book="2")[0].booked
    full = store.pace(PaceQuery(now + 20_000, 60_000, 2, 3), ["a"], book="3")[0]
    assert not full.booked and full.free_at_ms == now + 60_000 and full.hour_used == 2
    after_hour = store.pace(PaceQuery(now + 61_000, 60_000, 2, 3), ["a"], book="4")[0]
    assert after_hour.booked and after_hour.day_used == 3
    day_full = store.pace(PaceQuery(now + 200_000, 60_000, 2, 3), ["a"], book="5")[0]
    assert not day_full.booked and day_full.free_at_ms == now + DAY_MS
    other = store.pace(PaceQuery(now + 200_000, 60_000, 2, 3), ["b"])[0]
    assert (other.hour_used, other.free_at_ms, other.booked) == (0, 0, False)


def test_the_store_prefers_the_lower_rank_over_the_least_recently_used(store: Store) -> None:
    def lease(ranks: dict[str, float]) -> str | None:
        result = store.lease_acquire(
            AcquireRequest(
                queue="q" + uuid.uuid4().hex[:6],
                candidates=tuple(SlotCandidate(fp, 1, False, rank) for fp, rank in ranks.items()),
                lease_id=uuid.uuid4().hex,
                ticket=uuid.uuid4().hex,
                now_ms=int(time.time() * 1000),
                lease_ttl_ms=30_000,
                ticket_ttl_ms=5_000,
                queue_max=10,
            )
        )
        return result.fingerprint

    assert lease({"x": 0.0, "y": 0.0}) == "x"  # equal ranks: least recently used first
    assert lease({"x2": 0.5, "y2": 0.1}) == "y2"  # y2 has more budget left


# -- credits ------------------------------------------------------------------------------


@pytest.fixture
def credit_sim():
    sim = launch_simulator("2026")
    sim.config(credits=0, credit_cost=100, daily_credits=300)
    yield sim
    stop_simulator(sim)


def test_daily_points_are_claimed_once_and_credits_shown(credit_sim, tmp_path) -> None:
    first, second = new_tokens(2)
    key, admin_key = new_key("team"), new_key("admin")
    env = {
        "ACCOUNTS": f"{first} name=first,{second} name=second",
        "API_KEYS": f"team:{key}",
        "ADMIN_KEY": admin_key,
    }
    proxy = start_proxy(credit_sim, tmp_path, **env)
    try:
        for i in range(4):  # 3 points per account: spent over two days without the claim
            assert ask(proxy, key, f"q{i}")
        claims = credit_sim.requests_log("/member-api/member/daily_login_score")
        assert sorted(r["account"] for r in claims) == sorted([first, second])  # once each
        fp = fingerprint(first)
        view = admin(proxy, admin_key, "POST", f"/accounts/{fp}/credits")
        assert view["credits"]["left_score"] == 100 and view["credits"]["points"] == 1.0
        today = upstream_day(time.time(), 8.0)
        assert view["credits"]["claimed_day"] == today
        report = admin(proxy, admin_key, "GET", "/pool")
        assert report["credits"]["known"] >= 1
    finally:
        stop_proxy(proxy)
    again = start_proxy(credit_sim, tmp_path, **env)  # a fresh store: claims again, gets 10001
    try:
        assert ask(again, key, "after a restart")
        view = admin(again, admin_key, "GET", f"/accounts/{fingerprint(first)}")
        assert view["credits"]["claimed_day"] == upstream_day(time.time(), 8.0)
        assert "daily points claim failed" not in again.logs()
    finally:
        stop_proxy(again)


def test_spent_credits_move_answers_to_another_account(credit_sim, tmp_path) -> None:
    first, second = new_tokens(2)
    key, admin_key = new_key("team"), new_key("admin")
    credit_sim.config(daily_credits=0)
    requests.post(
        f"{credit_sim.base}/_sim/credits", json={"token": second, "left_score": 500}, timeout=5
    ).raise_for_status()
    proxy = start_proxy(
        credit_sim,
        tmp_path,
        ACCOUNTS=f"{first} name=first,{second} name=second",
        API_KEYS=f"team:{key}",
        ADMIN_KEY=admin_key,
    )
    try:
        assert ask(proxy, key, "hi")
        assert credit_sim.account(second)["streams_completed"] == 1
        view = admin(proxy, admin_key, "GET", f"/accounts/{fingerprint(first)}")
        assert (view["state"], view["reason"]) == ("cooling", "out_of_credits")
        assert admin(proxy, admin_key, "GET", "/pool")["reasons"] == {"out_of_credits": 1}
    finally:
        stop_proxy(proxy)


def test_a_sole_candidate_resting_for_a_verification_page_is_not_used(store: Store) -> None:
    now = int(time.time() * 1000)

    def lease(fp: str) -> tuple[str, int | None]:
        result = store.lease_acquire(
            AcquireRequest(
                queue="q" + uuid.uuid4().hex[:6],
                candidates=(SlotCandidate(fp),),
                lease_id=uuid.uuid4().hex,
                ticket=uuid.uuid4().hex,
                now_ms=now,
                lease_ttl_ms=30_000,
                ticket_ttl_ms=5_000,
                queue_max=10,
                sole=True,
            )
        )
        return result.status, result.retry_at_ms

    until = (now + 600_000) / 1000
    for fp, reason in (("v", "verification_required"), ("u", "unknown")):
        store.hupdate(
            f"health:{fp}",
            lambda _, r=reason: {"state": "cooling", "cooldown_until": repr(until), "reason": r},
        )
    assert lease("v") == ("wait", now + 600_000)
    assert lease("u")[0] == "ok"  # a transient error: the only account is tried anyway


def test_accounts_with_credits_and_budget_left_rank_first() -> None:
    from glm_proxy.accounts import Account
    from glm_proxy.config import Settings
    from glm_proxy.pool.pacing import Pacer
    from glm_proxy.pool.scheduling import plan_lease

    store = MemoryStore()
    settings = Settings.from_mapping({"ACCOUNT_MAX_PER_HOUR": "4", "GLM_MEMBER_INFO": "true"})
    spent, rich, busy = (Account.from_token(f"rt-{name}") for name in ("spent", "rich", "busy"))
    store.hupdate(f"credits:{spent.fingerprint}", lambda _: {"left_score": "0"})
    store.hupdate(f"credits:{rich.fingerprint}", lambda _: {"left_score": "2500"})
    pacer = Pacer(settings, store, is_pooled=lambda fp: True)
    for n in range(3):  # three of the busy account's four answers this hour
        assert pacer.book(busy.fingerprint, f"a{n}")
    ranks = {
        c.fingerprint: c.rank for c in pacer.candidates(plan_lease([spent, rich, busy])).candidates
    }
    assert ranks[rich.fingerprint] == 0.0
    assert ranks[rich.fingerprint] < ranks[busy.fingerprint] < ranks[spent.fingerprint]
    assert pacer.book(busy.fingerprint, "a3")  # the fourth: now it is over budget
    paced = pacer.candidates(plan_lease([spent, rich, busy]))
    assert paced.paced == {busy.fingerprint} and paced.free_at is not None
