"""``GET /metrics``: the Prometheus exposition (``glm_proxy.observability.metrics``).

On by default; ``METRICS_ENABLED=false`` turns it into a 404 like any unknown
path. Behind ``ADMIN_KEY`` when one is set.
"""

from __future__ import annotations

import os

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess

from glm_proxy.access.auth import require_admin_key
from glm_proxy.errors import NotFound
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
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest()
    return Response(body, mimetype=CONTENT_TYPE_LATEST)
