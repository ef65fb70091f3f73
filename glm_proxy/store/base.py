"""The store interface both backends implement.

Besides plain keys, counters and locks, the store offers the few atomic
operations the account pool needs (hashes with read-modify-write, sorted
sets, expiring slot sets, the lease-or-queue step, publish/subscribe). Each is
atomic in both backends: a mutex in memory, Lua or WATCH/MULTI in Redis, so
several workers and replicas can never double-book an account.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass

from glm_proxy.store.fairness import FAIR_UNIT
from glm_proxy.store.pacing import PaceQuery, PaceView

HashUpdate = Callable[[dict[str, str]], Mapping[str, str] | None]
"""Given a hash's current fields, the fields to change (or None to leave it alone)."""


@dataclass(frozen=True, slots=True)
class SlotCandidate:
    """One account a request may lease, as the store sees it (no secret, only the fingerprint)."""

    fingerprint: str
    max_streams: int = 1
    excluded: bool = False  # already failed for this request: never chosen again
    rank: float = 0.0  # lower is preferred among free accounts (budget, credits left)


@dataclass(frozen=True, slots=True)
class AcquireRequest:
    """One attempt to lease an account, or keep a place in the queue.

    ``queue`` names the line of requests that share a candidate set; ``ticket``
    is this request's place in it and ``seq`` its arrival number once queued
    (passed back so a ticket that lapsed keeps its place). ``sole`` says the
    request has a single candidate, so a cooling account is used anyway: there
    is nowhere else to send it. ``caller`` and ``stride`` place the request in
    the round robin across callers (``store.fairness``).
    """

    queue: str
    candidates: tuple[SlotCandidate, ...]
    lease_id: str
    ticket: str
    now_ms: int
    lease_ttl_ms: int
    ticket_ttl_ms: int
    queue_max: int
    seq: int | None = None
    sole: bool = False
    caller: str = ""
    stride: int = FAIR_UNIT


@dataclass(frozen=True, slots=True)
class AcquireResult:
    """``ok`` (leased ``fingerprint``), ``wait`` (queued at ``seq``), ``full`` or ``none``.

    ``none`` means no candidate can ever serve this request as things stand
    (``dead``/``disabled`` count why). ``retry_at_ms`` is set when every usable
    candidate is cooling: the earliest moment one comes back.
    """

    status: str
    fingerprint: str | None = None
    seq: int | None = None
    retry_at_ms: int | None = None
    dead: int = 0
    disabled: int = 0


