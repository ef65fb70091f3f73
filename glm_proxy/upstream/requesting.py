"""Building one upstream request's URL and headers (the client's identity side).

A mixin of ``UpstreamClient``: it uses the client's settings, store, clock,
nonce source and device-id strategy, and the account's browser cookies, so the
signature, ``X-Device-Id``, ``Cookie`` and client hints of one request always
agree with each other (upstream-protocol.md §3, §15.2).

``prepare`` turns them into the ``requests.PreparedRequest`` the session sends,
doing once what ``Request.prepare()`` does for every call: the handful of URLs
are parsed once each, and a header is checked once per distinct value (some
thirty headers a request, nearly all of them the same on every call).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from requests.models import PreparedRequest
from requests.structures import CaseInsensitiveDict
from requests.utils import check_header_validity, get_auth_from_url

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

CHECKED_HEADERS_MAX = 4096  # distinct (name, value) pairs remembered as valid; then forgotten


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
    _prepared_urls: dict[str, tuple[str, bool]]
    _checked_headers: set[tuple[str, str]]

    def current_refresh_token(self, account: Account) -> str:  # pragma: no cover
        raise NotImplementedError

    def prepare(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        files: Any = None,
    ) -> PreparedRequest:
        """What ``requests.Request(method, url, headers=..., data=..., files=...).prepare()``
        returns, without its per-call work that cannot change the result.

        The URL is parsed once per distinct URL (a few paths of one base); each header
        is checked as ``requests`` checks it (``InvalidHeader`` on a value with a line
        break or leading whitespace) once per distinct name and value; no cookie jar
        is made (the session sends none; ``Cookie`` is an explicit header). The body,
        its framing headers and credentials in the URL are prepared as ``prepare()`` does.
        """
        prepared = PreparedRequest()
        prepared.prepare_method(method)
        known = self._prepared_urls.get(url)
        if known is None:
            prepared.prepare_url(url, None)
            known = (prepared.url or "", any(get_auth_from_url(prepared.url or "")))
            if len(self._prepared_urls) > 256:
                self._prepared_urls.clear()
            self._prepared_urls[url] = known
        prepared.url, url_auth = known
        checked = self._checked_headers
        pairs = headers.items() if headers else ()
        for pair in pairs:
            if pair not in checked:
                check_header_validity(pair)
                if len(checked) >= CHECKED_HEADERS_MAX:
                    checked.clear()
                checked.add(pair)
        prepared.headers = CaseInsensitiveDict(pairs)
        prepared.prepare_body(data, files)
        if url_auth:
            prepared.prepare_auth(None, url)
        return prepared

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
