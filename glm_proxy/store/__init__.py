"""Shared state behind one small interface.

Everything that must agree across gunicorn workers or replicas (access-token
cache, account leases and health, conversation -> account map, upload cache,
jobs, usage counters) goes through a ``Store``. Two implementations: in-process
memory (default, one worker) and Redis (``REDIS_URL``). Keys are plain strings,
every one named in ``store.keys``; values are strings (callers serialise with orjson).
"""

from __future__ import annotations

from flask import Flask

from glm_proxy.store.base import AcquireRequest, AcquireResult, SlotCandidate, Store
from glm_proxy.store.memory import MemoryStore


def create_store(settings) -> Store:
    """The store the settings ask for; Redis is imported only when used.

    With ``STORE_SECRET_KEY`` the store seals its secret-bearing values
    (``glm_proxy.store.secrets``).
    """
    from glm_proxy.config import ConfigError

    if settings.store_backend == "redis":
        if not settings.redis_url:
            raise ConfigError("STORE=redis needs REDIS_URL")
        from glm_proxy.store.redis import RedisStore

        store: Store = RedisStore.from_url(settings.redis_url, prefix=settings.redis_prefix)
    else:
        store = MemoryStore()
    secret = getattr(settings, "store_secret_key", "")
    if not secret:
        return store
    from glm_proxy.store.secrets import SealedStore, make_cipher

    try:
        cipher = make_cipher(secret)
    except ValueError as exc:
        raise ConfigError(f"STORE_SECRET_KEY: {exc}") from None
    # A proxy, not a subclass: what it does not seal it hands to ``store`` (``__getattr__``).
    return SealedStore(store, cipher)  # type: ignore[return-value]


def init_app(app: Flask) -> None:
    settings = app.extensions["glm_settings"]
    app.extensions["glm_store"] = create_store(settings)


def get_store(app: Flask) -> Store:
    return app.extensions["glm_store"]


__all__ = [
    "AcquireRequest",
    "AcquireResult",
    "MemoryStore",
    "SlotCandidate",
    "Store",
    "create_store",
    "get_store",
    "init_app",
]
