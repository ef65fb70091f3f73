"""The lease decisions without a store: candidate sets, lines, refusals, waits (tables)."""

from __future__ import annotations

import hashlib

import pytest

from glm_proxy.accounts import Account
from glm_proxy.errors import (
    AuthenticationError,
    RateLimited,
    RefreshTokenExpired,
    ServiceUnavailable,
)
from glm_proxy.pool.scheduling import (
    plan_lease,
    queue_name,
    refusal,
    unusable,
    wait_time,
)
from glm_proxy.store.base import AcquireResult

A, B, C = (Account.from_token(f"rt-sched-{n}") for n in "abc")
WIDE = Account.from_token("rt-sched-wide", max_streams=3)
ZERO = Account.from_token("rt-sched-zero", max_streams=0)

# candidates, exclude, require -> accounts, excluded candidate flags, sole
PLANS = [
    ([A, B, C], (), None, [A, B, C], [False, False, False], False),
    ([A, B, A, C, B], (), None, [A, B, C], [False, False, False], False),
    ([A, B, C], [B.fingerprint], None, [A, B, C], [False, True, False], False),
    ([A, B], [B.fingerprint], A, [A], [False], True),  # affinity ignores exclusions
    ([], (), C, [C], [False], True),
    ([A], [A.fingerprint], None, [A], [True], True),
]


@pytest.mark.parametrize(("candidates", "exclude", "require", "accounts", "flags", "sole"), PLANS)
def test_plan_lease(candidates, exclude, require, accounts, flags, sole) -> None:
    plan = plan_lease(candidates, exclude=exclude, require=require)
    assert list(plan.accounts) == accounts
    assert [c.excluded for c in plan.candidates] == flags
    assert [c.fingerprint for c in plan.candidates] == [a.fingerprint for a in accounts]
    assert plan.sole is sole
    assert plan.account(accounts[-1].fingerprint) is accounts[-1]


def test_plan_lease_slots_follow_max_streams_and_never_drop_below_one() -> None:
    plan = plan_lease([WIDE, ZERO])
    assert [c.max_streams for c in plan.candidates] == [3, 1]


def test_plan_lease_without_accounts_is_an_authentication_error() -> None:
    with pytest.raises(AuthenticationError):
        plan_lease([])


def test_lines_are_shared_by_candidate_set_and_split_by_exclusions() -> None:
    assert plan_lease([A, B]).queue == plan_lease([B, A, B]).queue == queue_name([A, B])
    assert plan_lease([A, B]).queue != plan_lease([A, B, C]).queue
    retry = plan_lease([A, B], exclude=[A.fingerprint])
    assert retry.queue != plan_lease([A, B]).queue
    assert retry.queue == queue_name([A, B], [A.fingerprint])
    # Exclusions outside the candidate set do not split the line ...
    assert plan_lease([A, B], exclude=[C.fingerprint]).queue == plan_lease([A, B]).queue
    # ... but still mark the request as a failover retry.
    assert plan_lease([A, B], exclude=[C.fingerprint]).excluded == {C.fingerprint}
    assert len(queue_name([A])) == 16


def test_queue_names_are_stable() -> None:
    """Waiting lines are store keys shared with processes running the previous version."""
    assert queue_name([A, B]) == queue_name([B, A])
    key = ",".join(sorted([A.fingerprint, B.fingerprint])) + "|without:" + B.fingerprint
    assert queue_name([A, B], [B.fingerprint]) == hashlib.sha256(key.encode()).hexdigest()[:16]


def pooled_only(*accounts: Account):
    fps = {a.fingerprint for a in accounts}
    return lambda fp: fp in fps


# store answer, pooled?, exclude -> error type (None: wait), message part
REFUSALS = [
    (AcquireResult("wait", seq=3), True, (), None, ""),
    (AcquireResult("ok", fingerprint=A.fingerprint), True, (), None, ""),
    (AcquireResult("full"), True, (), RateLimited, "Too many requests are waiting"),
    (AcquireResult("none", dead=2), False, (), RefreshTokenExpired, ""),
    (AcquireResult("none", dead=2), True, (), ServiceUnavailable, "2 dead, 0 disabled"),
    (AcquireResult("none", dead=1, disabled=1), False, (), ServiceUnavailable, "1 dead"),
    (AcquireResult("none", disabled=2), True, (), ServiceUnavailable, "0 dead, 2 disabled"),
    (AcquireResult("none"), True, [A.fingerprint], ServiceUnavailable, "No other account"),
    (AcquireResult("none", dead=1), False, [A.fingerprint], RefreshTokenExpired, ""),
]


@pytest.mark.parametrize(("result", "pooled", "exclude", "error", "message"), REFUSALS)
def test_refusal(result, pooled, exclude, error, message) -> None:
    plan = plan_lease([A, B], exclude=exclude)
    got = refusal(result, plan, pooled_only(A, B) if pooled else pooled_only())
    if error is None:
        assert got is None
        return
    assert type(got) is error
    assert message in got.message


def test_a_refusal_for_a_full_line_or_an_empty_pool_says_when_to_retry() -> None:
    full = refusal(AcquireResult("full"), plan_lease([A]), pooled_only())
    assert full.status == 429 and full.headers["Retry-After"] == "2"
    dead_pool = unusable(AcquireResult("none", dead=1), pooled=True, retrying=False)
    assert dead_pool.status == 503 and dead_pool.headers["Retry-After"] == "30"


NOW = 1_000_000.0

# retry_at_ms, remaining, poll -> wait (seconds) or (error, Retry-After)
WAITS = [
    (None, 5.0, 1.0, 1.0),  # poll
    (None, 0.3, 1.0, 0.3),  # the deadline is nearer than the poll
    (int((NOW + 0.5) * 1000), 5.0, 1.0, 0.5),  # wake when the first cooldown ends
    (int((NOW + 0.001) * 1000), 5.0, 1.0, 0.01),  # but never spin
    (int((NOW - 3) * 1000), 5.0, 1.0, 0.01),  # already over: ask again almost at once
    (int((NOW + 2) * 1000), 5.0, 0.1, 0.1),  # poll still wins when shorter
    (int((NOW + 42.2) * 1000), 5.0, 1.0, (RateLimited, "43")),  # cooldown beyond deadline
    (None, 0.0, 1.0, (RateLimited, "2")),  # deadline passed
    (None, -2.0, 1.0, (RateLimited, "2")),
]


@pytest.mark.parametrize(("retry_at_ms", "remaining", "poll", "expected"), WAITS)
def test_wait_time(retry_at_ms, remaining, poll, expected) -> None:
    def wait() -> float:
        return wait_time(retry_at_ms, now=NOW, remaining=remaining, poll=poll, queue_timeout=30)

    if isinstance(expected, tuple):
        error, retry_after = expected
        with pytest.raises(error) as info:
            wait()
        assert info.value.headers["Retry-After"] == retry_after
        return
    assert wait() == pytest.approx(expected, abs=1e-6)


def test_wait_time_messages_name_the_reason() -> None:
    with pytest.raises(RateLimited, match="stayed busy for 30s"):
        wait_time(None, now=NOW, remaining=0, poll=1, queue_timeout=30)
    with pytest.raises(RateLimited, match="cooling down"):
        wait_time(int((NOW + 60) * 1000), now=NOW, remaining=5, poll=1, queue_timeout=30)
