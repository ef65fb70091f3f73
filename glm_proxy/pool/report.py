"""The pool's health in one answer: ``GET /admin/pool`` and the ``/metrics`` account gauges.

Built from the store, so every worker and replica reports the same pool. No
secret ever appears: accounts are named by fingerprint (and the operator's
label). The JSON shape is documented in ``docs/accounts.md`` (the console reads it).
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from glm_proxy.pool.core import AccountPool
from glm_proxy.pool.credits import credits_view
from glm_proxy.pool.health import Health, State
from glm_proxy.store import keys
from glm_proxy.upstream.refusals import FIXES


def iso(epoch: float | None) -> str | None:
    """An ISO-8601 UTC time (``...Z``), or None."""
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def healths(pool: AccountPool) -> dict[str, Health]:
    """Every pool account's health, in one store round trip."""
    fps = list(pool.entries)
    rows = pool.store.hgetall_many([keys.health(fp) for fp in fps])
    return {fp: Health.from_fields(fields) for fp, fields in zip(fps, rows, strict=True)}


def state_counts(pool: AccountPool) -> Counter[tuple[str, str]]:
    """(state, reason) -> number of pool accounts; reason is "" for active accounts."""
    counts: Counter[tuple[str, str]] = Counter()
    for health in healths(pool).values():
        reason = "" if health.state is State.ACTIVE else (health.reason or "unknown")
        counts[(health.state.value, reason)] += 1
    return counts


def account_entry(
    pool: AccountPool, fp: str, health: Health, fields: dict[str, str], now: float
) -> dict[str, Any]:
    """One account's line of the pool report (the admin API's account view adds to it)."""
    entry = pool.entries.get(fp)
    cooling = health.state is State.COOLING
    reason = "" if health.state is State.ACTIVE else (health.reason or "unknown")
    credit_fields = pool.store.hgetall(keys.credits(fp))
    return {
        "id": fp,
        "name": entry.name if entry else "",
        "state": health.state.value,
        "reason": reason or None,
        "fix": FIXES.get(reason) if reason else None,
        "last_error": health.last_error or None,
        "failures": health.failures,
        "next_try_at": iso(health.cooldown_until) if cooling else None,
        "usable": health.usable(now),
        "in_flight": pool.in_flight(fp),
        "max_streams": entry.account.max_streams if entry else None,
        "requests_served": int(fields.get("served") or 0),
        "credits": credits_view(credit_fields) if credit_fields else None,
    }


def pool_report(pool: AccountPool, now: float | None = None) -> dict[str, Any]:
    """Counts per state and reason, credits, budget use, in flight, next tries, per account."""
    now = time.time() if now is None else now
    s = pool.settings
    fps = list(pool.entries)
    rows = pool.store.hgetall_many([keys.health(fp) for fp in fps])
    budgets = pool.pacer.budgets
    spending = pool.pacer.views(fps) if budgets and fps else {}
    states: Counter[str] = Counter({state.value: 0 for state in State})
    reasons: Counter[str] = Counter()
    accounts = []
    for fp, fields in zip(fps, rows, strict=True):
        health = Health.from_fields(fields)
        item = account_entry(pool, fp, health, fields, now)
        states[health.state.value] += 1
        if item["reason"]:
            reasons[item["reason"]] += 1
        seen = spending.get(fp)
        item["budget"] = (
            {
                "hour_used": seen.hour_used,
                "day_used": seen.day_used,
                "left": round(pool.pacer.left(seen), 3),
                "free_at": iso(seen.free_at_ms / 1000) if seen.free_at_ms > now * 1000 else None,
            }
            if seen is not None
            else None
        )
        accounts.append(item)
    cooling_next = [
        a["next_try_at"] for a in accounts if a["state"] == "cooling" and a["next_try_at"]
    ]
    known = [a["credits"] for a in accounts if a["credits"] and a["credits"]["points"] is not None]
    return {
        "object": "pool",
        "time": iso(now),
        "accounts_total": len(accounts),
        "states": dict(states),
        "reasons": dict(reasons),
        "in_flight": sum(a["in_flight"] for a in accounts),
        "capacity": sum(a["max_streams"] or 0 for a in accounts),
        "next_try_at": min(cooling_next) if cooling_next else None,
        "budgets": {
            "max_per_hour": s.account_max_per_hour,
            "max_per_day": s.account_max_per_day,
            "min_gap": s.account_min_gap,
            "hour_window": s.account_budget_hour,
            "used_this_hour": sum(v.hour_used for v in spending.values()) if budgets else None,
        },
        "credits": {
            "known": len(known),
            "points": round(sum(c["points"] for c in known), 2),
            "spent": sum(1 for c in known if c["points"] <= 0),
        },
        "accounts": accounts,
    }
