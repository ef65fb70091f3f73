"""2026 ("E3") endpoints and gates (upstream-protocol.md §15.1, §15.7).

Served only when the simulator's ``era`` is ``E3`` (404 otherwise, like an
upstream that does not have them yet): server time, model catalogue,
``mainchat-api`` deletes / list / stop / status, the new upload, guest access.
The WAF gate (``waf`` switch) answers 400 ``40012`` to requests that do not
look like the browser (no ``acw_tc`` cookie, no browser user agent, or a
``chatglm_token`` cookie that disagrees with the bearer), and the clock gate
(``max_skew_ms``) refuses signed calls whose timestamp is off the server clock.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from flask import Blueprint, Response, abort, request

from .common import (
    bad_request,
    bearer,
    check_headers,
    fail,
    json_response,
    ok,
    sim_state,
    upstream_view,
)
from .files import receive_upload
from .state import Account

bp = Blueprint("e3", __name__, url_prefix="/chatglm")

CATALOGUE_MODELS = ("glm-5.3", "glm-5.3-flash")
E3_CHAT_MODES = frozenset({"", "thinking", "deep_thinking"})
E2_CHAT_MODES = frozenset({"zero", "deep_research"})
BUSY_MESSAGE = "请等待其他对话生成完毕"
WAF_COOKIE = "acw_tc"


def is_e3() -> bool:
    return sim_state().cfg("era") == "E3"


def _require_e3() -> None:
    if not is_e3():
        abort(404)


def server_now_ms() -> int:
    return int(time.time() * 1000) + int(sim_state().cfg("clock_skew_ms") or 0)


def request_cookies() -> dict[str, str]:
    jar = {}
    for item in request.headers.get("Cookie", "").split(";"):
        name, sep, value = item.strip().partition("=")
        if sep:
            jar[name] = value
    return jar


def device_claim(token: str | None) -> str | None:
    """The ``device_id`` claim of the account's refresh token, when it is a JWT."""
    if not token:
        return None
    state = sim_state()
    with state.lock:
        entry = state.access.get(token)
    key = state.account_key(entry[0] if entry else token)
    parts = key.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    claim = claims.get("device_id") if isinstance(claims, dict) else None
    return claim if isinstance(claim, str) else None


def waf_gate() -> Response | None:
    """before_request: the WAF (``waf`` switch), the device check (``require_device_match``)
    and the clock check (``max_skew_ms``)."""
    if request.path.startswith("/_sim/") or not request.path.startswith("/chatglm"):
        return None
    state = sim_state()
    if state.cfg("waf"):
        jar = request_cookies()
        ua = request.headers.get("User-Agent", "")
        token = bearer()
        refreshing = request.path.endswith("/user/refresh")
        stale = token and not refreshing and jar.get("chatglm_token") not in (None, token)
        if not jar.get(WAF_COOKIE) or not ua.startswith("Mozilla/") or stale:
            return fail(40012, "request blocked (simulated WAF)", 400)
    if state.cfg("require_device_match"):
        claim = device_claim(bearer())
        if claim is not None and request.headers.get("X-Device-Id") != claim:
            return bad_request("bad request: device id does not match the token")
    limit = state.cfg("max_skew_ms")
    stamp = request.headers.get("X-Timestamp", "")
    clock_call = request.path.endswith("/config/cur_ts")  # how a client learns the time
    if (
        limit is not None
        and not clock_call
        and stamp.isdigit()
        and abs(int(stamp) - server_now_ms()) > limit
    ):
        return bad_request("bad request: timestamp out of range")
    return None


def check_stream_body(meta: dict[str, Any]) -> Response | None:
    """E3 body rules: a catalogue ``selected_model`` and a known ``chat_mode``."""
    model = meta.get("selected_model")
    if model is not None and model not in CATALOGUE_MODELS:
        return fail(10003, f"model not available: {model}")
    mode = meta.get("chat_mode")
    allowed = E3_CHAT_MODES | (E2_CHAT_MODES if sim_state().cfg("accept_e2_modes") else set())
    if mode is not None and mode not in allowed:
        return fail(10004, f"unsupported chat_mode: {mode}")
    return None


def busy() -> Response:
    return json_response({"status": 10061, "message": BUSY_MESSAGE}, 429)


