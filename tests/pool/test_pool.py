"""The account pool in-process, on both stores: leases, heartbeat, queueing, health.

These drive ``AccountPool`` directly with gevent greenlets (the way the answer
job calls it); the cross-process behaviour is covered by ``test_redis_cluster``.
"""

from __future__ import annotations

import time

import gevent
import pytest

from glm_proxy.accounts import Account
from glm_proxy.config import ConfigError, Settings
from glm_proxy.errors import (
    RateLimited,
    RefreshTokenExpired,
    ServiceUnavailable,
    UpstreamRetryable,
)
from glm_proxy.pool import AccountPool, State, load_pool
from glm_proxy.pool.registry import PoolEntry, parse_entry, rewrite_token
from glm_proxy.store.memory import MemoryStore
from tests.support.redis_fixture import redis_server, redis_url  # noqa: F401

A, B, C = (Account.from_token(f"rt-pool-{n}") for n in "abc")


def settings(**values) -> Settings:
    base = {"QUEUE_TIMEOUT": "5", "LEASE_TTL": "30", "COOLDOWN_BASE": "60", "QUEUE_MAX": "50"}
    base.update({k: str(v) for k, v in values.items()})
    return Settings.from_mapping(base)


@pytest.fixture(params=["memory", "redis"])
def make_pool(request):
    stores = []

    def make(pooled=(A, B, C), **values) -> AccountPool:
        if request.param == "memory":
            store = MemoryStore()
        else:
            from glm_proxy.store.redis import RedisStore

            target = request.getfixturevalue("redis_url")
            store = RedisStore.from_url(target.url, prefix=target.prefix)
        stores.append(store)
        return AccountPool(settings(**values), store, [PoolEntry(a) for a in pooled])

    yield make
    for store in stores:
        store.close()


def test_lease_and_release(make_pool) -> None:
    pool = make_pool()
    lease = pool.lease([A])
    assert lease.account is A and pool.in_flight(A.fingerprint) == 1
    lease.release()
    lease.release()  # idempotent
    assert pool.in_flight(A.fingerprint) == 0
    with pool.lease([A]) as again:
        assert again.account is A
    assert pool.in_flight(A.fingerprint) == 0


def test_heartbeat_keeps_a_long_lease(make_pool) -> None:
    pool = make_pool(LEASE_TTL=0.3)
    lease = pool.lease([A])
    gevent.sleep(1.0)  # three TTLs: only the heartbeat keeps it
    assert pool.in_flight(A.fingerprint) == 1
    lease.release()
    assert pool.in_flight(A.fingerprint) == 0


def test_a_lease_without_heartbeat_expires(make_pool) -> None:
    """What a crashed worker leaves behind frees itself within the TTL."""
    pool = make_pool(LEASE_TTL=0.3)
    lease = pool.lease([A])
    lease.slot._heartbeat.kill()  # the worker "dies": no heartbeat, no release
    gevent.sleep(0.5)
    assert pool.in_flight(A.fingerprint) == 0
    assert pool.lease([A], exclude=()).account is A


def test_waiters_are_served_in_order_of_arrival(make_pool) -> None:
    pool = make_pool()
    holders = [pool.lease([A, B]), pool.lease([A, B])]
    order: list[int] = []

    def waiter(n: int) -> None:
        lease = pool.lease([A, B])
        order.append(n)
        gevent.sleep(0.02)
        lease.release()

    greenlets = []
    for n in range(6):
        greenlets.append(gevent.spawn(waiter, n))
        gevent.sleep(0.02)  # arrivals are spaced, so their order is defined
    for lease in holders:
        lease.release()
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    assert order == list(range(6))


def test_queue_deadline_is_a_429_with_retry_after(make_pool) -> None:
    pool = make_pool(QUEUE_TIMEOUT=0.3)
    holder = pool.lease([A])
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        pool.lease([A])
    assert time.monotonic() - started >= 0.25
    assert caught.value.status == 429 and int(caught.value.headers["Retry-After"]) >= 1
    holder.release()
    assert pool.lease([A]).account is A  # the timed-out waiter left the line


