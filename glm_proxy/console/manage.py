"""``/console/accounts`` and ``/console/keys``: the pool and the team keys, managed.

Accounts and keys from the environment and files are listed read-only (they
stay where the operator wrote them); those made here live in the console's
data (SQLite in ``DATA_DIR``, or Redis) and reach every worker through the
registry. Operational actions (enable, disable, check, doctor) work on every
pool account, as in the admin API. A new or rotated key's secret is shown
once, on the page that answers the form, and never again.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

from flask import request
from werkzeug.wrappers import Response

from glm_proxy.access.auth import check_token_text
from glm_proxy.access.keys import KEY_NAME
from glm_proxy.accounts import fingerprint
from glm_proxy.console import usage as history
from glm_proxy.console.data import ConsoleAccount, ConsoleKey
from glm_proxy.console.pool_view import pool_accounts
from glm_proxy.console.registry import SECRET_PREFIX
from glm_proxy.console.state import console, done, page
from glm_proxy.console.views import bp
from glm_proxy.errors import GLMProxyError
from glm_proxy.services import services
from glm_proxy.upstream.doctor import run_checks
from glm_proxy.upstream.identity import parse_cookies


class FormError(ValueError):
    """A form field the console refuses; the message names the field, never echoes a secret."""


# -- accounts -----------------------------------------------------------------------------


def _accounts_page(status: int = 200, **context) -> Response:
    svc = services()
    made = {a.fingerprint for a in console().data.list_accounts()}
    return page(
        "accounts.html",
        status,
        accounts=pool_accounts(svc.pool),
        console_made=made,
        **context,
    )


@bp.get("/accounts")
def accounts() -> Response:
    return _accounts_page()


def _positive(name: str, text: str, default: int | None) -> int | None:
    text = text.strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise FormError(f"{name} must be a whole number of at least 1.")
    return int(text)


@bp.post("/accounts")
def add_account() -> Response:
    svc = services()
    form = request.form
    try:
        token = form.get("refresh_token", "").strip()
        if not token:
            raise FormError("Paste the account's refresh token.")
        try:
            check_token_text(token, "refresh token", svc.settings.max_token_length)
        except GLMProxyError as exc:
            raise FormError(exc.message) from None
        cookies = form.get("cookies", "").strip()
        if cookies:
            try:
                parse_cookies(cookies)
            except ValueError as exc:
                raise FormError(f"Cookies: {exc}") from None
        name = form.get("name", "").strip()
        if name and not KEY_NAME.match(name):
            raise FormError("The name may hold 1-64 letters, digits and _.@- only.")
        streams = _positive(
            "Streams", form.get("max_streams", ""), svc.settings.account_max_streams
        )
        fp = fingerprint(token)
        if fp in svc.pool.entries:
            raise FormError(f"The pool already holds this account ({fp}).")
    except FormError as exc:
        return _accounts_page(400, notice=str(exc))
    account = ConsoleAccount(fp, token, name, streams or 1, cookies, time.time())
    console().data.put_account(account)
    console().registry.refresh()
    return done("console.accounts", f"Account {fp} added to the pool.")


def _pool_account(fp: str):
    account = services().pool.account_by_fingerprint(fp)
    if account is None:
        raise FormError(f"No pool account {fp}.")
    return account


@bp.post("/accounts/<fp>/remove")
def remove_account(fp: str) -> Response:
    if not console().data.delete_account(fp):
        return _accounts_page(400, notice="Only accounts added in the console can be removed here.")
    console().registry.refresh()
    return done("console.accounts", f"Account {fp} removed from the pool.")


@bp.post("/accounts/<fp>/<action>")
def account_action(fp: str, action: str) -> Response:
    svc = services()
    try:
        account = _pool_account(fp)
    except FormError as exc:
        return _accounts_page(404, notice=str(exc))
    if action in ("enable", "disable"):
        svc.pool.set_enabled(fp, action == "enable")
        return done("console.accounts", f"Account {fp} {action}d.")
    if action == "check":
        health = svc.operations.recheck(fp)
        return done("console.accounts", f"Account {fp} checked: {health.state.value}.")
    if action == "doctor":
        steps = run_checks(svc.upstream, account)
        ok = bool(steps) and all(s.ok for s in steps) and steps[-1].name == "delete"
        return _accounts_page(doctor={"id": fp, "ok": ok, "steps": [s.to_dict() for s in steps]})
    return _accounts_page(404, notice=f"Unknown action {action!r}.")


# -- keys ---------------------------------------------------------------------------------


def _keys_page(status: int = 200, **context) -> Response:
    svc = services()
    made = console().data.list_keys()
    rows = console().data.usage(history.now_hour() - 23)
    return page(
        "keys.html",
        status,
        configured=svc.auth.keyring.names,
        keys=made,
        usage=history.per_name(rows, history.now_hour() - 23),
        accounts=[(fp, e.name) for fp, e in svc.pool.entries.items()],
        stamp=history.stamp,
        **context,
    )


@bp.get("/keys")
def keys() -> Response:
    return _keys_page()


def _list(text: str) -> list[str] | None:
    items = [item.strip() for item in text.replace("\n", ",").split(",") if item.strip()]
    return items or None


def _expiry(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise FormError("The expiry is a date, YYYY-MM-DD.") from None
    return day.timestamp() + 86400  # the key works through that whole day (UTC)


def _new_key(form) -> ConsoleKey:
    svc = services()
    name = form.get("name", "").strip()
    if not KEY_NAME.match(name):
        raise FormError("The key name is 1-64 letters, digits and _.@- (it names usage and logs).")
    taken = set(svc.auth.keyring.names) | {k.name for k in console().data.list_keys()}
    if name in taken:
        raise FormError(f"A key named {name} exists already.")
    accounts = form.getlist("accounts") or None
    unknown = [fp for fp in accounts or () if fp not in svc.pool.entries]
    if unknown:
        raise FormError("Allowed accounts: unknown " + ", ".join(unknown[:3]) + ".")
    return ConsoleKey(
        name=name,
        digest="",
        created_at=time.time(),
        rpm=_positive("Requests per minute", form.get("rpm", ""), None),
        max_concurrent=_positive("Concurrent requests", form.get("max_concurrent", ""), None),
        models=_list(form.get("models", "")),
        accounts=accounts,
        expires_at=_expiry(form.get("expires", "")),
    )


def _issue(key: ConsoleKey) -> str:
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    key.digest = ConsoleKey.digest_of(secret)
    console().data.put_key(key)
    console().registry.refresh()
    return secret


@bp.post("/keys")
def create_key() -> Response:
    try:
        key = _new_key(request.form)
    except FormError as exc:
        return _keys_page(400, notice=str(exc))
    secret = _issue(key)
    return _keys_page(201, secret=secret, secret_name=key.name)


def _console_key(name: str) -> ConsoleKey | None:
    return next((k for k in console().data.list_keys() if k.name == name), None)


@bp.post("/keys/<name>/rotate")
def rotate_key(name: str) -> Response:
    key = _console_key(name)
    if key is None:
        return _keys_page(404, notice="Only keys made in the console can be rotated here.")
    secret = _issue(key)
    return _keys_page(200, secret=secret, secret_name=key.name)


@bp.post("/keys/<name>/revoke")
def revoke_key(name: str) -> Response:
    if not console().data.delete_key(name):
        return _keys_page(404, notice="Only keys made in the console can be revoked here.")
    console().registry.refresh()
    return done("console.keys", f"Key {name} revoked.")
