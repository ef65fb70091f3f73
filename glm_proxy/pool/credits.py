"""Each pool account's credits, read and claimed the way the web page does.

In the 2026 web app every answer spends points; free accounts get their day's
points by a call the page makes on load (``member-api/member/daily_login_score``;
``10001`` 今日已领取 means already claimed, which is success), and
``member-api/member/member_info`` says what is left (``left_score`` in 1/100
points, ``left_token``) (upstream-protocol.md §16). ``Credits`` claims once per
upstream day per account, before the account's first answer of the day (so an
account that rested for spent credits is topped up before it is tried again),
and reads the balance at most every ``ACCOUNT_CREDITS_INTERVAL`` in the
background after an answer, or on demand from the admin API. What it read lives in the store
(``credits:<fp>``), where the scheduler's ranking and the admin API find it.
Only the operator's pool accounts, never a pass-through caller's.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import gevent

from glm_proxy.accounts import Account
from glm_proxy.errors import AccountRefused, GLMProxyError, RefreshTokenExpired
from glm_proxy.store import keys
from glm_proxy.store.base import Store

log = logging.getLogger(__name__)

ALREADY_CLAIMED = 10001
CLAIM_KEEP = 2 * 86400.0  # seconds a day's claim marker is kept


def upstream_day(now: float, utc_offset_hours: float) -> int:
    """The number of the upstream's day (days since the epoch in its time zone)."""
    return math.floor((now + utc_offset_hours * 3600.0) / 86400.0)


class Credits:
    """Daily claims and balance reads for pool accounts (``app.extensions["glm_credits"]``)."""

    def __init__(
        self,
        settings,
        store: Store,
        upstream,
        *,
        is_pooled: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.upstream = upstream
        self.is_pooled = is_pooled
        self._clock = clock

    def before_answer(self, account: Account) -> None:
        """Claim today's points if not done yet (waits for it). A refusal that says the
        account is dead or resting is raised, so the answer moves to another account."""
        s = self.settings
        fp = account.fingerprint
        if not s.glm_daily_claim or not self.is_pooled(fp):
            return
        day = upstream_day(self._clock(), s.account_day_utc_offset)
        if self.store.set_if_absent(keys.daily_claim(fp, day), "pending", ttl=CLAIM_KEEP):
            self.claim(account, day)

    def after_answer(self, account: Account) -> None:
        """Read the balance in the background when a read is due (once per interval)."""
        s = self.settings
        fp = account.fingerprint
        if not s.glm_member_info or s.account_credits_interval <= 0 or not self.is_pooled(fp):
            return
        if self.store.set_if_absent(keys.credits_due(fp), "1", ttl=s.account_credits_interval):
            gevent.spawn(self._read_quietly, account)

    def claim(self, account: Account, day: int) -> bool:
        """Claim the day's login points; True when claimed now or earlier (10001)."""
        fp = account.fingerprint
        try:
            self.upstream.call(account, "POST", self.settings.glm_daily_claim_path, json={})
        except GLMProxyError as exc:
            if getattr(exc, "upstream_code", None) == ALREADY_CLAIMED:
                self.store.hupdate(keys.credits(fp), lambda _: {"claimed_day": str(day)})
                return True
            self.store.delete(keys.daily_claim(fp, day))  # try again with the next answer
            log.info("%s: the daily points claim failed (%s)", account, exc.code)
            if isinstance(exc, RefreshTokenExpired | AccountRefused):
                raise
            return False
        self.store.hupdate(keys.credits(fp), lambda _: {"claimed_day": str(day)})
        self.store.delete(keys.credits_due(fp))  # the balance changed: read it soon
        log.info("%s: claimed the day's login points", account)
        return True

    def read(self, account: Account) -> dict[str, Any]:
        """Read the account's balance now and keep it; raises the upstream's error."""
        result = self.upstream.call(account, "GET", self.settings.glm_member_info_path)
        result = result if isinstance(result, dict) else {}
        fields = {"checked_at": repr(self._clock())}
        for name in ("left_score", "left_token"):
            value = result.get(name)
            if isinstance(value, int | float | str) and str(value).strip():
                fields[name] = str(value).strip()
        self.store.hupdate(keys.credits(account.fingerprint), lambda _: fields)
        return self.view(account.fingerprint) or {}

    def _read_quietly(self, account: Account) -> None:
        try:
            self.read(account)
        except GLMProxyError as exc:
            log.info("%s: could not read its credits (%s)", account, exc.code)
        except Exception:  # noqa: BLE001 - a background read must never kill anything
            log.exception("reading credits failed")

    def view(self, fp: str) -> dict[str, Any] | None:
        """The account's credits as last read, for the admin API (None: never read)."""
        fields = self.store.hgetall(keys.credits(fp))
        if not fields:
            return None
        return credits_view(fields)


def credits_view(fields: dict[str, str]) -> dict[str, Any]:
    """The stored credit fields as JSON: points (``left_score`` / 100), tokens, times."""

    def number(name: str) -> float | None:
        try:
            return float(fields[name])
        except (KeyError, ValueError):
            return None

    score = number("left_score")
    checked = number("checked_at")
    day = fields.get("claimed_day")
    return {
        "left_score": None if score is None else int(score),
        "points": None if score is None else score / 100,
        "left_token": None if number("left_token") is None else int(number("left_token") or 0),
        "checked_at": checked,
        "claimed_day": int(day) if day and day.lstrip("-").isdigit() else None,
    }
