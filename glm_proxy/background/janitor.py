"""Deleting the upstream conversations the proxy creates ("no trace left").

Deletion runs in the background so it never delays the client, and never
fails a request: every outcome is logged and counted. The janitor keeps track
of pending work so a graceful shutdown can wait for it instead of leaving
conversations behind.

Batching: the 2026 web app deletes through ``bulk_delete`` (a list of ids).
Conversations of one account and assistant that finish within
``GLM_DELETE_BATCH_WINDOW`` seconds go out in one call (at most
``GLM_DELETE_BATCH_MAX`` ids), which under load turns hundreds of delete calls
into a few. The calls and their fallbacks are ``upstream.control.delete_conversations``.

Journal: each conversation is in the crash-safe journal (``store.journal``)
until its delete is confirmed; the janitor removes it then. A delete the
janitor could not confirm stays there, and the recovery sweep
(``background.recovery``) tries again with a backoff; a delete no call confirmed
while some answered as a missing path counts as ``unconfirmed``, not deleted.

Stopping: when the client left before the answer finished, the upstream is
still writing it; ``stop_stream`` with the answer's history id ends it before
the conversation is deleted (2026; ``GLM_STOP_ON_DISCONNECT``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import gevent
from gevent.pool import Group

from glm_proxy.accounts import Account
from glm_proxy.observability.metrics import CONVERSATION_DELETES, UPSTREAM_STOPS, labelled
from glm_proxy.store.journal import Entry

log = logging.getLogger(__name__)

ATTEMPTS = 3


@dataclass
class _Batch:
    account: Account
    assistant_id: str
    ids: list[str] = field(default_factory=list)


class Janitor:
    def __init__(self, upstream, settings=None, journal=None) -> None:
        self.upstream = upstream
        self.settings = settings if settings is not None else getattr(upstream, "settings", None)
        self.journal = journal
        self._held: set[str] = set()  # journalled conversations this process is deleting
        self._renewer: gevent.Greenlet | None = None
        self._pending = Group()
        self._batches: dict[tuple[str, str], _Batch] = {}
        self.deleted = 0
        self.failed = 0
        self.stopped = 0

    def _setting(self, name: str, default):
        return getattr(self.settings, name, default) if self.settings is not None else default

    @property
    def hold_ttl(self) -> float:
        return float(self._setting("lease_ttl", 30.0))

    def _hold(self, conversation_id: str, due: float | None = None) -> None:
        """This process deletes the conversation: the recovery sweep leaves it alone.

        Like a lease, the hold lasts ``LEASE_TTL`` and is renewed every third of
        it until the delete ends, so a worker that dies meanwhile leaves it to
        the sweep within ``LEASE_TTL``, and a living one is never raced.

        ``due``: the entry's due time, when the caller wrote it. One that lapses
        within ``LEASE_TTL`` but not before two thirds of it is held as it stands:
        the first renewal comes within a third, so nothing is written now (an
        answer that ended soon after its conversation began, the usual case).
        """
        now = time.time()
        ttl = self.hold_ttl
        if due is None or not now + ttl * 2 / 3 <= due <= now + ttl:
            self._journalled("hand_over", [conversation_id], now + ttl)
        self._held.add(conversation_id)
        if self._renewer is None or self._renewer.dead:
            self._renewer = gevent.spawn(self._renew_holds)

    def _renew_holds(self) -> None:
        while self._held:
            gevent.sleep(max(0.05, self.hold_ttl / 3))
            if self._held:
                self._journalled("hand_over", list(self._held), time.time() + self.hold_ttl)

    def _journalled(self, action: str, *args) -> None:
        if self.journal is None:
            return
        try:
            getattr(self.journal, action)(*args)
        except Exception as exc:  # noqa: BLE001 - the recovery sweep still has the entry
            log.warning("conversation journal %s failed: %s", action, type(exc).__name__)

    def delete_later(
        self,
        account: Account,
        assistant_id: str,
        conversation_id: str,
        stop_history_id: str | None = None,
        journalled: bool = False,
        journal_due: float | None = None,
    ) -> None:
        """Delete a conversation soon; stop its unfinished answer first when one is named.

        ``journalled``: the conversation is in the journal; it is held (see
        ``_hold``) from now until its delete is confirmed or given up.
        ``journal_due``: the due time its entry was written with, if known.
        """
        if journalled:
            self._hold(conversation_id, journal_due)
        if stop_history_id:
            self._pending.spawn(
                self._stop_then_delete, account, assistant_id, conversation_id, stop_history_id
            )
            return
        self._enqueue(account, assistant_id, conversation_id)

    def delete_kept(
        self, account: Account, assistant_id: str, conversation_id: str, *, pooled: bool
    ) -> None:
        """Delete a kept conversation the client let go of, journalled until confirmed."""
        journalled = False
        due = None
        if self.journal is not None:
            now = time.time()
            due = now + self.hold_ttl
            try:
                self.journal.record(
                    Entry(
                        conversation_id=conversation_id,
                        account=account.fingerprint,
                        assistant_id=assistant_id,
                        created=now,
                        due=due,
                        token="" if pooled else account.refresh_token,
                    )
                )
                journalled = True
            except Exception as exc:  # noqa: BLE001 - the delete still goes ahead
                log.warning("conversation journal record failed: %s", type(exc).__name__)
        self.delete_later(
            account, assistant_id, conversation_id, journalled=journalled, journal_due=due
        )

    def stop_later(self, account: Account, history_id: str) -> None:
        """Stop an unfinished answer whose conversation is kept."""
        self._pending.spawn(self._stop, account, history_id)

    def _stop_then_delete(
        self, account: Account, assistant_id: str, conversation_id: str, history_id: str
    ) -> None:
        self._stop(account, history_id)
        self._enqueue(account, assistant_id, conversation_id)

    def _stop(self, account: Account, history_id: str) -> None:
        if not self._setting("glm_stop_on_disconnect", False):
            return
        try:
            self.upstream.stop_stream(account, history_id)
            self.stopped += 1
            labelled(UPSTREAM_STOPS, "ok").inc()
        except Exception as exc:  # noqa: BLE001 - logged; cleanup must never crash
            labelled(UPSTREAM_STOPS, "failed").inc()
            log.info(
                "could not stop answer %s of %s: %s",
                history_id,
                account,
                getattr(exc, "message", type(exc).__name__),
            )

    def _enqueue(self, account: Account, assistant_id: str, conversation_id: str) -> None:
        key = (account.fingerprint, assistant_id)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _Batch(account, assistant_id)
            self._pending.spawn(self._flush, key)
        batch.ids.append(conversation_id)

    def _flush(self, key: tuple[str, str]) -> None:
        window = float(self._setting("glm_delete_batch_window", 0.0))
        if window > 0:
            gevent.sleep(window)
        batch = self._batches.pop(key, None)
        if batch is None:
            return
        size = max(1, int(self._setting("glm_delete_batch_max", 50)))
        for start in range(0, len(batch.ids), size):
            self._delete(batch.account, batch.assistant_id, batch.ids[start : start + size])

    def _delete(self, account: Account, assistant_id: str, ids: list[str]) -> None:
        for attempt in range(ATTEMPTS):
            try:
                if len(ids) == 1:
                    self.upstream.delete_conversation(account, assistant_id, ids[0])
                else:
                    self.upstream.delete_conversations(account, assistant_id, ids)
                self.deleted += len(ids)
                labelled(CONVERSATION_DELETES, "deleted").inc(len(ids))
                self._journalled("remove", *ids)
                self._held.difference_update(ids)
                return
            except Exception as exc:  # noqa: BLE001 - logged; cleanup must never crash
                unconfirmed = getattr(exc, "code", "") == "delete_unconfirmed"
                if attempt == ATTEMPTS - 1 or unconfirmed:
                    result = "unconfirmed" if unconfirmed else "failed"
                    self.failed += len(ids)
                    labelled(CONVERSATION_DELETES, result).inc(len(ids))
                    log.warning(
                        "could not delete %d conversation(s) (%s) of %s (%s; the recovery "
                        "sweep tries again): %s",
                        len(ids),
                        ", ".join(ids[:5]),
                        account,
                        result,
                        getattr(exc, "message", type(exc).__name__),
                    )
                    # The recovery sweep takes over at its next round.
                    self._held.difference_update(ids)
                    self._journalled("hand_over", ids, time.time())
                    return
                gevent.sleep(0.5 * (attempt + 1))

    def join(self, timeout: float | None = None) -> None:
        self._pending.join(timeout=timeout)
