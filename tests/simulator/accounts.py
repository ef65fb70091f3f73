"""Token endpoints (spec §5) and the user profile: refresh, legacy refresh, user info."""

from __future__ import annotations

from flask import Blueprint, Response

from . import care
from .common import bearer, check_headers, fail, needs_login, ok, sim_state, upstream_view
from .state import REFRESH_FAULTS, Account

bp = Blueprint("accounts", __name__, url_prefix="/chatglm")


def _refresh(legacy: bool) -> Response:
    """Shared body of both refresh endpoints; `legacy` = E1 (unsigned, camelCase result)."""
    rejected = check_headers(signed=not legacy)
    if rejected is not None:
        return rejected
    token = bearer()
    if token is None:
        return needs_login()
    state = sim_state()
    fault = state.pop_fault(state.account_key(token), REFRESH_FAULTS)
    if fault is not None and fault.kind == "refresh_500":
        state.count_refresh_failure(token)
        return fail(500, "internal server error", 500)
    if (fault is not None and fault.kind == "refresh_dead") or state.refresh_is_dead(token):
        state.count_refresh_failure(token)
        return fail(40102, "token expired (40102)", 401)
    guest = care.is_guest(state, token)
    if guest and state.cfg("guest_mode") == "refuse":
        state.count_refresh_failure(token)
        return care.guest_refusal()
    acc, access, new_refresh = state.issue_tokens(token)
    if legacy:
        return ok({"accessToken": access, "refreshToken": new_refresh})
    return ok(
        {
            "user_id": acc.user_id,
            "access_token": access,
            "refresh_token": new_refresh,
            "is_guest": guest,
            "mode": 1,
        }
    )


@bp.post("/user-api/user/refresh")
def refresh() -> Response:
    return _refresh(legacy=False)


@bp.post("/backend-api/v1/user/refresh")
def legacy_refresh() -> Response:
    return _refresh(legacy=True)


@bp.get("/user-api/user/info")
@upstream_view(signed=True)
def user_info(acc: Account) -> Response:
    return ok(
        {
            "user_id": acc.user_id,
            "nickname": "模拟用户",
            "is_guest": False,
            "vip": False,
            "refresh_count": acc.refresh_count,
        }
    )
