"""Who is calling, and which upstream accounts may serve them.

Two modes, combinable:

- **pass-through**: the Bearer value (or ``x-api-key``) is one or more
  comma-separated chatglm refresh tokens; the caller's candidate accounts are
  exactly those tokens.
- **team**: the server holds the account pool (``ACCOUNTS``/``ACCOUNTS_FILE``)
  and issues API keys (``API_KEYS``/``API_KEYS_FILE``, ``name:key`` entries).
  A team caller may be served by any pool account.

``ALLOW_PASSTHROUGH=auto`` (default) allows pass-through only when no API key
is configured; ``true`` accepts both (an unknown value is then taken as
refresh tokens); ``false`` never. With team mode on and pass-through off, an
unknown credential is a 401.

Keys are only held as SHA-256 digests (a key file may contain
``name:sha256:<hex>`` instead of the key itself: ``python -m glm_proxy.access.auth
hash <key>`` prints it) and compared in constant time against every
configured key. Keys made in the team console (``glm_proxy.console``) come from a
``KeySource`` and may carry their own limits, models, accounts and expiry; a value shaped like
one of them is never forwarded upstream as a refresh token.

Authentication only says who is calling. Whether that caller may call *now*
(per-key rate and concurrency limits) is the separate admission step,
``glm_proxy.access.limits.KeyLimits.admit``, which each answering view takes
right after authenticating.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from flask import Flask, Request

from glm_proxy.access.keys import (  # noqa: F401 - re-exported: the keys' home before
    ApiKey,
    KeyRing,
    KeySource,
    hash_key,
    load_keys,
    parse_key_entry,
    parse_weight,
)
from glm_proxy.accounts import Account, fingerprint
from glm_proxy.config import Settings
from glm_proxy.errors import (
    AuthenticationError,
    InvalidRequest,
    PermissionDenied,
    ServiceUnavailable,
)
from glm_proxy.store.fairness import FairShare

if TYPE_CHECKING:
    from glm_proxy.pool.core import AccountPool

log = logging.getLogger(__name__)

TOKEN_TEXT = re.compile(r"[\x21-\x7e]+")  # printable ASCII: every JWT and API key
DEFAULT_MAX_TOKEN_LENGTH = 4096
# A chatglm refresh token is a JWT: three base64url parts joined by dots.
JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


@dataclass(frozen=True)
class Caller:
    accounts: tuple[Account, ...]
    key_name: str | None = None  # team API key name; None in pass-through mode
    pooled: bool = False
    key_fingerprint: str | None = field(default=None)
    weight: float = 1.0  # the key's share of turns when callers wait for accounts
    # A key's own limits (None: the KEY_RPM / KEY_MAX_CONCURRENT defaults) and models.
    rpm: int | None = None
    max_concurrent: int | None = None
    models: frozenset[str] | None = None  # None: every model

    @property
    def label(self) -> str:
        """A log-safe name of the caller."""
        if self.key_name:
            return f"key:{self.key_name}"
        return "passthrough:" + ",".join(a.fingerprint for a in self.accounts)

    @property
    def share(self) -> FairShare:
        """Who this caller is in the line for accounts (``store.fairness``): the key, or for
        pass-through a hash of the credential (its tokens' fingerprints); never a secret."""
        if self.key_name:
            return FairShare(f"key:{self.key_name}", self.weight)
        tokens = ",".join(sorted(a.fingerprint for a in self.accounts))
        return FairShare("passthrough:" + hashlib.sha256(tokens.encode()).hexdigest()[:16])


# -- requests ----------------------------------------------------------------------


def check_token_text(value: str, field: str, limit: int = DEFAULT_MAX_TOKEN_LENGTH) -> str:
    """``value`` if it can be an API key or refresh token, else a 400 naming ``field``.

    Refresh tokens are JWTs and keys are printable ASCII; anything longer than
    ``MAX_TOKEN_LENGTH`` or holding other characters is refused here, before
    it is hashed, looked up or sent upstream (where it would fail as a 500 on
    header encoding or a 502). The value itself is never echoed: it may be a
    secret pasted in the wrong place.
    """
    if len(value) > limit:
        raise InvalidRequest(
            f"The {field} value is {len(value)} characters long; no API key or refresh "
            f"token is longer than {limit} (MAX_TOKEN_LENGTH).",
            param=field,
            code="invalid_credential",
        )
    if not TOKEN_TEXT.fullmatch(value):
        raise InvalidRequest(
            f"The {field} value holds characters no API key or refresh token has "
            "(only printable ASCII without spaces is allowed).",
            param=field,
            code="invalid_credential",
        )
    return value


def _checked(value: str, field: str, limit: int) -> str:
    """A header credential: each comma-separated token checked on its own."""
    for token in value.split(","):
        token = token.strip()
        if token:
            check_token_text(token, field, limit)
    return value


def credential_from_request(
    request: Request, hint: str = "", max_length: int = DEFAULT_MAX_TOKEN_LENGTH
) -> str:
    """The Bearer value, else ``x-api-key`` (Anthropic style); 401 when neither, 400 when
    the value cannot be a key or token (see :func:`check_token_text`)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return _checked(value.strip(), "Authorization", max_length)
    api_key = request.headers.get("x-api-key", "").strip()
    if api_key:
        return _checked(api_key, "x-api-key", max_length)
    raise AuthenticationError(
        "Missing credentials: send 'Authorization: Bearer <"
        + (hint or "chatglm refresh_token")
        + ">' (or the x-api-key header)."
    )


def require_admin_key(request: Request, admin_key: str, what: str) -> None:
    """The one rule for ``/admin`` and ``/metrics``: ``ADMIN_KEY`` as Bearer or ``x-api-key``,
    compared in constant time; a 401 otherwise."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    given = value.strip() if scheme.lower() == "bearer" else ""
    given = given or request.headers.get("x-api-key", "").strip()
    expected = hashlib.sha256(admin_key.encode()).digest()
    if not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), expected):
        raise AuthenticationError(
            f"{what} needs 'Authorization: Bearer <ADMIN_KEY>' (or the x-api-key header)."
        )


