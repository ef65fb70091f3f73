"""Encryption at rest for the secrets the store holds (``STORE_SECRET_KEY``).

Some store values are secrets (``docs/teams.md`` lists them): cached access
tokens (``at:``), followed token rotations (``rot:``), cookies set through the
admin API (``ck:``) and the refresh token a pass-through caller's conversation
needs to be deleted later (``sweep:conv:``, ``journal:conv:``). Anyone who can read
the Redis (a shared instance, a backup, a replica) could use them. With
``STORE_SECRET_KEY`` set, ``SealedStore`` encrypts exactly those values with
Fernet (AES-128-CBC and HMAC-SHA256, from ``cryptography``) on the way in and
decrypts them on the way out; every other key and every other operation goes
to the store unchanged, so both stores, memory and Redis, get it the same way.
The console's account records (``console:accounts``, or ``DATA_DIR``) are sealed
with the same cipher by ``glm_proxy.console.data.AccountCodec``.

Several comma-separated keys rotate: the first encrypts, all decrypt. A value
written before encryption was turned on is read as it is (and sealed on its
next write); one that no key opens is treated as missing (a cached token is
then fetched again), with a warning.

``python -m glm_proxy.store.secrets`` prints a new key.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

__all__ = ["SECRET_PREFIXES", "SealedStore", "make_cipher"]

log = logging.getLogger(__name__)

# Key prefixes whose values are secrets (see ``glm_proxy.store.keys``).
SECRET_PREFIXES = ("at:", "rot:", "ck:", "sweep:conv:", "journal:conv:")
FERNET_MARK = "gAAAAA"  # every Fernet token starts so (version byte + timestamp)


def make_cipher(setting: str) -> MultiFernet:
    """The cipher for ``STORE_SECRET_KEY`` (comma-separated keys); ValueError when malformed."""
    keys = [k.strip() for k in setting.split(",") if k.strip()]
    if not keys:
        raise ValueError("no key given")
    try:
        return MultiFernet([Fernet(k.encode("ascii")) for k in keys])
    except (ValueError, UnicodeEncodeError):
        raise ValueError(
            "each key must be 32 url-safe base64-encoded bytes "
            "(make one with `python -m glm_proxy.store.secrets`)"
        ) from None


def is_secret(key: str) -> bool:
    return key.startswith(SECRET_PREFIXES)


class SealedStore:
    """A store whose secret-bearing values are encrypted; everything else passes through."""

    def __init__(self, inner: Any, cipher: MultiFernet) -> None:
        self.inner = inner
        self.cipher = cipher

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _seal(self, key: str, value: str) -> str:
        return (
            self.cipher.encrypt(value.encode("utf-8")).decode("ascii") if is_secret(key) else value
        )

    def _open(self, key: str, value: str | None) -> str | None:
        if value is None or not is_secret(key) or not value.startswith(FERNET_MARK):
            return value  # not a secret, or written before encryption was turned on
        try:
            return self.cipher.decrypt(value.encode("ascii")).decode("utf-8")
        except InvalidToken:
            log.warning("a sealed store value could not be opened (STORE_SECRET_KEY changed?)")
            return None

    def get(self, key: str) -> str | None:
        return self._open(key, self.inner.get(key))

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self.inner.set(key, self._seal(key, value), ttl=ttl)

    def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        return self.inner.set_if_absent(key, self._seal(key, value), ttl=ttl)


def _main() -> int:
    print(Fernet.generate_key().decode("ascii"))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
