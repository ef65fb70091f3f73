"""Flask application factory for the chatglm.cn upstream simulator.

Upstream paths live under `/chatglm` (as on chatglm.cn), generated and uploaded files
under `/sfile`, and the test-only control API under `/_sim`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response

from . import accounts, care, control, e3, files, scripted, stream, video
from .common import json_response, log_request
from .state import SimState

MAX_UPLOAD_BYTES = 110 * 1024 * 1024


class FlushHeadersMiddleware:
    """Let a streaming body send its status line and headers before its first byte.

    WSGI servers send headers with the first non-empty body chunk; the `slow` scenario must
    go silent only *after* the headers, so the body calls ``environ[KEY]()``, which pushes
    an empty write through the server's `write` callable (gevent flushes headers on it).
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        writers: list[Callable[[bytes], Any]] = []

        def recording_start_response(*args: Any) -> Callable[[bytes], Any]:
            write = start_response(*args)
            writers.append(write)
            return write

        def flush() -> None:
            if writers:
                writers[-1](b"")

        environ[stream.FLUSH_HEADERS_KEY] = flush
        return self.app(environ, recording_start_response)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build a simulator; `config` overrides `state.DEFAULT_CONFIG` (see /_sim/config)."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    app.extensions["glm_sim"] = SimState(config)
    app.before_request(log_request)
    app.before_request(e3.waf_gate)
    blueprints = (accounts.bp, care.bp, stream.bp, files.bp, video.bp, control.bp, e3.bp)
    for blueprint in (*blueprints, scripted.bp):
        app.register_blueprint(blueprint)

    @app.errorhandler(404)
    def not_found(_: Exception) -> Response:
        return json_response({"status": 404, "message": "not found"}, 404)

    @app.errorhandler(405)
    def not_allowed(_: Exception) -> Response:
        return json_response({"status": 405, "message": "method not allowed"}, 405)

    app.wsgi_app = FlushHeadersMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    return app