def test_full_queue_is_refused_at_once(make_pool) -> None:
    pool = make_pool(QUEUE_MAX=1)
    pool.lease([A])
    first = gevent.spawn(pool.lease, [A])
    gevent.sleep(0.05)
    with pytest.raises(RateLimited, match="waiting"):
        pool.lease([A])
    first.kill()


def test_a_killed_waiter_leaves_the_line(make_pool) -> None:
    """A client that hangs up while queued must not block those behind it."""
    pool = make_pool()
    holder = pool.lease([A])
    gone = gevent.spawn(pool.lease, [A])
    gevent.sleep(0.05)
    gone.kill()  # GreenletExit inside the wait, like AnswerJob.cancel()
    behind = gevent.spawn(pool.lease, [A])
    gevent.sleep(0.05)
    holder.release()
    lease = behind.get(timeout=5)
    assert lease.account is A


def test_a_failover_retry_does_not_hold_back_the_line(make_pool) -> None:
    """A retry that excludes A (it just failed there) and waits for busy B must not stand
    at the head of the shared line, keeping everyone behind it off the free account A
    until B frees up or its own deadline passes (QUEUE_TIMEOUT, 30 s by default)."""
    pool = make_pool(QUEUE_TIMEOUT=30)
    on_b = pool.lease([B])  # a long answer
    retry = gevent.spawn(pool.lease, [A, B], exclude={A.fingerprint})
    gevent.sleep(0.1)
    assert not retry.ready()  # waiting for B
    with gevent.Timeout(5):
        fresh = pool.lease([A, B])
    assert fresh.account is A
    assert not retry.ready()
    on_b.release()
    assert retry.get(timeout=5).account is B


def test_release_wakes_a_waiter_promptly(make_pool) -> None:
    pool = make_pool()
    pool.poll_interval = 60  # a waiter left to its poll would not be done in time below
    holder = pool.lease([A])
    waiter = gevent.spawn(pool.lease, [A])
    gevent.sleep(0.05)  # the waiter gets in line (either order passes)
    holder.release()
    assert waiter.get(timeout=20).account is A  # woken by the release, not by a poll


def test_dead_account_is_taken_out(make_pool) -> None:
    pool = make_pool()
    pool.report_dead(A)
    assert pool.health(A.fingerprint).state is State.DEAD
    for _ in range(3):
        with pool.lease([A, B]) as lease:
            assert lease.account is B
    with pytest.raises(ServiceUnavailable):  # a pool account: the operator must act
        pool.lease([A])
    passthrough = Account.from_token("rt-pool-passthrough")
    pool.report_dead(passthrough)
    with pytest.raises(RefreshTokenExpired):  # a client's own token: log in again
        pool.lease([passthrough])


def test_failing_account_cools_down_and_comes_back(make_pool) -> None:
    pool = make_pool(COOLDOWN_BASE=0.3)
    pool.report_failure(A, UpstreamRetryable("upstream failure (HTTP 500)"))
    health = pool.health(A.fingerprint)
    assert health.state is State.COOLING and "HTTP 500" in health.last_error
    with pool.lease([A, B]) as lease:
        assert lease.account is B  # A is cooling, B is not
    with pool.lease([A]) as lease:
        assert lease.account is A  # a sole candidate goes ahead anyway
    gevent.sleep(0.35)
    seen = set()
    for _ in range(2):
        with pool.lease([A, B]) as lease:
            seen.add(lease.account.fingerprint)
    assert A.fingerprint in seen
    pool.report_success(A)
    assert pool.health(A.fingerprint).state is State.ACTIVE


def test_only_cooling_accounts_wait_for_the_first_to_return(make_pool) -> None:
    pool = make_pool(COOLDOWN_BASE=0.3)
    for account in (A, B):
        pool.report_failure(account, UpstreamRetryable("rate limit", status=429))
    started = time.monotonic()
    with pool.lease([A, B]):
        assert time.monotonic() - started >= 0.2
    long_pool = make_pool(COOLDOWN_BASE=60, QUEUE_TIMEOUT=1)
    for account in (A, B):
        long_pool.report_failure(account, UpstreamRetryable("rate limit", status=429))
    with pytest.raises(RateLimited) as caught:
        long_pool.lease([A, B])  # the cooldown outlasts the deadline: fail fast
    assert int(caught.value.headers["Retry-After"]) >= 50


