"""Cheap liveness endpoints for platform health checks and uptime probes.

``/`` answers too (``GET`` and ``HEAD``): agent CLIs probe the base URL before
their first request (Claude Code sends ``HEAD /``), and a person opening the
URL in a browser learns what the server is and where to go.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from flask import Blueprint, Response

from glm_proxy.http.plumbing import json_response
from glm_proxy.services import services

bp = Blueprint("health", __name__)


def _version() -> str:
    """The installed package's version, else the source tree's ``pyproject.toml``."""
    try:
        return metadata.version("glm-proxy")
    except metadata.PackageNotFoundError:
        pass
    try:
        project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
        return str(project["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


ABOUT = {
    "name": "glm-proxy",
    "version": _version(),
    "apis": ["/v1/chat/completions", "/v1/responses", "/v1/messages"],
    "links": {"models": "/v1/models", "health": "/healthz"},
}


@bp.route("/", methods=["GET", "HEAD"])
def about() -> Response:
    """What this server is (no credentials needed, like /healthz)."""
    return json_response(ABOUT)


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
