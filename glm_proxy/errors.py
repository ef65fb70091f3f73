"""One error tree for the whole service.

Every error carries the HTTP status and the OpenAI error ``type``/``code`` it
maps to, so the single error handler (and the stream's final error event) can
render it without guessing. The retry policy is encoded in the hierarchy:
``UpstreamRetryable`` means "nothing reached the client yet and another attempt
(or another account) may succeed".
"""

from __future__ import annotations

from typing import Any


class GLMProxyError(Exception):
    """Root of every error the service reports to a client."""

    status: int = 500
    openai_type: str = "api_error"
    code: str | None = "internal_error"
    # Set only on some errors (no class default, so ``hasattr`` tells): what the
    # upstream said (``upstream.envelope``) and why an account was refused.
    upstream_http: int
    upstream_code: int | None
    upstream_message: str
    reason: str

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.headers = dict(headers or {})

    def to_dict(self) -> dict[str, Any]:
        """The OpenAI error object: ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.openai_type,
                "param": self.param,
                "code": self.code,
            }
        }


# -- caller's fault (4xx) ---------------------------------------------------


class InvalidRequest(GLMProxyError):
    status = 400
    openai_type = "invalid_request_error"
    code = "invalid_request"


class ContentFiltered(InvalidRequest):
    """The upstream's content filter refused (used where no stream can carry it)."""

    code = "content_filter"


class AuthenticationError(GLMProxyError):
    status = 401
    openai_type = "authentication_error"
    code = "invalid_api_key"


class RefreshTokenExpired(AuthenticationError):
    """The upstream said 40102: this refresh token is dead; log in again. Never retried."""

    code = "refresh_token_expired"


class AccountDead(RefreshTokenExpired):
    """The upstream refused the account for good (guest token, ban): another account may
    serve; a pass-through caller is told what to fix. ``reason`` names why."""

    code = "account_unusable"

    def __init__(self, message: str, *, reason: str, **kwargs: Any) -> None:
        super().__init__(message, code=kwargs.pop("code", reason), **kwargs)
        self.reason = reason


class PermissionDenied(GLMProxyError):
    status = 403
    openai_type = "permission_error"
    code = "permission_denied"


class NotFound(GLMProxyError):
    status = 404
    openai_type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(GLMProxyError):
    status = 405
    openai_type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(GLMProxyError):
    status = 413
    openai_type = "invalid_request_error"
    code = "payload_too_large"


class RateLimited(GLMProxyError):
    status = 429
    openai_type = "rate_limit_error"
    code = "rate_limit_exceeded"


# -- upstream's fault (5xx) -------------------------------------------------


class UpstreamError(GLMProxyError):
    """The upstream answered, but not with something we can use."""

    status = 502
    openai_type = "upstream_error"
    code = "upstream_error"


class UpstreamProtocolError(UpstreamError):
    """The upstream broke the protocol (bad JSON, non-SSE reply, impossible event)."""

    code = "upstream_protocol_error"


class UpstreamRetryable(UpstreamError):
    """Transient: nothing reached the client, another attempt may succeed."""

    code = "upstream_unavailable"


class UpstreamConnectError(UpstreamRetryable):
    """Could not reach the upstream at all; safe to retry, also on another account."""

    code = "upstream_connect_error"


class UpstreamBusy(UpstreamRetryable):
    """The account is already streaming another answer (one stream per account)."""

    status = 429
    openai_type = "rate_limit_error"
    code = "account_busy"


class AccountRefused(UpstreamRetryable):
    """The upstream refused this account for a while (verification page, spent credits,
    rate limit, risk control): it rests and another account may serve. ``reason`` names why."""

    status = 503
    code = "account_refused"

    def __init__(self, message: str, *, reason: str, **kwargs: Any) -> None:
        super().__init__(message, code=kwargs.pop("code", f"account_{reason}"), **kwargs)
        self.reason = reason


class UpstreamTimeout(UpstreamRetryable):
    status = 504
    openai_type = "timeout_error"
    code = "upstream_timeout"


class AccessTokenExpired(UpstreamRetryable):
    """Envelope 401: drop the cached access token and refresh once."""

    status = 502
    code = "access_token_expired"


class ServiceUnavailable(GLMProxyError):
    status = 503
    openai_type = "api_error"
    code = "service_unavailable"
