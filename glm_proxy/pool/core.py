"""Which upstream account serves a request, and when.

Every answer goes through ``AccountPool.lease``: it leases one of the caller's
candidate accounts (the least recently used free healthy one) and returns a
``Lease`` that the answer job releases on every path. Which accounts a request
may use, which line it waits in and what each answer of the store means are
decided in ``pool.scheduling``; this module is the waiting and the bookkeeping. An account streams
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

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from gevent.event import Event as GEvent

from glm_proxy.accounts import Account
from glm_proxy.errors import GLMProxyError, RefreshTokenExpired
from glm_proxy.ids import uuid4_hex
from glm_proxy.pool.conversations import ConversationBook
from glm_proxy.pool.health import Event, Health, transition
from glm_proxy.pool.lease import Lease, Slot
from glm_proxy.pool.registry import PoolEntry
from glm_proxy.pool.scheduling import LeasePlan, plan_lease, refusal, unusable, wait_time
from glm_proxy.store import keys
from glm_proxy.store.base import AcquireRequest, AcquireResult, Store

log = logging.getLogger(__name__)

WAKE_CHANNEL = keys.WAKE_CHANNEL
PASSTHROUGH_HEALTH_TTL = 30 * 86400.0  # forget the health of a pass-through token after a month
TIDY_INTERVAL = 60.0  # seconds between two prunings of idle pass-through bookkeeping
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
    """A request in line in this process: its ticket in the store's line, and its wake-up."""

    queue: str
    ticket: str = field(default_factory=uuid4_hex)
    lease_id: str = field(default_factory=uuid4_hex)
    seq: int | None = None  # arrival number once the store has queued it
    asking: bool = False  # a lease step in flight: if killed now, its grant may still land
    granted: bool = False
    event: GEvent = field(default_factory=GEvent)

    @property
    def order(self) -> float:
        return math.inf if self.seq is None else self.seq