def test_disable_and_enable(make_pool) -> None:
    pool = make_pool()
    pool.set_enabled(A.fingerprint, False)
    with pytest.raises(ServiceUnavailable):
        pool.lease([A])
    pool.report_success(A)
    assert pool.health(A.fingerprint).state is State.DISABLED
    pool.set_enabled(A.fingerprint, True)
    assert pool.lease([A]).account is A


def test_pinned_account_ignores_other_candidates(make_pool) -> None:
    pool = make_pool()
    holder = pool.lease([C])
    waiter = gevent.spawn(pool.lease, [A, B, C], require=C)
    gevent.sleep(0.1)
    assert not waiter.ready()  # waits for C even though A and B are free
    holder.release()
    assert waiter.get(timeout=5).account is C


def test_served_counter(make_pool) -> None:
    pool = make_pool()
    for _ in range(3):
        with pool.lease([A]) as lease:
            pool.report_success(lease.account)
    assert pool.store.hgetall(f"health:{A.fingerprint}")["served"] == "3"


# -- conversations ------------------------------------------------------------------------


def test_conversation_book(make_pool) -> None:
    pool = make_pool(CONVERSATION_IDLE_TTL=0.2)
    outsider = Account.from_token("rt-pool-outsider")
    book = pool.conversations
    book.remember(A, "conv-a", "assistant")
    book.remember(outsider, "conv-x", "assistant")
    assert book.owner("conv-a") == A.fingerprint
    assert book.idle() == []
    gevent.sleep(0.25)
    book.touch("conv-a")  # continued: its idle clock restarts
    assert book.idle() == ["conv-x"]
    record = book.claim("conv-x")
    assert record["token"] == "rt-pool-outsider"  # needed to delete it later
    assert book.claim("conv-x") is None  # exactly one sweeper wins it
    book.forget("conv-x")
    assert book.owner("conv-x") is None
    assert "token" not in pool.store.get("sweep:conv:conv-a")  # pool accounts: no secret


# -- configuration ------------------------------------------------------------------------


def test_pool_configuration(tmp_path) -> None:
    file = tmp_path / "accounts.txt"
    file.write_text("# team pool\nrt-file-1 max_streams=2 name=alice\n\nrt-env-1\nrt-file-2\n")
    s = Settings.from_mapping(
        {
            "ACCOUNTS": "rt-env-1 name=bob, rt-env-2",
            "ACCOUNTS_FILE": str(file),
            "ACCOUNT_MAX_STREAMS": "1",
        }
    )
    entries = load_pool(s)
    tokens = [e.account.refresh_token for e in entries]
    assert tokens == ["rt-env-1", "rt-env-2", "rt-file-1", "rt-file-2"]
    alice = entries[2]
    assert (alice.name, alice.account.max_streams, alice.source) == ("alice", 2, "file")
    with pytest.raises(ConfigError, match="unknown option"):
        parse_entry("rt-x streams=2", 1, "ACCOUNTS")
    with pytest.raises(ConfigError, match="max_streams"):
        parse_entry("rt-x max_streams=0", 1, "ACCOUNTS")
    with pytest.raises(ConfigError, match="ACCOUNTS_FILE"):
        load_pool(Settings.from_mapping({"ACCOUNTS_FILE": str(tmp_path / "missing")}))


