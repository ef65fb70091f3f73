"""Account care settings: why accounts stop working, credits, and pacing below their limits.

What the upstream's refusals mean is partly a guess (upstream-protocol.md §16):
the mapping from codes and message words to reasons is a setting, so an
operator can follow what the upstream actually says without a release.
"""

from __future__ import annotations

from dataclasses import dataclass

from glm_proxy.config.parsing import FROM_PROFILE, parse_bool, setting

# code or message word -> reason. Numbers match the envelope's status/code; anything
# else matches a substring of the message (or of an HTML page's text).
DEFAULT_REFUSALS = (
    "40012=verification_required,访问验证=verification_required,"
    "10061=rate_limited,10062=rate_limited,10040=rate_limited,"
    "访客=guest_token,封禁=banned,banned=banned,风控=risk_control,风险=risk_control,"
    "积分不足=out_of_credits,insufficient points=out_of_credits"
)

REASONS = (
    "guest_token",
    "verification_required",
    "out_of_credits",
    "rate_limited",
    "banned",
    "risk_control",
)


def parse_refusals(text: str) -> tuple[dict[int, str], tuple[tuple[str, str], ...]]:
    """``ACCOUNT_REFUSALS`` as (code -> reason, ((word, reason), ...)); ValueError if malformed."""
    codes: dict[int, str] = {}
    words: list[tuple[str, str]] = []
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, reason = item.rpartition("=")
        key, reason = key.strip(), reason.strip()
        if not sep or not key:
            raise ValueError(f"expected code_or_word=reason items, got {item.strip()!r}")
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r} (known: {', '.join(REASONS)})")
        if key.lstrip("-").isdigit():
            codes[int(key)] = reason
        else:
            words.append((key.lower(), reason))
    return codes, tuple(words)


@dataclass(frozen=True)
class AccountCareSettings:
    """How refusals are classified, how long each reason rests, credits and pacing."""

    account_refusals: str = setting(
        "ACCOUNT_REFUSALS",
        DEFAULT_REFUSALS,
        str,
        "Upstream refusal -> account reason, `code_or_word=reason,...` (reasons: guest_token, "
        "verification_required, out_of_credits, rate_limited, banned, risk_control); see "
        "docs/accounts.md.",
    )
    account_verification_cooldown: float = setting(
        "ACCOUNT_VERIFICATION_COOLDOWN",
        600.0,
        float,
        "First rest (s) after a verification page or risk control; doubles on each repeat.",
    )
    account_verification_cooldown_max: float = setting(
        "ACCOUNT_VERIFICATION_COOLDOWN_MAX",
        21600.0,
        float,
        "Longest rest (s) after repeated verification pages or risk control.",
    )
    account_day_utc_offset: float = setting(
        "ACCOUNT_DAY_UTC_OFFSET",
        8.0,
        float,
        "Hours east of UTC of the upstream's day (Asia/Shanghai): credits reset at its midnight.",
    )
    account_max_per_hour: int = setting(
        "ACCOUNT_MAX_PER_HOUR", 0, int, "Answers per account per hour (0 = no limit)."
    )
    account_max_per_day: int = setting(
        "ACCOUNT_MAX_PER_DAY", 0, int, "Answers per account per 24 hours (0 = no limit)."
    )
    account_min_gap: float = setting(
        "ACCOUNT_MIN_GAP",
        0.0,
        float,
        "Seconds between the end of one answer and the start of the next on one account "
        "(0 = none), plus up to ACCOUNT_GAP_JITTER of it at random.",
    )
    account_gap_jitter: float = setting(
        "ACCOUNT_GAP_JITTER", 0.5, float, "Random extra gap, as a fraction of ACCOUNT_MIN_GAP."
    )
    account_budget_hour: float = setting(
        "ACCOUNT_BUDGET_HOUR",
        3600.0,
        float,
        "Length (s) of the ACCOUNT_MAX_PER_HOUR window; shorten only to test pacing.",
    )
    glm_member_info: bool = setting(
        "GLM_MEMBER_INFO",
        FROM_PROFILE,
        parse_bool,
        "Read each pool account's credits (member_info) at most every "
        "ACCOUNT_CREDITS_INTERVAL (profile).",
    )
    glm_daily_claim: bool = setting(
        "GLM_DAILY_CLAIM",
        FROM_PROFILE,
        parse_bool,
        "Claim each pool account's daily login points once a day, as the web page does (profile).",
    )
    account_credits_interval: float = setting(
        "ACCOUNT_CREDITS_INTERVAL", 3600.0, float, "Seconds between credit reads per account."
    )
    glm_member_info_path: str = setting(
        "GLM_MEMBER_INFO_PATH",
        "/member-api/member/member_info",
        str,
        "Upstream path: an account's credits.",
    )
    glm_daily_claim_path: str = setting(
        "GLM_DAILY_CLAIM_PATH",
        "/member-api/member/daily_login_score",
        str,
        "Upstream path: claim the day's login points (10001 = already claimed).",
    )
