"""Console settings: the operators' web page at ``/console`` (on when ``ADMIN_KEY`` is set)."""

from __future__ import annotations

from dataclasses import dataclass

from glm_proxy.config.parsing import setting


@dataclass(frozen=True)
class ConsoleSettings:
    """Sign-in sessions of the console; its data lives in ``DATA_DIR`` or Redis."""

    console_idle_timeout: float = setting(
        "CONSOLE_IDLE_TIMEOUT",
        1800.0,
        float,
        "Seconds a console session lives without a page view (then sign in again).",
    )
    console_secret: str = setting(
        "CONSOLE_SECRET",
        "",
        str,
        "Secret that signs console session cookies (default: derived from `ADMIN_KEY`).",
    )
    console_signin_attempts: int = setting(
        "CONSOLE_SIGNIN_ATTEMPTS",
        10,
        int,
        "Failed console sign-ins allowed per client address in 10 minutes (then 429).",
    )
