"""Leases: a held slot that renews itself and is released exactly once.

A slot lives in the store with an expiry (``LEASE_TTL``). While it is held a
heartbeat pushes the expiry forward every third of the TTL, so a long stream
keeps its account, and a worker that dies mid-stream (no heartbeat) loses the
slot on its own within the TTL: a crash never strands an account.

The heartbeat is a timer of the event loop, not a greenlet: most answers end
before their first renewal, and a greenlet per lease (spawned, parked in a
sleep, then killed at release) cost more than the rest of leasing. Only a
renewal that is due runs in a greenlet of its own (store I/O cannot run in the
loop's callback).

``release`` is idempotent and safe under ``gevent.kill`` (client disconnect):
it stops the heartbeat first (and waits for a renewal in flight), so a renewal
can never resurrect a released slot, then removes the slot and tells waiters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent

from glm_proxy.accounts import Account
from glm_proxy.store.base import Store

log = logging.getLogger(__name__)


class Heartbeat:
    """A held slot's renewals: a repeating timer; each renewal in a short greenlet."""

    __slots__ = ("_renew", "_timer", "_renewing")

    def __init__(self, renew: Callable[[], None], interval: float) -> None:
        self._renew: Callable[[], None] | None = renew
        self._renewing: gevent.Greenlet | None = None
        self._timer = gevent.get_hub().loop.timer(interval, interval)
        self._timer.start(self._due)

    def _due(self) -> None:
        """In the event loop: start a renewal unless the last one still runs."""
        renew = self._renew
        if renew is not None and (self._renewing is None or self._renewing.dead):
            self._renewing = gevent.spawn(renew)

    def kill(self, block: bool = True, timeout: float | None = None) -> None:
        """No renewal from now on; with ``block``, wait for one in flight to end."""
        self._renew = None
        self._timer.stop()
        self._timer.close()
        renewing, self._renewing = self._renewing, None
        if renewing is not None:
            renewing.kill(block=block, timeout=timeout)


@dataclass
class Slot:
    """One held slot of ``key`` (a slot set in the store)."""

    store: Store
    key: str
    member: str
    ttl: float
    on_release: Callable[[], None] | None = field(default=None, repr=False)
    on_ending: Callable[[], None] | None = field(default=None, repr=False)  # before the removal
    released: bool = False
    _heartbeat: Heartbeat | None = field(default=None, repr=False)

    def start_heartbeat(self) -> Slot:
        if self.ttl > 0 and self._heartbeat is None:
            self._heartbeat = Heartbeat(self._renew, max(0.05, self.ttl / 3))
        return self

    def _renew(self) -> None:
        if self.released:
            return
        try:
            self.store.slot_renew(self.key, self.member, self.ttl)
        except Exception as exc:  # noqa: BLE001 - the next beat retries; the TTL is the net
            log.warning("lease heartbeat failed (%s); retrying", type(exc).__name__)

    def heartbeat(self) -> None:
        """Renew now (the timer does this on its own; useful in tests)."""
        if not self.released:
            self.store.slot_renew(self.key, self.member, self.ttl)

    def release(self, *, in_place: bool = False) -> None:
        """Give the slot back; completes even if the caller is killed meanwhile.

        The work runs in its own greenlet: a ``GreenletExit`` aimed at the
        caller (client disconnect) interrupts the wait, never the release.
        ``in_place``: the caller already runs in a greenlet nobody kills (the
        answer's cleanup), so the work runs right here instead.
        """
        if self.released:
            return
        self.released = True  # a renewal that starts now does nothing
        if in_place:
            self._finish_release()
        else:
            gevent.spawn(self._finish_release).join()

    def _finish_release(self) -> None:
        beat, self._heartbeat = self._heartbeat, None
        if beat is not None:
            beat.kill(block=True, timeout=5)  # no renewal may land after the removal
        if self.on_ending is not None:
            try:
                self.on_ending()  # e.g. the account's next answer waits ACCOUNT_MIN_GAP
            except Exception as exc:  # noqa: BLE001 - the release must happen anyway
                log.warning("lease end hook failed (%s)", type(exc).__name__)
        try:
            self.store.slot_release(self.key, self.member)
        except Exception as exc:  # noqa: BLE001 - the TTL frees it anyway
            log.warning("lease release failed (%s); it expires on its own", type(exc).__name__)
        if self.on_release is not None:
            try:
                self.on_release()
            except Exception:  # noqa: BLE001
                log.exception("lease release hook failed")


@dataclass
class Lease:
    """An account leased to one answer. ``release()`` on every path (the job's ``finally``)."""

    account: Account
    slot: Slot | None = field(default=None, repr=False)

    @property
    def released(self) -> bool:
        return self.slot is None or self.slot.released

    def release(self, *, in_place: bool = False) -> None:
        """Give the account back (``Slot.release``; ``in_place`` from a cleanup greenlet)."""
        if self.slot is not None:
            self.slot.release(in_place=in_place)

    def heartbeat(self) -> None:
        if self.slot is not None:
            self.slot.heartbeat()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
