"""Pool and store settings: the shared state, the accounts, who may call and how often."""

from __future__ import annotations

from dataclasses import dataclass

from glm_proxy.config.parsing import one_of, parse_bool, parse_csv, setting


@dataclass(frozen=True)
class SharedStateSettings:
    """Where shared state lives: memory (one worker) or Redis."""

    store: str = setting("STORE", "", one_of("", "memory", "redis"), "memory or redis.")
    redis_url: str = setting("REDIS_URL", "", str, "Redis URL; enables the Redis store.")
    redis_prefix: str = setting("REDIS_PREFIX", "glmproxy:", str, "Prefix of every Redis key.")
    web_concurrency: int = setting(
        "WEB_CONCURRENCY", 1, int, "gunicorn worker processes (more than 1 needs Redis)."
    )
    data_dir: str = setting(
        "DATA_DIR",
        "./data",
        str,
        "Directory for durable single-instance data (journal, console-made accounts and keys, "
        "usage history).",
    )

    @property
    def store_backend(self) -> str:
        """``redis`` when asked for or when REDIS_URL is set, else ``memory``."""
        if self.store:
            return self.store
        return "redis" if self.redis_url else "memory"


@dataclass(frozen=True)
class AccountSettings:
    """The account pool, team keys, scheduling, health and per-key limits."""

    accounts: tuple[str, ...] = setting(
        "ACCOUNTS", (), parse_csv, "Server-side pool: comma-separated refresh tokens."
    )
    accounts_file: str = setting(
        "ACCOUNTS_FILE", "", str, "File with one refresh token per line (pool)."
    )
    api_keys: tuple[str, ...] = setting(
        "API_KEYS", (), parse_csv, "Team keys as `name:key`, comma-separated."
    )
    api_keys_file: str = setting("API_KEYS_FILE", "", str, "File with `name:key` lines.")
    allow_passthrough: str = setting(
        "ALLOW_PASSTHROUGH",
        "auto",
        one_of("auto", "true", "false"),
        "Accept refresh tokens as Bearer (auto: only when no API keys are set).",
    )
    admin_key: str = setting("ADMIN_KEY", "", str, "Key for the /admin API (disabled if empty).")
    account_max_streams: int = setting(
        "ACCOUNT_MAX_STREAMS", 1, int, "Concurrent answers per account."
    )
    queue_timeout: float = setting(
        "QUEUE_TIMEOUT", 30.0, float, "Seconds a request waits for a free account (then 429)."
    )
    queue_max: int = setting("QUEUE_MAX", 200, int, "Most requests waiting for an account.")
    lease_ttl: float = setting(
        "LEASE_TTL", 30.0, float, "Seconds a lease lives without a heartbeat (crash safety)."
    )
    cooldown_base: float = setting(
        "COOLDOWN_BASE", 5.0, float, "First cooldown of a failing account (doubles)."
    )
    cooldown_max: float = setting("COOLDOWN_MAX", 300.0, float, "Longest cooldown.")
    conversation_idle_ttl: float = setting(
        "CONVERSATION_IDLE_TTL", 3600.0, float, "Kept conversations idle this long are deleted."
    )
    sweep_interval: float = setting(
        "SWEEP_INTERVAL", 60.0, float, "Seconds between idle-conversation sweeps."
    )
    follow_token_rotation: bool = setting(
        "FOLLOW_TOKEN_ROTATION",
        False,
        parse_bool,
        "Use (and persist) a new refresh token when the upstream rotates it.",
    )
    key_rpm: int = setting("KEY_RPM", 0, int, "Requests per minute per API key (0 = no limit).")
    key_max_concurrent: int = setting(
        "KEY_MAX_CONCURRENT", 0, int, "Concurrent requests per API key (0 = no limit)."
    )
