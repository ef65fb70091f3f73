"""``POST /token/check``: is a chatglm refresh token still alive?

Open like the web app's proxies had it while the server runs in pass-through
mode (the caller holds the token anyway). On a team server that does not
accept raw refresh tokens it needs a team API key, so strangers cannot use it
to hammer the upstream's login endpoint.
"""

from __future__ import annotations

from flask import Blueprint, Response, request

from glm_proxy.access.auth import check_token_text
from glm_proxy.api.schemas.base import load
from glm_proxy.api.schemas.tokens import TokenCheckSchema
from glm_proxy.http.plumbing import json_response, read_json, request_record
from glm_proxy.services import services

bp = Blueprint("tokens", __name__)
TOKEN_CHECK_SCHEMA = TokenCheckSchema()


@bp.post("/token/check")
def check() -> Response:
    svc = services()
    if not svc.auth.passthrough:
        caller = svc.auth.authenticate(request)
        svc.limits.admit(caller, request_record())
    body = load(TOKEN_CHECK_SCHEMA, read_json())
    token = check_token_text(body["token"], "token", svc.settings.max_token_length)
    live = svc.upstream.check_token(token)
    return json_response({"live": live})
