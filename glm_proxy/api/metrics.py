"""``GET /metrics``: the Prometheus exposition (``glm_proxy.observability.metrics``).

On by default; ``METRICS_ENABLED=false`` turns it into a 404 like any unknown
path. Behind ``ADMIN_KEY`` when one is set.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.core import GaugeMetricFamily

from glm_proxy.access.auth import require_admin_key
from glm_proxy.errors import NotFound
from glm_proxy.pool.report import state_counts
from glm_proxy.services import services

bp = Blueprint("metrics", __name__)


def _authorised() -> None:
    settings = services().settings
    if not settings.metrics_enabled:
        raise NotFound(f"Unknown endpoint: {request.method} {request.path}")
    if settings.admin_key:
        require_admin_key(request, settings.admin_key, "/metrics")


@bp.get("/metrics")
def metrics() -> Response:
    _authorised()
    if services().settings.prometheus_multiproc_dir:
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return Response(body + _account_gauges(), mimetype=CONTENT_TYPE_LATEST)


def _account_gauges() -> bytes:
    """``glm_proxy_accounts{state, reason}``: pool accounts per state and why, from the store.

    Read at scrape time from the shared store, so every worker reports the same
    figures (no per-process gauge to aggregate).
    """
    try:
        counts = state_counts(services().pool)
    except Exception:  # noqa: BLE001 - the store is down: the rest of /metrics still answers
        return b""
    family = GaugeMetricFamily(
        "glm_proxy_accounts",
        "Pool accounts by state and reason (reason is empty for active accounts).",
        labels=["state", "reason"],
    )
    for (state, reason), number in sorted(counts.items()):
        family.add_metric([state, reason], number)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Once(family))
    return generate_latest(registry)


class _Once:
    """A collector yielding one ready metric family (a scrape-time snapshot)."""

    def __init__(self, family: GaugeMetricFamily) -> None:
        self.family = family

    def collect(self):
        yield self.family
