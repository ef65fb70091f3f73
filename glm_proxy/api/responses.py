"""``/v1/responses``: the OpenAI Responses API over the same answer machinery.

``POST /v1/responses`` answers (streamed as typed Responses events, or as one
``response`` object), ``GET``/``DELETE /v1/responses/<id>`` read and delete a
stored response, ``POST /v1/responses/<id>/cancel`` stops one still in
progress. Errors use the OpenAI error shape like every OpenAI route.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, g, request
from gevent.queue import Queue

from glm_proxy.auth import authenticate
from glm_proxy.errors import GLMProxyError, InvalidRequest
from glm_proxy.formats.responses import ResponseBuilder, ResponsesWire
from glm_proxy.schemas import load
from glm_proxy.schemas_responses import ResponsesSchema
from glm_proxy.services import responses as turns
from glm_proxy.services import services
from glm_proxy.services.answer import KEEPALIVE, AnswerJob, End, Failure
from glm_proxy.services.response_store import CANCEL_CHANNEL, ResponseStore
from glm_proxy.web import error_response, json_response, read_json

bp = Blueprint("responses", __name__, url_prefix="/v1")

SCHEMA = ResponsesSchema()
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
CANCELLED = object()
"""Queued into the job's queue when the client cancels the response."""


@bp.post("/responses")
def create_response() -> Response:
    svc = services()
    caller = authenticate(request, svc.settings)
    body = load(SCHEMA, read_json())
    turn = turns.prepare(svc, caller, body)
    g.log_fields.update(model=turn.plan.model, stream=turn.plan.stream, caller=caller.label)
    job = turns.start(svc, caller, turn)
    if not turn.plan.stream:
        return _complete(svc, caller, turn, job)
    error = job.opening_failure(svc.settings.stream_header_wait)
    if error is not None and turns.conversation_gone(error, turn):
        turn = turns.from_history(svc, turn)
        job = turns.start(svc, caller, turn)
        error = job.opening_failure(svc.settings.stream_header_wait)
    if error is not None:
        _note(job, g.log_fields)
        return error_response(error)
    return Response(
        _stream(svc, turn, job, g.log_fields),
        mimetype="text/event-stream",
        headers=STREAM_HEADERS,
    )


@bp.get("/responses/<response_id>")
def get_response(response_id: str) -> Response:
    svc = services()
    caller = authenticate(request, svc.settings)
    if request.args.get("stream", "").lower() == "true":
        raise InvalidRequest("Streaming a stored response again is not supported.", param="stream")
    responses = ResponseStore(svc.store, svc.settings)
    snapshot = responses.live(response_id, caller)
    if snapshot is not None:
        return json_response(snapshot)
    return json_response(responses.load(response_id, caller).response)


@bp.delete("/responses/<response_id>")
def delete_response(response_id: str) -> Response:
    svc = services()
    caller = authenticate(request, svc.settings)
    return json_response(turns.delete(svc, caller, response_id))


@bp.post("/responses/<response_id>/cancel")
def cancel_response(response_id: str) -> Response:
    svc = services()
    caller = authenticate(request, svc.settings)
    responses = ResponseStore(svc.store, svc.settings)
    snapshot = responses.live(response_id, caller)
    if snapshot is None:
        responses.load(response_id, caller)  # 404 unless it exists (and is the caller's)
        raise InvalidRequest(
            "Only a response that is still in progress can be cancelled.",
            code="response_not_cancellable",
        )
    responses.request_cancel(response_id)
    return json_response({**snapshot, "status": "cancelled"})


# -- answering ------------------------------------------------------------------------------


class _Live:
    """While a response is in progress: its cancel hook, and the store record naming it."""

    def __init__(self, svc, turn: turns.Turn, job: AnswerJob) -> None:
        self.responses = ResponseStore(svc.store, svc.settings)
        self.response_id = turn.response_id
        self.job_queue: Queue = job.queue
        self.responses.mark_live(
            turn.response_id, turn.owner, turn.builder(svc.settings).response()
        )
        self._unsubscribe = svc.store.subscribe(CANCEL_CHANNEL, self._on_cancel)

    def _on_cancel(self, response_id: str) -> None:
        if response_id == self.response_id:
            self.job_queue.put(CANCELLED)

    def end(self) -> None:
        self._unsubscribe()
        self.responses.end_live(self.response_id)


def _note(job: AnswerJob, log_fields: dict, builder: ResponseBuilder | None = None) -> None:
    """The account for the request log, and the usage for per-key counters (chat terms)."""
    if job.account is not None:
        log_fields["account"] = job.account.fingerprint
    if builder is not None:
        usage = builder.usage()
        log_fields["usage"] = {
            "prompt_tokens": usage["input_tokens"],
            "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["total_tokens"],
        }


def _complete(svc, caller, turn: turns.Turn, job: AnswerJob) -> Response:
    live = _Live(svc, turn, job)
    try:
        while True:
            builder = turn.builder(svc.settings)
            try:
                for item in job.items():
                    if item is CANCELLED:
                        builder.cancel()
                        break
                    if isinstance(item, Failure):
                        raise item.error
                    if isinstance(item, End):
                        builder.finish()
                        break
                    builder.feed(item)
            except GLMProxyError as exc:
                if not turns.conversation_gone(exc, turn):
                    _note(job, g.log_fields)
                    raise
                job.cancel()
                turn = turns.from_history(svc, turn)
                job = turns.start(svc, caller, turn)
                live.job_queue = job.queue
                continue
            break
        _note(job, g.log_fields, builder)
        turns.save(svc, turn, builder, job)  # before the live record goes: never a gap
    finally:
        job.cancel()
        live.end()
    return json_response(builder.response())


def _stream(svc, turn: turns.Turn, job: AnswerJob, log_fields: dict) -> Iterator[bytes]:
    """SSE bytes for one streamed response; items already queued go out in one write."""
    builder = turn.builder(svc.settings)
    wire = ResponsesWire(builder)
    keepalive = svc.settings.keepalive_interval
    live = _Live(svc, turn, job)
    try:
        yield wire.open()
        done = False
        while not done:
            item = job.next_item(timeout=keepalive)
            if item is KEEPALIVE:
                yield wire.keepalive()
                continue
            out: list[bytes] = []
            while True:
                if item is CANCELLED:
                    out.append(wire.cancel())
                    done = True
                elif isinstance(item, Failure):
                    log_fields["error"] = item.error.code or "error"
                    out.append(wire.error(item.error))
                    done = True
                elif isinstance(item, End):
                    _note(job, log_fields, builder)
                    closing = wire.finish(item)
                    turns.save(svc, turn, builder, job)  # before the client may continue it
                    out.append(closing)
                    done = True
                else:
                    out.append(wire.feed(item))
                if done:
                    break
                item = job.next_ready()
                if item is None:
                    break
            if done and builder.status in ("failed", "cancelled"):
                _note(job, log_fields, builder)
                turns.save(svc, turn, builder, job)
            yield b"".join(out)
    finally:
        job.cancel()
        live.end()
