"""Building one upstream request's URL and headers (the client's identity side).

A mixin of ``UpstreamClient``: it uses the client's settings, store, clock,
nonce source and device-id strategy, and the account's browser cookies, so the
signature, ``X-Device-Id``, ``Cookie`` and client hints of one request always
agree with each other (upstream-protocol.md §3, §15.2).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from glm_proxy.accounts import Account
from glm_proxy.ids import uuid4_hex
from glm_proxy.store import keys
from glm_proxy.upstream.headers import JSON_CT, browser_headers
from glm_proxy.upstream.identity import cookie_header, parse_cookies
from glm_proxy.upstream.signing import signature_headers

if TYPE_CHECKING:
    from glm_proxy.config import Settings
    from glm_proxy.store.base import Store
    from glm_proxy.upstream.identity import DeviceIds

log = logging.getLogger(__name__)


class RequestHeaders:
    """URL, referer and headers of upstream requests (see the module docstring)."""

    # Provided by ``UpstreamClient``.
    settings: Settings
    store: Store
    device_ids: DeviceIds
    clock_offset_ms: float
    _clock: Callable[[], float]
    _nonce: Callable[[], str]
    _jars: dict[str, dict[str, str]]

    def current_refresh_token(self, account: Account) -> str:  # pragma: no cover
        raise NotImplementedError

    def url(self, path: str) -> str:
        return self.settings.glm_base_url.rstrip("/") + path

    def referer(self, assistant_id: str | None = None) -> str:
        origin = self.settings.glm_origin
        if assistant_id and assistant_id != self.settings.glm_assistant_id:
            return f"{origin}/main/gdetail/{assistant_id}"
        return f"{origin}/main/alltoolsdetail"

    def headers(
        self,
        *,
        token: str | None,
        signed: bool,
        referer: str | None = None,
        content_type: str | None = JSON_CT,
        accept: str = "application/json, text/plain, */*",
        account: Account | None = None,
        refreshing: bool = False,
    ) -> dict[str, str]:
        """Headers for one request, and a signature when ``signed``.

        With an ``account``, its device id (per ``GLM_DEVICE_ID_STRATEGY``) and
        its browser cookies (token cookies kept equal to the tokens in use) come
        along; ``refreshing`` means ``token`` is the refresh token itself.
        """
        signature = None
        if signed:
            s = self.settings
            signature = signature_headers(
                self.now_ms(),
                self._nonce(),
                s.glm_sign_secret,
                check_digit=s.glm_sign_check_digit,
            )
        cookie = ""
        refresh_token = None
        if account is not None:
            refresh_token = self.current_refresh_token(account)
            jar = self.cookie_jar(account)
            cookie = cookie_header(jar, None if refreshing else token, refresh_token)
        device = self.device_ids.for_request(
            refresh_token, account.fingerprint if account is not None else None
        )
        return browser_headers(
            self.settings,
            token=token,
            referer=referer,
            content_type=content_type,
            accept=accept,
            request_ids=(device, uuid4_hex()),
            signature=signature,
            cookie=cookie,
        )

    def now_ms(self) -> int:
        """Milliseconds for ``X-Timestamp``: the local clock plus the server offset."""
        return int(self._clock() * 1000 + self.clock_offset_ms)

    def cookie_jar(self, account: Account) -> dict[str, str]:
        """The account's browser cookies: set through the admin API (store), else configured."""
        text = self.store.get(keys.cookies(account.fingerprint)) or account.cookies
        if not text:
            return {}
        jar = self._jars.get(text)
        if jar is None:
            try:
                jar = parse_cookies(text)
            except ValueError:
                log.warning("ignoring unreadable cookies of %s", account)
                jar = {}
            if len(self._jars) > 1024:
                self._jars.clear()
            self._jars[text] = jar
        return jar
