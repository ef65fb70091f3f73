"""Why an account stopped working: one reason an operator can act on, and what follows from it.

The upstream refuses in several ways that call for different care
(upstream-protocol.md §16): a guest token never works (log in and copy the
token again), a verification page follows cumulative volume (rest long, use
the account less, give it browser cookies), spent credits come back at the
upstream's midnight, a rate limit passes in seconds. Everything here is pure:
``classify`` maps what the upstream said to a reason with the settings'
``ACCOUNT_REFUSALS`` table, ``rest_until`` says how long a reason rests the
account, ``FIXES`` what the operator should do.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from enum import StrEnum

from glm_proxy.config.care import parse_refusals


class Reason(StrEnum):
    GUEST_TOKEN = "guest_token"
    VERIFICATION_REQUIRED = "verification_required"
    OUT_OF_CREDITS = "out_of_credits"
    RATE_LIMITED = "rate_limited"
    BANNED = "banned"
    RISK_CONTROL = "risk_control"
    TOKEN_EXPIRED = "token_expired"  # 40102: the refresh token expired or was revoked
    UNKNOWN = "unknown"


# Reasons that take the account out of service until an operator acts.
DEAD_REASONS = frozenset({Reason.GUEST_TOKEN, Reason.BANNED, Reason.TOKEN_EXPIRED})

FIXES: dict[str, str] = {
    Reason.GUEST_TOKEN: "this is a guest (not logged-in) token: log in to chatglm.cn and copy "
    "the chatglm_refresh_token cookie again",
    Reason.VERIFICATION_REQUIRED: "the upstream showed its access-verification page: the "
    "account rests and is retried with backoff; give it its browser cookies and use it less "
    "(ACCOUNT_MAX_PER_HOUR, ACCOUNT_MIN_GAP)",
    Reason.OUT_OF_CREDITS: "the account's points are spent: it rests until the upstream's "
    "daily reset (midnight Asia/Shanghai), then is tried again",
    Reason.RATE_LIMITED: "the upstream rate-limited the account: it rests briefly",
    Reason.BANNED: "the upstream says the account is banned: replace it",
    Reason.RISK_CONTROL: "the upstream's risk control refused the account: it rests with "
    "backoff; log in with a browser and use it less",
    Reason.TOKEN_EXPIRED: "the refresh token expired or was revoked (40102): log in again and "
    "copy the new chatglm_refresh_token",
    Reason.UNKNOWN: "an upstream refusal this service does not know; the code and message are "
    "kept (ACCOUNT_REFUSALS can name it)",
}

_TAGS = re.compile(r"<[^>]*>")


@dataclass(frozen=True, slots=True)
class Refusal:
    """What the upstream said, secret-free: the reason, its code and a short message."""

    reason: Reason
    code: int | None = None
    message: str = ""

    def describe(self) -> str:
        code = f"{self.code}: " if self.code is not None else ""
        return f"{self.reason.value} ({code}{self.message})"[:300]


@functools.lru_cache(maxsize=16)
def _table(text: str) -> tuple[dict[int, str], tuple[tuple[str, str], ...]]:
    return parse_refusals(text)


def looks_like_html(body: bytes) -> bool:
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<meta"))


def page_text(body: bytes, limit: int = 4000) -> str:
    """The visible text of an HTML page, roughly (tags dropped, whitespace folded)."""
    text = _TAGS.sub(" ", body[: limit * 4].decode("utf-8", "replace"))
    return " ".join(text.split())[:limit]


def classify(
    codes: set[int] | frozenset[int],
    message: str,
    refusals: str,
    *,
    http_status: int = 200,
) -> Reason:
    """The reason for a refusal with envelope ``codes`` and ``message`` (or a page's text)."""
    by_code, by_word = _table(refusals)
    for code in sorted(codes):
        if code in by_code:
            return Reason(by_code[code])
    lowered = message.lower()
    for word, reason in by_word:
        if word in lowered:
            return Reason(reason)
    if http_status == 429 or 429 in codes:
        return Reason.RATE_LIMITED
    return Reason.UNKNOWN


def next_reset(now: float, utc_offset_hours: float) -> float:
    """The next midnight of the upstream's day (epoch seconds) after ``now``."""
    offset = utc_offset_hours * 3600.0
    day = math.floor((now + offset) / 86400.0)
    return (day + 1) * 86400.0 - offset


def rest_until(reason: str, failures: int, now: float, settings) -> float:
    """When an account refused for ``reason`` (``failures`` in a row) may be tried again."""

    def backoff(base: float, maximum: float) -> float:
        return min(maximum, base * (2 ** min(max(failures, 1) - 1, 32)))

    if reason == Reason.OUT_OF_CREDITS:
        return next_reset(now, settings.account_day_utc_offset)
    if reason in (Reason.VERIFICATION_REQUIRED, Reason.RISK_CONTROL):
        base = settings.account_verification_cooldown
        return now + backoff(base, max(base, settings.account_verification_cooldown_max))
    return now + backoff(settings.cooldown_base, settings.cooldown_max)
