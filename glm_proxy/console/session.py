"""Console sign-in: the admin key once, then a signed session cookie.

The cookie holds only a signed random session id; the session itself (its
CSRF token's seed and a one-time notice) is kept in the store with a TTL of
``CONSOLE_IDLE_TIMEOUT`` that every page view renews, so an idle session
expires and signing out ends it in every worker. The cookie is ``HttpOnly``,
``SameSite=Strict`` and ``Secure`` when the request came over HTTPS (or a
front proxy says so with ``X-Forwarded-Proto: https``). The signing secret is
``CONSOLE_SECRET`` or, by default, derived from ``ADMIN_KEY`` (a new admin key
signs everybody out). Failed sign-ins are counted per client address in the
store, so guessing the admin key is slow however many workers there are.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass

from flask import Request
from itsdangerous import BadSignature, URLSafeSerializer
from werkzeug.wrappers import Response

from glm_proxy.store.base import Store

COOKIE = "glm_console"
SIGNIN_WINDOW = 600  # seconds over which failed sign-ins are counted


def session_key(sid: str) -> str:
    return f"console:session:{sid}"


def signin_key(address: str, bucket: int) -> str:
    return f"console:signin:{address}:{bucket}"


@dataclass
class Session:
    sid: str
    csrf: str
    notice: str = ""


class Sessions:
    """Sessions of one app: signed cookies over store-kept, expiring session records."""

    def __init__(self, settings, store: Store) -> None:
        secret = (
            settings.console_secret
            or hmac.new(
                settings.admin_key.encode("utf-8"), b"glm-proxy console session", hashlib.sha256
            ).hexdigest()
        )
        self.settings = settings
        self.store = store
        self.admin_digest = hashlib.sha256(settings.admin_key.encode("utf-8")).digest()
        self.signer = URLSafeSerializer(secret, salt="console-session")
        self.csrf_secret = hmac.new(secret.encode(), b"csrf", hashlib.sha256).digest()

    @property
    def idle(self) -> float:
        return max(1.0, self.settings.console_idle_timeout)

    # -- the admin key -----------------------------------------------------------------

    def key_matches(self, given: str) -> bool:
        """Constant time, whatever the lengths."""
        digest = hashlib.sha256(given.encode("utf-8")).digest()
        return hmac.compare_digest(digest, self.admin_digest)

    def too_many_failures(self, address: str) -> bool:
        bucket = int(time.time() // SIGNIN_WINDOW)
        keys = [signin_key(address, bucket), signin_key(address, bucket - 1)]
        failures = sum(int(self.store.get(k) or 0) for k in keys)
        return failures >= max(1, self.settings.console_signin_attempts)

    def count_failure(self, address: str) -> None:
        bucket = int(time.time() // SIGNIN_WINDOW)
        self.store.incr(signin_key(address, bucket), ttl=2 * SIGNIN_WINDOW)

    # -- sessions ----------------------------------------------------------------------

    def start(self) -> Session:
        sid = os.urandom(24).hex()
        session = Session(sid, self._csrf(sid))
        self._save(session)
        return session

    def _csrf(self, sid: str) -> str:
        return hmac.new(self.csrf_secret, sid.encode(), hashlib.sha256).hexdigest()

    def _save(self, session: Session) -> None:
        body = json.dumps({"notice": session.notice, "at": time.time()})
        self.store.set(session_key(session.sid), body, ttl=self.idle)

    def current(self, request: Request) -> Session | None:
        """The request's live session (its idle clock renewed), or None."""
        raw = request.cookies.get(COOKIE)
        if not raw:
            return None
        try:
            sid = self.signer.loads(raw)
        except BadSignature:
            return None
        if not isinstance(sid, str):
            return None
        body = self.store.get(session_key(sid))
        if body is None:
            return None
        try:
            notice = str(json.loads(body).get("notice") or "")
        except ValueError:
            notice = ""
        session = Session(sid, self._csrf(sid), notice)
        self._save(Session(sid, session.csrf))  # renew the idle clock; a notice is shown once
        return session

    def notify(self, session: Session, notice: str) -> None:
        """A message for the next page (after a redirect)."""
        session.notice = notice
        self._save(session)

    def end(self, session: Session) -> None:
        self.store.delete(session_key(session.sid))

    def csrf_ok(self, session: Session, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(session.csrf, given or "")

    # -- the cookie --------------------------------------------------------------------

    def set_cookie(self, response: Response, request: Request, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            self.signer.dumps(session.sid),
            httponly=True,
            samesite="Strict",
            secure=is_https(request),
            path="/console",
        )

    def clear_cookie(self, response: Response, request: Request) -> None:
        response.delete_cookie(
            COOKIE, path="/console", httponly=True, samesite="Strict", secure=is_https(request)
        )


def is_https(request: Request) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return request.is_secure or forwarded == "https"
