"""Logging: one line per request, and no secret ever in clear.

A filter on every handler scrubs bearer values, JWTs and long token-like
strings from messages and arguments, so even a careless log call cannot leak
a refresh token, access token or API key.
"""

from __future__ import annotations

import logging
import re
import sys

from glm_proxy.accounts import mask
from glm_proxy.observability.record import CURRENT_REQUEST_ID, RequestRecord

REQUEST_LOG = logging.getLogger("glm_proxy.request")

SECRET_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)([^\s,\"']+)"),
    re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    re.compile(
        r"(?i)((?:x-api-key|api[_-]?key|token|authorization)[\"']?\s*[:=]\s*[\"']?)([^\s,\"']{8,})"
    ),
)


def scrub(text: str) -> str:
    for pattern in SECRET_PATTERNS:
        if pattern.groups >= 2:
            text = pattern.sub(lambda m: m.group(1) + mask(m.group(2)), text)
        else:
            text = pattern.sub(lambda m: mask(m.group(0)), text)
    return text


class ScrubSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001
            return True
        cleaned = scrub(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


def log_request(method: str, path: str, status: int, seconds: float, record: RequestRecord) -> None:
    """The request's one line: what was asked, how it went, who asked, which account answered."""
    REQUEST_LOG.info(
        "%s %s %s %.1fms model=%s stream=%s account=%s caller=%s request_id=%s",
        method,
        path,
        status,
        seconds * 1000,
        _shown(record.model),
        _shown(record.stream),
        _shown(record.account),
        _shown(record.caller),
        record.request_id,
    )


def _shown(value: object) -> object:
    return "-" if value is None else value


class NameTheRequest(logging.Filter):
    """Ends a line written for a request with its id, as the request's own line ends."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = CURRENT_REQUEST_ID.get()
        if request_id is None or record.name == REQUEST_LOG.name:
            return True
        if getattr(record, "glm_request_id", None) is not None:
            return True  # named already (a second handler with this filter)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - logging reports its own formatting errors
            return True
        record.msg, record.args = f"{message} request_id={request_id}", None
        record.glm_request_id = request_id
        return True


class _ProxyHandler(logging.StreamHandler):
    """The package's own stderr handler: its class tells ``configure`` it is there."""


def configure(level: str) -> None:
    """Idempotent: one stderr handler on the package logger, with the scrubber."""
    logger = logging.getLogger("glm_proxy")
    logger.setLevel(level)
    if not any(isinstance(h, _ProxyHandler) for h in logger.handlers):
        handler = _ProxyHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        handler.addFilter(NameTheRequest())
        handler.addFilter(ScrubSecrets())
        logger.addHandler(handler)
        logger.propagate = False
