"""The conversation journal's two homes and the recovery sweep's decisions, in process.

The end-to-end crash tests are in ``test_journal_recovery.py``; these pin the
rules: who may delete an entry (orphaned, claimed once), what a failing entry
becomes (kept, retried later, with its error), and where the file lives.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from glm_proxy.accounts import Account
from glm_proxy.background.recovery import Recovery, backoff
from glm_proxy.errors import UpstreamError
from glm_proxy.store import keys
from glm_proxy.store.journal import Entry, FileJournal, StoreJournal, open_file
from glm_proxy.store.memory import MemoryStore
from glm_proxy.upstream.control import DeleteUnconfirmed

TTL = 30.0


def entry(cid: str = "c1", lease: str = "L1", due: float = 0.0, **extra) -> Entry:
    return Entry(cid, "fp1", "assistant", created=due - TTL, lease=lease, due=due, **extra)


@pytest.fixture(params=["file", "store"])
def journal(request, tmp_path):
    store = MemoryStore()
    if request.param == "file":
        made = open_file(store, TTL, str(tmp_path / "data"))
        yield made
        made.close()
    else:
        yield StoreJournal(store, TTL)


def test_an_entry_is_due_only_from_its_time_and_claimed_once(journal):
    journal.record(entry(due=100.0))
    assert journal.due(99.0) == []
    (found,) = journal.due(100.0)
    assert found.conversation_id == "c1" and found.owner == journal.instance
    assert journal.claim("c1", 100.0, 60.0)
    assert not journal.claim("c1", 100.0, 60.0)  # an overlapping round gets nothing
    journal.remove("c1")
    assert journal.entries() == []


def test_a_live_lease_keeps_the_entry_alive_until_it_expires(journal):
    journal.store.slot_acquire(keys.lease("fp1"), "L1", 1, TTL)
    mine = entry(owner=journal.instance)
    now = time.time()
    until = journal.alive_until(mine, now)
    assert until is not None and now < until <= now + TTL + 1
    journal.store.slot_release(keys.lease("fp1"), "L1")
    assert journal.alive_until(mine, now) is None


def test_hand_over_moves_the_due_time_and_never_revives_a_removed_entry(journal):
    journal.record(entry(due=100.0))
    journal.hand_over(["c1", "gone"], 500.0)
    assert journal.due(499.0) == []
    assert [e.conversation_id for e in journal.due(500.0)] == ["c1"]


def test_the_file_survives_its_process_and_another_owner_counts_by_its_beat(tmp_path):
    first = open_file(MemoryStore(), TTL, str(tmp_path))
    first.record(entry(due=100.0))
    first.close()
    second = open_file(MemoryStore(), TTL, str(tmp_path))  # the restarted worker
    (found,) = second.due(100.0)
    now = time.time()
    assert second.alive_until(found, now) is not None  # the first beat only just now
    assert second.alive_until(found, now + TTL + 1) is None  # it stopped beating: orphaned
    assert (tmp_path / "journal.sqlite3").stat().st_mode & 0o077 == 0


def test_an_unwritable_data_dir_falls_back_to_memory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    made = open_file(MemoryStore(), TTL, str(blocker / "data"))
    assert isinstance(made, FileJournal) and made.path == ":memory:"


class Upstream:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.calls: list[str] = []

    def delete_conversation(self, account: Account, assistant_id: str, cid: str) -> str:
        self.calls.append(cid)
        if self.error is not None:
            raise self.error
        return "bulk"


def recovery(journal, upstream) -> Recovery:
    settings = SimpleNamespace(sweep_interval=10.0, lease_ttl=TTL, glm_assistant_id="a")
    pool = SimpleNamespace(account_by_fingerprint=lambda fp: Account("rt-x", fp))
    return Recovery(settings, journal.store, pool, upstream, journal)


def test_the_sweep_deletes_orphans_and_leaves_running_answers(journal):
    journal.store.slot_acquire(keys.lease("fp1"), "running", 2, TTL)
    journal.record(entry("orphan", lease="dead", due=1.0))
    journal.record(entry("running", lease="running", due=1.0))
    upstream = Upstream()
    now = time.time()
    assert recovery(journal, upstream).sweep(now) == 1
    assert upstream.calls == ["orphan"]
    (left,) = journal.entries()
    assert left.conversation_id == "running" and left.due > now  # looked at again later


@pytest.mark.parametrize(
    "error",
    [DeleteUnconfirmed("no such path"), UpstreamError("upstream refused the request")],
)
def test_a_failing_entry_is_kept_and_retried_with_a_growing_backoff(journal, error):
    journal.record(entry(lease="dead", due=1.0))
    upstream = Upstream(error)
    sweep = recovery(journal, upstream)
    now = time.time()
    sweep.sweep(now)
    (kept,) = journal.entries()
    assert kept.attempts == 1 and error.message in kept.last_error
    assert kept.due == pytest.approx(now + backoff(1, 10.0))
    assert sweep.sweep(now) == 0 and upstream.calls == ["c1"]  # not due yet: not tried
    sweep.sweep(kept.due)
    (kept,) = journal.entries()
    assert kept.attempts == 2 and kept.due - now > backoff(1, 10.0)
    assert backoff(2, 10.0) == 2 * backoff(1, 10.0) and backoff(40, 10.0) == 3600.0


def test_an_entry_whose_account_is_gone_is_kept_with_the_reason(journal):
    journal.record(entry(lease="dead", due=1.0))
    sweep = recovery(journal, Upstream())
    sweep.pool = SimpleNamespace(account_by_fingerprint=lambda fp: None)
    sweep.sweep(time.time())
    (kept,) = journal.entries()
    assert "no longer configured" in kept.last_error
    assert "token" not in kept.public() and kept.public()["passthrough"] is False


def test_a_kept_conversation_the_idle_sweeper_gives_up_on_goes_to_the_journal() -> None:
    from glm_proxy.background.sweeper import MAX_ATTEMPTS, Sweeper
    from glm_proxy.config import Settings
    from glm_proxy.pool import AccountPool, PoolEntry

    account = Account.from_token("rt-journal-kept")
    settings = Settings.from_mapping({"CONVERSATION_IDLE_TTL": "0.01", "SWEEP_INTERVAL": "60"})
    pool = AccountPool(settings, MemoryStore(), [PoolEntry(account)])
    sweeper = Sweeper(settings, pool.store, pool, Upstream(UpstreamError("database error")))
    sweeper.journal = StoreJournal(pool.store, TTL)
    pool.conversations.remember(account, "c-kept", "assistant")
    pool.store.zadd(keys.SWEEP_IDLE, {"c-kept": 0.0})  # long idle
    for _ in range(MAX_ATTEMPTS):
        sweeper.sweep()
        pool.store.zadd(keys.SWEEP_IDLE, {"c-kept": 0.0}, only_existing=True)
    (kept,) = sweeper.journal.entries()
    assert kept.conversation_id == "c-kept" and kept.attempts == MAX_ATTEMPTS
    assert "database error" in kept.last_error and kept.account == account.fingerprint


def test_the_janitor_holds_what_it_deletes_and_renews_the_hold_until_done() -> None:
    import gevent
    from gevent.event import Event

    from glm_proxy.background.janitor import Janitor

    release = Event()

    class SlowUpstream:
        def delete_conversation(self, account, assistant_id, cid):
            release.wait(10)
            return "bulk"

    settings = SimpleNamespace(lease_ttl=0.3, glm_delete_batch_window=0.0, glm_delete_batch_max=50)
    journal = StoreJournal(MemoryStore(), 0.3)
    journal.record(entry("c-held", due=time.time() + 60))
    janitor = Janitor(SlowUpstream(), settings, journal=journal)
    janitor.delete_later(Account.from_token("rt-held"), "assistant", "c-held", journalled=True)
    first = journal.entries()[0].due
    assert first <= time.time() + 0.3  # a dead janitor's hold lapses within LEASE_TTL
    deadline = time.monotonic() + 10
    while journal.entries()[0].due <= first and time.monotonic() < deadline:
        gevent.sleep(0.05)  # the renewal moves it on while the delete runs
    assert journal.entries()[0].due > first
    release.set()
    janitor.join(5)
    assert journal.entries() == [] and not janitor._held


def test_a_kept_conversation_let_go_is_journalled_until_its_delete_is_confirmed() -> None:
    from glm_proxy.background.janitor import Janitor

    settings = SimpleNamespace(lease_ttl=30.0, glm_delete_batch_window=0.0)
    journal = StoreJournal(MemoryStore(), 30.0)
    failing = Janitor(Upstream(DeleteUnconfirmed("no such path")), settings, journal=journal)
    outsider = Account.from_token("rt-journal-outsider")
    failing.delete_kept(outsider, "assistant", "c-let-go", pooled=False)
    failing.join(5)
    (kept,) = journal.entries()  # not confirmed: the recovery sweep has it now
    assert kept.conversation_id == "c-let-go" and kept.token == "rt-journal-outsider"
    assert kept.due <= time.time() and not failing._held
    working = Janitor(Upstream(), settings, journal=journal)
    working.delete_kept(outsider, "assistant", "c-let-go", pooled=True)
    working.join(5)
    assert journal.entries() == []


def test_one_round_recovers_more_than_one_batch(journal):
    for i in range(250):
        journal.record(entry(f"c{i}", lease="dead", due=1.0))
    journal.record(entry("other", lease="dead", due=1.0))
    assert journal.claim("other", time.time(), 60.0)  # another process deletes this one
    upstream = Upstream()
    assert recovery(journal, upstream).sweep(time.time()) == 250
    assert "other" not in upstream.calls and len(set(upstream.calls)) == 250


def test_a_batch_larger_than_one_statement_takes_is_handed_over_and_removed(journal):
    ids = [f"c{i}" for i in range(1203)]
    for cid in ids:
        journal.record(entry(cid, due=100.0))
    journal.hand_over(ids[:1201], 500.0)
    assert sorted(e.conversation_id for e in journal.due(100.0, 5000)) == ["c1201", "c1202"]
    journal.remove(*ids[2:])
    assert sorted(e.conversation_id for e in journal.entries(5000)) == ["c0", "c1"]


def test_a_fresh_entry_is_held_as_it_stands_and_still_renewed() -> None:
    import gevent
    from gevent.event import Event

    from glm_proxy.background.janitor import Janitor

    release, writes = Event(), []

    class SlowUpstream:
        def delete_conversations(self, account, assistant_id, ids):
            release.wait(10)
            return "bulk"

    class Counting(StoreJournal):
        def hand_over(self, ids, until):
            writes.append(list(ids))
            super().hand_over(ids, until)

    settings = SimpleNamespace(lease_ttl=0.6, glm_delete_batch_window=0.0, glm_delete_batch_max=50)
    journal = Counting(MemoryStore(), 0.6)
    janitor = Janitor(SlowUpstream(), settings, journal=journal)
    account = Account.from_token("rt-fresh")
    fresh = time.time() + 0.6  # as an answer writes it when its conversation begins
    journal.record(entry("c-fresh", due=fresh))
    janitor.delete_later(account, "assistant", "c-fresh", journalled=True, journal_due=fresh)
    assert writes == [] and journal.entries()[0].due == fresh  # lapses within LEASE_TTL
    stale = time.time() + 0.1  # the first renewal may come too late for it
    journal.record(entry("c-stale", due=stale))
    janitor.delete_later(account, "assistant", "c-stale", journalled=True, journal_due=stale)
    assert writes == [["c-stale"]]
    deadline = time.monotonic() + 10
    while journal.entries()[0].due <= fresh and time.monotonic() < deadline:
        gevent.sleep(0.05)  # the renewal moves both on while the deletes run
    assert all(e.due > fresh for e in journal.entries())
    release.set()
    janitor.join(5)
    assert journal.entries() == [] and not janitor._held
