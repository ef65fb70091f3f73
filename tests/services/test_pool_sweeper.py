"""The idle-conversation sweeper in-process: one round per interval, retries, give-up.

The cross-process behaviour (one deletion across three workers) is covered
in ``test_redis_cluster``; here a stub upstream records what would be deleted.
The sleeps are the scenario: each lets a conversation become idle (past ``idle``) on purpose.
"""

from __future__ import annotations

import time

from glm_proxy.accounts import Account
from glm_proxy.background.sweeper import MAX_ATTEMPTS, Sweeper
from glm_proxy.config import Settings
from glm_proxy.errors import UpstreamRetryable
from glm_proxy.pool import AccountPool, PoolEntry
from glm_proxy.store.memory import MemoryStore

POOLED = Account.from_token("rt-sweep-pooled")
OUTSIDER = Account.from_token("rt-sweep-outsider")


class StubUpstream:
    def __init__(self, failures: int = 0) -> None:
        self.deleted: list[tuple[str, str, str]] = []
        self.failures = failures

    def delete_conversation(self, account: Account, assistant_id: str, conversation_id: str):
        if self.failures:
            self.failures -= 1
            raise UpstreamRetryable("upstream failure (HTTP 500)")
        self.deleted.append((account.refresh_token, assistant_id, conversation_id))


def make(upstream: StubUpstream, idle: float = 0.1) -> tuple[Sweeper, AccountPool]:
    settings = Settings.from_mapping({"CONVERSATION_IDLE_TTL": str(idle), "SWEEP_INTERVAL": "60"})
    pool = AccountPool(settings, MemoryStore(), [PoolEntry(POOLED)])
    return Sweeper(settings, pool.store, pool, upstream), pool


def test_idle_conversations_are_deleted_with_the_right_account() -> None:
    upstream = StubUpstream()
    sweeper, pool = make(upstream)
    pool.conversations.remember(POOLED, "c-pooled", "assistant-a")
    pool.conversations.remember(OUTSIDER, "c-outsider", "assistant-b")
    assert sweeper.run_round() == 0  # nothing idle yet
    time.sleep(0.15)
    pool.store.delete("sweeper:round")  # next interval
    assert sweeper.run_round() == 2
    assert sorted(upstream.deleted) == [
        ("rt-sweep-outsider", "assistant-b", "c-outsider"),
        ("rt-sweep-pooled", "assistant-a", "c-pooled"),
    ]
    assert pool.conversations.owner("c-pooled") is None  # forgotten: continuing is a 404
    assert pool.store.get("sweep:conv:c-outsider") is None  # the token is gone with it


def test_one_round_per_interval() -> None:
    upstream = StubUpstream()
    sweeper, pool = make(upstream, idle=0.05)
    other = Sweeper(sweeper.settings, pool.store, pool, upstream)
    pool.conversations.remember(POOLED, "c1", "a")
    time.sleep(0.1)
    assert sweeper.run_round() == 1
    pool.conversations.remember(POOLED, "c2", "a")
    time.sleep(0.1)
    assert other.run_round() is None  # another process already had this round
    assert [d[2] for d in upstream.deleted] == ["c1"]


def test_failed_deletions_are_retried_then_given_up() -> None:
    upstream = StubUpstream(failures=1)
    sweeper, pool = make(upstream, idle=0.05)
    pool.conversations.remember(POOLED, "c-retry", "a")
    time.sleep(0.1)
    assert sweeper.sweep() == 0  # failed once: back in the index
    time.sleep(0.1)
    assert sweeper.sweep() == 1
    assert [d[2] for d in upstream.deleted] == ["c-retry"]

    upstream.failures = MAX_ATTEMPTS
    pool.conversations.remember(POOLED, "c-hopeless", "a")
    for _ in range(MAX_ATTEMPTS):
        time.sleep(0.1)
        sweeper.sweep()
    assert sweeper.failed == 1
    assert pool.store.zscore("sweep:idle", "c-hopeless") is None


def test_unknown_account_is_forgotten() -> None:
    upstream = StubUpstream()
    sweeper, pool = make(upstream, idle=0.05)
    pool.conversations.remember(POOLED, "c-gone", "a")
    sweeper.pool = AccountPool(sweeper.settings, pool.store, [])  # the account was removed
    time.sleep(0.1)
    assert sweeper.sweep() == 0
    assert upstream.deleted == [] and pool.conversations.owner("c-gone") is None


def test_a_continued_conversation_keeps_its_owner_as_long_as_it_was_first_kept() -> None:
    """Remembering and continuing use one TTL: never shorter than the idle sweeper's wait."""
    now = [1000.0]
    settings = Settings.from_mapping({"CONVERSATION_TTL": "100", "CONVERSATION_IDLE_TTL": "1000"})
    pool = AccountPool(settings, MemoryStore(clock=lambda: now[0]), [PoolEntry(POOLED)])
    book = pool.conversations
    assert book.ttl == 1000
    book.remember(POOLED, "c-kept", "assistant-a")
    now[0] += 900
    book.prolong("c-kept")
    now[0] += 900  # past CONVERSATION_TTL after the continuation, within the idle TTL
    assert book.owner("c-kept") == POOLED.fingerprint
    now[0] += 200
    assert book.owner("c-kept") is None
