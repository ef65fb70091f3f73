"""Who is calling, and which upstream accounts may serve them.

Pass-through mode: the Bearer value (or ``x-api-key``) is one or more
comma-separated chatglm refresh tokens. The caller's candidate accounts are
exactly those tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Request

from glm_proxy.accounts import Account, fingerprint
from glm_proxy.errors import AuthenticationError


@dataclass(frozen=True)
class Caller:
    accounts: tuple[Account, ...]
    key_name: str | None = None  # team API key name; None in pass-through mode
    pooled: bool = False
    key_fingerprint: str | None = field(default=None)

    @property
    def label(self) -> str:
        """A log-safe name of the caller."""
        if self.key_name:
            return f"key:{self.key_name}"
        return "passthrough:" + ",".join(a.fingerprint for a in self.accounts)


def credential_from_request(request: Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = request.headers.get("x-api-key", "").strip()
    if api_key:
        return api_key
    raise AuthenticationError(
        "Missing credentials: send 'Authorization: Bearer <chatglm refresh_token>' "
        "(several tokens may be separated by commas)."
    )


def passthrough_caller(credential: str, max_streams: int = 1) -> Caller:
    tokens = [t.strip() for t in credential.split(",") if t.strip()]
    if not tokens:
        raise AuthenticationError("The Bearer value holds no refresh token.")
    seen: dict[str, Account] = {}
    for token in tokens:
        seen.setdefault(fingerprint(token), Account.from_token(token, max_streams))
    return Caller(accounts=tuple(seen.values()))


def authenticate(request: Request, settings) -> Caller:
    """The caller of this request, or a 401."""
    return passthrough_caller(credential_from_request(request), settings.account_max_streams)
