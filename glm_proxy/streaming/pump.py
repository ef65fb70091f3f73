"""The one streaming pump: an answer job's queue out to the client, in any wire format.

Every answer-producing view ends in ``respond()``. The pump owns what every
format shares, so it is written once:

* the status decision before the first byte (``glm_proxy.streaming.opening``):
  the response's first step, after the view returned, waits while the job
  queues for an account, then up to ``STREAM_HEADER_WAIT`` for the upstream,
  so a failure by then gets its real HTTP status (429, 401, 502); after that
  it commits to ``200 text/event-stream`` and a later failure is one final
  error event in the format's shape;
* batching: the items already waiting in the job's queue go out in one yield,
  so under load one server write carries many events (the producer queues a
  whole upstream read before the pump runs again);
* keep-alives while the upstream is silent (``KEEPALIVE_INTERVAL``);
* cleanup in ``finally``: ``job.cancel()`` releases the lease and schedules
  the conversation's deletion, also when the client hangs up (the server
  closes the body: ``GeneratorExit``);
* clients that stop reading: the job's queue is bounded (``STREAM_QUEUE_ITEMS``,
  ``STREAM_QUEUE_BYTES``) and the server's write blocks the pump, so the
  producer stops and no longer reads the upstream (backpressure); a write
  still pending after ``STREAM_STALL_TIMEOUT`` ends the answer (the upstream
  answer is stopped and its conversation deleted) and hangs up
  (``glm_proxy.streaming.state``).

The pump is the queue's one reader and the server its one writer: it yields
bytes to the server through the ``flask.Response`` it returns, and the server
frames and sends them. The producer never sees the connection.

A format is a ``Wire`` (``glm_proxy.streaming.wire``): an object that turns the
answer into bytes and folds a non-stream answer (``collect``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from flask import Response, has_request_context, request

from glm_proxy.errors import GLMProxyError
from glm_proxy.http.plumbing import json_response
from glm_proxy.streaming.connection import limit_send_buffer
from glm_proxy.streaming.line_watch import watch_line
from glm_proxy.streaming.opening import OpeningStream
from glm_proxy.streaming.queue import QUIET, QueuedItems
from glm_proxy.streaming.state import WATCH, StreamState
from glm_proxy.streaming.wire import Wire

if TYPE_CHECKING:
    from glm_proxy.config import Settings
    from glm_proxy.observability.record import RequestRecord

__all__ = ["STREAM_HEADERS", "collect", "respond"]

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}


def respond(
    job: QueuedItems,
    wire: Wire,
    *,
    stream: bool,
    settings: Settings,
    record: RequestRecord,
    error_response: Callable[[GLMProxyError], Response],
) -> Response:
    """The HTTP response for a started job: JSON, an early error, or the SSE stream."""
    client = request.environ.get("gunicorn.socket") if has_request_context() else None
    watch_line(job, client)  # hang-ups while in line
    if not stream:
        return json_response(collect(job, wire, record))
    if client is not None:
        limit_send_buffer(client, settings.stream_send_buffer)
    state = StreamState(
        job,
        wire,
        record,
        keepalive_interval=settings.keepalive_interval,
        stall_timeout=settings.stream_stall_timeout,
        client=client,
    )
    # Returned at once: the wait for the first event is the body's first step
    # (glm_proxy.streaming.opening), after Flask's and the server's work on the response.
    return OpeningStream(
        _pump(state),
        job=job,
        header_wait=settings.stream_header_wait,
        record=record,
        error_response=error_response,
        headers=STREAM_HEADERS,
    )


def collect(job: Any, wire: Wire, record: RequestRecord) -> dict[str, Any]:
    """The non-stream answer: every delta folded by the wire; a failure is raised."""
    try:
        body = wire.collect(list(job.deltas()))
    finally:
        job.cancel()
        record.note_account(job.account)
    record.usage = wire.usage  # per-key usage (glm_proxy.access.limits)
    return body


WRITE_BYTES = 64 * 1024  # the most one write batches (what a stalled client's write holds)


def _pump(state: StreamState) -> Iterator[bytes]:
    """SSE bytes for one streamed answer, until ``JobDone`` or ``Failure``."""
    job, wire = state.job, state.wire
    # One write takes at most about a queue's worth of bytes, and no more than
    # WRITE_BYTES: what waits for a client that stopped reading is the queue plus
    # one write, not more (a hundred such clients: a hundred writes held).
    cap = min(job.byte_limit, WRITE_BYTES) if job.byte_limit else 0
    state.started = time.monotonic()
    period = state.keepalive_interval / 2
    if state.stall_timeout:
        period = min(period, state.stall_timeout / 4)
    WATCH.add(state, period)
    try:
        while True:
            state.waiting_since = time.monotonic()
            item = job.next_item()
            state.waiting_since = None
            if item is QUIET:
                state.writing_since = time.monotonic()
                yield wire.keepalive()
                state.writing_since = None
                continue
            out: list[bytes] = []
            done = state.render(item, out)
            while not done and not (cap and sum(map(len, out)) >= cap):
                ready = job.next_ready()
                if ready is None:
                    break
                if ready is not QUIET:
                    done = state.render(ready, out)
            data = b"".join(out)
            out.clear()  # the pieces are not kept while the write waits
            state.writing_since = time.monotonic()
            yield data
            state.writing_since = None
            data = b""
            if done:
                return
    finally:
        WATCH.discard(state)
        job.cancel()
