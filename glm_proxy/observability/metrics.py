"""Prometheus metrics: what an operator graphs and alerts on.

Labels are bounded and secret-free: the route rule (never the raw path), the
status code, the error code. Accounts and keys never appear here; per-account
and per-key figures live behind the admin API.

With several gunicorn workers set ``PROMETHEUS_MULTIPROC_DIR`` to an empty
writable directory: prometheus-client then aggregates every worker's values
(``gunicorn.conf.py`` tells it when a worker exits). The ``/metrics`` endpoint
that serves them is ``glm_proxy.api.metrics``.
"""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "glm_proxy_requests_total",
    "HTTP requests answered, by route and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "glm_proxy_request_duration_seconds",
    "Time from request to the end of the response (whole stream for SSE).",
    ["route"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
ACTIVE_STREAMS = Gauge(
    "glm_proxy_active_streams",
    "Event streams currently open to clients.",
    multiprocess_mode="livesum",
)
STREAM_ERRORS = Counter(
    "glm_proxy_stream_errors_total",
    "Answers that ended with an error, by error code.",
    ["code"],
)
CONVERSATION_DELETES = Counter(
    "glm_proxy_conversation_deletes_total",
    "Background deletions of upstream conversations, by result (deleted, unconfirmed: no "
    "delete call confirmed it and one found no such path, failed).",
    ["result"],
)
# -- upstream protocol (2026): delete calls, stops, clock sync -------------------
CONVERSATION_DELETE_CALLS = Counter(
    "glm_proxy_conversation_delete_calls_total",
    "Upstream delete calls, by method (bulk, mainchat, legacy) and outcome (ok; gone: the "
    "upstream says the conversation does not exist; unconfirmed: the upstream knows no such "
    "path, nothing confirmed, so the next method is tried; failed).",
    ["method", "outcome"],
)
UPSTREAM_STOPS = Counter(
    "glm_proxy_upstream_stops_total",
    "stop_stream calls for answers the client left, by outcome.",
    ["outcome"],
)
CLOCK_SYNCS = Counter(
    "glm_proxy_clock_syncs_total",
    "Server time syncs, by outcome (a failure falls back to the local clock).",
    ["outcome"],
)


# Labelled children, looked up once: ``.labels()`` validates its values and takes a
# lock (a Python one under gevent) on every call, a cost paid on each request. A child
# stays the metric's own (prometheus-client keeps it too), so /metrics reads the same;
# a child joins the cache only when first used, so no zero series appears early.
_CHILDREN: dict[tuple[Any, tuple[str, ...]], Any] = {}


def labelled(metric: Any, *values: str) -> Any:
    """``metric.labels(*values)``, cached by metric and values (see ``_CHILDREN``)."""
    key = (metric, values)
    child = _CHILDREN.get(key)
    if child is None:
        child = _CHILDREN[key] = metric.labels(*values)
    return child


# Every label value a caller can steer is folded into a closed set, or one caller
# sending random methods (or provoking odd codes) grows /metrics, and the memory
# behind it, without bound and for good.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER = "other"
_ERROR_CODE = re.compile(r"[a-z0-9_]{1,48}")
MAX_ERROR_CODES = 64  # distinct error-code labels; later newcomers count as "other"
_error_codes: set[str] = set()


def method_label(method: str) -> str:
    """The request method as a label: the standard ones as they are, anything else "other"."""
    return method if method in METHODS else OTHER


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else OTHER


def error_label(code: str) -> str:
    """An error code as a label: our codes are short snake_case words and few."""
    if code in _error_codes:
        return code
    if not _ERROR_CODE.fullmatch(code) or len(_error_codes) >= MAX_ERROR_CODES:
        return OTHER
    _error_codes.add(code)
    return code


def observe(route: str, method: str, status: int, seconds: float, error: str | None) -> None:
    """Record one finished request (called when the response closes).

    ``route`` is the matched URL rule (a fixed set) or "unmatched", never the path.
    """
    labelled(REQUESTS, route, method_label(method), status_label(status)).inc()
    labelled(LATENCY, route).observe(seconds)
    if error:
        labelled(STREAM_ERRORS, error_label(error)).inc()
