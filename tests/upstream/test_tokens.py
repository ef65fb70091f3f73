"""The access-token cache on its own: single flight, rotation write-back, invalidation.

The refresh call is a stub, so these need no upstream; the single-flight test
runs on both stores because the lock lives in the store.
"""

from __future__ import annotations

import threading
import time

import pytest

from glm_proxy.accounts import Account
from glm_proxy.config import Settings
from glm_proxy.errors import RefreshTokenExpired, UpstreamBusy
from glm_proxy.store import keys
from glm_proxy.store.memory import MemoryStore
from glm_proxy.upstream.tokens import TokenCache, TokenGrant
from tests.support.redis_fixture import redis_server, redis_url  # noqa: F401

ACCOUNT = Account.from_token("rt-tokens-original")


class StubRefresh:
    """Counts refresh calls; answers with numbered access tokens and an optional rotation."""

    def __init__(self, rotate_to: str | None = None, delay: float = 0.0) -> None:
        self.rotate_to = rotate_to
        self.delay = delay
        self.calls: list[str] = []
        self.error: Exception | None = None
        self._lock = threading.Lock()

    def __call__(self, refresh_token: str, account: Account | None = None) -> TokenGrant:
        with self._lock:
            self.calls.append(refresh_token)
            n = len(self.calls)
        if self.delay:
            time.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return TokenGrant(f"at-{n}", self.rotate_to, None)


def make_cache(store=None, rotate_to=None, delay=0.0, **settings):
    refresh = StubRefresh(rotate_to, delay)
    values = {"FOLLOW_TOKEN_ROTATION": "true", **settings}
    cache = TokenCache(Settings.from_mapping(values), store or MemoryStore(), refresh)
    return cache, refresh


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        yield MemoryStore()
        return
    from glm_proxy.store.redis import RedisStore

    target = request.getfixturevalue("redis_url")
    redis_store = RedisStore.from_url(target.url, prefix=target.prefix)
    yield redis_store
    redis_store.close()


def test_concurrent_callers_cause_one_refresh(store) -> None:
    cache, refresh = make_cache(store, delay=0.2)
    start = threading.Barrier(8)
    got: list[str] = []

    def caller() -> None:
        start.wait()
        got.append(cache.access_token(ACCOUNT))

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert refresh.calls == [ACCOUNT.refresh_token]
    assert got == ["at-1"] * 8
    assert store.get(keys.access_token(ACCOUNT.fingerprint)) == "at-1"


def test_a_cached_token_is_used_until_invalidated() -> None:
    cache, refresh = make_cache()
    assert cache.access_token(ACCOUNT) == "at-1"
    assert cache.access_token(ACCOUNT) == "at-1"
    assert len(refresh.calls) == 1
    cache.invalidate(ACCOUNT)
    assert cache.store.get(keys.access_token(ACCOUNT.fingerprint)) is None
    assert cache.access_token(ACCOUNT) == "at-2"
    assert len(refresh.calls) == 2


def test_a_rotation_is_written_back_and_used_next() -> None:
    cache, refresh = make_cache(rotate_to="rt-tokens-rotated")
    seen: list[tuple[str, str]] = []
    cache.on_rotation = lambda account, new: seen.append((account.fingerprint, new))
    cache.access_token(ACCOUNT)
    assert cache.store.get(keys.rotated_token(ACCOUNT.fingerprint)) == "rt-tokens-rotated"
    assert cache.refresh_token(ACCOUNT) == "rt-tokens-rotated"
    assert seen == [(ACCOUNT.fingerprint, "rt-tokens-rotated")]
    # The next refresh uses the new token; the upstream returning it again is no rotation.
    cache.invalidate(ACCOUNT)
    cache.access_token(ACCOUNT)
    assert refresh.calls == [ACCOUNT.refresh_token, "rt-tokens-rotated"]
    assert len(seen) == 1


def test_a_rotation_is_ignored_unless_followed() -> None:
    cache, refresh = make_cache(rotate_to="rt-tokens-rotated", FOLLOW_TOKEN_ROTATION="false")
    seen: list = []
    cache.on_rotation = lambda account, new: seen.append(new)
    cache.store.set(keys.rotated_token(ACCOUNT.fingerprint), "rt-stale")
    cache.access_token(ACCOUNT)
    assert refresh.calls == [ACCOUNT.refresh_token]  # a stored rotation is not used either
    assert cache.store.get(keys.rotated_token(ACCOUNT.fingerprint)) == "rt-stale"
    assert seen == []


def test_check_follows_a_rotation_through_the_same_write_back() -> None:
    cache, refresh = make_cache(rotate_to="rt-checked-rotated")
    seen: list[tuple[str, str]] = []
    cache.on_rotation = lambda account, new: seen.append((account.fingerprint, new))
    assert cache.check("rt-checked") is True
    checked = Account.from_token("rt-checked")
    assert cache.refresh_token(checked) == "rt-checked-rotated"
    assert seen == [(checked.fingerprint, "rt-checked-rotated")]
    assert cache.store.get(keys.access_token(checked.fingerprint)) is None  # nothing cached


def test_check_says_dead_for_a_rejected_token_and_raises_other_errors() -> None:
    cache, refresh = make_cache()
    refresh.error = RefreshTokenExpired("log in again")
    assert cache.check("rt-dead") is False
    refresh.error = UpstreamBusy("busy")
    with pytest.raises(UpstreamBusy):
        cache.check("rt-busy")


def test_a_failed_refresh_caches_nothing_and_releases_the_lock() -> None:
    cache, refresh = make_cache()
    refresh.error = UpstreamBusy("busy")
    with pytest.raises(UpstreamBusy):
        cache.access_token(ACCOUNT)
    refresh.error = None
    assert cache.access_token(ACCOUNT) == "at-2"
