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

Stopping: when the client left before the answer finished, the upstream is
still writing it; ``stop_stream`` with the answer's history id ends it before
the conversation is deleted (2026; ``GLM_STOP_ON_DISCONNECT``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import gevent
from gevent.pool import Group

from glm_proxy.accounts import Account
from glm_proxy.observability.metrics import CONVERSATION_DELETES, UPSTREAM_STOPS, labelled

log = logging.getLogger(__name__)

ATTEMPTS = 3


@dataclass
class _Batch:
    account: Account
    assistant_id: str
    ids: list[str] = field(default_factory=list)


class Janitor:
    def __init__(self, upstream, settings=None) -> None:
        self.upstream = upstream
        self.settings = settings if settings is not None else getattr(upstream, "settings", None)
        self._pending = Group()
        self._batches: dict[tuple[str, str], _Batch] = {}
        self.deleted = 0
        self.failed = 0
        self.stopped = 0

    def _setting(self, name: str, default):
        return getattr(self.settings, name, default) if self.settings is not None else default

    def delete_later(
        self,
        account: Account,
        assistant_id: str,
        conversation_id: str,
        stop_history_id: str | None = None,
    ) -> None:
        """Delete a conversation soon; stop its unfinished answer first when one is named."""
        if stop_history_id:
            self._pending.spawn(
                self._stop_then_delete, account, assistant_id, conversation_id, stop_history_id
            )
            return
        self._enqueue(account, assistant_id, conversation_id)

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
                return
            except Exception as exc:  # noqa: BLE001 - logged; cleanup must never crash
                if attempt == ATTEMPTS - 1:
                    self.failed += len(ids)
                    labelled(CONVERSATION_DELETES, "failed").inc(len(ids))
                    log.warning(
                        "could not delete %d conversation(s) (%s) of %s: %s",
                        len(ids),
                        ", ".join(ids[:5]),
                        account,
                        getattr(exc, "message", type(exc).__name__),
                    )
                    return
                gevent.sleep(0.5 * (attempt + 1))

    def join(self, timeout: float | None = None) -> None:
        self._pending.join(timeout=timeout)
