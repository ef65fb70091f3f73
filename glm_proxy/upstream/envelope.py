"""Reading the upstream's JSON envelope and classifying its failures.

The upstream does not use HTTP statuses reliably: it always answers with an
envelope ``{"status"|"code": 0, "message", "result"}``. This module is pure: it
maps (HTTP status, body) to a result or to one of our errors, so the reaction
table of the protocol notes lives in one tested place.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from glm_proxy.errors import (
    AccessTokenExpired,
    AccountDead,
    AccountRefused,
    GLMProxyError,
    RefreshTokenExpired,
    UpstreamBusy,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRetryable,
)
from glm_proxy.upstream.refusals import (
    DEAD_REASONS,
    FIXES,
    Reason,
    classify,
    looks_like_html,
    page_text,
)

WAF_CODES = frozenset({40012})  # the upstream's web application firewall (transient)
WAF_MESSAGE = (
    "the upstream's firewall (WAF) rejected the request (40012); the account rests briefly. "
    "From datacenter IPs, give the account its browser cookies (docs/teams.md)."
)

RELOGIN_MESSAGE = (
    "The chatglm refresh token was rejected by the upstream (40102): it has expired or was "
    "revoked. Log in to chatglm.cn again and use the new chatglm_refresh_token cookie value."
)


def _number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value == value and value not in (float("inf"), -float("inf")):
        return int(value)
    return None


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def classify_failure(
    http_status: int, body: bytes, busy_codes: Iterable[str] = (), refusals: str = ""
) -> GLMProxyError:
    """The error for an upstream reply that is not a success envelope.

    The error remembers what the upstream said (``upstream_http``,
    ``upstream_code``, ``upstream_message``) for diagnostics such as the doctor
    command. With ``refusals`` (``ACCOUNT_REFUSALS``) it also says why the
    account was refused (``reason``): a refusal for good becomes ``AccountDead``,
    one for a while ``AccountRefused`` (both move the request to another account).
    """
    error = _classify(http_status, body, busy_codes)
    data = parse_json(body) if body else None
    error.upstream_http = http_status
    code: int | None = None
    message = ""
    if isinstance(data, dict):
        code = _number(data.get("status"))
        if code is None:
            code = _number(data.get("code"))
        message = str(data.get("message") or data.get("msg") or "")[:200]
    elif body and looks_like_html(body):
        message = page_text(body, 200)
    error.upstream_code = code
    error.upstream_message = message
    if not refusals:
        return error
    return with_reason(error, http_status, data, body, refusals)


def with_reason(
    error: GLMProxyError, http_status: int, data: Any, body: bytes, refusals: str
) -> GLMProxyError:
    """``error`` with the account's ``reason`` attached (or replaced by the account error)."""
    if isinstance(error, RefreshTokenExpired):
        error.reason = Reason.TOKEN_EXPIRED.value
        return error
    if isinstance(error, AccessTokenExpired):
        return error  # refreshed once and retried: not the account's fault
    codes: set[int] = set()
    if isinstance(data, dict):
        codes = {c for c in (_number(data.get("code")), _number(data.get("status"))) if c}
        said = error.upstream_message
    elif body and looks_like_html(body):
        said = page_text(body)
    else:
        said = ""
    reason = classify(codes, said, refusals, http_status=http_status)
    if reason is Reason.UNKNOWN and http_status >= 500 and not codes:
        return error  # a gateway's error page: the upstream is down, not the account
    upstream = error.upstream_code, error.upstream_message
    if reason in DEAD_REASONS:
        error = AccountDead(f"{FIXES[reason]}. Upstream said: {said[:120]}", reason=reason.value)
    elif reason is not Reason.UNKNOWN and not isinstance(error, UpstreamRetryable):
        error = AccountRefused(
            f"{FIXES[reason]}. Upstream said: {said[:120] or 'no message'}",
            reason=reason.value,
            headers={"Retry-After": "30"},
        )
    error.reason = reason.value
    error.upstream_http = http_status
    error.upstream_code, error.upstream_message = upstream
    return error


def _classify(http_status: int, body: bytes, busy_codes: Iterable[str]) -> GLMProxyError:
    data = parse_json(body) if body else None
    if isinstance(data, dict):
        code = _number(data.get("code"))
        status = _number(data.get("status"))
        message = str(data.get("message") or data.get("msg") or "")
        codes = {c for c in (code, status) if c is not None}
        if "40102" in message or 40102 in codes:
            return RefreshTokenExpired(RELOGIN_MESSAGE)
        if codes & {401, 40103}:
            return AccessTokenExpired(f"upstream rejected the access token: {message}")
        if codes & WAF_CODES:
            return UpstreamRetryable(
                f"{WAF_MESSAGE} Upstream said: {message or 'no message'}",
                code="upstream_waf_blocked",
                status=503,
                headers={"Retry-After": "5"},
            )
        if {str(c) for c in codes} & set(busy_codes):
            return UpstreamBusy(
                f"the upstream account is already answering another request: {message}",
                headers={"Retry-After": "2"},
            )
        if http_status >= 500 or codes & {500, 502, 503, 504}:
            return UpstreamRetryable(f"upstream failure (HTTP {http_status}): {message}")
        if http_status == 429 or 429 in codes:
            return UpstreamRetryable(
                f"upstream rate limit: {message}",
                status=429,
                code="upstream_rate_limited",
                headers={"Retry-After": "10"},
            )
        return UpstreamError(f"upstream refused the request: {message or 'no message'}")
    if http_status >= 500:
        return UpstreamRetryable(f"upstream failure (HTTP {http_status}, non-JSON body)")
    if not body:
        return UpstreamProtocolError(f"upstream sent an empty reply (HTTP {http_status})")
    return UpstreamProtocolError(f"upstream sent an unexpected non-JSON reply (HTTP {http_status})")


def unwrap(
    http_status: int, body: bytes, busy_codes: Iterable[str] = (), refusals: str = ""
) -> Any:
    """The ``result`` of a success envelope; raises the classified error otherwise.

    An empty body is "no data" (None), as the web app treats it.
    """
    if not body.strip():
        if http_status >= 400:
            raise classify_failure(http_status, body, busy_codes, refusals)
        return None
    data = parse_json(body)
    if not isinstance(data, dict):
        raise classify_failure(http_status, body, busy_codes, refusals)
    code, status = _number(data.get("code")), _number(data.get("status"))
    if code is None and status is None:
        if http_status >= 400:
            raise classify_failure(http_status, body, busy_codes, refusals)
        return data
    if code == 0 or status == 0:
        return data.get("result")
    raise classify_failure(http_status, body, busy_codes, refusals)
