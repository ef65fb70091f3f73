"""The console's keys and accounts, live in every process.

Each process keeps a copy of the console's keys (for the API's key lookup)
and joins the console's accounts to its pool. The copy follows the data's
version: a process that changes something refreshes at once; the others read
the version at most every ``REFRESH_EVERY`` seconds, before a request (and
sooner after an unknown key, so a key made on another worker works within a
moment), so every worker and replica serves the same keys and pool without a
restart.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time

from glm_proxy.access.keys import ApiKey
from glm_proxy.accounts import Account
from glm_proxy.console.data import ConsoleAccount, ConsoleData
from glm_proxy.pool.core import AccountPool
from glm_proxy.pool.registry import PoolEntry

log = logging.getLogger(__name__)

REFRESH_EVERY = 2.0  # seconds between version reads
REFRESH_ON_MISS = 0.25  # ... after an unknown key was presented
SECRET_PREFIX = "sk-glm-"  # every console key starts so; such a value never goes upstream
SOURCE = "console"


class ConsoleRegistry:
    """Console keys as a ``KeySource`` for the authenticator; console accounts in the pool."""

    def __init__(self, data: ConsoleData, pool: AccountPool) -> None:
        self.data = data
        self.pool = pool
        self.configured = dict(pool.entries)  # from ACCOUNTS / ACCOUNTS_FILE: never replaced
        self._keys: tuple[ApiKey, ...] = ()
        self._version: str | None = None
        self._checked = 0.0

    # -- the authenticator's view ------------------------------------------------------

    def __bool__(self) -> bool:
        self.maybe_refresh()
        return bool(self._keys)

    def match(self, credential: str) -> ApiKey | None:
        """The console key ``credential`` is; every key is compared (constant time)."""
        digest = hashlib.sha256(credential.encode("utf-8")).digest()
        found = self._find(digest)
        if found is None and (
            self.claims(credential) or time.monotonic() - self._checked > REFRESH_ON_MISS
        ):
            self.maybe_refresh(force=True)  # perhaps made a moment ago in another process
            found = self._find(digest)
        return found

    def claims(self, credential: str) -> bool:
        return credential.startswith(SECRET_PREFIX)

    def _find(self, digest: bytes) -> ApiKey | None:
        found = None
        for key in self._keys:
            if hmac.compare_digest(digest, key.digest):
                found = key
        return found

    # -- following the data --------------------------------------------------------------

    def maybe_refresh(self, force: bool = False) -> None:
        """Reload when the data changed; reads the version at most every few seconds."""
        now = time.monotonic()
        if not force and now - self._checked < REFRESH_EVERY:
            return
        self._checked = now
        try:
            version = self.data.version()
            if version != self._version:
                self._load(version)
        except Exception as exc:  # noqa: BLE001 - keep serving what we have
            log.warning("could not read the console's keys and accounts: %s", type(exc).__name__)

    def refresh(self) -> None:
        """Reload now (after a change made in this process)."""
        self._checked = time.monotonic()
        self._load(self.data.version())

    def _load(self, version: str) -> None:
        keys = self.data.list_keys()
        accounts = self.data.list_accounts()
        self._keys = tuple(k.api_key() for k in keys)
        entries = dict(self.configured)
        for account in accounts:
            entries.setdefault(account.fingerprint, entry_of(account))
        # A new dict, never a mutation: a loop over the old one elsewhere stays valid.
        self.pool.entries = entries
        self._version = version

    def follow_rotation(self, account: Account, new_token: str) -> None:
        """Keep a rotated refresh token of a console account (what ``ACCOUNTS_FILE`` gets)."""
        for kept in self.data.list_accounts():
            if kept.fingerprint == account.fingerprint and kept.refresh_token != new_token:
                kept.refresh_token = new_token
                self.data.put_account(kept)
                self.refresh()
                log.info("%s: followed a refresh-token rotation into the console data", account)


def entry_of(account: ConsoleAccount) -> PoolEntry:
    acct = Account(
        account.refresh_token, account.fingerprint, max(1, account.max_streams), account.cookies
    )
    return PoolEntry(acct, account.name, SOURCE)
