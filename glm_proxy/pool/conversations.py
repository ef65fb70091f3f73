"""Which account owns a kept conversation, and how long it has been idle.

Two records per kept conversation:

- ``conv:<id>`` -> ``{"account": fp, "assistant_id": ...}`` (TTL
  ``CONVERSATION_TTL``, never shorter than ``CONVERSATION_IDLE_TTL``, restarted
  on every continuation): read by ``services.chat.conversation_owner`` to send
  a continuation to the owning account, across workers and replicas;
- ``sweep:conv:<id>`` -> what the sweeper needs to delete it upstream, plus the
  sorted set ``sweep:idle`` (id -> last use, epoch seconds). The sweeper deletes
  conversations idle for ``CONVERSATION_IDLE_TTL`` so "no trace left" still
  holds for conversations a client asked to keep.

A conversation of a pass-through account (a token the server does not hold)
keeps that refresh token in its sweep record, because deleting it later needs
the account's credentials; the record is removed with the conversation.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

from glm_proxy.accounts import Account, fingerprint
from glm_proxy.store import keys
from glm_proxy.store.base import Store

IDLE_INDEX = keys.SWEEP_IDLE


def conv_key(conversation_id: str) -> str:
    return keys.conversation(conversation_id)


def sweep_key(conversation_id: str) -> str:
    return keys.conversation_sweep(conversation_id)


def owner_id(key_name: str | None, accounts: tuple[Account, ...] = ()) -> str:
    """Who a kept conversation belongs to: a team key by its name; a pass-through caller
    by a hash of its refresh tokens' fingerprints (no secret is stored)."""
    if key_name:
        return "key:" + key_name
    return "pt:" + fingerprint(",".join(sorted(a.fingerprint for a in accounts)))


class ConversationBook:
    def __init__(
        self,
        store: Store,
        settings,
        *,
        is_pooled: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings
        self.is_pooled = is_pooled
        self.clock = clock

    @property
    def sweeping(self) -> bool:
        return self.settings.conversation_idle_ttl > 0

    @property
    def ttl(self) -> float:
        """How long an owner record outlives its last use.

        Never shorter than the idle sweeper's wait: a conversation the sweeper
        has not deleted yet must still find its account.
        """
        return max(self.settings.conversation_ttl, self.settings.conversation_idle_ttl)

    def remember(
        self, account: Account, conversation_id: str, assistant_id: str, *, owner: str = ""
    ) -> None:
        """A conversation the client keeps: record its account and caller, start its idle clock.

        ``owner`` is the caller that created it (``owner_id``); only that caller
        may continue it.
        """
        record = {"account": account.fingerprint, "assistant_id": assistant_id, "caller": owner}
        self._remember(account, conversation_id, record)

    def _remember(self, account: Account, conversation_id: str, owner: dict[str, str]) -> None:
        self.store.set(
            conv_key(conversation_id),
            orjson.dumps(owner).decode(),
            ttl=self.ttl,
        )
        if not self.sweeping:
            return
        record = dict(owner)
        if not self.is_pooled(account.fingerprint):
            record["token"] = account.refresh_token
        self.store.set(sweep_key(conversation_id), orjson.dumps(record).decode())
        self.store.zadd(IDLE_INDEX, {conversation_id: self.clock()})

    def touch(self, conversation_id: str) -> None:
        """The client continued the conversation: its idle clock starts again."""
        if self.sweeping:
            self.store.zadd(IDLE_INDEX, {conversation_id: self.clock()}, only_existing=True)

    def owner(self, conversation_id: str) -> str | None:
        """The fingerprint of the account that owns a kept conversation, if known."""
        record = self.record(conversation_id)
        return record.get("account") if record else None

    def record(self, conversation_id: str) -> dict | None:
        """The owner record of a kept conversation: ``account``, ``assistant_id``, ``caller``."""
        raw = self.store.get(conv_key(conversation_id))
        return orjson.loads(raw) if raw else None

    def prolong(self, conversation_id: str) -> None:
        """The client is continuing the conversation: its owner record lives another ``ttl``."""
        self.store.expire(conv_key(conversation_id), self.ttl)

    def idle(self, limit: int = 100) -> list[str]:
        """Kept conversations idle for at least ``CONVERSATION_IDLE_TTL``, oldest first."""
        cutoff = self.clock() - self.settings.conversation_idle_ttl
        return self.store.zrange_by_score(IDLE_INDEX, cutoff, limit)

    def claim(self, conversation_id: str) -> dict | None:
        """Take an idle conversation off the index; only one sweeper wins it."""
        if not self.store.zrem(IDLE_INDEX, conversation_id):
            return None
        raw = self.store.get(sweep_key(conversation_id))
        if not raw:
            self.store.delete(conv_key(conversation_id))
            return None
        return orjson.loads(raw)

    def requeue(self, conversation_id: str, record: dict) -> None:
        """Deleting failed: try again after another idle period (at most a few times)."""
        record = {**record, "attempts": int(record.get("attempts", 0)) + 1}
        self.store.set(sweep_key(conversation_id), orjson.dumps(record).decode())
        self.store.zadd(IDLE_INDEX, {conversation_id: self.clock()})

    def forget(self, conversation_id: str) -> None:
        self.store.delete(conv_key(conversation_id), sweep_key(conversation_id))
        self.store.zrem(IDLE_INDEX, conversation_id)
