"""One greenlet per worker that looks at a set of objects every so often.

Why: timing every wait with its own timer (a keep-alive per queue wait, a read
timeout per socket read) arms and cancels a timer per streamed event. A watch
instead checks all open objects once per period, which is cheap and precise
enough for limits counted in seconds. The streaming pump (keep-alives, clients
that stop reading) and the lean upstream client (read timeouts) each keep one.

The greenlet starts with the first object and ends when the set is empty; the
period is the shortest any current object asked for.

This module imports nothing from the project, so any layer may use it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Generic, TypeVar

import gevent

__all__ = ["PeriodicWatch"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class PeriodicWatch(Generic[T]):
    """Calls ``check(item, now)`` for every watched item once per period."""

    def __init__(self, check: Callable[[T, float], None], what: str) -> None:
        self.items: set[T] = set()
        self.period = 1.0
        self._check = check
        self._what = what  # for the log line when a check fails
        self._greenlet: gevent.Greenlet | None = None

    def add(self, item: T, period: float) -> None:
        """Watch ``item``, checked at least every ``period`` seconds (at most every second)."""
        self.items.add(item)
        self.period = max(0.001, min(self.period, period))
        if self._greenlet is None or self._greenlet.dead:
            self._greenlet = gevent.spawn(self._run)

    def discard(self, item: T) -> None:
        self.items.discard(item)

    def _run(self) -> None:
        while self.items:
            gevent.sleep(self.period)
            now = time.monotonic()
            for item in list(self.items):
                try:
                    self._check(item, now)
                except Exception:  # noqa: BLE001 - the watch must outlive one item
                    log.exception("timing %s failed", self._what)
        self.period = 1.0
