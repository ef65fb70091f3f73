"""HTTP plumbing shared by every blueprint: errors, CORS, body cap, request log."""

from __future__ import annotations

import functools
import gc
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import orjson
from flask import Flask, Request, Response, g, request
from werkzeug.exceptions import HTTPException

from glm_proxy.errors import (
    GLMProxyError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
)
from glm_proxy.http.json_budget import check_value_count
from glm_proxy.http.request_guard import (
    abandon_body,
    body_too_large,
    check_head,
    check_shape,
    guard_body,
    pause,
    read_body,
    settle_body,
)
from glm_proxy.observability import metrics
from glm_proxy.observability.logs import log_request
from glm_proxy.observability.record import CURRENT_REQUEST_ID, RequestRecord, request_id_for
from glm_proxy.protocol.formats.anthropic import anthropic_error
from glm_proxy.services import services

if TYPE_CHECKING:
    from glm_proxy.access.auth import Caller

log = logging.getLogger("glm_proxy.request")
P = ParamSpec("P")
R = TypeVar("R")

BASE_ALLOWED_HEADERS = (
    "Authorization, Content-Type, x-api-key, anthropic-version, anthropic-beta, "
    "anthropic-dangerous-direct-browser-access, OpenAI-Organization, OpenAI-Project, "
    "OpenAI-Beta, Accept, X-Requested-With"
)

# Every response names its request (``glm_proxy.observability.record``); a front
# proxy's own id (Nginx: ``proxy_set_header X-Request-Id $request_id;``) is kept.
REQUEST_ID = "X-Request-Id"
EXPOSED_HEADERS = "Retry-After, X-Request-Id, request-id"


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status=status, headers=headers, mimetype="application/json")


ANTHROPIC_PATHS = ("/v1/messages", "/v1/complete")


def anthropic_request(req: Request | None = None) -> bool:
    """The request came to an Anthropic route (or, to no route, from an Anthropic client).

    Its errors, 404/405/413 included, must use Anthropic's error shape: that is
    what the Anthropic SDK parses. ``req`` is the current request when the caller
    holds it already (one context lookup fewer).
    """
    if req is None:
        req = request._get_current_object()  # type: ignore[attr-defined]  # LocalProxy's, typed as Request
    path = req.path.rstrip("/")
    for p in ANTHROPIC_PATHS:
        if path == p or path.startswith(p + "/"):
            return True
    # An unknown path asked by an Anthropic client; OpenAI routes keep OpenAI's shape.
    return req.url_rule is None and "anthropic-version" in req.headers


def error_response(error: GLMProxyError) -> Response:
    """The error object in the shape the route's SDK parses (Anthropic's or OpenAI's)."""
    if anthropic_request():
        return anthropic_error_response(error)
    return json_response(error.to_dict(), error.status, dict(error.headers))


def anthropic_error_response(error: GLMProxyError) -> Response:
    body = anthropic_error(error)
    body["request_id"] = request_record().request_id  # as Anthropic's own errors carry it
    return json_response(body, error.status, dict(error.headers))


def read_json() -> Any:
    """The request body as JSON, or a 400; within the body limits (408, 413, 400).

    Messages and content parts are counted here, before any schema walks
    them, so every endpoint family gets the same caps (``request_guard``).
    """
    settings = services().settings
    raw = read_body(request.environ, request.content_length, settings.max_request_body)
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    check_value_count(raw, settings.max_json_values, settings.max_messages, pause)
    try:
        body = _parse(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"We could not parse the JSON body of your request: {exc}") from None
    check_shape(body, settings)
    return body


def admitted(view: Callable[Concatenate[Caller, P], R]) -> Callable[P, R]:
    """The API views' preamble, in one place: who is calling, and their key's limits.

    The caller is authenticated (401 otherwise) and admitted by their key's
    rate and concurrency limits (429), and the request is counted, before the
    view runs; the view gets the ``Caller`` as its first argument.
    """

    @functools.wraps(view)
    def admitted_view(*args: P.args, **kwargs: P.kwargs) -> R:
        svc = services()
        caller = svc.auth.authenticate(request)
        svc.limits.admit(caller, request_record())
        return view(caller, *args, **kwargs)

    return admitted_view


def request_record() -> RequestRecord:
    """This request's record (``glm_proxy.observability.record``), made on arrival."""
    record = g.get("request_record")
    if record is None:  # a request that never reached the app's before-request step
        record = g.request_record = RequestRecord()
    return record


