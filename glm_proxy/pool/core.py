"""Which upstream account serves a request, and when.

Every answer goes through ``AccountPool.lease``: it leases one of the caller's
candidate accounts (the least recently used free healthy one) and returns a
``Lease`` that the answer job releases on every path. Which accounts a request
may use, which line it waits in and what each answer of the store means are
decided in ``pool.scheduling``; this module is the waiting and the bookkeeping. An account streams
``max_streams`` answers at a time (1 by default: the upstream allows one
stream per account). When every candidate is busy the request waits in line
up to ``QUEUE_TIMEOUT``; then it gets a 429 with ``Retry-After``. The line is
served round robin across callers (API keys, pass-through credentials), in
order of arrival within one caller (``store.fairness``), so one key's burst
does not make every other key wait behind all of it. The decision itself is
one atomic store operation (``Store.lease_acquire``), so workers and replicas
sharing Redis never double-book an account and agree on the order.

Waiting is cheap: a waiter sleeps until woken or a poll interval passes. A
release anywhere (locally, or in another process through Redis pub/sub) wakes
only each caller's first local waiter of each line, and a waiter that gets an
account wakes the next ones; since only a caller's first waiter can be next,
a release costs a few lease steps instead of one per waiter.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gevent.event import Event as GEvent

from glm_proxy.accounts import Account
from glm_proxy.errors import AccountDead, GLMProxyError, RefreshTokenExpired
from glm_proxy.ids import uuid4_hex
from glm_proxy.pool.bookkeeping import HealthBook
from glm_proxy.pool.conversations import ConversationBook
from glm_proxy.pool.lease import Lease, Slot
from glm_proxy.pool.pacing import Pacer
from glm_proxy.pool.registry import PoolEntry
from glm_proxy.pool.scheduling import (
    MIN_WAIT,
    LeasePlan,
    plan_lease,
    queue_name,
    refusal,
    unusable,
    wait_time,
)
from glm_proxy.store import keys
from glm_proxy.store.base import AcquireRequest, AcquireResult, SlotCandidate, Store
from glm_proxy.store.fairness import FairShare
from glm_proxy.upstream.refusals import FIXES

if TYPE_CHECKING:
    from glm_proxy.config import Settings

log = logging.getLogger(__name__)

WAKE_CHANNEL = keys.WAKE_CHANNEL
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
    share: FairShare = field(default_factory=FairShare)
    ticket: str = field(default_factory=uuid4_hex)
    lease_id: str = field(default_factory=uuid4_hex)
    seq: int | None = None  # arrival number once the store has queued it
    asking: bool = False  # a lease step in flight: if killed now, its grant may still land
    granted: bool = False
    event: GEvent = field(default_factory=GEvent)

    @property
    def order(self) -> float:
        return math.inf if self.seq is None else self.seq


class AccountPool(HealthBook):
    def __init__(self, settings: Settings, store: Store, entries: Iterable[PoolEntry] = ()) -> None:
        self.settings = settings
        self.store = store
        self.entries: dict[str, PoolEntry] = {e.account.fingerprint: e for e in entries}
        self._waiting: dict[str, list[_Waiter]] = {}
        self._instance = uuid4_hex()
        self._subscribed = False
        # Every wake-up is local with the memory store; Redis needs pub/sub (see listen).
        self.poll_interval = POLL_SUBSCRIBED if not store.shares_across_processes else POLL_LOCAL
        self.conversations = ConversationBook(store, settings, is_pooled=self.is_pooled)
        self.pacer = Pacer(settings, store, is_pooled=self.is_pooled)
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
        """Wake each caller's first waiter of each line (or of ``queue``).

        Within one caller the line keeps arrival order, so nobody else of that
        caller can be granted before its first waiter; which caller is next
        only the store knows.
        """
        lines = [self._waiting.get(queue, [])] if queue else list(self._waiting.values())
        for line in lines:
            heads: dict[str, _Waiter] = {}
            for waiter in line:
                head = heads.get(waiter.share.name)
                if head is None or waiter.order < head.order:
                    heads[waiter.share.name] = waiter
            for waiter in heads.values():
                waiter.event.set()

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
        share: FairShare = FairShare(),
    ) -> Lease:
        """A lease on one account; waits in line up to ``QUEUE_TIMEOUT``.

        ``require`` pins the account (conversation affinity); ``exclude`` names
        fingerprints that already failed this request; ``share`` says who asks
        (their turn in the round robin across callers). Accounts over their
        answer budget are not eligible (``pool.pacing``). Raises ``RateLimited``
        (429 + Retry-After) when the line is full, the deadline passes or every
        candidate is over budget for longer,
        ``RefreshTokenExpired``/``ServiceUnavailable`` when no candidate can
        serve (dead, disabled).
        """
        self._tidy_now_and_then()
        plan = plan_lease(candidates, exclude=exclude, require=require)
        deadline = time.monotonic() + self.settings.queue_timeout
        waiter = self._join(plan.queue, share)  # before asking: no wake-up is missed
        try:
            while True:
                paced = self.pacer.candidates(plan) if self.pacer.active else None
                if paced is not None and paced.all_paced and paced.free_at is not None:
                    self._wait_for_budget(paced.free_at, deadline, waiter)
                    continue
                result = self._ask(plan, waiter, paced.candidates if paced else None)
                if result.status == "ok":
                    fp = result.fingerprint
                    assert fp is not None  # an "ok" answer names the account it leased
                    try:
                        booked = self.pacer.book(fp, waiter.lease_id)
                    except BaseException:
                        self._give_back(fp, waiter)
                        raise
                    if not booked:
                        self._give_back(fp, waiter)  # another worker spent it
                        continue
                    return self._granted(plan.account(fp), waiter.lease_id)
                error = refusal(result, plan, self.is_pooled)
                if result.status == "none" and paced is not None and paced.free_at is not None:
                    error = self.pacer.over_budget(paced.free_at)  # the rest are dead: wait
                if error is not None:
                    raise self._explained(error, plan)
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

    def _explained(self, error: GLMProxyError, plan: LeasePlan) -> GLMProxyError:
        """A pass-through caller whose tokens are dead hears why (a guest token, a ban)."""
        if type(error) is not RefreshTokenExpired:
            return error
        for account in plan.accounts:
            reason = self.health(account.fingerprint).reason
            if reason in ("guest_token", "banned"):
                return AccountDead(f"{FIXES[reason]}.", reason=reason)
        return error

    def _join(self, queue: str, share: FairShare) -> _Waiter:
        waiter = _Waiter(queue, share)
        self._waiting.setdefault(queue, []).append(waiter)
        return waiter

    def _leave(self, waiter: _Waiter) -> None:
        line = self._waiting.get(waiter.queue, [])
        if waiter in line:
            line.remove(waiter)
        if not line:
            self._waiting.pop(waiter.queue, None)
        self._wake_heads(waiter.queue)  # the next in line tries (a slot may still be free)

    def _wait_for_budget(self, free_at: float, deadline: float, waiter: _Waiter) -> None:
        """Every candidate is over budget: wait for the first to free, or 429 at once."""
        remaining = deadline - time.monotonic()
        until = free_at - time.time()
        if until > remaining:
            raise self.pacer.over_budget(free_at)
        waiter.event.clear()
        waiter.event.wait(timeout=max(MIN_WAIT, min(until, self.poll_interval)))

    def _give_back(self, fp: str, waiter: _Waiter) -> None:
        """Undo a grant whose budget another worker spent meanwhile."""
        try:
            self.store.slot_release(keys.lease(fp), waiter.lease_id)
        except Exception as exc:  # noqa: BLE001 - the lease expires on its own
            log.warning("could not give a lease back: %s", type(exc).__name__)
        waiter.granted = False
        waiter.lease_id = uuid4_hex()

    def _ask(
        self,
        plan: LeasePlan,
        waiter: _Waiter,
        candidates: tuple[SlotCandidate, ...] | None = None,
    ) -> AcquireResult:
        """One lease-or-queue step: atomic in the store, across every process sharing it."""
        s = self.settings
        waiter.event.clear()
        waiter.asking = True
        result = self.store.lease_acquire(
            AcquireRequest(
                queue=plan.queue,
                candidates=candidates or plan.candidates,
                lease_id=waiter.lease_id,
                ticket=waiter.ticket,
                now_ms=int(time.time() * 1000),
                lease_ttl_ms=int(s.lease_ttl * 1000),
                ticket_ttl_ms=int(max(5.0, self.poll_interval * 5) * 1000),
                queue_max=max(0, s.queue_max),
                seq=waiter.seq,
                sole=plan.sole,
                caller=waiter.share.name,
                stride=waiter.share.stride,
            )
        )
        waiter.asking = False
        waiter.granted = result.status == "ok"
        return result

    def _granted(self, account: Account, lease_id: str) -> Lease:
        fp = account.fingerprint
        slot = Slot(
            self.store,
            keys.lease(fp),
            lease_id,
            self.settings.lease_ttl,
            on_release=self.notify,
            on_ending=(lambda: self.pacer.rest(fp)) if self.settings.account_min_gap > 0 else None,
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

    def all_dead(self, accounts: Iterable[Account], error: GLMProxyError) -> GLMProxyError:
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

    def waiting(self) -> dict[str, int]:
        """Requests waiting for the pool's accounts, per caller, across every process."""
        if not self.entries:
            return {}
        return self.store.queue_waiting(queue_name(self.accounts))

    def in_flight(self, fp: str) -> int:
        return self.store.slot_count(keys.lease(fp))

    def last_used(self, fp: str) -> float | None:
        score = self.store.zscore(keys.LRU, fp)
        return None if score is None else score / 1000
