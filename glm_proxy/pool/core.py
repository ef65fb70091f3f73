"""Which upstream account serves a request, and when.

Every answer goes through ``AccountPool.lease``: it leases one of the caller's
candidate accounts (the least recently used free healthy one) and returns a
``Lease`` that the answer job releases on every path. An account streams
``max_streams`` answers at a time (1 by default: the upstream allows one
stream per account). When every candidate is busy the request waits in line,
served in order of arrival, up to ``QUEUE_TIMEOUT``; then it gets a 429 with
``Retry-After``. The decision itself is one atomic store operation
(``Store.lease_acquire``), so workers and replicas sharing Redis never
double-book an account.

Waiting is cheap: a waiter sleeps until woken or a poll interval passes. A
release anywhere (locally, or in another process through Redis pub/sub) wakes
only the head of each local line, and a waiter that gets an account wakes the
next one; since only the head can be granted anyway, a release costs a few
lease steps instead of one per waiter.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from gevent.event import Event as GEvent

from glm_proxy.accounts import Account
from glm_proxy.errors import (
    AuthenticationError,
    GLMProxyError,
    RateLimited,
    RefreshTokenExpired,
    ServiceUnavailable,
)
from glm_proxy.pool.conversations import ConversationBook
from glm_proxy.pool.health import Event, Health, transition
from glm_proxy.pool.lease import Lease, Slot
from glm_proxy.pool.registry import PoolEntry
from glm_proxy.store.base import AcquireRequest, AcquireResult, SlotCandidate, Store
from glm_proxy.upstream.envelope import RELOGIN_MESSAGE


class Operations(Protocol):
    """What callers use of ``pool.operations.PoolOperations`` (admin re-check)."""

    def recheck(self, fp: str) -> Any: ...


log = logging.getLogger(__name__)

WAKE_CHANNEL = "wake"
PASSTHROUGH_HEALTH_TTL = 30 * 86400.0  # forget the health of a pass-through token after a month
POLL_LOCAL = 0.1  # seconds between retries when releases elsewhere cannot wake us
POLL_SUBSCRIBED = 1.0  # ... when they can (memory store, or Redis with pub/sub)


def _monkey_patched() -> bool:
    try:
        from gevent import monkey

        return bool(monkey.is_module_patched("socket"))
    except Exception:  # noqa: BLE001
        return False


@dataclass(eq=False)
class _Waiter:
    """A request waiting in line in this process."""

    seq: float = math.inf  # arrival number once the store has queued it
    event: GEvent = field(default_factory=GEvent)


class AccountPool:
    def __init__(self, settings, store: Store, entries: Iterable[PoolEntry] = ()) -> None:
        self.settings = settings
        self.store = store
        self.entries: dict[str, PoolEntry] = {e.account.fingerprint: e for e in entries}
        self._waiting: dict[str, list[_Waiter]] = {}
        self._instance = uuid.uuid4().hex
        self._subscribed = False
        # Every wake-up is local with the memory store; Redis needs pub/sub (see listen).
        self.poll_interval = POLL_SUBSCRIBED if not store.shares_across_processes else POLL_LOCAL
        self.conversations = ConversationBook(store, settings, is_pooled=self.is_pooled)
        # Admin operations (``pool.operations.PoolOperations``), set by init_app: they
        # need the upstream client; typed by what callers use, so no import cycle.
        self.operations: Operations | None = None

    # -- configured accounts ---------------------------------------------------------

    @property
    def accounts(self) -> tuple[Account, ...]:
        """The server-held accounts (team mode), in configuration order."""
        return tuple(e.account for e in self.entries.values())

    def account_by_fingerprint(self, fp: str) -> Account | None:
        entry = self.entries.get(fp)
        return entry.account if entry else None

    def is_pooled(self, fp: str) -> bool:
        return fp in self.entries

    # -- wake-ups --------------------------------------------------------------------

    def listen(self) -> None:
        """Wake local waiters on releases in other processes (Redis pub/sub).

        Only once gevent has patched sockets: the listener is then a greenlet.
        Without it (unit tests) waiters poll, which is correct, only slower.
        """
        if self._subscribed or not self.store.shares_across_processes or not _monkey_patched():
            return
        self.store.subscribe(WAKE_CHANNEL, self._on_message)
        self._subscribed = True
        self.poll_interval = POLL_SUBSCRIBED

    def _on_message(self, message: str) -> None:
        if message != self._instance:  # our own releases already woke our waiters
            self._wake_heads()

    def _wake_heads(self, queue: str | None = None) -> None:
        """Wake the first waiter of each line (or of ``queue``): only it can be granted."""
        lines = [self._waiting.get(queue, [])] if queue else list(self._waiting.values())
        for line in lines:
            if line:
                min(line, key=lambda w: w.seq).event.set()

    def notify(self) -> None:
        """A slot was freed or an account came back: let waiters try again."""
        self._wake_heads()
        if self.store.shares_across_processes:
            try:
                self.store.publish(WAKE_CHANNEL, self._instance)
            except Exception as exc:  # noqa: BLE001 - waiters poll anyway
                log.warning("could not publish a wake-up: %s", type(exc).__name__)

    # -- leasing ---------------------------------------------------------------------

    @staticmethod
    def _queue_name(
        accounts: list[Account], excluded: set[str] | frozenset[str] = frozenset()
    ) -> str:
        """Requests with the same candidate set share a line.

        A failover retry (some candidates excluded: it just failed there) waits in
        a line of its own. In the shared line it would soon stand at the head, and
        the head-first rule would keep everyone behind it off the very accounts it
        cannot use. It lost its place by asking again anyway.
        """
        key = ",".join(sorted(a.fingerprint for a in accounts))
        if excluded:
            key += "|without:" + ",".join(sorted(excluded))
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def lease(
        self,
        candidates: Iterable[Account],
        *,
        exclude: Iterable[str] = (),
        require: Account | None = None,
    ) -> Lease:
        """A lease on one account; waits in line up to ``QUEUE_TIMEOUT``.

        ``require`` pins the account (conversation affinity); ``exclude`` names
        fingerprints that already failed this request. Raises ``RateLimited``
        (429 + Retry-After) when the line is full or the deadline passes,
        ``RefreshTokenExpired``/``ServiceUnavailable`` when no candidate can
        serve (dead, disabled).
        """
        s = self.settings
        accounts = (
            [require]
            if require is not None
            else list({a.fingerprint: a for a in candidates}.values())
        )
        if not accounts:
            raise AuthenticationError("No usable chatglm account for this request.")
        by_fp = {a.fingerprint: a for a in accounts}
        excluded = set() if require is not None else set(exclude)
        cands = tuple(
            SlotCandidate(a.fingerprint, max(1, a.max_streams), a.fingerprint in excluded)
            for a in accounts
        )
        queue = self._queue_name(accounts, excluded & set(by_fp))
        ticket, lease_id = uuid.uuid4().hex, uuid.uuid4().hex
        deadline = time.monotonic() + s.queue_timeout
        ticket_ttl = max(5.0, self.poll_interval * 5)
        seq: int | None = None
        queued = asking = granted = False
        waiter = _Waiter()
        self._waiting.setdefault(queue, []).append(waiter)  # before asking: no wake is missed
        try:
            while True:
                waiter.event.clear()
                asking = True
                result = self.store.lease_acquire(
                    AcquireRequest(
                        queue=queue,
                        candidates=cands,
                        lease_id=lease_id,
                        ticket=ticket,
                        now_ms=int(time.time() * 1000),
                        lease_ttl_ms=int(s.lease_ttl * 1000),
                        ticket_ttl_ms=int(ticket_ttl * 1000),
                        queue_max=max(0, s.queue_max),
                        seq=seq,
                        sole=len(accounts) == 1,
                    )
                )
                asking = False
                if result.status == "ok":
                    granted = True
                    return self._granted(by_fp[result.fingerprint], lease_id)
                if result.status == "full":
                    raise self._busy("Too many requests are waiting for an account")
                if result.status == "none":
                    raise self._unusable(result, accounts, excluded)
                queued, seq = True, result.seq
                waiter.seq = float(result.seq or 0)
                remaining = deadline - time.monotonic()
                wait = min(remaining, self.poll_interval)
                if result.retry_at_ms is not None:
                    until_back = result.retry_at_ms / 1000 - time.time()
                    if until_back > remaining:
                        raise self._busy(
                            "Every account for this request is cooling down after upstream errors",
                            retry_after=until_back,
                        )
                    wait = min(wait, max(0.01, until_back))
                if remaining <= 0:
                    raise self._busy(
                        f"Every account for this request stayed busy for {s.queue_timeout:g}s"
                    )
                waiter.event.wait(timeout=max(0.0, wait))
        except BaseException:
            if not granted and (queued or asking):
                self._abandon(queue, ticket, lease_id, cands, interrupted=asking)
            raise
        finally:
            line = self._waiting.get(queue, [])
            if waiter in line:
                line.remove(waiter)
            if not line:
                self._waiting.pop(queue, None)
            self._wake_heads(queue)  # the next in line tries (a slot may still be free)

    def _granted(self, account: Account, lease_id: str) -> Lease:
        slot = Slot(
            self.store,
            f"lease:{account.fingerprint}",
            lease_id,
            self.settings.lease_ttl,
            on_release=self.notify,
        )
        return Lease(account, slot.start_heartbeat())

    def _abandon(
        self,
        queue: str,
        ticket: str,
        lease_id: str,
        cands: tuple[SlotCandidate, ...],
        *,
        interrupted: bool,
    ) -> None:
        """Leave the line; if we were killed mid-call the grant may have landed: undo it."""
        try:
            self.store.queue_leave(queue, ticket)
            if interrupted:
                for cand in cands:
                    self.store.slot_release(f"lease:{cand.fingerprint}", lease_id)
        except Exception as exc:  # noqa: BLE001 - tickets and leases expire on their own
            log.warning("could not leave the account queue: %s", type(exc).__name__)

    @staticmethod
    def _busy(message: str, retry_after: float = 2.0) -> RateLimited:
        seconds = max(1, math.ceil(retry_after))
        return RateLimited(
            f"{message}; retry after {seconds}s.",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(seconds)},
        )

    def _unusable(
        self, result: AcquireResult, accounts: list[Account], excluded: set[str]
    ) -> GLMProxyError:
        pooled = all(self.is_pooled(a.fingerprint) for a in accounts)
        if result.dead and not result.disabled and not pooled:
            return RefreshTokenExpired(RELOGIN_MESSAGE)
        if excluded and not result.dead and not result.disabled:
            return ServiceUnavailable("No other account is left to retry this request on.")
        return ServiceUnavailable(
            f"No healthy chatglm account can serve this request ({result.dead} dead, "
            f"{result.disabled} disabled); an operator can re-enable them via /admin.",
            headers={"Retry-After": "30"},
        )

    def all_dead(self, accounts: Iterable[Account], error: RefreshTokenExpired) -> GLMProxyError:
        """The error for a request whose every candidate just turned out dead (40102).

        A pass-through caller sent those refresh tokens: ``error`` (401, log in
        again) is theirs to fix. A team caller's API key is fine; the server's
        pool has run out of accounts, so they get the 503 the next request would
        get from ``lease`` (an SDK maps 401 to "bad API key").
        """
        accounts = list(accounts)
        if not accounts or not all(self.is_pooled(a.fingerprint) for a in accounts):
            return error
        return self._unusable(AcquireResult("none", dead=len(accounts)), accounts, set())

    # -- health ----------------------------------------------------------------------

    def _health_ttl(self, fp: str) -> float | None:
        return None if self.is_pooled(fp) else PASSTHROUGH_HEALTH_TTL

    def apply(self, fp: str, event: Event, error: str = "") -> Health:
        """Apply a health event atomically (every process sees the result)."""
        s = self.settings
        now = time.time()
        result: dict[str, Health] = {}

        def update(fields: dict[str, str]) -> dict[str, str] | None:
            before = Health.from_fields(fields)
            after = transition(
                before, event, now, base=s.cooldown_base, maximum=s.cooldown_max, error=error
            )
            result["health"] = after
            return None if after == before and fields else after.to_fields()

        self.store.hupdate(f"health:{fp}", update, ttl=self._health_ttl(fp))
        health = result["health"]
        return health

    def health(self, fp: str) -> Health:
        return Health.from_fields(self.store.hgetall(f"health:{fp}"))

    def report_success(self, account: Account) -> None:
        fields = self.store.hgetall(f"health:{account.fingerprint}")
        self.store.hincr(
            f"health:{account.fingerprint}", "served", ttl=self._health_ttl(account.fingerprint)
        )
        before = Health.from_fields(fields)
        if before.state.value != "active" or before.failures:
            self.apply(account.fingerprint, Event.SUCCESS)

    def report_failure(self, account: Account, error: GLMProxyError) -> None:
        health = self.apply(account.fingerprint, Event.FAILURE, describe_error(error))
        log.info(
            "%s failed (%s): %s, cooling until %.0f",
            account,
            error.code,
            health.state.value,
            health.cooldown_until,
        )

    def report_dead(self, account: Account) -> None:
        self.apply(account.fingerprint, Event.REJECTED, "refresh token rejected (40102)")
        log.warning("%s: refresh token rejected (40102); taken out of service", account)

    def set_enabled(self, fp: str, enabled: bool) -> Health:
        health = self.apply(fp, Event.ENABLE if enabled else Event.DISABLE)
        if enabled:
            self.notify()
        return health

    def in_flight(self, fp: str) -> int:
        return self.store.slot_count(f"lease:{fp}")

    def last_used(self, fp: str) -> float | None:
        score = self.store.zscore("lru", fp)
        return None if score is None else score / 1000


def describe_error(error: GLMProxyError) -> str:
    """A short, secret-free description for the admin API."""
    return f"{error.code or type(error).__name__}: {error.message}"[:300]
