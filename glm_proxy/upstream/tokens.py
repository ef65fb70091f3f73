"""Access tokens per account: cached in the store, refreshed once for everyone.

An answer needs an access token; getting one costs a refresh call to the
upstream. ``TokenCache`` keeps the token in the store (``at:<fp>``, for
``GLM_ACCESS_TOKEN_TTL``) and refreshes under a store lock, so concurrent
callers (with Redis: every worker and replica) cause one refresh between them.

The upstream may issue a new refresh token with every refresh. With
``FOLLOW_TOKEN_ROTATION`` the newest one is kept (``rot:<fp>``) and used from
then on, and ``on_rotation`` hears of it (a pool read from ``ACCOUNTS_FILE``
writes it back). Both refresh paths, the cached one and a liveness check,
write a rotation back through the same helper.

The refresh call itself is the upstream client's; it is passed in, so this
module does no I/O of its own beyond the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from glm_proxy.accounts import Account
from glm_proxy.errors import RefreshTokenExpired, UpstreamError
from glm_proxy.store import keys
from glm_proxy.store.base import Store

REFRESH_LOCK_TIMEOUT = 30.0  # seconds: a refresh never takes longer (request timeouts are shorter)


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What one refresh call returned."""

    access_token: str
    refresh_token: str | None
    user_id: str | None


Refresher = Callable[[str, Account | None], TokenGrant]
RotationHook = Callable[[Account, str], None]


class TokenCache:
    """The store-backed access-token cache with single-flight refresh."""

    def __init__(self, settings, store: Store, refresh: Refresher) -> None:
        self.settings = settings
        self.store = store
        self._refresh = refresh
        self.on_rotation: RotationHook | None = None

    def access_token(self, account: Account) -> str:
        """A cached access token, refreshed once for all concurrent callers (single flight).

        The lock lives in the store, so with Redis one refresh serves every
        worker and replica. A caller that waited for the lock finds the token
        the holder cached and makes no call of its own.
        """
        key = keys.access_token(account.fingerprint)
        cached = self.store.get(key)
        if cached:
            return cached
        with self.store.lock(
            keys.refresh_lock(account.fingerprint),
            timeout=REFRESH_LOCK_TIMEOUT,
            blocking_timeout=REFRESH_LOCK_TIMEOUT,
        ):
            cached = self.store.get(key)
            if cached:
                return cached
            used = self.refresh_token(account)
            grant = self._refresh(used, account)
            self.store.set(key, grant.access_token, ttl=self.settings.glm_access_token_ttl)
            self._follow_rotation(account, used, grant)
            return grant.access_token

    def refresh_token(self, account: Account) -> str:
        """The refresh token to use: the newest rotation when rotation is followed."""
        if self.settings.follow_token_rotation:
            rotated = self.store.get(keys.rotated_token(account.fingerprint))
            if rotated:
                return rotated
        return account.refresh_token

    def invalidate(self, account: Account) -> None:
        """Forget the cached access token (the upstream said it expired)."""
        self.store.delete(keys.access_token(account.fingerprint))

    def check(self, refresh_token: str, account: Account | None = None) -> bool:
        """Liveness of a refresh token: can it still be exchanged for an access token?

        Nothing is cached, but a rotation is still followed: when the upstream
        retires old tokens, checking an account would otherwise kill it.
        """
        try:
            grant = self._refresh(refresh_token, account)
        except RefreshTokenExpired:
            return False
        except UpstreamError as exc:
            if exc.code == "access_token_expired":
                return False
            raise
        self._follow_rotation(Account.from_token(refresh_token), refresh_token, grant)
        return bool(grant.access_token)

    def _follow_rotation(self, account: Account, used: str, grant: TokenGrant) -> None:
        """Keep the new refresh token if the refresh with ``used`` rotated it."""
        new = grant.refresh_token
        if not (self.settings.follow_token_rotation and new and new != used):
            return
        self.store.set(keys.rotated_token(account.fingerprint), new)
        if self.on_rotation is not None:
            self.on_rotation(account, new)
