"""Envelopes, auth, signature checks and request logging shared by every upstream view.

Upstream always answers with the JSON envelope of spec §4 whatever the HTTP status, and the
proxy decides by the body; these helpers keep every view saying it the same way.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import orjson
from flask import Response, current_app, g, request

from .signing import signature_status
from .state import SimState

LOGGED_HEADERS = (
    "Authorization",
    "App-Name",
    "Content-Type",
    "Accept",
    "Referer",
    "User-Agent",
    "X-Request-Id",
    "X-Device-Id",
    "X-Timestamp",
    "X-Nonce",
    "X-Sign",
    "X-App-Platform",
    "X-Lang",
    "X-App-Fr",
    "X-Exp-Groups",
    "Sec-Ch-Ua",
    "Sec-Ch-Ua-Platform",
    "Cookie",
)


def sim_state() -> SimState:
    return current_app.extensions["glm_sim"]


def json_response(obj: Any, http: int = 200, headers: dict[str, str] | None = None) -> Response:
    """orjson keeps non-ASCII as raw UTF-8, like upstream."""
    return Response(
        orjson.dumps(obj),
        status=http,
        headers=headers,
        content_type="application/json; charset=utf-8",
    )


def ok(result: Any = None) -> Response:
    body: dict[str, Any] = {"status": 0, "message": "success", "result": result}
    rid = request.headers.get("X-Request-Id")
    if rid:
        body["rid"] = rid
    return json_response(body)


def fail(status: int, message: str, http: int = 200) -> Response:
    return json_response({"status": status, "message": message}, http)


def unauthorized() -> Response:
    return json_response({"code": 401, "status": 401, "message": "unauthorized"}, 401)


def needs_login() -> Response:
    return fail(40103, "user needs login", 401)


def bad_request(message: str = "bad request") -> Response:
    return fail(400, message, 400)


def bearer() -> str | None:
    """The token of `Authorization: Bearer <token>`, or None when absent/empty."""
    value = request.headers.get("Authorization", "")
    if not value.lower().startswith("bearer "):
        return None
    token = value[7:].strip()
    return token or None


def base_url() -> str:
    """Where generated files are served: config override, else the host the client used."""
    configured = sim_state().cfg("public_base_url")
    return (configured or request.host_url).rstrip("/")


def check_headers(signed: bool) -> Response | None:
    """App-Name and signature gate (spec §3); None means the request may proceed."""
    state = sim_state()
    if state.cfg("require_app_name") and request.headers.get("App-Name") != "chatglm":
        return bad_request("bad request: missing App-Name")
    if signed and not g.get("sign_valid"):
        return bad_request("bad request: invalid signature")
    return None


def upstream_view(signed: bool) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Decorate a business view: header gate, then access-token auth; passes `acc`."""

    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Response:
            rejected = check_headers(signed)
            if rejected is not None:
                return rejected
            token = bearer()
            if token is None:
                return needs_login()
            acc = sim_state().account_for_access(token)
            if acc is None:
                return unauthorized()
            annotate(account=acc.refresh_token)
            return view(acc, *args, **kwargs)

        return wrapper

    return decorate


def annotate(**fields: Any) -> None:
    """Add fields to this request's log entry (e.g. the parsed stream summary)."""
    entry = g.get("sim_log")
    if entry is not None:
        with sim_state().lock:
            entry.update(fields)


def log_request() -> None:
    """before_request hook: record every upstream call (not /_sim/) for introspection."""
    if request.path.startswith("/_sim/"):
        return
    state = sim_state()
    g.sign_valid = signature_status(
        request.headers, state.cfg("sign_secret"), bool(state.cfg("enforce_check_digit"))
    )
    entry: dict[str, Any] = {
        "time": time.time(),
        "method": request.method,
        "path": request.path,
        "headers": {h: request.headers[h] for h in LOGGED_HEADERS if h in request.headers},
        "sign_valid": g.sign_valid,
        "body": _body_summary(),
    }
    g.sim_log = state.log_request(entry)


def _body_summary() -> Any:
    if request.mimetype == "multipart/form-data":
        return {
            "form": request.form.to_dict(),
            "files": [
                {"field": name, "filename": f.filename, "content_type": f.content_type}
                for name, f in request.files.items(multi=True)
            ],
        }
    if request.method in ("GET", "HEAD", "DELETE") and not request.content_length:
        return None
    return request.get_json(silent=True, force=True)
