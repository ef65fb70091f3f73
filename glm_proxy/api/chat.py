"""``POST /v1/chat/completions``: thin view over the chat service.

The answer goes out through the streaming pump (``glm_proxy.streaming.pump``)
in the Chat Completions wire format (``glm_proxy.protocol.formats.openai.ChatWire``):
errors before any output keep their real HTTP status, a later failure is one
final ``data: {"error": ...}`` event, and the lease and the upstream
conversation are cleaned up even when the client hangs up.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response

from glm_proxy.access.auth import Caller
from glm_proxy.api.choices import respond_choices
from glm_proxy.api.schemas.base import load
from glm_proxy.api.schemas.chat import ChatCompletionSchema
from glm_proxy.http.plumbing import admitted, error_response, read_json, request_record
from glm_proxy.ids import uuid4_hex
from glm_proxy.protocol.formats.openai import ChatWire
from glm_proxy.services import services
from glm_proxy.services.chat import plan_chat, start_chat
from glm_proxy.services.controls import reasoning_style
from glm_proxy.streaming.pump import respond

bp = Blueprint("chat", __name__, url_prefix="/v1")

CHAT_SCHEMA = ChatCompletionSchema()  # schemas are stateless; building one costs a deepcopy


@bp.post("/chat/completions")
@admitted
def create_chat_completion(caller: Caller) -> Response:
    svc = services()
    record = request_record()
    body = load(CHAT_SCHEMA, read_json())
    plan = plan_chat(body, svc.settings, svc.models)
    record.describe(model=plan.model, stream=plan.stream, caller=caller.label)
    if plan.controls.n > 1:
        return respond_choices(
            svc,
            caller,
            plan,
            start_job=lambda: start_chat(svc, caller, plan),
            record=record,
            error_response=error_response,
        )
    job = start_chat(svc, caller, plan)
    wire = ChatWire(
        model=plan.model,
        created=int(time.time()),
        prompt_text=plan.prompt.text,
        response_id=lambda: job.conversation_id or "chatcmpl-" + uuid4_hex(),
        reasoning_style=reasoning_style(svc.settings.reasoning_output, plan.controls),
        include_usage=plan.include_usage,
    )
    return respond(
        job,
        wire,
        stream=plan.stream,
        settings=svc.settings,
        record=record,
        error_response=error_response,
    )
