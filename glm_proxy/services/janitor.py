"""Deleting the upstream conversations the proxy creates ("no trace left").

Deletion runs in the background so it never delays the client, and the
janitor keeps track of pending deletions so a graceful shutdown can wait for
them instead of leaving conversations behind.
"""

from __future__ import annotations

import logging

import gevent
from gevent.pool import Group

from glm_proxy.accounts import Account
from glm_proxy.metrics import CONVERSATION_DELETES

log = logging.getLogger(__name__)


class Janitor:
    def __init__(self, upstream) -> None:
        self.upstream = upstream
        self._pending = Group()
        self.deleted = 0
        self.failed = 0

    def delete_later(self, account: Account, assistant_id: str, conversation_id: str) -> None:
        self._pending.spawn(self._delete, account, assistant_id, conversation_id)

    def _delete(self, account: Account, assistant_id: str, conversation_id: str) -> None:
        for attempt in range(3):
            try:
                self.upstream.delete_conversation(account, assistant_id, conversation_id)
                self.deleted += 1
                CONVERSATION_DELETES.labels("deleted").inc()
                return
            except Exception as exc:  # noqa: BLE001 - logged; cleanup must never crash
                if attempt == 2:
                    self.failed += 1
                    CONVERSATION_DELETES.labels("failed").inc()
                    log.warning(
                        "could not delete conversation %s of %s: %s",
                        conversation_id,
                        account,
                        getattr(exc, "message", type(exc).__name__),
                    )
                    return
                gevent.sleep(0.5 * (attempt + 1))

    def join(self, timeout: float | None = None) -> None:
        self._pending.join(timeout=timeout)
