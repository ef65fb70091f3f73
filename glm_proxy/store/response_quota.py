"""How many bytes of stored responses each caller, and the whole server, holds.

Stored responses live for ``RESPONSES_TTL`` (a day by default): without a bound
one key could fill the worker's memory (or Redis) with history. Three bounds:

- ``RESPONSES_KEY_QUOTA``: a caller at or over it gets a 429 for the next
  ``store: true`` request (a 413 when the input alone is larger), naming the
  setting, until its responses expire or it deletes some;
- ``RESPONSES_MAX_BYTES``: over it, the oldest stored responses of anybody are
  evicted first;
- a turn is stored by reference to its parent (``store.responses``), so a long
  conversation costs its own text once, not once per turn.

Accounting lives in the store so every worker and replica agrees:
``responses:age`` (id -> when stored), ``response:<id>:size`` (owner and
bytes), one counter per caller and a total. Entries whose record expired are
found through the age index (older than ``RESPONSES_TTL``) and given back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from glm_proxy.errors import PayloadTooLarge, RateLimited
from glm_proxy.store import keys

log = logging.getLogger(__name__)

PRUNE_BATCH = 200  # expired entries given back per save (the rest on the next ones)


class ResponseQuota:
    def __init__(self, store, settings, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    def used(self, owner: str) -> int:
        return max(0, int(self.store.get(keys.responses_bytes(owner)) or 0))

    def total(self) -> int:
        return max(0, int(self.store.get(keys.RESPONSES_TOTAL) or 0))

    def admit(self, owner: str, incoming: int) -> None:
        """Before answering a ``store: true`` request: 413/429 when ``owner`` is over quota."""
        quota = self.settings.responses_key_quota
        if not quota:
            return
        self.prune()
        if incoming > quota:
            raise PayloadTooLarge(
                f"This request's input ({incoming} bytes) is larger than the stored-response "
                f"quota of one caller ({quota} bytes, RESPONSES_KEY_QUOTA); send it with "
                "store=false.",
                code="responses_quota_exceeded",
            )
        used = self.used(owner)
        if used + incoming > quota:
            raise RateLimited(
                f"Your stored responses hold {used} bytes; the quota of one caller is {quota} "
                "bytes (RESPONSES_KEY_QUOTA). Delete stored responses, wait for them to expire "
                "(RESPONSES_TTL), or send store=false.",
                code="responses_quota_exceeded",
                headers={"Retry-After": "60"},
            )

    def added(self, response_id: str, owner: str, size: int) -> None:
        """A response was stored: count it, then evict the oldest while over the global cap."""
        ttl = self.settings.responses_ttl
        self.store.set(keys.response_size(response_id), f"{owner}\t{size}", ttl=2 * ttl)
        self.store.zadd(keys.RESPONSES_AGE, {response_id: self.clock()})
        self.store.incr(keys.responses_bytes(owner), size, ttl=2 * ttl)
        total = self.store.incr(keys.RESPONSES_TOTAL, size)
        cap = self.settings.responses_max_bytes
        while cap and total > cap:
            oldest = self.store.zrange_by_score(keys.RESPONSES_AGE, float("inf"), 20)
            oldest = [r for r in oldest if r != response_id]
            if not oldest:
                break
            for victim in oldest:
                if self.removed(victim, delete_record=True):
                    log.info("stored response evicted (RESPONSES_MAX_BYTES)")
            total = self.total()

    def removed(self, response_id: str, *, delete_record: bool = False) -> bool:
        """Give back a response's bytes (deleted, evicted or expired); True if counted here.

        Only the process whose ``zrem`` removed the index entry gives them back,
        so concurrent removals never count twice.
        """
        if not self.store.zrem(keys.RESPONSES_AGE, response_id):
            return False
        meta = self.store.get(keys.response_size(response_id)) or ""
        stale = [keys.response_size(response_id)]
        if delete_record:
            stale.append(keys.response(response_id))
        self.store.delete(*stale)
        owner, _, size = meta.partition("\t")
        if owner and size.isdigit():
            self.store.incr(keys.responses_bytes(owner), -int(size))
            self.store.incr(keys.RESPONSES_TOTAL, -int(size))
        return True

    def prune(self) -> int:
        """Give back the bytes of responses whose record expired (older than the TTL)."""
        cutoff = self.clock() - self.settings.responses_ttl
        expired = self.store.zrange_by_score(keys.RESPONSES_AGE, cutoff, PRUNE_BATCH)
        return sum(self.removed(r) for r in expired)