def check_model(caller: Caller, model: str) -> None:
    """A 403 when the caller's key may not use ``model`` (keys made in the console)."""
    if caller.models is not None and model not in caller.models:
        raise PermissionDenied(
            f"The key '{caller.key_name}' may not use the model '{model}'.",
            code="model_not_allowed",
            param="model",
        )


def passthrough_caller(credential: str, max_streams: int = 1, max_tokens: int = 8) -> Caller:
    """The caller whose candidate accounts are the credential's refresh tokens.

    At most ``max_tokens`` (``PASSTHROUGH_MAX_TOKENS``): each token can cost an
    upstream login and leaves pool bookkeeping, so one header of hundreds of
    tokens would fan one request out into hundreds of logins.
    """
    tokens = [t.strip() for t in credential.split(",") if t.strip()]
    if not tokens:
        raise AuthenticationError("The Bearer value holds no refresh token.")
    if len(tokens) > max_tokens:
        raise AuthenticationError(
            f"The credential holds {len(tokens)} refresh tokens; at most {max_tokens} are "
            "accepted in one request (PASSTHROUGH_MAX_TOKENS).",
            code="too_many_tokens",
        )
    seen: dict[str, Account] = {}
    for token in tokens:
        seen.setdefault(fingerprint(token), Account.from_token(token, max_streams))
    return Caller(accounts=tuple(seen.values()))


