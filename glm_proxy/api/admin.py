"""``/admin``: operate the account pool and see usage, behind ``ADMIN_KEY``.

- ``GET  /admin/accounts``: every pool account: masked fingerprint, state and
  its reason (with the fix), in-flight answers, last error, cooldown, requests
  served, credits;
- ``GET  /admin/accounts/<fp>``; ``POST /admin/accounts/<fp>/check`` (refresh
  its token now: alive -> active, rejected -> dead);
  ``POST /admin/accounts/<fp>/disable`` and ``/enable``;
- ``PUT /admin/accounts/<fp>/cookies`` ``{"cookies": "<Cookie header or cookies.txt>"}``
  (``DELETE`` forgets them): the browser cookies for a WAF-guarded upstream;
  shown only as cookie names and a fingerprint;
- ``POST /admin/accounts/<fp>/doctor``: the ``python -m glm_proxy doctor`` steps
  (refresh, server time, catalogue, a tiny answer, stop, delete) for this account;
- ``GET  /admin/pool``: the pool's health in one answer (counts per state and
  reason, credits, budget use, in flight, next tries; shape in docs/accounts.md);
  ``POST /admin/accounts/<fp>/credits`` reads an account's credits now;
- ``GET  /admin/usage?window=1h|24h|7d``: requests, errors and estimated
  tokens per API key (all windows when ``window`` is omitted).
- ``GET  /admin/queue``: requests waiting for the pool's accounts now, per
  caller (``key:<name>``), across every worker and replica.
- ``GET  /admin/journal``: upstream conversations not yet confirmed deleted,
  with the recovery sweep's attempts and last error.

No response ever carries a token or key, only fingerprints. The admin key is
compared in constant time; with no ``ADMIN_KEY`` the API does not exist (404).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, request

from glm_proxy.access.auth import require_admin_key
from glm_proxy.access.limits import PASSTHROUGH, WINDOWS
from glm_proxy.accounts import Account, mask
from glm_proxy.errors import InvalidRequest, NotFound
from glm_proxy.http.plumbing import json_response
from glm_proxy.pool import AccountPool, Health, PoolOperations
from glm_proxy.pool.report import account_entry, pool_report
from glm_proxy.services import services
from glm_proxy.store import keys
from glm_proxy.upstream.client import UpstreamClient
from glm_proxy.upstream.doctor import run_checks
from glm_proxy.upstream.identity import describe_cookies, parse_cookies

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _iso(epoch: float | None) -> str | None:
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@bp.before_request
def _require_admin() -> None:
    settings = services().settings
    if not settings.admin_key:
        raise NotFound(f"Unknown endpoint: {request.method} {request.path}")
    if request.method == "OPTIONS":
        return
    require_admin_key(request, settings.admin_key, "The admin API")


def _pool() -> AccountPool:
    return services().pool


def _operations() -> PoolOperations:
    return services().operations


def _account_view(pool: AccountPool, fp: str) -> dict[str, Any]:
    entry = pool.entries.get(fp)
    account = entry.account if entry else None
    fields = pool.store.hgetall(keys.health(fp))
    health = Health.from_fields(fields)
    cooling = health.state.value == "cooling" and health.cooldown_until > time.time()
    return {
        "id": fp,
        "object": "account",
        "name": entry.name if entry else "",
        "token": mask(account.refresh_token) if account else f"<secret {fp}>",
        "source": entry.source if entry else "passthrough",
        "state": health.state.value,
        "cooling": cooling,
        "cooldown_until": _iso(health.cooldown_until) if cooling else None,
        "failures": health.failures,
        "last_error": health.last_error or None,
        "in_flight": pool.in_flight(fp),
        "max_streams": account.max_streams if account else None,
        "requests_served": int(fields.get("served") or 0),
        "last_used": _iso(pool.last_used(fp)),
        "state_since": _iso(health.changed_at),
        "cookies": describe_cookies(_upstream().cookie_jar(account)) if account else None,
        **{
            k: v
            for k, v in account_entry(pool, fp, health, fields, time.time()).items()
            if k in ("reason", "fix", "next_try_at", "credits")
        },
    }


def _upstream() -> UpstreamClient:
    return services().upstream


def _known(fp: str) -> str:
    if fp not in _pool().entries:
        raise NotFound(f"No pool account with id {fp!r}.", code="account_not_found")
    return fp


def _known_account(fp: str) -> Account:
    account = _pool().account_by_fingerprint(fp)
    if account is None:
        raise NotFound(f"No pool account with id {fp!r}.", code="account_not_found")
    return account


@bp.get("/accounts")
def list_accounts() -> Response:
    pool = _pool()
    return json_response(
        {"object": "list", "data": [_account_view(pool, fp) for fp in pool.entries]}
    )


@bp.get("/accounts/<fp>")
def get_account(fp: str) -> Response:
    return json_response(_account_view(_pool(), _known(fp)))


@bp.post("/accounts/<fp>/check")
def check_account(fp: str) -> Response:
    pool = _pool()
    _operations().recheck(_known(fp))
    return json_response(_account_view(pool, fp))


@bp.post("/accounts/<fp>/disable")
def disable_account(fp: str) -> Response:
    pool = _pool()
    pool.set_enabled(_known(fp), False)
    return json_response(_account_view(pool, fp))


@bp.post("/accounts/<fp>/enable")
def enable_account(fp: str) -> Response:
    pool = _pool()
    pool.set_enabled(_known(fp), True)
    return json_response(_account_view(pool, fp))


@bp.put("/accounts/<fp>/cookies")
def set_cookies(fp: str) -> Response:
    pool = _pool()
    body = request.get_json(silent=True)
    text = body.get("cookies") if isinstance(body, dict) else None
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest(
            'Send {"cookies": "<the browser\'s Cookie header or a Netscape cookies.txt>"}.',
            param="cookies",
        )
    try:
        parse_cookies(text)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="cookies") from None
    pool.store.set(keys.cookies(_known(fp)), text)
    return json_response(_account_view(pool, fp))


@bp.delete("/accounts/<fp>/cookies")
def delete_cookies(fp: str) -> Response:
    pool = _pool()
    pool.store.delete(keys.cookies(_known(fp)))
    return json_response(_account_view(pool, fp))


@bp.post("/accounts/<fp>/doctor")
def doctor_account(fp: str) -> Response:
    steps = run_checks(_upstream(), _known_account(fp))
    ok = bool(steps) and all(s.ok for s in steps) and steps[-1].name == "delete"
    return json_response({"id": fp, "ok": ok, "steps": [s.to_dict() for s in steps]})


@bp.get("/pool")
def pool_health() -> Response:
    """Counts per state and reason, credits, budgets, in flight, next tries (docs/accounts.md)."""
    return json_response(pool_report(_pool()))


@bp.post("/accounts/<fp>/credits")
def read_credits(fp: str) -> Response:
    """Read the account's credits from the upstream now (``member_info``)."""
    _operations().credits.read(_known_account(fp))
    return json_response(_account_view(_pool(), fp))


