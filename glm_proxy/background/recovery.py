"""Deleting what a dead worker or replica left upstream (the journal's recovery sweep).

A worker killed mid-stream (``kill -9``, the OOM killer, a ``WORKER TIMEOUT``,
a replica that vanished) never runs its cleanup; its conversations stay in
the accounts' chat lists. The journal (``store.journal``) remembers each one
until its delete is confirmed; this sweep deletes the entries whose owner can
no longer be working on them (lease expired, or the owning process stopped
beating), by the same delete calls and fallbacks as every other delete, and
counts the result the same truthful way (``deleted``, ``unconfirmed``,
``failed``).

Every worker runs the loop; each round runs once across workers and replicas
(the process that creates ``journal:round`` for the round, as the idle
sweeper does), and each entry is claimed before its delete, so overlapping
rounds never delete twice. A delete that fails stays in the journal, retried
with a growing backoff and listed by ``GET /admin/journal``: never dropped.
"""

from __future__ import annotations

import logging
import os
import random
import time

import gevent

from glm_proxy.accounts import Account
from glm_proxy.errors import GLMProxyError
from glm_proxy.observability.metrics import CONVERSATION_DELETES, labelled
from glm_proxy.store import keys
from glm_proxy.store.journal import Entry, Journal

log = logging.getLogger(__name__)

BATCH = 100
BACKOFF_MAX = 3600.0  # a failing entry is tried at least hourly
CLAIM_HOLD = 120.0  # seconds an entry stays claimed should the claimer die mid-delete


def backoff(attempts: int, interval: float) -> float:
    """Seconds until the next try after ``attempts`` failed ones (doubling, capped)."""
    return min(BACKOFF_MAX, max(interval, 5.0) * 2 ** max(0, attempts - 1))


def delete_result(exc: BaseException) -> str:
    """``unconfirmed`` when no delete call confirmed it and one found no such path."""
    return "unconfirmed" if getattr(exc, "code", "") == "delete_unconfirmed" else "failed"


class Recovery:
    def __init__(self, settings, store, pool, upstream, journal: Journal) -> None:
        self.settings = settings
        self.store = store
        self.pool = pool
        self.upstream = upstream
        self.journal = journal
        self.deleted = 0
        self._greenlets: list[gevent.Greenlet] = []

    @property
    def interval(self) -> float:
        return self.settings.sweep_interval

    def start(self) -> None:
        if self._greenlets:
            return
        if self.journal.backend == "file":  # only the file journal counts owners by beats
            self._greenlets.append(gevent.spawn(self._beat_loop))
        if self.interval > 0:
            self._greenlets.append(gevent.spawn(self._loop))

    def stop(self) -> None:
        for greenlet in self._greenlets:
            greenlet.kill(block=False)
        self._greenlets = []

    def _beat_loop(self) -> None:
        pause = max(0.05, self.settings.lease_ttl / 3)
        while True:
            try:
                self.journal.beat()
            except Exception as exc:  # noqa: BLE001 - the next beat tries again
                log.warning("journal heartbeat failed: %s", type(exc).__name__)
            gevent.sleep(pause)

    def _loop(self) -> None:
        gevent.sleep(random.uniform(0, min(self.interval, 5.0)))  # replicas not in step
        while True:
            try:
                self.run_round()
            except GLMProxyError as exc:  # e.g. Redis is down: one line, not a traceback
                log.warning("journal recovery skipped: %s", exc.code or type(exc).__name__)
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("journal recovery failed")
            gevent.sleep(self.interval)

    def run_round(self) -> int | None:
        """Recover once if no other process has this round; the number deleted, or None."""
        owner = f"{os.getpid()}:{id(self)}"
        ttl = max(0.05, self.interval * 0.9)
        if not self.store.set_if_absent(keys.JOURNAL_ROUND, owner, ttl=ttl):
            return None
        return self.sweep()

    def sweep(self, now: float | None = None) -> int:
        """Delete every due, orphaned journal entry; the number confirmed deleted."""
        now = time.time() if now is None else now
        deleted = 0
        seen: set[str] = set()
        while True:  # batch after batch, until one brings nothing new (a crash leaves many)
            batch = [e for e in self.journal.due(now, BATCH) if e.conversation_id not in seen]
            for entry in batch:
                seen.add(entry.conversation_id)
                deleted += self._recover(entry, now)
            if not batch:
                return deleted

    def _recover(self, entry: Entry, now: float) -> int:
        alive = self.journal.alive_until(entry, now)
        if alive is not None:  # its answer is still running somewhere: look again then
            # Only the due time, and only if the entry still exists: the answer may
            # have ended and its delete been confirmed since it was read.
            self.journal.hand_over([entry.conversation_id], alive)
            return 0
        if not self.journal.claim(entry.conversation_id, now, CLAIM_HOLD):
            return 0  # another process deletes it
        return int(self._delete(entry, now))

    def _account(self, entry: Entry) -> Account | None:
        account = self.pool.account_by_fingerprint(entry.account)
        if account is None and entry.token:
            account = Account(entry.token, entry.account)
        return account

    def _delete(self, entry: Entry, now: float) -> bool:
        account = self._account(entry)
        if account is None:
            return self._failed(entry, now, "the account is no longer configured", "failed")
        try:
            method = self.upstream.delete_conversation(
                account, entry.assistant_id or self.settings.glm_assistant_id, entry.conversation_id
            )
        except GLMProxyError as exc:
            return self._failed(entry, now, f"{exc.code}: {exc.message}"[:300], delete_result(exc))
        self.journal.remove(entry.conversation_id)
        labelled(CONVERSATION_DELETES, "deleted").inc()
        self.deleted += 1
        log.info(
            "deleted conversation %s of %s left by a worker that ended (via %s)",
            entry.conversation_id,
            account,
            method,
        )
        return True

    def _failed(self, entry: Entry, now: float, error: str, result: str) -> bool:
        entry.attempts += 1
        entry.last_error = error
        entry.due = now + backoff(entry.attempts, self.interval)
        self.journal.reschedule(entry)
        labelled(CONVERSATION_DELETES, result).inc()
        log.warning(
            "could not delete journalled conversation %s (%s, try %d, next in %.0fs): %s",
            entry.conversation_id,
            result,
            entry.attempts,
            entry.due - now,
            error,
        )
        return False


def init_app(app) -> None:
    from glm_proxy.store.journal import FileJournal, open_journal

    settings, store = app.extensions["glm_settings"], app.extensions["glm_store"]
    if app.config.get("TESTING") and not store.shares_across_processes:
        journal: Journal = FileJournal(store, settings.lease_ttl, ":memory:")  # no stray file
    else:
        journal = open_journal(settings, store)
    recovery = Recovery(
        settings,
        store,
        app.extensions["glm_pool"],
        app.extensions["glm_upstream"],
        journal,
    )
    app.extensions["glm_journal"] = journal
    idle_sweeper = app.extensions.get("glm_sweeper")
    if idle_sweeper is not None:
        idle_sweeper.journal = journal  # kept conversations it cannot delete come here
    app.extensions["glm_recovery"] = recovery
    if not app.config.get("TESTING"):
        recovery.start()
