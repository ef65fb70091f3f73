"""Leases: a held slot that renews itself and is released exactly once.

A slot lives in the store with an expiry (``LEASE_TTL``). While it is held a
heartbeat greenlet pushes the expiry forward every third of the TTL, so a long
stream keeps its account, and a worker that dies mid-stream (no heartbeat)
loses the slot on its own within the TTL: a crash never strands an account.

``release`` is idempotent and safe under ``gevent.kill`` (client disconnect):
it stops the heartbeat first, so a renewal can never resurrect a released
slot, then removes the slot and tells waiters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent

from glm_proxy.accounts import Account
from glm_proxy.store.base import Store

log = logging.getLogger(__name__)


@dataclass
class Slot:
    """One held slot of ``key`` (a slot set in the store)."""

    store: Store
    key: str
    member: str
    ttl: float
    on_release: Callable[[], None] | None = field(default=None, repr=False)
    released: bool = False
    _heartbeat: gevent.Greenlet | None = field(default=None, repr=False)

    def start_heartbeat(self) -> Slot:
        if self.ttl > 0 and self._heartbeat is None:
            self._heartbeat = gevent.spawn(self._beat)
        return self

    def _beat(self) -> None:
        interval = max(0.05, self.ttl / 3)
        while not self.released:
            gevent.sleep(interval)
            if self.released:
                return
            try:
                self.store.slot_renew(self.key, self.member, self.ttl)
            except Exception as exc:  # noqa: BLE001 - keep beating; the TTL is the safety net
                log.warning("lease heartbeat failed (%s); retrying", type(exc).__name__)

    def heartbeat(self) -> None:
        """Renew now (the greenlet does this on its own; useful in tests)."""
        if not self.released:
            self.store.slot_renew(self.key, self.member, self.ttl)

    def release(self) -> None:
        """Give the slot back; completes even if the caller is killed meanwhile.

        The work runs in its own greenlet: a ``GreenletExit`` aimed at the
        caller (client disconnect) interrupts the wait, never the release.
        """
        if self.released:
            return
        self.released = True  # the heartbeat stops at its next wake-up even if not killed
        gevent.spawn(self._finish_release).join()

    def _finish_release(self) -> None:
        beat, self._heartbeat = self._heartbeat, None
        if beat is not None:
            beat.kill(block=True, timeout=5)  # no renewal may land after the removal
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

    def release(self) -> None:
        if self.slot is not None:
            self.slot.release()

    def heartbeat(self) -> None:
        if self.slot is not None:
            self.slot.heartbeat()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
