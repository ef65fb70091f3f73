"""Per-key limits and usage: what each team key may do, and what it did.

``KEY_RPM`` caps requests per minute per API key (a sliding window estimated
from two one-minute counters, the usual approximation) and
``KEY_MAX_CONCURRENT`` caps requests in flight per key (a slot set with a
TTL and heartbeat, like account leases, so a crashed worker cannot leave a key
blocked). Both answer 429 with ``Retry-After``. Pass-through callers have no
key and are not limited here (their own accounts limit them).

Usage is counted per key (pass-through callers together as
``(passthrough)``) in 10-minute buckets kept for 8 days: requests, errors
(status >= 400, or an error event in a stream) and estimated tokens, which the
answering views leave in the request's ``RequestRecord.usage``
(``glm_proxy.observability.record``). All counters live in the store, so the
admin API sees every worker and replica. ``KeyUsage`` counts what a key *did*;
the token figures themselves are estimated by ``glm_proxy.protocol.usage``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from flask import Flask, Response, after_this_request

from glm_proxy.access.auth import Caller
from glm_proxy.config import Settings
from glm_proxy.errors import RateLimited
from glm_proxy.ids import uuid4_hex
from glm_proxy.observability.record import RequestRecord
from glm_proxy.pool.lease import Slot
from glm_proxy.store import keys
from glm_proxy.store.base import Store

log = logging.getLogger(__name__)

PASSTHROUGH = "(passthrough)"
BUCKET = 600  # seconds per usage bucket
USAGE_TTL = 8 * 86400.0
WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400}
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


class KeyUsage:
    """What each key did: counters per key and 10-minute bucket (``usage:<name>:<bucket>``)."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def _key(self, name: str, at: float | None = None) -> str:
        bucket = int((self.clock() if at is None else at) // BUCKET)
        return keys.usage(name, bucket)

    def count(self, name: str, field: str, amount: int = 1) -> None:
        if amount:
            self.store.hincr(self._key(name), field, amount, ttl=USAGE_TTL)

    def count_many(self, name: str, amounts: dict[str, int]) -> None:
        """Several counters of one key at once (one store round trip)."""
        amounts = {field: amount for field, amount in amounts.items() if amount}
        if amounts:
            self.store.hincr_many(self._key(name), amounts, ttl=USAGE_TTL)

    def window(self, name: str, seconds: int) -> dict[str, int]:
        """Totals over the last ``seconds`` (10-minute resolution)."""
        now = self.clock()
        first, last = int((now - seconds) // BUCKET) + 1, int(now // BUCKET)
        names = [keys.usage(name, b) for b in range(first, last + 1)]
        totals = {"requests": 0, "errors": 0, **{f: 0 for f in TOKEN_FIELDS}}
        for fields in self.store.hgetall_many(names):
            for field, value in fields.items():
                if field in totals:
                    totals[field] += int(value)
        return totals


class KeyLimits:
    """Admission under each key's limits, and the usage each request leaves behind."""

    def __init__(
        self, settings: Settings, store: Store, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.usage = KeyUsage(store, clock)

    # -- request admission ---------------------------------------------------------

    def admit(self, caller: Caller, record: RequestRecord) -> None:
        """Count this request and apply the key's limits; raises ``RateLimited`` (429).

        Call it in the view, right after authenticating. It holds a
        concurrency slot and registers, on this request, the step that
        finishes the admission when the response is closed (for a stream:
        when the last byte is sent or the client hangs up): the slot is
        released and the outcome (status, ``record.error``, ``record.usage``)
        is counted, also for a refused request.
        """
        name = caller.key_name or PASSTHROUGH
        record.caller = record.caller or caller.label  # also for a request refused below
        held: list[Slot] = []

        @after_this_request
        def _on_response(response: Response) -> Response:
            status = response.status_code  # a stream's may change: see record.status
            response.call_on_close(lambda: self._finish(name, status, record, held))
            return response

        self.usage.count(name, "requests")
        if caller.key_name is None:
            return
        self._check_rpm(name, caller.rpm)
        held.extend(self._take_concurrency(name, caller.max_concurrent))

    def _finish(self, name: str, status: int, record: RequestRecord, held: list[Slot]) -> None:
        """Release the key's slot and record the outcome; never raises.

        This runs as a response close callback, before the request log line
        and the metrics: an exception here (the store is down, the very moment
        an operator needs the log) would skip them and print a traceback for
        every request.
        """
        for slot in held:
            slot.release()
        status = record.status or status  # a stream's status, decided after the view
        try:
            amounts: dict[str, int] = {}
            if status >= 400 or record.error:
                amounts["errors"] = 1
            usage = record.usage
            if isinstance(usage, dict):
                for field in TOKEN_FIELDS:
                    value = usage.get(field)
                    if isinstance(value, int) and value > 0:
                        amounts[field] = value
            self.usage.count_many(name, amounts)
        except Exception as exc:  # noqa: BLE001 - usage is best effort; the answer was sent
            log.warning("could not record usage for %s: %s", name, type(exc).__name__)

    def _check_rpm(self, name: str, own: int | None = None) -> None:
        limit = self.settings.key_rpm if own is None else own
        if limit <= 0:
            return
        now = self.clock()
        minute, into = divmod(now, 60.0)
        current_key = keys.rpm(name, int(minute))
        current = self.store.incr(current_key, ttl=120)
        previous = int(self.store.get(keys.rpm(name, int(minute) - 1)) or 0)
        estimate = previous * (1 - into / 60.0) + current
        if estimate <= limit:
            return
        self.store.incr(current_key, -1)  # a refused request does not use up the window
        wait = rpm_delay(previous, current - 1, limit, into)
        seconds = max(1, math.ceil(wait))
        raise RateLimited(
            f"Rate limit reached for key '{name}': {limit} requests per minute. "
            f"Retry after {seconds}s.",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(seconds)},
        )

    def _take_concurrency(self, name: str, own: int | None = None) -> list[Slot]:
        limit = self.settings.key_max_concurrent if own is None else own
        if limit <= 0:
            return []
        key, member, ttl = keys.key_slots(name), uuid4_hex(), self.settings.lease_ttl
        if not self.store.slot_acquire(key, member, limit, ttl):
            raise RateLimited(
                f"Too many concurrent requests for key '{name}' (limit {limit}). Retry after 1s.",
                code="rate_limit_exceeded",
                headers={"Retry-After": "1"},
            )
        return [Slot(self.store, key, member, ttl).start_heartbeat()]


def rpm_delay(previous: int, current: int, limit: int, into: float) -> float:
    """Seconds until one more request fits the sliding window, if no other arrives.

    The estimate is ``previous * (1 - t/60) + current``; it fades as the
    previous minute slides out, then the current minute becomes the previous.
    """
    room = limit - current - 1
    if previous and room >= 0:
        return max(0.0, 60.0 * (1 - room / previous) - into)
    if current <= 0:
        return 60.0 - into
    return (60.0 - into) + max(0.0, 60.0 * (1 - (limit - 1) / current))


def init_app(app: Flask) -> None:
    app.extensions["glm_limits"] = KeyLimits(
        app.extensions["glm_settings"], app.extensions["glm_store"]
    )
