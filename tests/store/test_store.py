"""The store contract, run against both backends (memory, and a real private Redis).

The lease-or-queue step is implemented twice (Python and Lua); the same table
of cases runs against each so they cannot drift apart.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from glm_proxy.store.base import AcquireRequest, SlotCandidate, Store
from glm_proxy.store.memory import MemoryStore
from tests.support.redis_fixture import redis_server, redis_url  # noqa: F401
from tests.support.waiting import wait_until


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


def now_ms() -> int:
    return int(time.time() * 1000)


def acquire(
    store: Store,
    fps,
    *,
    queue="q",
    ticket=None,
    lease_id=None,
    seq=None,
    excluded=(),
    max_streams=1,
    sole=None,
    queue_max=10,
    lease_ttl_ms=30000,
    ticket_ttl_ms=5000,
    now=None,
):
    cands = tuple(SlotCandidate(fp, max_streams, fp in excluded) for fp in fps)
    return store.lease_acquire(
        AcquireRequest(
            queue=queue,
            candidates=cands,
            lease_id=lease_id or uuid.uuid4().hex,
            ticket=ticket or uuid.uuid4().hex,
            now_ms=now if now is not None else now_ms(),
            lease_ttl_ms=lease_ttl_ms,
            ticket_ttl_ms=ticket_ttl_ms,
            queue_max=queue_max,
            seq=seq,
            sole=len(fps) == 1 if sole is None else sole,
        )
    )


# -- plain keys ------------------------------------------------------------------------


def test_strings_counters_and_ttl(store: Store) -> None:
    assert store.get("a") is None
    store.set("a", "1")
    assert store.get("a") == "1"
    assert store.set_if_absent("a", "2") is False
    assert store.set_if_absent("b", "2", ttl=0.2) is True
    assert store.incr("n") == 1
    assert store.incr("n", 5) == 6
    assert sorted(store.scan("")) >= ["a", "b", "n"]
    wait_until(lambda: store.get("b") is None)  # its TTL passes
    store.delete("a", "n")
    assert store.get("a") is None and store.get("n") is None


def test_lock_is_exclusive(store: Store) -> None:
    with store.lock("x", timeout=5, blocking_timeout=1) as first:
        assert first
        with store.lock("x", timeout=5, blocking_timeout=0.1) as second:
            assert not second
    with store.lock("x", timeout=5, blocking_timeout=0.1) as again:
        assert again


# -- hashes and sorted sets ----------------------------------------------------------------


def test_hashes(store: Store) -> None:
    assert store.hgetall("h") == {}
    assert store.hincr("h", "served") == 1
    assert store.hincr("h", "served", 2) == 3
    after = store.hupdate("h", lambda f: {"state": "cooling", "failures": "1"})
    assert after == {"served": "3", "state": "cooling", "failures": "1"}
    unchanged = store.hupdate("h", lambda f: None)
    assert unchanged["state"] == "cooling"
    assert store.hgetall_many(["h", "missing"]) == [after, {}]


def test_hincr_many(store: Store) -> None:
    store.hincr("u", "requests")
    store.hincr_many("u", {"requests": 2, "errors": 1, "total_tokens": 40})
    store.hincr_many("u", {})
    assert store.hgetall("u") == {"requests": "3", "errors": "1", "total_tokens": "40"}
    store.hincr_many("short", {"a": 1}, ttl=0.2)
    assert store.hgetall("short") == {"a": "1"}
    wait_until(lambda: store.hgetall("short") == {})  # its TTL passes


def test_hupdate_is_atomic_under_contention(store: Store) -> None:
    """Many threads incrementing through read-modify-write lose no update."""

    def bump(fields: dict[str, str]) -> dict[str, str]:
        return {"n": str(int(fields.get("n") or 0) + 1)}

    def worker() -> None:
        for _ in range(25):
            store.hupdate("counter", bump)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.hgetall("counter")["n"] == "200"


def test_sorted_sets(store: Store) -> None:
    store.zadd("z", {"a": 3, "b": 1, "c": 2})
    assert store.zrange_by_score("z", 2) == ["b", "c"]
    assert store.zrange_by_score("z", 10, limit=1) == ["b"]
    store.zadd("z", {"a": 0, "new": 0}, only_existing=True)
    assert store.zscore("z", "a") == 0
    assert store.zscore("z", "new") is None
    assert store.zrem("z", "a", "zzz") == 1
    assert store.zrem("z", "a") == 0  # a claim has exactly one winner


def test_slots_expire_and_renew(store: Store) -> None:
    assert store.slot_acquire("s", "m2", 2, ttl=30)
    assert store.slot_acquire("s", "m1", 2, ttl=0.5)
    assert not store.slot_acquire("s", "m3", 2, ttl=30)  # full while m1 lives (or just expired)
    wait_until(lambda: store.slot_count("s") == 1)  # m1 was never renewed: it expires
    assert store.slot_acquire("s", "m3", 2, ttl=0.5)
    store.slot_renew("s", "m3", 30)
    time.sleep(0.6)  # past m3's first expiry: the renewal kept it
    assert store.slot_count("s") == 2
    store.slot_release("s", "m2", "m3")
    assert store.slot_count("s") == 0


def test_publish_subscribe(store: Store) -> None:
    seen: list[str] = []
    unsubscribe = store.subscribe("wake", seen.append)
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:  # the Redis listener connects lazily
        store.publish("wake", "x")
        time.sleep(0.05)
    assert seen and set(seen) == {"x"}
    unsubscribe()
    count = len(seen)
    store.publish("wake", "y")
    time.sleep(0.2)  # the scenario: a window in which nothing may arrive any more
    assert len(seen) == count


# -- the lease-or-queue step ------------------------------------------------------------


def test_grants_least_recently_used_free_account(store: Store) -> None:
    first = acquire(store, ["a", "b", "c"])
    second = acquire(store, ["a", "b", "c"])
    third = acquire(store, ["a", "b", "c"])
    assert {first.fingerprint, second.fingerprint, third.fingerprint} == {"a", "b", "c"}
    assert first.status == second.status == third.status == "ok"
    assert acquire(store, ["a", "b", "c"]).status == "wait"  # one stream per account
    assert store.slot_count("lease:a") == 1


def test_lru_prefers_the_account_idle_longest(store: Store) -> None:
    lease = uuid.uuid4().hex
    assert acquire(store, ["a"], lease_id=lease).fingerprint == "a"
    store.slot_release("lease:a", lease)
    assert acquire(store, ["a", "b"]).fingerprint == "b"  # a was used more recently


def test_max_streams_per_account(store: Store) -> None:
    results = [acquire(store, ["a"], max_streams=2) for _ in range(3)]
    assert [r.status for r in results] == ["ok", "ok", "wait"]


def test_queue_is_served_in_order_of_arrival(store: Store) -> None:
    lease = uuid.uuid4().hex
    assert acquire(store, ["a"], lease_id=lease).status == "ok"
    early = acquire(store, ["a"], ticket="early")
    late = acquire(store, ["a"], ticket="late")
    assert early.status == late.status == "wait" and early.seq < late.seq
    store.slot_release("lease:a", lease)
    # The late ticket may not jump the line while the early one is alive...
    assert acquire(store, ["a"], ticket="late", seq=late.seq).status == "wait"
    assert acquire(store, ["a"], ticket="early", seq=early.seq).status == "ok"
    # ...and a newcomer queues behind the late one.
    assert acquire(store, ["a"], ticket="new").status == "wait"


def test_a_stale_ticket_loses_its_place(store: Store) -> None:
    lease = uuid.uuid4().hex
    acquire(store, ["a"], lease_id=lease)
    acquire(store, ["a"], ticket="crashed", ticket_ttl_ms=100)
    later = acquire(store, ["a"], ticket="alive")
    store.slot_release("lease:a", lease)
    time.sleep(0.2)  # the crashed waiter stopped polling: its ticket lapses
    assert acquire(store, ["a"], ticket="alive", seq=later.seq).status == "ok"


def test_queue_full_and_leave(store: Store) -> None:
    acquire(store, ["a"])
    assert acquire(store, ["a"], ticket="t1", queue_max=1).status == "wait"
    assert acquire(store, ["a"], ticket="t2", queue_max=1).status == "full"
    store.queue_leave("q", "t1")
    assert acquire(store, ["a"], ticket="t2", queue_max=1).status == "wait"


def test_expired_lease_frees_the_account(store: Store) -> None:
    assert acquire(store, ["a"], lease_ttl_ms=100).status == "ok"
    assert acquire(store, ["a"], ticket="gives-up").status == "wait"
    store.queue_leave("q", "gives-up")
    time.sleep(0.2)  # no heartbeat: the holder is presumed dead
    assert acquire(store, ["a"], ticket="after").status == "ok"


def set_health(store: Store, fp: str, state: str, cooldown_until: float = 0.0) -> None:
    store.hupdate(
        f"health:{fp}", lambda f: {"state": state, "cooldown_until": repr(cooldown_until)}
    )


def test_dead_and_disabled_accounts_are_never_chosen(store: Store) -> None:
    set_health(store, "a", "dead")
    set_health(store, "b", "disabled")
    result = acquire(store, ["a", "b"])
    assert (result.status, result.dead, result.disabled) == ("none", 1, 1)
    assert acquire(store, ["a", "b", "c"]).fingerprint == "c"


def test_excluded_accounts_are_skipped(store: Store) -> None:
    assert acquire(store, ["a", "b"], excluded=("a",)).fingerprint == "b"
    assert acquire(store, ["a"], excluded=("a",)).status == "none"


def test_cooling_accounts_are_skipped_while_another_is_usable(store: Store) -> None:
    set_health(store, "a", "cooling", time.time() + 60)
    assert acquire(store, ["a", "b"]).fingerprint == "b"
    # b is now busy: the request waits for b rather than use the cooling a
    result = acquire(store, ["a", "b"])
    assert result.status == "wait" and result.retry_at_ms is None


def test_only_cooling_accounts_wait_for_the_cooldown(store: Store) -> None:
    until = time.time() + 60
    set_health(store, "a", "cooling", until)
    set_health(store, "b", "cooling", until + 10)
    result = acquire(store, ["a", "b"])
    assert result.status == "wait"
    assert abs(result.retry_at_ms - until * 1000) < 2
    # A sole candidate is used anyway: there is nowhere else to go.
    assert acquire(store, ["a"], queue="solo").status == "ok"


def test_cooldown_over_means_usable_again(store: Store) -> None:
    set_health(store, "a", "cooling", time.time() - 1)
    assert acquire(store, ["a", "b"], now=now_ms()).status == "ok"
    assert acquire(store, ["a", "b"]).status == "ok"  # both a and b were usable


def test_unreachable_redis_is_a_503_not_a_crash() -> None:
    from glm_proxy.store.redis import RedisStore, StoreUnavailable
    from tests.conftest import free_port

    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(StoreUnavailable) as caught:
        store.get("anything")
    assert caught.value.status == 503 and caught.value.headers["Retry-After"] == "5"
    assert store.ping() is False
    # The lock (single-flight token refresh, upload cache) and scan are no exception:
    # a raw redis error there became a 500 "internal error" from inside the answer job.
    with pytest.raises(StoreUnavailable), store.lock("refresh:x", blocking_timeout=1):
        pass
    with pytest.raises(StoreUnavailable):
        list(store.scan("at:"))
