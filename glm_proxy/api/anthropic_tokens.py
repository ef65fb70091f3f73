"""``POST /v1/messages/count_tokens``: the Anthropic token counter, by our estimator.

Agents (Claude Code among them) ask it before sending a long conversation.
The request is planned exactly like ``/v1/messages`` (same prompt, same
structured-output instruction), and the prompt's tokens are estimated with
``glm_proxy.protocol.usage``, so the figure matches the ``input_tokens`` a message
reports. It is an estimate, not the upstream's tokenizer. Nothing is sent
upstream.
"""

from __future__ import annotations

from flask import Blueprint, Response

from glm_proxy.access.auth import Caller
from glm_proxy.api.schemas.anthropic import CountTokensSchema
from glm_proxy.api.schemas.base import load
from glm_proxy.http.plumbing import admitted, json_response, read_json
from glm_proxy.inputs.anthropic import to_chat_body
from glm_proxy.protocol.usage import estimate_tokens
from glm_proxy.services import services
from glm_proxy.services.chat import plan_chat

bp = Blueprint("anthropic_tokens", __name__, url_prefix="/v1")

COUNT_SCHEMA = CountTokensSchema()


@bp.post("/messages/count_tokens")
@admitted
def count_tokens(caller: Caller) -> Response:
    svc = services()
    body = load(COUNT_SCHEMA, read_json())
    plan = plan_chat(to_chat_body(body), svc.settings, svc.models)
    return json_response({"input_tokens": estimate_tokens(plan.prompt.text)})
