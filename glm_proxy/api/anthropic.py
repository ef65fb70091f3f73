"""``POST /v1/messages``: the Anthropic Messages API over the same chat service.

Lets the Anthropic SDK and Anthropic-speaking tools use the proxy. Errors on
this blueprint use the Anthropic error shape (``{"type": "error", "error":
{...}}``: the app's error handlers in ``glm_proxy.http.plumbing`` choose it by path);
streams use named events and ``ping`` keep-alives.
"""

from __future__ import annotations

from flask import Blueprint, Response

from glm_proxy.access.auth import Caller
from glm_proxy.api.schemas.anthropic import AnthropicMessagesSchema
from glm_proxy.api.schemas.base import load
from glm_proxy.http.plumbing import admitted, anthropic_error_response, read_json, request_record
from glm_proxy.ids import uuid4_hex
from glm_proxy.inputs.anthropic import to_chat_body
from glm_proxy.protocol.formats.anthropic import MessagesWire
from glm_proxy.services import services
from glm_proxy.services.chat import plan_chat, start_chat
from glm_proxy.streaming.pump import respond

bp = Blueprint("anthropic", __name__, url_prefix="/v1")

MESSAGES_SCHEMA = AnthropicMessagesSchema()


@bp.post("/messages")
@admitted
def create_message(caller: Caller) -> Response:
    svc = services()
    record = request_record()
    body = load(MESSAGES_SCHEMA, read_json())
    plan = plan_chat(to_chat_body(body), svc.settings, svc.models)
    record.describe(model=plan.model, stream=plan.stream, caller=caller.label)
    job = start_chat(svc, caller, plan)
    wire = MessagesWire(
        model=plan.model,
        prompt_text=plan.prompt.text,
        response_id=lambda: "msg_" + (job.conversation_id or uuid4_hex()),
        include_thinking=plan.translate_options.include_reasoning,
    )
    return respond(
        job,
        wire,
        stream=plan.stream,
        settings=svc.settings,
        record=record,
        error_response=anthropic_error_response,
    )
