"""``/v1/responses``: the OpenAI Responses API over the same answer machinery.

``POST /v1/responses`` answers (streamed as typed Responses events, or as one
``response`` object), ``GET``/``DELETE /v1/responses/<id>`` read and delete a
stored response, ``GET /v1/responses/<id>/input_items`` lists its input,
``POST /v1/responses/<id>/cancel`` stops one still in progress. Errors use
the OpenAI error shape like every OpenAI route.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, request

from glm_proxy.access.auth import Caller
from glm_proxy.api.schemas.base import load
from glm_proxy.api.schemas.responses import ResponsesSchema
from glm_proxy.errors import GLMProxyError, InvalidRequest
from glm_proxy.http.plumbing import (
    admitted,
    error_response,
    json_response,
    read_json,
    request_record,
)
from glm_proxy.observability.record import RequestRecord
from glm_proxy.protocol.formats.responses import ResponseBuilder, ResponseCancelled, ResponsesWire
from glm_proxy.services import Services, services
from glm_proxy.services import responses as turns
from glm_proxy.services.answer import AnswerJob
from glm_proxy.store.responses import CANCEL_CHANNEL, ResponseStore
from glm_proxy.streaming.pump import respond

bp = Blueprint("responses", __name__, url_prefix="/v1")

SCHEMA = ResponsesSchema()


@bp.post("/responses")
@admitted
def create_response(caller: Caller) -> Response:
    svc = services()
    record = request_record()
    body = load(SCHEMA, read_json())
    turn = turns.prepare(svc, caller, body)
    record.describe(model=turn.plan.model, stream=turn.plan.stream, caller=caller.label)
    job = turns.start(svc, caller, turn)
    if not turn.plan.stream:
        return _complete(svc, caller, turn, job, record)
    error = job.opening_failure(svc.settings.stream_header_wait)
    if error is not None and turns.conversation_gone(error, turn):
        turn = turns.from_history(svc, turn)
        job = turns.start(svc, caller, turn)
        error = job.opening_failure(svc.settings.stream_header_wait)
    if error is not None:
        record.note_account(job.account)
        return error_response(error)
    wire = ResponsesWire(turn.builder(svc.settings), on_end=_saver(svc, turn, job))
    live = _Live(svc, turn, job)
    response = respond(
        job,
        wire,
        stream=True,
        settings=svc.settings,
        record=record,
        error_response=error_response,
    )
    response.call_on_close(live.end)  # also when the stream never started
    return response


@bp.get("/responses/<response_id>")
@admitted
def get_response(caller: Caller, response_id: str) -> Response:
    svc = services()
    if request.args.get("stream", "").lower() == "true":
        raise InvalidRequest("Streaming a stored response again is not supported.", param="stream")
    responses = ResponseStore(svc.store, svc.settings)
    snapshot = responses.live(response_id, caller)
    if snapshot is not None:
        return json_response(snapshot)
    return json_response(responses.load(response_id, caller).response)


@bp.get("/responses/<response_id>/input_items")
@admitted
def list_input_items(caller: Caller, response_id: str) -> Response:
    """This response's own input items (not the earlier turns'), OpenAI's cursor page."""
    svc = services()
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("Invalid value for 'order': must be asc or desc.", param="order")
    try:
        limit = int(request.args.get("limit", "20"))
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise InvalidRequest("Invalid value for 'limit': an integer from 1 to 100.", param="limit")
    items = ResponseStore(svc.store, svc.settings).load(response_id, caller).input_items()
    if order == "desc":
        items.reverse()
    after = request.args.get("after")
    if after:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidRequest(f"No input item with id {after!r}.", param="after")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return json_response(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )


@bp.delete("/responses/<response_id>")
@admitted
def delete_response(caller: Caller, response_id: str) -> Response:
    svc = services()
    return json_response(turns.delete(svc, caller, response_id))


@bp.post("/responses/<response_id>/cancel")
@admitted
def cancel_response(caller: Caller, response_id: str) -> Response:
    svc = services()
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
    """While a response streams: the store record naming it, and its cancel hook.

    A cancel (from any worker, through the store's publish/subscribe) aborts
    the answer job with ``ResponseCancelled``: the upstream answer stops, the
    pump gets it as the final ``Failure`` and the wire ends the stream with
    the cancelled response.
    """

    def __init__(self, svc: Services, turn: turns.Turn, job: AnswerJob) -> None:
        self.responses = ResponseStore(svc.store, svc.settings)
        self.response_id = turn.response_id
        self.job = job
        self.responses.mark_live(
            turn.response_id, turn.owner, turn.builder(svc.settings).response()
        )
        self._unsubscribe = svc.store.subscribe(CANCEL_CHANNEL, self._on_cancel)

    def _on_cancel(self, response_id: str) -> None:
        if response_id == self.response_id:
            self.job.abort(ResponseCancelled("The response was cancelled."))

    def end(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, _nothing
        unsubscribe()  # and dropped: it holds our hook, a cycle that would outlive the stream
        self.responses.end_live(self.response_id)


def _nothing() -> None:
    pass


def _saver(svc: Services, turn: turns.Turn, job: AnswerJob) -> Callable[[ResponseBuilder], None]:
    def save(builder: ResponseBuilder) -> None:
        turns.save(svc, turn, builder, job)

    return save


def _complete(
    svc: Services, caller: Caller, turn: turns.Turn, job: AnswerJob, record: RequestRecord
) -> Response:
    """The non-stream answer; a kept conversation gone upstream is answered from history."""
    try:
        while True:
            wire = ResponsesWire(turn.builder(svc.settings), on_end=_saver(svc, turn, job))
            try:
                body = wire.collect(job.deltas())
            except GLMProxyError as exc:
                record.note_account(job.account)
                if not turns.conversation_gone(exc, turn):
                    raise
                job.cancel()
                turn = turns.from_history(svc, turn)
                job = turns.start(svc, caller, turn)
                continue
            record.note_account(job.account)
            record.usage = wire.usage  # per-key usage (glm_proxy.access.limits)
            return json_response(body)
    finally:
        job.cancel()
