"""``POST /token/check``: is a chatglm refresh token still alive?"""

from __future__ import annotations

from flask import Blueprint, Response

from glm_proxy.schemas import TokenCheckSchema, load
from glm_proxy.services import services
from glm_proxy.web import json_response, read_json

bp = Blueprint("tokens", __name__)
TOKEN_CHECK_SCHEMA = TokenCheckSchema()


@bp.post("/token/check")
def check() -> Response:
    body = load(TOKEN_CHECK_SCHEMA, read_json())
    live = services().upstream.check_token(body["token"])
    return json_response({"live": live})
