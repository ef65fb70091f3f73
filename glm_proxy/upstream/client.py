"""The only code that talks to chatglm.cn.

Signed requests on one gevent-friendly ``requests.Session`` (a shared connection
pool; ``Set-Cookie`` is refused so accounts never leak into each other: an
account's browser cookies are sent explicitly, see ``requesting.py``), the
token refresh call (the cache with single-flight refresh is ``tokens.py``), the
answer stream. The 2026 management calls (server clock, stop, deletes with
fallbacks, model catalogue) are in ``control.py``; uploads and video in
``media.py``. It knows nothing about OpenAI. ``requests`` exceptions become
our errors here and nowhere else.
"""

from __future__ import annotations

import http.cookiejar
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import requests
from requests.adapters import HTTPAdapter

from glm_proxy.accounts import Account
from glm_proxy.config import Settings
from glm_proxy.errors import (
    AccessTokenExpired,
    AccountDead,
    GLMProxyError,
    RefreshTokenExpired,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRetryable,
    UpstreamTimeout,
)
from glm_proxy.ids import uuid4_hex
from glm_proxy.store.base import Store
from glm_proxy.upstream.control import delete_conversations, ensure_clock, stop_stream
from glm_proxy.upstream.envelope import RELOGIN_MESSAGE, classify_failure, unwrap
from glm_proxy.upstream.headers import JSON_CT
from glm_proxy.upstream.identity import DeviceIds, is_guest_token
from glm_proxy.upstream.lean_adapter import LeanAdapter
from glm_proxy.upstream.refusals import FIXES, Reason
from glm_proxy.upstream.requesting import RequestHeaders
from glm_proxy.upstream.tokens import RotationHook, TokenCache, TokenGrant

log = logging.getLogger(__name__)

MAX_ERROR_BODY = 64 * 1024


def _reason(exc: BaseException) -> str:
    """The name of the deepest cause of a ``requests`` error (``SSLCertVerificationError``,
    ``ConnectionRefusedError``, ...): what an operator can act on, without URLs or secrets."""
    names = [type(exc).__name__]
    seen = {id(exc)}
    cause: BaseException | None = exc
    while cause is not None:
        nxt = cause.__cause__ or cause.__context__
        if nxt is None and cause.args and isinstance(cause.args[0], BaseException):
            nxt = cause.args[0]
        if nxt is None and hasattr(cause, "reason") and isinstance(cause.reason, BaseException):
            nxt = cause.reason
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(nxt))
        names.append(type(nxt).__name__)
        cause = nxt
    return names[-1] if len(names) == 1 else f"{names[0]}: {names[-1]}"