def test_rotation_rewrites_the_file_and_keeps_the_identity(tmp_path) -> None:
    file = tmp_path / "accounts.txt"
    file.write_text("rt-old max_streams=2  # main account\nrt-other\n")
    original = Account.from_token("rt-old")
    assert rewrite_token(str(file), original.fingerprint, "rt-new-1")
    assert rewrite_token(str(file), original.fingerprint, "rt-new-2")
    lines = file.read_text().splitlines()
    assert lines[0] == f"rt-new-2 max_streams=2 id={original.fingerprint} # main account"
    assert lines[1] == "rt-other"
    entry = load_pool(Settings.from_mapping({"ACCOUNTS_FILE": str(file)}))[0]
    assert entry.account.refresh_token == "rt-new-2"
    assert entry.account.fingerprint == original.fingerprint  # same account after a restart
    assert not rewrite_token(str(file), "nope", "rt-x")


class _Upstream:
    """Records which accounts' cached access tokens were dropped."""

    def __init__(self) -> None:
        self.invalidated: list[str] = []

    def invalidate(self, account: Account) -> None:
        self.invalidated.append(account.fingerprint)


def test_a_token_replaced_on_an_id_line_starts_fresh(make_pool) -> None:
    """``tok id=<fp>`` keeps the identity; a new token there must not inherit "dead", nor
    be overridden by the dead token of an earlier followed rotation."""
    from glm_proxy.pool import PoolOperations

    ident = A.fingerprint
    first = make_pool(pooled=(Account("rt-rotated-1", ident),))
    ops = PoolOperations(first, _Upstream())
    assert ops.adopt_configured_tokens() == []  # first start: remembered, nothing reset
    first.store.set(f"rot:{ident}", "rt-rotated-1")  # the service followed a rotation
    first.report_dead(Account("rt-rotated-1", ident))

    # Restart with the same line: nothing changes (still dead, rotation kept).
    same = AccountPool(first.settings, first.store, [PoolEntry(Account("rt-rotated-1", ident))])
    assert PoolOperations(same, _Upstream()).adopt_configured_tokens() == []
    assert same.health(ident).state is State.DEAD

    # The service wrote a newer rotation back into the file itself: not an operator change.
    first.store.set(f"rot:{ident}", "rt-rotated-2")
    written = AccountPool(first.settings, first.store, [PoolEntry(Account("rt-rotated-2", ident))])
    assert PoolOperations(written, _Upstream()).adopt_configured_tokens() == []
    assert written.health(ident).state is State.DEAD

    # The operator pasted a fresh login's token on the line, keeping id=.
    fresh = AccountPool(first.settings, first.store, [PoolEntry(Account("rt-new-login", ident))])
    upstream = _Upstream()
    assert PoolOperations(fresh, upstream).adopt_configured_tokens() == [ident]
    health = fresh.health(ident)
    assert health.state is State.ACTIVE and health.last_error == ""
    assert fresh.store.get(f"rot:{ident}") is None  # the dead rotation no longer wins
    assert upstream.invalidated == [ident]
    assert fresh.lease([fresh.accounts[0]]).account.refresh_token == "rt-new-login"


def test_a_disabled_account_stays_disabled_when_its_token_changes(make_pool) -> None:
    from glm_proxy.pool import PoolOperations

    ident = B.fingerprint
    pool = make_pool(pooled=(Account("rt-b-1", ident),))
    PoolOperations(pool, _Upstream()).adopt_configured_tokens()
    pool.set_enabled(ident, False)
    changed = AccountPool(pool.settings, pool.store, [PoolEntry(Account("rt-b-2", ident))])
    assert PoolOperations(changed, _Upstream()).adopt_configured_tokens() == [ident]
    assert changed.health(ident).state is State.DISABLED  # "hands off" until enabled


def test_all_dead_is_the_callers_401_only_for_their_own_tokens(make_pool) -> None:
    """Pass-through tokens are the caller's to renew (401); a team caller whose pool ran
    out of accounts gets the 503 the next request would get (not "bad API key")."""
    pool = make_pool()
    expired = RefreshTokenExpired("log in again")
    own = Account.from_token("rt-someone-elses")
    assert pool.all_dead([own], expired) is expired
    for account in (A, B):
        pool.report_dead(account)
    error = pool.all_dead([A, B], expired)
    assert isinstance(error, ServiceUnavailable) and error.status == 503
    assert "2 dead" in error.message
