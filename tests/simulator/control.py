"""Control and introspection API under /_sim/ (tests only; never part of the upstream)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from . import care
from .common import json_response, sim_state
from .state import DEFAULT_CONFIG, REFRESH_FAULTS, STREAM_FAULTS

bp = Blueprint("control", __name__, url_prefix="/_sim")


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True, force=True)
    return body if isinstance(body, dict) else {}


def _error(message: str) -> Response:
    return json_response({"ok": False, "error": message}, 400)


@bp.get("/health")
def health() -> Response:
    return json_response({"ok": True})


@bp.get("/state")
def state() -> Response:
    return json_response(sim_state().snapshot())


@bp.post("/reset")
def reset() -> Response:
    """Forget accounts, tokens, faults, uploads, tasks, the log; restore the startup config."""
    state = sim_state()
    state.reset()
    with state.lock:
        state.config = dict(state.startup_config)
    return json_response({"ok": True})


@bp.post("/config")
def config() -> Response:
    """Merge known keys into the live config; unknown keys are refused (typos fail loudly)."""
    updates = _body()
    unknown = sorted(set(updates) - set(DEFAULT_CONFIG))
    if unknown:
        return _error(f"unknown config keys: {', '.join(unknown)}")
    state = sim_state()
    with state.lock:
        state.config.update(updates)
        current = dict(state.config)
    return json_response(current)


@bp.post("/faults")
def faults() -> Response:
    body = _body()
    token, kind = body.get("token"), body.get("kind")
    if not isinstance(token, str) or not token:
        return _error("token is required (a refresh token, or '*' for every account)")
    if kind not in STREAM_FAULTS | REFRESH_FAULTS:
        return _error(f"unknown kind; one of {sorted(STREAM_FAULTS | REFRESH_FAULTS)}")
    try:
        count = int(body.get("count", 1))
        seconds = float(body.get("seconds", 5.0))
    except (TypeError, ValueError):
        return _error("count must be an integer and seconds a number")
    state = sim_state()
    state.add_faults(token, kind, count, seconds)
    return json_response({"ok": True, "pending": state.pending_faults()})


bp.add_url_rule("/credits", "credits", care.set_credits, methods=["POST"])


@bp.post("/tokens/dead")
def dead_token() -> Response:
    token = _body().get("token")
    if not isinstance(token, str) or not token:
        return _error("token is required")
    sim_state().mark_dead(token)
    return json_response({"ok": True})
