"""Accounts as the upstream treats them (upstream-protocol.md §16): guests, verification, credits.

All switchable through ``/_sim/config`` (or per-account stream faults):

- ``guest_prefix``: refresh tokens starting with it are a visitor's. ``guest_mode``
  ``refuse`` answers the refresh with 访客账号不可用; ``flag`` refreshes fine but
  says ``is_guest: true``.
- ``verify_after``: after that many answers of one account within
  ``verify_window`` seconds, its stream requests get the HTML access-verification
  page (not the JSON envelope) for ``verify_hold`` seconds. ``None`` = off.
- ``credits``: the points (1/100) a new account starts with; each answer costs
  ``credit_cost``; with too few left the stream is refused (``out_of_credits``
  refusal below). ``daily_credits`` is what ``daily_login_score`` adds, once per
  simulated day (``day``; 10001 今日已领取 afterwards). ``None`` = off.

Refusal codes are guesses where the evidence names none; ``REFUSALS`` is the
simulator's choice, and the proxy recognises them by ``ACCOUNT_REFUSALS``.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, request

from .common import fail, json_response, ok, sim_state, upstream_view
from .state import Account, SimState

bp = Blueprint("care", __name__, url_prefix="/chatglm/member-api/member")

GUEST_MESSAGE = "访客账号不可用"
VERIFY_PAGE = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>访问验证</title></head>"
    "<body><div id='app'>访问验证：请完成安全验证后继续访问 (simulated WAF page)</div>"
    "<script>/* slider captcha */</script></body></html>"
).encode()
# fault kind -> (HTTP status, envelope status, message)
REFUSALS: dict[str, tuple[int, int, str]] = {
    "banned": (200, 10015, "账号已被封禁 (simulated)"),
    "risk_control": (200, 10016, "账号存在风险，触发风控 (simulated)"),
    "out_of_credits": (200, 10018, "积分不足，请明日再来 (simulated)"),
    "rate_429": (429, 10062, "当前使用人数较多，请稍后再试 (simulated)"),
    "unknown_refusal": (200, 10777, "something new went wrong (simulated)"),
}
CARE_FAULTS = frozenset({"verify_page", *REFUSALS})


def _record(state: SimState, key: str) -> dict[str, Any]:
    """The account's care record (under ``state.lock``)."""
    return state.care.setdefault(
        key,
        {"answers": [], "challenged_until": 0.0, "challenges": 0, "score": None, "claims": []},
    )


def is_guest(state: SimState, token: str) -> bool:
    prefix = state.cfg("guest_prefix")
    return bool(prefix) and state.account_key(token).startswith(prefix)


def guest_refusal() -> Response:
    return fail(10002, GUEST_MESSAGE)


def verify_page() -> Response:
    return Response(VERIFY_PAGE, status=200, content_type="text/html; charset=utf-8")


def refusal(kind: str) -> Response:
    http, status, message = REFUSALS[kind]
    return json_response({"status": status, "message": message}, http)


def gate(state: SimState, acc: Account, fault_kind: str | None) -> Response | None:
    """Before an answer: the care faults, the verification page, credits; counts the answer."""
    if fault_kind == "verify_page":
        return verify_page()
    if fault_kind in REFUSALS:
        return refusal(fault_kind)
    now = time.time()
    verify_after = state.cfg("verify_after")
    credits, cost = state.cfg("credits"), int(state.cfg("credit_cost") or 0)
    with state.lock:
        record = _record(state, acc.refresh_token)
        if record["challenged_until"] > now:
            return verify_page()
        if verify_after is not None:
            window = float(state.cfg("verify_window"))
            record["answers"] = [t for t in record["answers"] if t > now - window]
            if len(record["answers"]) >= int(verify_after):
                record["challenged_until"] = now + float(state.cfg("verify_hold"))
                record["challenges"] += 1
                return verify_page()
        if credits is not None:
            if record["score"] is None:
                record["score"] = int(credits)
            if record["score"] < cost:
                return refusal("out_of_credits")
            record["score"] -= cost
        record["answers"].append(now)
    return None


@bp.get("/member_info")
@upstream_view(signed=True)
def member_info(acc: Account) -> Response:
    state = sim_state()
    with state.lock:
        record = _record(state, acc.refresh_token)
        if record["score"] is None and state.cfg("credits") is not None:
            record["score"] = int(state.cfg("credits"))
        score = record["score"] or 0
    return ok(
        {
            "left_score": str(score),
            "left_token": score * 10,
            "score_rule": "免费用户每日登录获得200积分 (simulated)",
        }
    )


@bp.route("/daily_login_score", methods=["GET", "POST"])
@upstream_view(signed=True)
def daily_login_score(acc: Account) -> Response:
    state = sim_state()
    day = state.cfg("day")
    with state.lock:
        record = _record(state, acc.refresh_token)
        if day in record["claims"]:
            return fail(10001, "今日已领取")
        record["claims"].append(day)
        if record["score"] is None:
            record["score"] = int(state.cfg("credits") or 0)
        record["score"] += int(state.cfg("daily_credits") or 0)
        score = record["score"]
    return ok({"score": int(state.cfg("daily_credits") or 0), "left_score": str(score)})


def set_credits() -> Response:
    """``POST /_sim/credits {"token", "left_score"}``: set an account's points (tests)."""
    body = request.get_json(silent=True, force=True) or {}
    token, score = body.get("token"), body.get("left_score")
    if not isinstance(token, str) or not isinstance(score, int):
        return json_response({"ok": False, "error": "token and integer left_score needed"}, 400)
    state = sim_state()
    with state.lock:
        _record(state, state.refresh_alias.get(token, token))["score"] = score
    return json_response({"ok": True})
