"""The account pool: leases, queueing, health, conversation affinity.

``AccountPool`` (``app.extensions["glm_pool"]``) is what the answer job talks
to: ``lease(candidates, exclude=, require=) -> Lease`` and the
``report_success/report_failure/report_dead`` calls. Everything it decides is
kept in the store, so it holds across workers and replicas, the answer
budgets of ``pool.pacing`` included. ``PoolOperations``
(``app.extensions["glm_pool_operations"]``) is what operators ask beyond that;
it holds the pool, never the other way round.
"""

from __future__ import annotations

import logging

from flask import Flask

from glm_proxy.pool.conversations import ConversationBook
from glm_proxy.pool.core import AccountPool
from glm_proxy.pool.health import Event, Health, State
from glm_proxy.pool.lease import Lease, Slot
from glm_proxy.pool.operations import PoolOperations
from glm_proxy.pool.registry import PoolEntry, load_pool

log = logging.getLogger(__name__)


def init_app(app: Flask) -> None:
    """Build the pool from the settings; wire rotation following and wake-ups."""
    settings = app.extensions["glm_settings"]
    store = app.extensions["glm_store"]
    upstream = app.extensions["glm_upstream"]
    pool = AccountPool(settings, store, load_pool(settings))
    operations = PoolOperations(pool, upstream)
    if settings.follow_token_rotation:
        upstream.on_rotation = operations.on_rotation
    try:
        operations.adopt_configured_tokens()
    except Exception as exc:  # noqa: BLE001 - e.g. Redis down at boot: serve (503s) rather than crash-loop
        log.warning("could not compare the configured tokens with the store: %s", exc)
    pool.listen()
    if pool.entries:
        log.info(
            "account pool: %d account(s): %s",
            len(pool.entries),
            ", ".join(str(a) for a in pool.accounts),
        )
    app.extensions["glm_pool"] = pool
    app.extensions["glm_pool_operations"] = operations


__all__ = [
    "AccountPool",
    "ConversationBook",
    "Event",
    "Health",
    "Lease",
    "PoolEntry",
    "PoolOperations",
    "Slot",
    "State",
    "init_app",
    "load_pool",
]
