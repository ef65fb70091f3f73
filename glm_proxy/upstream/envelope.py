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
    GLMProxyError,
    RefreshTokenExpired,
    UpstreamBusy,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRetryable,
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
    http_status: int, body: bytes, busy_codes: Iterable[str] = ()
) -> GLMProxyError:
    """The error for an upstream reply that is not a success envelope.

    The error remembers what the upstream said (``upstream_http``,
    ``upstream_code``) for diagnostics such as the doctor command.
    """
    error = _classify(http_status, body, busy_codes)
    data = parse_json(body) if body else None
    error.upstream_http = http_status  # type: ignore[attr-defined]
    if isinstance(data, dict):
        error.upstream_code = _number(data.get("status"))  # type: ignore[attr-defined]
        if error.upstream_code is None:  # type: ignore[attr-defined]
            error.upstream_code = _number(data.get("code"))  # type: ignore[attr-defined]
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


def unwrap(http_status: int, body: bytes, busy_codes: Iterable[str] = ()) -> Any:
    """The ``result`` of a success envelope; raises the classified error otherwise.

    An empty body is "no data" (None), as the web app treats it.
    """
    if not body.strip():
        if http_status >= 400:
            raise classify_failure(http_status, body, busy_codes)
        return None
    data = parse_json(body)
    if not isinstance(data, dict):
        raise classify_failure(http_status, body, busy_codes)
    code, status = _number(data.get("code")), _number(data.get("status"))
    if code is None and status is None:
        if http_status >= 400:
            raise classify_failure(http_status, body, busy_codes)
        return data
    if code == 0 or status == 0:
        return data.get("result")
    raise classify_failure(http_status, body, busy_codes)
