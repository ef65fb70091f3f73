"""The pool as the console shows it: one adapter over what the server exposes.

``pool_accounts`` is the single place the console reads accounts from: the
admin API's account view (``GET /admin/accounts``), with the pool report's
budget use per account (``GET /admin/pool``, ``pool.report``) flattened into
the numbers a table shows: ``credits`` (points left), ``budget_used`` and
``budget`` (answers this hour, of ``ACCOUNT_MAX_PER_HOUR``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from glm_proxy.api.admin import _account_view
from glm_proxy.pool import AccountPool
from glm_proxy.pool.report import pool_report

OPTIONAL = ("reason", "credits", "budget_used", "budget")


def pool_accounts(pool: AccountPool) -> list[dict[str, Any]]:
    """Every pool account as a dict: the admin API's fields, plus any of ``OPTIONAL``."""
    report = {a["id"]: a for a in pool_report(pool)["accounts"]}
    per_hour = pool.settings.account_max_per_hour
    accounts = []
    for fp in list(pool.entries):
        view = _account_view(pool, fp)
        credits = view.get("credits")
        view["credits"] = credits.get("points") if isinstance(credits, dict) else credits
        budget = (report.get(fp) or {}).get("budget")
        if budget is not None:
            view["budget_used"] = budget["hour_used"]
            view["budget"] = per_hour or None
        accounts.append(view)
    return accounts


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
        if name.endswith((":alive", ":seq", ":owner", ":fair")):  # the line's side tables
            continue
        waiting += len(store.zrange_by_score(name, float("inf"), limit=100_000))
    return waiting


__all__ = ["OPTIONAL", "pool_accounts", "queue_length", "states", "total"]