class Store(ABC):
    """Key/value with TTLs, counters, hashes, sorted sets, leases and named locks.

    ``ttl`` is in seconds (float allowed); ``None`` means no expiry. Locks are
    best-effort mutual exclusion with an expiry, so a crashed holder cannot
    wedge everybody (the Redis one works across processes). Keys given to the
    store are relative; the Redis store adds ``REDIS_PREFIX``.
    """

    backend: str = "abstract"

    # -- strings and counters --------------------------------------------------

    @abstractmethod
    def get(self, key: str) -> str | None: ...

    @abstractmethod
    def set(self, key: str, value: str, ttl: float | None = None) -> None: ...

    @abstractmethod
    def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Atomically create ``key``; False if it already exists."""

    @abstractmethod
    def delete(self, *keys: str) -> None: ...

    @abstractmethod
    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add to a counter; ``ttl`` is applied when the counter is created."""

    @abstractmethod
    def expire(self, key: str, ttl: float) -> None: ...

    @abstractmethod
    def scan(self, prefix: str) -> Iterator[str]:
        """Keys starting with ``prefix`` (unordered)."""

    @abstractmethod
    def lock(
        self, name: str, timeout: float = 30.0, blocking_timeout: float | None = None
    ) -> AbstractContextManager[bool]:
        """Context manager yielding True when acquired, False when ``blocking_timeout`` ran out."""

    # -- hashes ------------------------------------------------------------------

    @abstractmethod
    def hgetall(self, key: str) -> dict[str, str]:
        """All fields of a hash ({} when missing)."""

    def hgetall_many(self, keys: list[str]) -> list[dict[str, str]]:
        """Several hashes in one round trip where the backend can."""
        return [self.hgetall(key) for key in keys]

    @abstractmethod
    def hincr(self, key: str, field: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add to a hash field; ``ttl`` (re)applies to the whole hash."""

    def hincr_many(self, key: str, amounts: Mapping[str, int], ttl: float | None = None) -> None:
        """Add to several fields of one hash, in one round trip where the backend can."""
        for field, amount in amounts.items():
            self.hincr(key, field, amount, ttl=ttl)

    @abstractmethod
    def hupdate(self, key: str, update: HashUpdate, ttl: float | None = None) -> dict[str, str]:
        """Atomic read-modify-write of a hash; returns the hash after the change.

        ``update`` may run more than once (optimistic retry in Redis), so it
        must be a pure function of the fields it is given.
        """

    # -- sorted sets -------------------------------------------------------------

    @abstractmethod
    def zadd(self, key: str, mapping: Mapping[str, float], *, only_existing: bool = False) -> None:
        """Set member scores; ``only_existing`` leaves absent members out (Redis ``XX``)."""

    @abstractmethod
    def zrem(self, key: str, *members: str) -> int:
        """Remove members; the number actually removed (so a claim has one winner)."""

    @abstractmethod
    def zrange_by_score(self, key: str, max_score: float, limit: int = 100) -> list[str]:
        """Members with score <= ``max_score``, lowest first."""

    @abstractmethod
    def zscore(self, key: str, member: str) -> float | None: ...

    # -- expiring slot sets: leases and per-key concurrency ----------------------

    @abstractmethod
    def slot_acquire(self, key: str, member: str, limit: int, ttl: float) -> bool:
        """Take one of ``limit`` slots of ``key`` for ``ttl`` seconds; False when all are taken."""

    @abstractmethod
    def slot_renew(self, key: str, member: str, ttl: float) -> None:
        """Push a held slot's expiry ``ttl`` seconds ahead (the heartbeat)."""

    @abstractmethod
    def slot_release(self, key: str, *members: str) -> None: ...

    @abstractmethod
    def slot_count(self, key: str) -> int:
        """Live (unexpired) slots of ``key``."""

    @abstractmethod
    def lease_acquire(self, request: AcquireRequest) -> AcquireResult:
        """Lease the least recently used free healthy candidate, or queue the request.

        Keys: ``lease:<fp>`` (slot set), ``health:<fp>`` (hash: ``state``,
        ``cooldown_until`` in epoch seconds), ``lru`` (fp -> last lease ms),
        ``queue:<name>`` (ticket -> arrival seq), ``queue:<name>:alive``
        (ticket -> expiry ms), ``queue:<name>:seq`` (counter),
        ``queue:<name>:owner`` (ticket -> stride and caller) and
        ``queue:<name>:fair`` (the round robin's clock and passes). A request
        is granted only while fewer live tickets come before it than there are
        free slots; the order is round robin across callers, arrival within
        one (``store.fairness``).
        """

    def pace(self, query: PaceQuery, fps: list[str], book: str = "") -> list[PaceView]:
        """Each account's budget use (``store.pacing``); with ``book`` (a member id, one
        account) also spend one answer of it, atomically, when its budget allows."""
        raise NotImplementedError

    @abstractmethod
    def queue_leave(self, queue: str, ticket: str) -> None:
        """Give up a place in the queue (timeout, client gone)."""

    @abstractmethod
    def queue_waiting(self, queue: str) -> dict[str, int]:
        """How many live tickets each caller has in the line (for the admin API)."""

    # -- notifications -----------------------------------------------------------

    @abstractmethod
    def publish(self, channel: str, message: str = "") -> None: ...

    @abstractmethod
    def subscribe(self, channel: str, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call ``callback(message)`` for every message; returns an unsubscribe function.

        Memory: called synchronously by ``publish``. Redis: called from a
        listener thread (a greenlet once gevent has patched ``threading``).
        """

    @property
    def shares_across_processes(self) -> bool:
        """True when other processes see the same state (and so need pub/sub to wake)."""
        return False

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        return None
