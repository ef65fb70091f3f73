"""What operators and the upstream client ask of the pool beyond leasing.

Re-checking an account on demand, giving an account whose token an operator
replaced a fresh start, writing followed token rotations back to
``ACCOUNTS_FILE``, and the accounts' credits (``credits``: daily claim, balance).
"""

from __future__ import annotations

import logging

from glm_proxy.accounts import Account, fingerprint
from glm_proxy.errors import GLMProxyError, RefreshTokenExpired
from glm_proxy.pool.bookkeeping import describe_error
from glm_proxy.pool.core import AccountPool
from glm_proxy.pool.credits import Credits
from glm_proxy.pool.health import Event, Health
from glm_proxy.store import keys

log = logging.getLogger(__name__)


class PoolOperations:
    """What operators and the upstream client ask of the pool beyond leasing."""

    def __init__(self, pool: AccountPool, upstream) -> None:
        self.pool = pool
        self.upstream = upstream
        self.credits = Credits(pool.settings, pool.store, upstream, is_pooled=pool.is_pooled)

    def recheck(self, fp: str) -> Health:
        """Refresh the account's token now; alive -> active, 40102 -> dead.

        Goes through the upstream client's single-flight refresh so a rotated
        token is followed exactly as in normal traffic, and the fresh access
        token is cached for the next answer.
        """
        account = self.pool.account_by_fingerprint(fp)
        if account is None:
            raise KeyError(fp)
        self.upstream.invalidate(account)
        try:
            self.upstream.access_token(account)
        except RefreshTokenExpired as exc:
            self.pool.report_dead(account, exc)
            return self.pool.health(fp)
        except GLMProxyError as exc:
            reason = getattr(exc, "reason", "") or "unknown"
            return self.pool.apply(fp, Event.FAILURE, describe_error(exc), reason)
        health = self.pool.apply(fp, Event.CHECK_OK)
        self.pool.notify()
        return health

    def adopt_configured_tokens(self) -> list[str]:
        """Give every account whose token an operator replaced a fresh start; run at start-up.

        An ``id=`` line (written when a rotation is followed) keeps the account's
        identity whatever token it holds. So when an operator pastes a new token
        for a dead account, the old identity's state would stay: still dead, and
        the followed rotation (``rot:<id>``, the dead token) would even be used
        instead of the new one. The store remembers which token each account was
        last configured with (``cfgtok:<id>``, its fingerprint); a different one
        now, that is not simply the rotation the service itself wrote back, means
        a new token: the rotation and the cached access token are dropped and the
        health starts over (``token_changed``; a disabled account stays disabled).
        Returns the identities that were reset.
        """
        store = self.pool.store
        reset = []
        for fp, entry in self.pool.entries.items():
            configured = fingerprint(entry.account.refresh_token)
            seen = store.get(keys.configured_token(fp))
            if seen == configured:
                continue
            store.set(keys.configured_token(fp), configured)
            if seen is None:
                continue  # first start with this account: nothing to compare with
            rotated = store.get(keys.rotated_token(fp))
            if rotated and fingerprint(rotated) == configured:
                continue  # the token the service wrote back itself
            store.delete(keys.rotated_token(fp))
            self.upstream.invalidate(entry.account)
            self.pool.apply(fp, Event.TOKEN_CHANGED)
            log.info("%s: its configured token changed; it starts fresh", entry.account)
            reset.append(fp)
        return reset

    def on_rotation(self, account: Account, new_token: str) -> None:
        """The upstream issued a new refresh token (the store already has it).

        A pool read from ``ACCOUNTS_FILE`` gets the new token written back, so
        a restart without Redis starts from a token that still works.
        """
        entry = self.pool.entries.get(account.fingerprint)
        path = self.pool.settings.accounts_file
        if entry is None or entry.source != "file" or not path:
            return
        from glm_proxy.pool.registry import rewrite_token

        if rewrite_token(path, account.fingerprint, new_token):
            log.info("%s: followed a refresh-token rotation into ACCOUNTS_FILE", account)