@bp.get("/usage")
def usage() -> Response:
    svc = services()
    limits, auth = svc.limits, svc.auth
    asked = request.args.get("window")
    if asked and asked not in WINDOWS:
        raise InvalidRequest(
            f"window must be one of {', '.join(WINDOWS)}", param="window", code="invalid_window"
        )
    windows = {asked: WINDOWS[asked]} if asked else WINDOWS
    names = [*auth.keyring.names, PASSTHROUGH]
    data = [
        {
            "key": name,
            "windows": {w: limits.usage.window(name, seconds) for w, seconds in windows.items()},
        }
        for name in names
    ]
    return json_response({"object": "list", "data": data})


@bp.get("/queue")
def queue() -> Response:
    waiting = _pool().waiting()
    data = [{"caller": caller, "waiting": n} for caller, n in sorted(waiting.items())]
    return json_response({"object": "queue", "waiting": sum(waiting.values()), "data": data})


@bp.get("/journal")
def journal() -> Response:
    """Upstream conversations not yet confirmed deleted (the crash-safe journal).

    Answers in flight appear here briefly; an entry with ``attempts`` > 0 is
    one the recovery sweep could not delete yet (``last_error`` says why,
    ``due`` when it tries again). Pass-through tokens are never shown.
    """
    svc = services()
    entries = svc.journal.entries() if svc.journal is not None else []
    data = [
        {
            **entry.public(),
            "object": "journal.entry",
            "created_at": _iso(entry.created),
            "due_at": _iso(entry.due),
        }
        for entry in entries
    ]
    return json_response({"object": "list", "data": data})
