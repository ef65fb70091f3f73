"""An account pool's bookkeeping: health events, reports, and pruning pass-through entries.

Split from ``pool.core`` (the leasing and the waiting): these methods only read
and write the store's health records and the last-use set, atomically, so every
worker and replica sees the same account states.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from glm_proxy.accounts import Account
from glm_proxy.errors import GLMProxyError
from glm_proxy.pool.health import Event, Health, transition
from glm_proxy.store import keys
from glm_proxy.upstream.refusals import FIXES, rest_until

if TYPE_CHECKING:
    from glm_proxy.config import Settings
    from glm_proxy.store.base import Store

log = logging.getLogger("glm_proxy.pool.core")

PASSTHROUGH_HEALTH_TTL = 30 * 86400.0  # forget the health of a pass-through token after a month
TIDY_INTERVAL = 60.0  # seconds between two prunings of idle pass-through bookkeeping


class HealthBook:
    """Health and last-use bookkeeping of ``AccountPool`` (which provides the attributes)."""

    settings: Settings
    store: Store
    _next_tidy: float

    def is_pooled(self, fp: str) -> bool:  # pragma: no cover - AccountPool's
        raise NotImplementedError

    def account_by_fingerprint(self, fp: str) -> Account | None:  # pragma: no cover
        raise NotImplementedError

    def notify(self) -> None:  # pragma: no cover - AccountPool's
        raise NotImplementedError

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

    def apply(self, fp: str, event: Event, error: str = "", reason: str = "") -> Health:
        """Apply a health event atomically (every process sees the result).

        A change of state or reason is logged once, with what to do about it.
        """
        s: Any = self.settings
        now = time.time()
        result: dict[str, Health] = {}

        def update(fields: dict[str, str]) -> dict[str, str] | None:
            before = Health.from_fields(fields)
            until = None
            if event is Event.FAILURE and reason:
                until = rest_until(reason, before.failures + 1, now, s)
            after = transition(
                before,
                event,
                now,
                base=s.cooldown_base,
                maximum=s.cooldown_max,
                error=error,
                reason=reason,
                until=until,
            )
            result["before"], result["health"] = before, after
            return None if after == before and fields else after.to_fields()

        self.store.hupdate(keys.health(fp), update, ttl=self._health_ttl(fp))
        before, health = result["before"], result["health"]
        if (before.state, before.reason) != (health.state, health.reason):
            account = self.account_by_fingerprint(fp)
            log.warning(
                "%s: %s%s%s",
                account if account is not None else f"account:{fp}",
                health.state.value,
                f" ({health.reason})" if health.reason else "",
                f": {FIXES.get(health.reason, '')}" if health.reason in FIXES else "",
            )
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
        reason = getattr(error, "reason", "") or "unknown"
        health = self.apply(account.fingerprint, Event.FAILURE, describe_error(error), reason)
        log.info(
            "%s failed (%s, %s): %s, cooling until %.0f",
            account,
            error.code,
            reason,
            health.state.value,
            health.cooldown_until,
        )

    def report_dead(self, account: Account, error: GLMProxyError | None = None) -> None:
        reason = getattr(error, "reason", "") or "token_expired"
        said = describe_error(error) if error is not None else "refresh token rejected (40102)"
        self.apply(account.fingerprint, Event.REJECTED, said, reason)

    def set_enabled(self, fp: str, enabled: bool) -> Health:
        health = self.apply(fp, Event.ENABLE if enabled else Event.DISABLE)
        if enabled:
            self.notify()
        return health


def describe_error(error: GLMProxyError) -> str:
    """A short, secret-free description for the admin API."""
    upstream = getattr(error, "upstream_code", None)
    said = f" (upstream {upstream})" if upstream is not None else ""
    return f"{error.code or type(error).__name__}{said}: {error.message}"[:300]