def _new_session(pool_maxsize: int, transport: str = "lean") -> requests.Session:
    """The one upstream session: pooled keep-alive connections, no cookie jar, and no
    proxy from the environment (``UPSTREAM_PROXY`` and an account's ``proxy=`` are explicit).

    Its adapter is ``LeanAdapter`` (``UPSTREAM_TRANSPORT=lean``, the default), which hands
    proxied and unusual requests to ``requests``' own; ``requests`` mounts that one alone.
    """
    session = requests.Session()
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    kind = LeanAdapter if transport == "lean" else HTTPAdapter
    adapter = kind(pool_connections=8, pool_maxsize=pool_maxsize, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = False
    return session


class UpstreamClient(RequestHeaders):
    """Signed calls to the upstream on behalf of accounts."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = uuid4_hex,
    ) -> None:
        self.settings = settings
        self.store = store
        self.session = session or _new_session(
            settings.glm_pool_maxsize, settings.upstream_transport
        )
        self._clock = clock
        self._nonce = nonce
        self._local_flight = threading.Lock()
        self.tokens = TokenCache(settings, store, self.refresh)
        self.device_ids = DeviceIds(
            settings.glm_device_id_strategy,
            settings.glm_device_id,
            settings.glm_device_rotate_every,
        )
        # Server clock: offset (ms) added to the local clock when signing; see upstream/control.
        self.clock_offset_ms = 0.0
        self.clock_synced_at: float | None = None
        self._jars: dict[str, dict[str, str]] = {}
        self._prepared_urls: dict[str, tuple[str, bool]] = {}
        self._checked_headers: set[tuple[str, str]] = set()

    # -- request building: see upstream/requesting.py -------------------------

    # -- transport -----------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        *,
        timeout: float | tuple[float, float],
        account: Account | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """One HTTP exchange on the session; transport failures become our errors, here and
        nowhere else (a broken stream body is mapped in ``iter_stream``).

        The request goes through the account's proxy, else ``UPSTREAM_PROXY``, else direct.
        Redirects are not followed: the upstream API answers, it does not redirect.
        """
        stream = bool(kwargs.pop("stream", False))
        proxy = (account.proxy if account is not None else "") or self.settings.upstream_proxy
        proxies = {"http": proxy, "https": proxy} if proxy else {}
        try:
            # Prepared on its own and sent: the session holds no headers, cookies or auth
            # to merge into it (a quarter of the CPU of ``Session.request`` per call).
            prepared = self.prepare(method, url, **kwargs)
            return self.session.send(
                prepared, stream=stream, timeout=timeout, allow_redirects=False, proxies=proxies
            )
        except requests.exceptions.ConnectTimeout:
            raise UpstreamTimeout(
                "could not connect to the upstream in time", code="upstream_connect_timeout"
            ) from None
        except requests.exceptions.Timeout:
            raise UpstreamTimeout("the upstream did not answer in time") from None
        except requests.exceptions.ConnectionError as exc:
            raise UpstreamConnectError(f"could not reach the upstream ({_reason(exc)})") from None
        except requests.exceptions.RequestException as exc:
            raise UpstreamRetryable(f"upstream request failed ({_reason(exc)})") from None

    @staticmethod
    def _read_capped(resp: requests.Response) -> bytes:
        try:
            chunks, size = [], 0
            for chunk in resp.iter_content(16384):
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_ERROR_BODY:
                    break
            return b"".join(chunks)
        except requests.exceptions.RequestException:
            return b""
        finally:
            resp.close()

    # -- tokens --------------------------------------------------------------

    def refresh(self, refresh_token: str, account: Account | None = None) -> TokenGrant:
        """Exchange a refresh token for an access token (no cache)."""
        s = self.settings
        legacy = s.glm_refresh_mode == "legacy"
        path = s.glm_legacy_refresh_path if legacy else s.glm_refresh_path
        if s.glm_time_sync and not legacy:
            ensure_clock(self, account)
        resp = self._send(
            "POST",
            self.url(path),
            timeout=(s.glm_connect_timeout, s.glm_request_timeout),
            account=account,
            headers=self.headers(
                token=refresh_token, signed=not legacy, account=account, refreshing=True
            ),
            data=b"{}",
        )
        try:
            result = unwrap(
                resp.status_code, self._read_capped(resp), s.glm_busy_codes, s.account_refusals
            )
        except AccessTokenExpired:
            # 401/40103 from the refresh endpoint itself: the refresh token is not accepted.
            raise RefreshTokenExpired(RELOGIN_MESSAGE) from None
        if isinstance(result, GLMProxyError):  # pragma: no cover - unwrap raises
            raise result
        if not isinstance(result, dict):
            raise UpstreamProtocolError("the upstream token refresh returned no result")
        if result.get("is_guest") is True or is_guest_token(refresh_token):
            raise AccountDead(f"{FIXES[Reason.GUEST_TOKEN]}.", reason=Reason.GUEST_TOKEN.value)
        access = result.get("access_token") or result.get("accessToken")
        if not access:
            raise UpstreamProtocolError("the upstream token refresh returned no access token")
        return TokenGrant(
            access_token=str(access),
            refresh_token=result.get("refresh_token") or result.get("refreshToken"),
            user_id=result.get("user_id"),
        )

    # The cache and rotation following are ``tokens.TokenCache``; these delegate to it.

    @property
    def on_rotation(self) -> RotationHook | None:
        """Called with (account, new refresh token) when a followed rotation was stored."""
        return self.tokens.on_rotation

    @on_rotation.setter
    def on_rotation(self, hook: RotationHook | None) -> None:
        self.tokens.on_rotation = hook

    def access_token(self, account: Account) -> str:
        """A cached access token, refreshed once for all concurrent callers (single flight)."""
        return self.tokens.access_token(account)

    def current_refresh_token(self, account: Account) -> str:
        """The refresh token to use: the newest rotation when rotation is followed."""
        return self.tokens.refresh_token(account)

    def invalidate(self, account: Account) -> None:
        self.tokens.invalidate(account)

    def check_token(self, refresh_token: str, account: Account | None = None) -> bool:
        """Liveness of a refresh token: can it still be exchanged for an access token?"""
        return self.tokens.check(refresh_token, account)

    # -- authenticated calls -------------------------------------------------

    def _with_access(self, account: Account, attempt: Callable[[str], Any]) -> Any:
        """Run ``attempt(access_token)``; on an expired access token refresh once and retry."""
        ensure_clock(self, account)
        token = self.access_token(account)
        try:
            return attempt(token)
        except AccessTokenExpired:
            self.invalidate(account)
            return attempt(self.access_token(account))

    def call(
        self,
        account: Account,
        method: str,
        path: str,
        *,
        json: Any = None,
        files: Any = None,
        data: Any = None,
        signed: bool = True,
        referer: str | None = None,
        timeout: float | None = None,
    ) -> Any:
        """A JSON business call; returns the envelope's ``result``."""
        s = self.settings
        read_timeout = timeout or s.glm_request_timeout

        def attempt(token: str) -> Any:
            body = orjson.dumps(json) if json is not None else data
            resp = self._send(
                method,
                self.url(path),
                timeout=(s.glm_connect_timeout, read_timeout),
                account=account,
                headers=self.headers(
                    token=token,
                    signed=signed,
                    referer=referer,
                    content_type=None if files is not None else JSON_CT,
                    account=account,
                ),
                data=body,
                files=files,
            )
            return unwrap(
                resp.status_code, self._read_capped(resp), s.glm_busy_codes, s.account_refusals
            )

        return self._with_access(account, attempt)

    def open_stream(
        self, account: Account, payload: dict[str, Any], *, referer: str | None = None
    ) -> requests.Response:
        """Start an answer stream. Returns a response whose body is SSE; raises otherwise.

        A reply that is not ``text/event-stream`` is never passed off as an
        answer: it is classified (busy, token expired, upstream error ...).
        """
        s = self.settings
        body = orjson.dumps(payload)

        def attempt(token: str) -> requests.Response:
            resp = self._send(
                "POST",
                self.url(s.glm_stream_path),
                timeout=(s.glm_connect_timeout, s.glm_read_timeout),
                account=account,
                headers=self.headers(
                    token=token,
                    signed=True,
                    referer=referer,
                    accept="text/event-stream",
                    account=account,
                ),
                data=body,
                stream=True,
            )
            content_type = resp.headers.get("Content-Type", "")
            if resp.status_code == 200 and "text/event-stream" in content_type:
                return resp
            raw = self._read_capped(resp)
            if resp.status_code == 200 and not raw.strip():
                from glm_proxy.errors import NotFound

                if payload.get("conversation_id"):
                    raise NotFound(
                        "conversation_id not found upstream (it may have been deleted)",
                        param="conversation_id",
                        code="conversation_not_found",
                    )
                raise UpstreamRetryable("the upstream sent an empty reply to a stream request")
            error = classify_failure(resp.status_code, raw, s.glm_busy_codes, s.account_refusals)
            if type(error) is UpstreamError or isinstance(error, UpstreamProtocolError):
                # A 200 JSON/HTML reply to a stream request is transient more often
                # than not (the web app calls it "service temporarily unavailable").
                retry = UpstreamRetryable(
                    f"the upstream did not stream an answer (HTTP {resp.status_code}, "
                    f"{content_type or 'no content type'}): {error.message}"
                )
                for name in ("reason", "upstream_http", "upstream_code", "upstream_message"):
                    if hasattr(error, name):
                        setattr(retry, name, getattr(error, name))
                raise retry
            raise error

        return self._with_access(account, attempt)

    def iter_stream(self, resp: requests.Response, chunk_size: int = 8192) -> Iterator[bytes]:
        """The raw bytes of an answer stream; a broken connection becomes ``UpstreamError``.

        The response is closed when the stream ends (or is closed itself).
        """
        return self._iter_raw(resp, chunk_size)

    @staticmethod
    def _iter_raw(resp: requests.Response, chunk_size: int) -> Iterator[bytes]:
        try:
            yield from resp.raw.stream(chunk_size, decode_content=True)
        except GLMProxyError:
            raise
        except Exception as exc:  # urllib3 errors: ProtocolError, ReadTimeoutError, ...
            name = type(exc).__name__
            if "Timeout" in name:
                raise UpstreamTimeout(
                    "the upstream went silent in the middle of the answer"
                ) from None
            raise UpstreamRetryable(
                f"the upstream connection broke in the middle of the answer ({name})"
            ) from None
        finally:
            resp.close()

    def delete_conversation(self, account: Account, assistant_id: str, conversation_id: str) -> str:
        """Delete one conversation by the configured calls in order; returns the call that
        worked (see ``upstream.control.delete_conversations``)."""
        return delete_conversations(self, account, assistant_id, [conversation_id])

    def delete_conversations(self, account: Account, assistant_id: str, ids: list[str]) -> str:
        """Delete several conversations of one account (one ``bulk_delete`` when enabled)."""
        return delete_conversations(self, account, assistant_id, ids)

    def stop_stream(self, account: Account, history_id: str) -> None:
        """Ask the upstream to stop generating an answer (``mainchat-api/stream/stop_stream``)."""
        stop_stream(self, account, history_id)


def init_app(app) -> None:
    app.extensions["glm_upstream"] = UpstreamClient(
        app.extensions["glm_settings"], app.extensions["glm_store"]
    )
