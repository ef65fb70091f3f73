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
from glm_proxy.events import ConversationStarted, Delta
from glm_proxy.formats.openai import ChatStreamFormatter, CompletionAccumulator, build_completion
from glm_proxy.schemas import ChatCompletionSchema, load
from glm_proxy.services import services
from glm_proxy.services.answer import KEEPALIVE, AnswerJob, End, Failure
from glm_proxy.services.chat import ChatPlan, plan_chat, start_chat
from glm_proxy.sse import DONE, encode_event
from glm_proxy.sse import KEEPALIVE as KEEPALIVE_BYTES
from glm_proxy.usage import usage_dict
from glm_proxy.web import error_response, json_response, read_json

bp = Blueprint("chat", __name__, url_prefix="/v1")

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}


CHAT_SCHEMA = ChatCompletionSchema()  # schemas are stateless; building one costs a deepcopy


def _fallback_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


@bp.post("/chat/completions")
def create_chat_completion() -> Response:
    svc = services()
    caller = authenticate(request, svc.settings)
    body = load(CHAT_SCHEMA, read_json())
    plan = plan_chat(body, svc.settings, svc.models)
    g.log_fields.update(model=plan.model, stream=plan.stream, caller=caller.label)
    job = start_chat(svc, caller, plan)
    if not plan.stream:
        try:
            return _complete(job, plan)
        finally:
            job.cancel()
    error = job.opening_failure(svc.settings.stream_header_wait)
    if error is not None:
        _note_account(job)
        return error_response(error)
    return Response(
        _stream(job, plan, svc.settings, g.log_fields),
        mimetype="text/event-stream",
        headers=STREAM_HEADERS,
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
    g.log_fields["usage"] = usage  # per-key usage (glm_proxy.limits)
    return json_response(
        build_completion(
            completion_id, plan.model, int(time.time()), acc, usage, svc.settings.reasoning_output
        )
    )


def _stream(job: AnswerJob, plan: ChatPlan, settings, log_fields: dict) -> Iterator[bytes]:
    """SSE bytes for one streamed completion.

    Items already waiting in the job's queue are written together in one
    yield: under load that is one socket write instead of many, and the
    client sees the same chunks.
    """
    state = _StreamState(plan, settings, log_fields, job)
    try:
        while not state.done:
            item = job.next_item(timeout=settings.keepalive_interval)
            if item is KEEPALIVE:
                yield KEEPALIVE_BYTES
                continue
            out: list[bytes] = []
            state.render(item, out)
            while not state.done:
                ready = job.next_ready()
                if ready is None:
                    break
                state.render(ready, out)
            yield b"".join(out)
    finally:
        job.cancel()


class _StreamState:
    def __init__(self, plan: ChatPlan, settings, log_fields: dict, job: AnswerJob) -> None:
        self.plan = plan
        self.settings = settings
        self.log_fields = log_fields
        self.job = job
        self.formatter: ChatStreamFormatter | None = None
        self.acc = CompletionAccumulator()
        self.created = int(time.time())
        self.done = False

    def _open(self, completion_id: str, out: list[bytes]) -> ChatStreamFormatter:
        self.formatter = ChatStreamFormatter(
            completion_id, self.plan.model, self.created, self.settings.reasoning_output
        )
        out.append(encode_event(self.formatter.first_chunk()))
        return self.formatter

    def _note_account(self) -> None:
        if self.job.account is not None:
            self.log_fields["account"] = self.job.account.fingerprint

    def render(self, item, out: list[bytes]) -> None:
        if isinstance(item, Failure):
            self._note_account()
            self.log_fields["error"] = item.error.code or "error"
            out.append(encode_event(item.error.to_dict()))
            self.done = True
            return
        formatter = self.formatter
        if isinstance(item, End):
            if formatter is None:
                formatter = self._open(self.job.conversation_id or _fallback_id(), out)
            usage = usage_dict(self.plan.prompt.text, self.acc.text, self.acc.reasoning)
            self.log_fields["usage"] = usage  # per-key usage (glm_proxy.limits)
            if self.plan.include_usage:
                out.append(encode_event(formatter.usage_chunk(usage)))
            out.append(DONE)
            self._note_account()
            self.done = True
            return
        delta: Delta = item
        if formatter is None:
            completion_id = (
                delta.conversation_id
                if isinstance(delta, ConversationStarted)
                else self.job.conversation_id or _fallback_id()
            )
            formatter = self._open(completion_id, out)
        self.acc.feed(delta)
        for chunk in formatter.feed(delta):
            out.append(encode_event(chunk))