@bp.get("/operation-api/config/cur_ts")
def cur_ts() -> Response:
    _require_e3()
    rejected = check_headers(signed=True)
    if rejected is not None:
        return rejected
    return ok({"timestamp_ms": server_now_ms()})


@bp.post("/user-api/guest/access")
def guest_access() -> Response:
    _require_e3()
    return fail(40103, "guest access is not simulated", 401)


@bp.get("/agent-api/operation/detail")
@upstream_view(signed=True)
def catalogue(acc: Account) -> Response:
    _require_e3()
    if request.args.get("tag") != "available_models":
        return bad_request()
    efforts = [
        {"display_name": "快速", "effort": "", "am_effort": "low", "description": "fast"},
        {"display_name": "深度", "effort": "thinking", "am_effort": "high", "description": "deep"},
        {
            "display_name": "极致",
            "effort": "deep_thinking",
            "am_effort": "max",
            "description": "max",
        },
    ]
    models = [
        {
            "display_name": name.upper(),
            "selected_model": name,
            "display_tag": "",
            "am_switch": True,
            "chat_switch": True,
            "reasoning_efforts": efforts,
        }
        for name in CATALOGUE_MODELS
    ]
    default = {tier: "glm-5.3-flash" for tier in ("agent", "am", "guest", "non_vip", "vip", "svip")}
    return ok({"default": default, "models": models})


def _delete_many(acc: Account, ids: list[str]) -> list[str]:
    state = sim_state()
    return [cid for cid in ids if state.delete_conversation(acc, cid)]


@bp.post("/mainchat-api/conversation/bulk_delete")
@upstream_view(signed=True)
def bulk_delete(acc: Account) -> Response:
    _require_e3()
    body = request.get_json(silent=True, force=True)
    ids = body.get("conversation_ids") if isinstance(body, dict) else None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        return bad_request()
    _delete_many(acc, ids)
    return json_response({"status": 0, "result": None})


@bp.post("/mainchat-api/conversation/delete")
@upstream_view(signed=True)
def mainchat_delete(acc: Account) -> Response:
    _require_e3()
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict) or not body.get("conversation_id"):
        return bad_request()
    if _delete_many(acc, [str(body["conversation_id"])]):
        return ok(None)
    return fail(404, "conversation 不存在")


@bp.post("/mainchat-api/conversation/recent_list")
@upstream_view(signed=True)
def recent_list(acc: Account) -> Response:
    _require_e3()
    state = sim_state()
    with state.lock:
        alive = [c for c in acc.conversations.values() if not c.deleted]
        items = [
            {
                "conversation_id": c.id,
                "assistant_id": c.assistant_id,
                "title": (c.history[0]["prompt"][:20] if c.history else ""),
                "history_total": c.turns,
                "meta_data": {},
                "update_time": int(time.time()),
            }
            for c in alive
        ]
    return ok({"has_more": False, "conversation_list": items})


@bp.post("/mainchat-api/stream/stop_stream")
@upstream_view(signed=True)
def stop_stream(acc: Account) -> Response:
    _require_e3()
    body = request.get_json(silent=True, force=True)
    if not isinstance(body, dict) or not body.get("history_id"):
        return bad_request()
    sim_state().request_stop(acc, str(body["history_id"]))
    return ok(None)


@bp.post("/mainchat-api/stream/update_status")
@upstream_view(signed=True)
def update_status(acc: Account) -> Response:
    _require_e3()
    return ok(None)


@bp.post("/productivity-api/file/chat_upload")
@upstream_view(signed=True)
def chat_upload(acc: Account) -> Response:
    _require_e3()
    if request.form.get("from") != "chat" or not request.form.get("assistant_id"):
        return bad_request("bad request: missing form fields")
    record = receive_upload(acc)
    if record is None:
        return bad_request()
    state = sim_state()
    with state.lock:
        state.uploads[record["file_id"]] = record
    result = {
        "file_id": record["file_id"],
        "file_url": record["file_url"],
        "file_name": record["filename"],
        "file_size": record["size"],
    }
    if record["width"] is not None:  # a guess: the capture shows no size fields
        result.update(width=record["width"], height=record["height"])
    return ok(result)
