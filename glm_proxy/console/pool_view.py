"""The pool as the console shows it: one adapter over what the server exposes.

``pool_accounts`` is the single place the console reads accounts from. Today
it is the admin API's account view (``GET /admin/accounts``); fields the pool
may expose later (``reason``, ``credits``, ``budget_used``, ``budget``) are
rendered whenever an account carries them, so a richer pool view only needs
to be plugged in here.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from glm_proxy.api.admin import _account_view
from glm_proxy.pool import AccountPool

OPTIONAL = ("reason", "credits", "budget_used", "budget")


def pool_accounts(pool: AccountPool) -> list[dict[str, Any]]:
    """Every pool account as a dict: the admin API's fields, plus any of ``OPTIONAL``."""
    return [_account_view(pool, fp) for fp in list(pool.entries)]


def states(accounts: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    """(state, reason, count) rows, most common first."""
    counted = Counter((a.get("state") or "?", a.get("reason") or "") for a in accounts)
    return [(state, reason, n) for (state, reason), n in counted.most_common()]


def total(accounts: list[dict[str, Any]], field: str) -> float | None:
    """The sum of a numeric field over the accounts that carry it (None when none does)."""
    values = [a[field] for a in accounts if isinstance(a.get(field), int | float)]
    return sum(values) if values else None


def queue_length(pool: AccountPool) -> int:
    """Requests waiting for an account, in every process sharing the store."""
    store, waiting = pool.store, 0
    for name in store.scan("queue:"):
        if name.endswith((":alive", ":seq")):
            continue
        waiting += len(store.zrange_by_score(name, float("inf"), limit=100_000))
    return waiting


__all__ = ["OPTIONAL", "pool_accounts", "queue_length", "states", "total"]
