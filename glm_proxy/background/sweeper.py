"""Deleting kept conversations once they sit idle ("no trace left", eventually).

A client may keep a conversation for native multi-turn (``keep_conversation``
or ``DELETE_CONVERSATIONS=false``). The sweeper deletes it upstream after
``CONVERSATION_IDLE_TTL`` seconds without a new turn.

Every worker of every replica runs a sweeper greenlet, but each round runs
once across all of them: a round starts only for the process that creates the
store key ``sweeper:round`` (it expires just before the next round is due).
Each conversation is also claimed atomically (removed from the idle index by
one process only), so even two overlapping rounds never delete twice.
"""

from __future__ import annotations

import logging
import os
import random
import time

import gevent

from glm_proxy.accounts import Account
from glm_proxy.errors import GLMProxyError
from glm_proxy.store import keys
from glm_proxy.store.journal import Entry

log = logging.getLogger(__name__)

ROUND_KEY = keys.SWEEPER_ROUND
MAX_ATTEMPTS = 3
BATCH = 100


class Sweeper:
    def __init__(self, settings, store, pool, upstream) -> None:
        self.settings = settings
        self.store = store
        self.pool = pool
        self.book = pool.conversations
        self.upstream = upstream
        self.deleted = 0
        self.failed = 0
        self.journal = None  # set by background.recovery: where a delete given up on goes
        self._greenlet: gevent.Greenlet | None = None

    @property
    def enabled(self) -> bool:
        return self.settings.conversation_idle_ttl > 0 and self.settings.sweep_interval > 0

    def start(self) -> None:
        if self.enabled and self._greenlet is None:
            self._greenlet = gevent.spawn(self._loop)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def _loop(self) -> None:
        interval = self.settings.sweep_interval
        gevent.sleep(random.uniform(0, min(interval, 5.0)))  # replicas do not start in step
        while True:
            try:
                self.run_round()
            except GLMProxyError as exc:  # e.g. Redis is down: one line, not a traceback a minute
                log.warning("conversation sweep skipped: %s", exc.code or type(exc).__name__)
            except Exception:  # noqa: BLE001 - the next round tries again
                log.exception("conversation sweep failed")
            gevent.sleep(interval)

    def run_round(self) -> int | None:
        """Sweep once if no other process has this round; the number deleted, or None."""
        owner = f"{os.getpid()}:{id(self)}"
        ttl = max(0.05, self.settings.sweep_interval * 0.9)
        if not self.store.set_if_absent(ROUND_KEY, owner, ttl=ttl):
            return None
        return self.sweep()

    def sweep(self) -> int:
        """Delete every kept conversation idle past the TTL (claimed one by one)."""
        deleted = 0
        while True:
            idle = self.book.idle(BATCH)
            if not idle:
                return deleted
            for conversation_id in idle:
                record = self.book.claim(conversation_id)
                if record is not None and self._delete(conversation_id, record):
                    deleted += 1
            if len(idle) < BATCH:
                return deleted

    def _account(self, record: dict) -> Account | None:
        fp = record.get("account") or ""
        account = self.pool.account_by_fingerprint(fp)
        if account is None and record.get("token"):
            account = Account(record["token"], fp)
        return account

    def _delete(self, conversation_id: str, record: dict) -> bool:
        account = self._account(record)
        if account is None:
            log.warning(
                "idle conversation %s: its account %s is no longer configured; forgetting it",
                conversation_id,
                record.get("account"),
            )
            self.book.forget(conversation_id)
            return False
        try:
            self.upstream.delete_conversation(
                account,
                record.get("assistant_id") or self.settings.glm_assistant_id,
                conversation_id,
            )
        except GLMProxyError as exc:
            attempts = int(record.get("attempts", 0)) + 1
            if attempts >= MAX_ATTEMPTS or exc.code == "refresh_token_expired":
                log.warning(
                    "idle conversation %s of %s: %d deletes failed (%s); the journal's "
                    "recovery sweep retries it with a backoff",
                    conversation_id,
                    account,
                    attempts,
                    exc.code,
                )
                self.failed += 1
                self._to_journal(conversation_id, record, attempts, exc)
                self.book.forget(conversation_id)
            else:
                self.book.requeue(conversation_id, record)
            return False
        self.book.forget(conversation_id)
        self.deleted += 1
        log.info("deleted idle conversation %s of %s", conversation_id, account)
        return True

    def _to_journal(
        self, conversation_id: str, record: dict, attempts: int, exc: GLMProxyError
    ) -> None:
        """Hand a delete the sweeper gives up on to the journal: retried, listed, never lost."""
        if self.journal is None:
            return
        now = time.time()
        self.journal.record(
            Entry(
                conversation_id=conversation_id,
                account=record.get("account") or "",
                assistant_id=record.get("assistant_id") or self.settings.glm_assistant_id,
                created=now,
                due=now + self.settings.sweep_interval,
                attempts=attempts,
                last_error=f"{exc.code}: {exc.message}"[:300],
                token=record.get("token") or "",
            )
        )


def init_app(app) -> None:
    sweeper = Sweeper(
        app.extensions["glm_settings"],
        app.extensions["glm_store"],
        app.extensions["glm_pool"],
        app.extensions["glm_upstream"],
    )
    app.extensions["glm_sweeper"] = sweeper
    if not app.config.get("TESTING"):
        sweeper.start()