def _parse(raw: bytes) -> Any:
    """``orjson.loads`` with the cyclic GC paused: parsing a large body creates hundreds
    of thousands of containers, and the collections they trigger (each scanning the
    heap) can cost more than the parse, all of it time no other request is served."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return orjson.loads(raw)
    finally:
        if enabled:
            gc.enable()


def _http_error(exc: HTTPException) -> GLMProxyError:
    if exc.code == 404:
        return NotFound(f"Unknown endpoint: {request.method} {request.path}")
    if exc.code == 405:
        return MethodNotAllowed(f"Method {request.method} is not allowed on {request.path}")
    if exc.code == 413:
        abandon_body(request.environ.get("wsgi.input"))
        return body_too_large(request.max_content_length or 0)
    if exc.code == 400:
        return InvalidRequest(exc.description or "Bad request.")
    error = GLMProxyError(exc.description or exc.name, status=exc.code or 500)
    return error


def _allow_headers() -> str:
    requested = request.headers.get("Access-Control-Request-Headers", "")
    extra = [
        h.strip() for h in requested.split(",") if h.strip().lower().startswith("x-stainless-")
    ]
    return ", ".join([BASE_ALLOWED_HEADERS, *extra]) if extra else BASE_ALLOWED_HEADERS


def _cors(origins: tuple[str, ...]) -> Callable[[Response, Request], None]:
    """What adds the CORS headers of ``CORS_ALLOW_ORIGINS`` to a response."""
    any_origin = "*" in origins

    def cors_headers(response: Response, req: Request) -> None:
        headers = response.headers
        if any_origin:
            headers["Access-Control-Allow-Origin"] = "*"
        else:
            origin = req.headers.get("Origin")
            if origin and origin in origins:
                headers["Access-Control-Allow-Origin"] = origin
                headers.add("Vary", "Origin")
        if req.method == "OPTIONS":
            # Read by browsers on a preflight's answer only (Fetch standard, CORS protocol).
            headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS, HEAD"
            headers["Access-Control-Allow-Headers"] = _allow_headers()
            headers["Access-Control-Max-Age"] = "86400"
        else:
            headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS

    return cors_headers


def _register_error_handlers(app: Flask) -> None:
    """Every error, ours, werkzeug's or unexpected, answered as an error object (never HTML)."""

    @app.errorhandler(GLMProxyError)
    def _proxy_error(exc: GLMProxyError) -> Response:
        return error_response(exc)

    @app.errorhandler(HTTPException)
    def _werkzeug_error(exc: HTTPException) -> Response:
        return error_response(_http_error(exc))

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(
            GLMProxyError("The server had an error while processing your request.")
        )


def init_app(app: Flask) -> None:
    settings = app.extensions["glm_settings"]
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_body
    cors_headers = _cors(settings.cors_allow_origins)
    _register_error_handlers(app)

    # The hooks below bind the request once: each use of Flask's ``request`` proxy
    # is a context lookup of its own.
    @app.before_request
    def _start() -> Response | None:
        req = request._get_current_object()  # type: ignore[attr-defined]  # LocalProxy's, typed as Request
        record = g.request_record = RequestRecord(
            request_id=request_id_for(req.headers.get(REQUEST_ID))
        )
        CURRENT_REQUEST_ID.set(record.request_id)  # for every log line written for it
        guard_body(req.environ, settings, time.monotonic())
        check_head(req, settings)
        if req.method == "OPTIONS":
            return Response(status=204)
        return None

    @app.after_request
    def _finish(response: Response) -> Response:
        req = request._get_current_object()  # type: ignore[attr-defined]  # LocalProxy's, typed as Request
        cors_headers(response, req)
        settle_body(req.environ)
        record = request_record()
        response.headers[REQUEST_ID] = record.request_id  # OpenAI's header; its SDK reads it
        if anthropic_request(req):
            response.headers["request-id"] = record.request_id  # Anthropic's; its SDK reads it
        method, path, hooked_status = req.method, req.path, response.status_code
        rule = req.url_rule
        route = rule.rule if rule is not None else "unmatched"
        streaming = response.mimetype == "text/event-stream"
        if streaming:
            metrics.ACTIVE_STREAMS.inc()

        def write_log() -> None:
            elapsed = time.perf_counter() - record.started
            # A stream's status is decided after this hook (glm_proxy.streaming.opening).
            status = record.status or hooked_status
            if streaming:
                metrics.ACTIVE_STREAMS.dec()
            metrics.observe(route, method, status, elapsed, record.error)
            try:
                if path not in ("/ping", "/healthz", "/metrics") or status >= 400:
                    log_request(method, path, status, elapsed, record)
            finally:
                # The request is over: lines this greenlet writes next (between the
                # requests of a kept-alive connection) are not written for it.
                CURRENT_REQUEST_ID.set(None)

        response.call_on_close(write_log)
        return response
