"""Quota settings: how much memory and upstream work one caller can make the server hold.

Every bound here exists because a single key (or a single pass-through header)
could otherwise grow the server's state without limit and slow every other
caller: stored Responses history, answers queued for a client that stopped
reading, pass-through tokens fanned out into upstream logins. ``docs/teams.md``
explains the caller's view of each limit, and the store secret.
"""

from __future__ import annotations

from dataclasses import dataclass

from glm_proxy.config.parsing import parse_size, setting


@dataclass(frozen=True)
class QuotaSettings:
    """Per-caller and global bounds on what the server keeps in memory for callers."""

    responses_max_chain: int = setting(
        "RESPONSES_MAX_CHAIN",
        200,
        int,
        "Most turns a `previous_response_id` chain may hold (stored by reference to its "
        "parent); a longer one is refused (400).",
    )
    responses_key_quota: int = setting(
        "RESPONSES_KEY_QUOTA",
        64 * 1024**2,
        parse_size,
        "Bytes of stored responses one caller may hold; over it a `store: true` request "
        "gets 429 (0 = no quota).",
    )
    responses_max_bytes: int = setting(
        "RESPONSES_MAX_BYTES",
        512 * 1024**2,
        parse_size,
        "Bytes of stored responses the whole server holds; the oldest are evicted first "
        "(0 = no cap).",
    )
    stream_queue_bytes: int = setting(
        "STREAM_QUEUE_BYTES",
        64 * 1024,
        parse_size,
        "Bytes of one answer queued for a client that is not reading; then the upstream is "
        "no longer read (backpressure, with `STREAM_QUEUE_ITEMS`).",
    )
    passthrough_max_tokens: int = setting(
        "PASSTHROUGH_MAX_TOKENS",
        8,
        int,
        "Most comma-separated refresh tokens in one pass-through credential (401 over it).",
    )
    passthrough_idle_ttl: float = setting(
        "PASSTHROUGH_IDLE_TTL",
        3600.0,
        float,
        "Seconds the pool keeps the bookkeeping (health, leases) of a pass-through token "
        "nobody used; then it is forgotten.",
    )
    store_secret_key: str = setting(
        "STORE_SECRET_KEY",
        "",
        str,
        "Fernet key (`python -m glm_proxy.store.secrets`) encrypting the secrets kept in the "
        "store (tokens, cookies); empty = stored as they are. See docs/teams.md.",
    )
