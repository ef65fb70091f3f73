"""``POST /v1/messages``: the Anthropic Messages API over the same chat service.

Lets the Anthropic SDK and Anthropic-speaking tools use the proxy. Errors on
this blueprint use the Anthropic error shape (``{"type": "error", "error":
{...}}``); streams use named events and ``ping`` keep-alives.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

from flask import Blueprint, Response, g, request
from werkzeug.exceptions import HTTPException

from glm_proxy.auth import authenticate
from glm_proxy.errors import GLMProxyError
from glm_proxy.events import ConversationStarted
from glm_proxy.formats.anthropic import (
    MessageStreamFormatter,
    anthropic_error,
    build_message,
    encode_anthropic_event,
)
from glm_proxy.formats.openai import CompletionAccumulator
from glm_proxy.schemas import load
from glm_proxy.schemas_anthropic import AnthropicMessagesSchema, to_chat_body
from glm_proxy.services import services
from glm_proxy.services.answer import KEEPALIVE, AnswerJob, End, Failure
from glm_proxy.services.chat import ChatPlan, plan_chat, start_chat
from glm_proxy.usage import estimate_tokens
from glm_proxy.web import _http_error, json_response, read_json

log = logging.getLogger(__name__)
bp = Blueprint("anthropic", __name__, url_prefix="/v1")

MESSAGES_SCHEMA = AnthropicMessagesSchema()
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _error(error: GLMProxyError) -> Response:
    return json_response(anthropic_error(error), error.status, dict(error.headers))


@bp.errorhandler(GLMProxyError)
def _proxy_error(exc: GLMProxyError) -> Response:
    return _error(exc)


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException) -> Response:
    return _error(_http_error(exc))


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    """A bug still answers in the shape the Anthropic SDK parses (the app's handler is OpenAI's)."""
    log.exception("unhandled error on %s %s", request.method, request.path)
    return _error(GLMProxyError("The server had an error while processing your request."))


def _message_id(job: AnswerJob) -> str:
    return "msg_" + (job.conversation_id or uuid.uuid4().hex)


def _input_tokens(plan: ChatPlan) -> int:
    return estimate_tokens(plan.prompt.text)


def _output_tokens(acc: CompletionAccumulator) -> int:
    return estimate_tokens(acc.text + acc.reasoning) if acc.text else 0


def _record(job: AnswerJob, log_fields: dict, input_tokens: int, output_tokens: int) -> None:
    """The account for the request log and the usage for per-key counters (glm_proxy.limits).

    The same numbers the client sees in ``usage``, in the OpenAI terms the counters use.
    """
    if job.account is not None:
        log_fields["account"] = job.account.fingerprint
    log_fields["usage"] = {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


@bp.post("/messages")
def create_message() -> Response:
    svc = services()
    caller = authenticate(request, svc.settings)
    body = load(MESSAGES_SCHEMA, read_json())
    plan = plan_chat(to_chat_body(body), svc.settings, svc.models)
    g.log_fields.update(model=plan.model, stream=plan.stream, caller=caller.label)
    job = start_chat(svc, caller, plan)
    if not plan.stream:
        try:
            return _complete(job, plan)
        finally:
            job.cancel()
    error = job.opening_failure(svc.settings.stream_header_wait)
    if error is not None:
        return _error(error)
    return Response(
        _stream(job, plan, svc.settings, g.log_fields),
        mimetype="text/event-stream",
        headers=STREAM_HEADERS,
    )


def _complete(job: AnswerJob, plan: ChatPlan) -> Response:
    acc = CompletionAccumulator()
    for item in job.items():
        if isinstance(item, Failure):
            raise item.error
        if isinstance(item, End):
            break
        acc.feed(item)
    include_thinking = plan.translate_options.include_reasoning
    input_tokens, output_tokens = _input_tokens(plan), _output_tokens(acc)
    _record(job, g.log_fields, input_tokens, output_tokens)
    return json_response(
        build_message(
            _message_id(job),
            plan.model,
            text=acc.text,
            thinking=acc.reasoning if include_thinking else "",
            finish_reason=acc.finish_reason,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )
    )


def _stream(job: AnswerJob, plan: ChatPlan, settings, log_fields: dict) -> Iterator[bytes]:
    formatter: MessageStreamFormatter | None = None
    acc = CompletionAccumulator()
    started = time.monotonic()
    try:
        while True:
            item = job.next_item(timeout=settings.keepalive_interval)
            if item is KEEPALIVE:
                yield encode_anthropic_event(*MessageStreamFormatter.ping())
                continue
            if isinstance(item, Failure):
                log_fields["error"] = item.error.code or "error"
                yield encode_anthropic_event("error", anthropic_error(item.error))
                return
            if formatter is None:
                message_id = (
                    "msg_" + item.conversation_id
                    if isinstance(item, ConversationStarted)
                    else _message_id(job)
                )
                formatter = MessageStreamFormatter(message_id, plan.model, _input_tokens(plan))
                for event in formatter.start():
                    yield encode_anthropic_event(*event)
            if isinstance(item, End):
                output = _output_tokens(acc)
                _record(job, log_fields, formatter.input_tokens, output)
                for event in formatter.finish(output):
                    yield encode_anthropic_event(*event)
                log_fields["latency_to_end"] = round(time.monotonic() - started, 3)
                return
            acc.feed(item)
            for event in formatter.feed(item):
                yield encode_anthropic_event(*event)
    finally:
        job.cancel()