class Authenticator:
    """Maps a request's credential to a ``Caller`` according to the configured modes."""

    def __init__(self, settings: Settings, keyring: KeyRing, pool: AccountPool | None) -> None:
        self.settings = settings
        self.keyring = keyring
        self.pool = pool
        self.key_sources: list[KeySource] = []  # e.g. the console's keys

    @property
    def team(self) -> bool:
        return bool(self.keyring) or any(self.key_sources)

    def _match(self, credential: str) -> ApiKey | None:
        key = self.keyring.match(credential)
        for source in self.key_sources:
            key = key or source.match(credential)
        if key is not None and key.expires_at is not None and key.expires_at <= time.time():
            return None
        return key

    @property
    def passthrough(self) -> bool:
        mode = self.settings.allow_passthrough
        return mode == "true" or (mode == "auto" and not self.team)

    def _hint(self) -> str:
        if self.team and self.passthrough:
            return "API key or chatglm refresh_token"
        return "API key" if self.team else "chatglm refresh_token"

    def authenticate(self, request: Request) -> Caller:
        """The caller of ``request``, or a 401 (a 503 for a team key with no pool accounts).

        Nothing else: no limit is applied and nothing is counted here.
        """
        credential = credential_from_request(request, self._hint(), self.settings.max_token_length)
        key = self._match(credential) if self.keyring or self.key_sources else None
        if key is not None:
            accounts = self.pool.accounts if self.pool is not None else ()
            if key.accounts is not None:
                accounts = tuple(a for a in accounts if a.fingerprint in key.accounts)
            if not accounts:
                raise ServiceUnavailable(
                    "This server accepts team API keys but has no chatglm accounts configured "
                    "(set ACCOUNTS or ACCOUNTS_FILE).",
                    code="no_accounts",
                )
            return Caller(
                accounts=accounts,
                key_name=key.name,
                pooled=True,
                key_fingerprint=fingerprint(credential),
                weight=key.weight,
                rpm=key.rpm,
                max_concurrent=key.max_concurrent,
                models=key.models,
            )
        claimed = any(source.claims(credential) for source in self.key_sources)
        if self.passthrough and not claimed:
            self._check_forwardable(credential)
            return passthrough_caller(
                credential, self.settings.account_max_streams, self.settings.passthrough_max_tokens
            )
        if self.team or claimed:
            raise AuthenticationError(
                "Incorrect API key provided. Ask the administrator of this glm-proxy for a key."
            )
        raise AuthenticationError(
            "This server accepts no credentials: pass-through is off and no API_KEYS are set."
        )

    def _check_forwardable(self, credential: str) -> None:
        """401 unless every token may go upstream: never the admin key, and with team keys
        configured only JWT-shaped values (a mistyped team key is not a refresh token).

        A pass-through credential is sent to chatglm.cn; a secret of this server's
        sent there would be handed to a third party.
        """
        admin = self.settings.admin_key
        tokens = [t.strip() for t in credential.split(",") if t.strip()]
        for token in tokens:
            if admin and hmac.compare_digest(
                hashlib.sha256(token.encode()).digest(), hashlib.sha256(admin.encode()).digest()
            ):
                raise AuthenticationError(
                    "The admin key is not an API key; it is accepted by /admin and /metrics only."
                )
            if self.team and not JWT_SHAPE.fullmatch(token):
                raise AuthenticationError(
                    "Incorrect API key provided, and the value is not shaped like a chatglm "
                    "refresh token (a JWT), so it was not forwarded upstream."
                )


def init_app(app: Flask) -> None:
    settings = app.extensions["glm_settings"]
    pool = app.extensions.get("glm_pool")
    auth = Authenticator(settings, KeyRing(load_keys(settings)), pool)
    if auth.team:
        log.info(
            "team mode: %d API key(s) (%s); pass-through %s",
            len(auth.keyring.keys),
            ", ".join(auth.keyring.names),
            "also allowed" if auth.passthrough else "off",
        )
    elif pool is not None and pool.entries:
        log.warning(
            "ACCOUNTS is set but no API_KEYS: nobody can use the pool until keys are configured"
        )
    if not auth.team and not auth.passthrough:
        log.warning("ALLOW_PASSTHROUGH=false and no API_KEYS: every request will get 401")
    app.extensions["glm_auth"] = auth


def _main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "hash":
        print(hash_key(argv[1]))
        return 0
    print("usage: python -m glm_proxy.access.auth hash <key>   (prints the API_KEYS_FILE form)")
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
