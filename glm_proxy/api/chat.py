"""``POST /v1/chat/completions``: thin view over the chat service.

Streaming: the view waits briefly (``STREAM_HEADER_WAIT``) for the upstream so
errors that happen before any output get their real HTTP status; after that
it commits to ``200 text/event-stream``, sends ``: keep-alive`` comments while
the upstream is silent, and reports a later failure as one final
``data: {"error": ...}`` event. The generator's ``finally`` cancels the job,
which releases the lease and schedules the conversation's deletion even when
the client hangs up.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

from flask import Blueprint, Response, g, request

from glm_proxy.auth import authenticate
from glm_proxy.errors import GLMProxyError
from glm_proxy.events import ConversationStarted, Delta
from glm_proxy.formats.openai import ChatStreamFormatter, CompletionAccumulator, build_completion
from glm_proxy.schemas import ChatCompletionSchema, load
from glm_proxy.services import services
from glm_proxy.services.answer import KEEPALIVE, AnswerJob, End, Failure
from glm_proxy.services.chat import ChatPlan, plan_chat, start_chat
from glm_proxy.sse import DONE, KEEPALIVE as KEEPALIVE_BYTES, encode_event
from glm_proxy.usage import usage_dict
from glm_proxy.web import error_response, json_response, read_json

bp = Blueprint("chat", __name__, url_prefix="/v1")

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}


def _fallback_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


@bp.post("/chat/completions")
def create_chat_completion() -> Response:
    svc = services()
    caller = authenticate(request, svc.settings)
    body = load(ChatCompletionSchema(), read_json())
    plan = plan_chat(body, svc.settings, svc.models)
    g.log_fields.update(model=plan.model, stream=plan.stream, caller=caller.label)
    job = start_chat(svc, caller, plan)
    if not plan.stream:
        try:
            return _complete(job, plan)
        finally:
            job.cancel()
    first = job.peek(timeout=svc.settings.stream_header_wait)
    if isinstance(first, Failure):
        job.cancel()
        _note_account(job)
        return error_response(first.error)
    return Response(
        _stream(job, plan, svc.settings, g.log_fields), mimetype="text/event-stream", headers=STREAM_HEADERS
    )


def _note_account(job: AnswerJob) -> None:
    if job.account is not None:
        g.log_fields["account"] = job.account.fingerprint


def _complete(job: AnswerJob, plan: ChatPlan) -> Response:
    acc = CompletionAccumulator()
    for item in job.items():
        if isinstance(item, Failure):
            _note_account(job)
            raise item.error
        if isinstance(item, End):
            break
        acc.feed(item)
    _note_account(job)
    svc = services()
    completion_id = job.conversation_id or _fallback_id()
    usage = usage_dict(plan.prompt.text, acc.text, acc.reasoning)
    return json_response(
        build_completion(
            completion_id, plan.model, int(time.time()), acc, usage, svc.settings.reasoning_output
        )
    )


def _stream(job: AnswerJob, plan: ChatPlan, settings, log_fields: dict) -> Iterator[bytes]:
    formatter: ChatStreamFormatter | None = None
    acc = CompletionAccumulator()
    created = int(time.time())

    def open_formatter(completion_id: str) -> tuple[ChatStreamFormatter, bytes]:
        fmt = ChatStreamFormatter(completion_id, plan.model, created, settings.reasoning_output)
        return fmt, encode_event(fmt.first_chunk())

    try:
        while True:
            item = job.next_item(timeout=settings.keepalive_interval)
            if item is KEEPALIVE:
                yield KEEPALIVE_BYTES
                continue
            if isinstance(item, Failure):
                if job.account is not None:
                    log_fields["account"] = job.account.fingerprint
                yield encode_event(item.error.to_dict())
                return
            if isinstance(item, End):
                if formatter is None:
                    formatter, first = open_formatter(job.conversation_id or _fallback_id())
                    yield first
                if plan.include_usage:
                    usage = usage_dict(plan.prompt.text, acc.text, acc.reasoning)
                    yield encode_event(formatter.usage_chunk(usage))
                yield DONE
                if job.account is not None:
                    log_fields["account"] = job.account.fingerprint
                return
            delta: Delta = item
            if formatter is None:
                completion_id = (
                    delta.conversation_id
                    if isinstance(delta, ConversationStarted)
                    else job.conversation_id or _fallback_id()
                )
                formatter, first = open_formatter(completion_id)
                yield first
            acc.feed(delta)
            for chunk in formatter.feed(delta):
                yield encode_event(chunk)
    except GLMProxyError as exc:  # pragma: no cover - the job reports errors as items
        yield encode_event(exc.to_dict())
    finally:
        job.cancel()
