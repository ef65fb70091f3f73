"""Upstream accounts (one chatglm refresh token each) and how they are shown.

A refresh token is a long-lived secret. It never appears in logs, errors,
metrics or Redis keys: everywhere outside the upstream client it is named by
its fingerprint, a short hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


def fingerprint(secret: str) -> str:
    """A short, stable, non-reversible name for a secret (12 hex chars of SHA-256)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


def mask(secret: str) -> str:
    """What a human may see of a secret: its length class and fingerprint, never its text."""
    if not secret:
        return "<empty>"
    return f"<secret {fingerprint(secret)}>"


@dataclass(frozen=True, slots=True)
class Account:
    """One upstream account. ``repr`` is masked so it is safe in any log line."""

    refresh_token: str = field(repr=False)
    fingerprint: str = ""
    max_streams: int = 1
    # The browser's cookie header or cookies.txt text (a secret, like the token);
    # "" = send no cookies. Not part of the identity.
    cookies: str = field(default="", repr=False, compare=False)
    # This account's outbound proxy URL ("" = UPSTREAM_PROXY or direct); it may carry
    # credentials, so it is never shown.
    proxy: str = field(default="", repr=False, compare=False)

    @classmethod
    def from_token(cls, refresh_token: str, max_streams: int = 1, cookies: str = "") -> Account:
        return cls(refresh_token, fingerprint(refresh_token), max_streams, cookies)

    def __str__(self) -> str:
        return f"account:{self.fingerprint}"
