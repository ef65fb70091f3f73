"""Cheap liveness endpoints for platform health checks and uptime probes."""

from __future__ import annotations

from flask import Blueprint, Response

from glm_proxy.services import services
from glm_proxy.web import json_response

bp = Blueprint("health", __name__)


@bp.route("/ping", methods=["GET", "HEAD"])
def ping() -> Response:
    return Response("pong", mimetype="text/plain")


@bp.route("/healthz", methods=["GET", "HEAD"])
def healthz() -> Response:
    store = services().store
    ok = store.ping()
    return json_response(
        {"status": "ok" if ok else "degraded", "store": store.backend}, 200 if ok else 503
    )