class AccountPool:
    def __init__(self, settings, store: Store, entries: Iterable[PoolEntry] = ()) -> None:
        self.settings = settings
        self.store = store
        self.entries: dict[str, PoolEntry] = {e.account.fingerprint: e for e in entries}
        self._waiting: dict[str, list[_Waiter]] = {}
        self._instance = uuid4_hex()
        self._subscribed = False
        # Every wake-up is local with the memory store; Redis needs pub/sub (see listen).
        self.poll_interval = POLL_SUBSCRIBED if not store.shares_across_processes else POLL_LOCAL
        self.conversations = ConversationBook(store, settings, is_pooled=self.is_pooled)
        self._next_tidy = 0.0  # monotonic time of the next pass-through pruning

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
                min(line, key=lambda w: w.order).event.set()

    def notify(self) -> None:
        """A slot was freed or an account came back: let waiters try again."""
        self._wake_heads()
        if self.store.shares_across_processes:
            try:
                self.store.publish(WAKE_CHANNEL, self._instance)
            except Exception as exc:  # noqa: BLE001 - waiters poll anyway
                log.warning("could not publish a wake-up: %s", type(exc).__name__)

    # -- leasing ---------------------------------------------------------------------

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
        self._tidy_now_and_then()
        plan = plan_lease(candidates, exclude=exclude, require=require)
        deadline = time.monotonic() + self.settings.queue_timeout
        waiter = self._join(plan.queue)  # before asking: no wake-up is missed
        try:
            while True:
                result = self._ask(plan, waiter)
                if result.status == "ok":
                    return self._granted(plan.account(result.fingerprint), waiter.lease_id)
                error = refusal(result, plan, self.is_pooled)
                if error is not None:
                    raise error
                waiter.seq = result.seq
                waiter.event.wait(
                    timeout=wait_time(
                        result.retry_at_ms,
                        now=time.time(),
                        remaining=deadline - time.monotonic(),
                        poll=self.poll_interval,
                        queue_timeout=self.settings.queue_timeout,
                    )
                )
        except BaseException:
            if not waiter.granted and (waiter.seq is not None or waiter.asking):
                self._abandon(plan, waiter)
            raise
        finally:
            self._leave(waiter)

    def _join(self, queue: str) -> _Waiter:
        waiter = _Waiter(queue)
        self._waiting.setdefault(queue, []).append(waiter)
        return waiter

    def _leave(self, waiter: _Waiter) -> None:
        line = self._waiting.get(waiter.queue, [])
        if waiter in line:
            line.remove(waiter)
        if not line:
            self._waiting.pop(waiter.queue, None)
        self._wake_heads(waiter.queue)  # the next in line tries (a slot may still be free)

    def _ask(self, plan: LeasePlan, waiter: _Waiter) -> AcquireResult:
        """One lease-or-queue step: atomic in the store, across every process sharing it."""
        s = self.settings
        waiter.event.clear()
        waiter.asking = True
        result = self.store.lease_acquire(
            AcquireRequest(
                queue=plan.queue,
                candidates=plan.candidates,
                lease_id=waiter.lease_id,
                ticket=waiter.ticket,
                now_ms=int(time.time() * 1000),
                lease_ttl_ms=int(s.lease_ttl * 1000),
                ticket_ttl_ms=int(max(5.0, self.poll_interval * 5) * 1000),
                queue_max=max(0, s.queue_max),
                seq=waiter.seq,
                sole=plan.sole,
            )
        )
        waiter.asking = False
        waiter.granted = result.status == "ok"
        return result

    def _granted(self, account: Account, lease_id: str) -> Lease:
        slot = Slot(
            self.store,
            keys.lease(account.fingerprint),
            lease_id,
            self.settings.lease_ttl,
            on_release=self.notify,
        )
        return Lease(account, slot.start_heartbeat())

    def _abandon(self, plan: LeasePlan, waiter: _Waiter) -> None:
        """Leave the line; if we were killed mid-call the grant may have landed: undo it."""
        try:
            self.store.queue_leave(plan.queue, waiter.ticket)
            if waiter.asking:
                for cand in plan.candidates:
                    self.store.slot_release(keys.lease(cand.fingerprint), waiter.lease_id)
        except Exception as exc:  # noqa: BLE001 - tickets and leases expire on their own
            log.warning("could not leave the account queue: %s", type(exc).__name__)

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
        return unusable(AcquireResult("none", dead=len(accounts)), pooled=True, retrying=False)

    # -- health ----------------------------------------------------------------------

    def _health_ttl(self, fp: str) -> float | None:
        """Pooled accounts keep their health; a pass-through token's is forgotten once
        nobody used it for ``PASSTHROUGH_IDLE_TTL`` (every use restarts the clock)."""
        if self.is_pooled(fp):
            return None
        return getattr(self.settings, "passthrough_idle_ttl", PASSTHROUGH_HEALTH_TTL)

    def forget_idle_passthrough(self, now: float | None = None, limit: int = 500) -> int:
        """Drop the last-use entries of pass-through tokens idle for ``PASSTHROUGH_IDLE_TTL``.

        Each token a caller ever sent leaves one; without this the set grows with
        every new token for good. Pooled accounts keep theirs (fair rotation).
        Called now and then from ``lease``; returns how many were dropped.
        """
        ttl = getattr(self.settings, "passthrough_idle_ttl", PASSTHROUGH_HEALTH_TTL)
        cutoff_ms = ((time.time() if now is None else now) - ttl) * 1000
        idle = self.store.zrange_by_score(keys.LRU, cutoff_ms, limit)
        stale = [fp for fp in idle if not self.is_pooled(fp)]
        if stale:
            self.store.zrem(keys.LRU, *stale)
        return len(stale)

    def _tidy_now_and_then(self) -> None:
        now = time.monotonic()
        if now < self._next_tidy:
            return
        self._next_tidy = now + TIDY_INTERVAL
        try:
            self.forget_idle_passthrough()
        except Exception as exc:  # noqa: BLE001 - bookkeeping must not fail a request
            log.warning("could not prune pass-through bookkeeping: %s", type(exc).__name__)

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

        self.store.hupdate(keys.health(fp), update, ttl=self._health_ttl(fp))
        health = result["health"]
        return health

    def health(self, fp: str) -> Health:
        return Health.from_fields(self.store.hgetall(keys.health(fp)))

    def report_success(self, account: Account) -> None:
        fp = account.fingerprint
        fields = self.store.hgetall(keys.health(fp))
        self.store.hincr(keys.health(fp), "served", ttl=self._health_ttl(fp))
        before = Health.from_fields(fields)
        if before.state.value != "active" or before.failures:
            self.apply(fp, Event.SUCCESS)

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
        return self.store.slot_count(keys.lease(fp))

    def last_used(self, fp: str) -> float | None:
        score = self.store.zscore(keys.LRU, fp)
        return None if score is None else score / 1000


def describe_error(error: GLMProxyError) -> str:
    """A short, secret-free description for the admin API."""
    return f"{error.code or type(error).__name__}: {error.message}"[:300]
