"""Prometheus metrics: what an operator graphs and alerts on.

Labels are bounded and secret-free: the route rule (never the raw path), the
status code, the error code. Accounts and keys never appear here; per-account
and per-key figures live behind the admin API.

With several gunicorn workers set ``PROMETHEUS_MULTIPROC_DIR`` to an empty
writable directory: prometheus-client then aggregates every worker's values
(``gunicorn.conf.py`` tells it when a worker exits).
"""

from __future__ import annotations

import os

from flask import Blueprint, Flask, Response, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

from glm_proxy.access.auth import require_admin_key
from glm_proxy.errors import NotFound

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
    "Background deletions of upstream conversations, by result.",
    ["result"],
)
# -- upstream protocol (2026): delete calls, stops, clock sync -------------------
CONVERSATION_DELETE_CALLS = Counter(
    "glm_proxy_conversation_delete_calls_total",
    "Upstream delete calls, by method (bulk, mainchat, legacy) and outcome (ok, failed).",
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

bp = Blueprint("metrics", __name__)


def _authorised() -> None:
    settings = current_app.extensions["glm_settings"]
    if not settings.metrics_enabled:
        raise NotFound(f"Unknown endpoint: {request.method} {request.path}")
    if settings.admin_key:
        require_admin_key(request, settings.admin_key, "/metrics")


@bp.get("/metrics")
def metrics() -> Response:
    _authorised()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def observe(route: str, method: str, status: int, seconds: float, error: str | None) -> None:
    """Record one finished request (called when the response closes)."""
    REQUESTS.labels(route, method, str(status)).inc()
    LATENCY.labels(route).observe(seconds)
    if error:
        STREAM_ERRORS.labels(error).inc()


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
