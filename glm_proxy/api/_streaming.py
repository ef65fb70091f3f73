"""The one streaming pump: an ``AnswerJob`` out to the client, in any wire format.

Every answer-producing view ends in ``respond()``. The pump owns what every
format shares, so it is written once:

* the status decision before the first byte: the response's first step
  (``glm_proxy.api._opening``, after the view returned) waits while the job
  queues for an account, then up to ``STREAM_HEADER_WAIT`` for the upstream,
  so a failure by then gets its real HTTP status (429, 401, 502); after that
  it commits to ``200 text/event-stream`` and a later failure is one final
  error event in the format's shape;
* batching: deltas already waiting in the job's queue go out in one write;
* keep-alives while the upstream is silent (``KEEPALIVE_INTERVAL``);
* cleanup in ``finally``: ``job.cancel()`` releases the lease and schedules
  the conversation's deletion, also when the client hangs up (the generator
  is closed: ``GeneratorExit``);
* clients that stop reading: the job's queue is bounded and a direct write
  blocks its writer, so the producer stops and no longer reads the upstream
  (backpressure); a write that has
  not returned after ``STREAM_STALL_TIMEOUT`` ends the answer (the upstream
  answer is stopped and its conversation deleted) and closes the connection.

Writes: behind gunicorn on HTTP/1.1 the pump writes the chunked frames to
the connection itself (``direct``): the server's write path (its chunk
framing, and gevent's ``sendall``, which asks the kernel for the send buffer
size before every write) costs more than the event it carries. The head the
server built goes out with the first chunk, in one write (``take_head``); if
nothing is ready to go with it, it goes out alone at once, as the server would
have sent it. The body's last chunk goes out with the answer's last event
(``end_body``), which the server would have sent alone after it. The server
handles a failed write as before. Anywhere else (another server, HTTP/1.0, ``HEAD``)
the pump yields its bytes to the server as usual.

Direct delivery: in that mode, while the pump waits on an empty queue it lends
the job a sink (``StreamState.write_deltas``), and the producer writes each
upstream read's deltas itself; waking the pump for every event (a queue put,
two greenlet switches) cost more than the rest of the event's trip. One
writer at a time: the sink is lent only while the pump waits, the pump writes
no keep-alive while a producer write is pending, and a failed or interrupted
write (``broken``) ends the stream (``ClientGone`` in the producer, a failed
write for the server). The first deltas go the same way: while the opening
step waits for them, it lends the job a sink that starts the response and
writes the head with them (``glm_proxy.api._opening``).

A format is a ``Wire`` (``glm_proxy.api._wire``): an object that turns the
answer into bytes (``open``, ``feed``, ``finish``, ``error``, ``keepalive``)
and folds a non-stream answer (``collect``). It is pure; it never sees the
job or Flask.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from flask import Response, has_request_context, request

from glm_proxy.api._chunked import (
    SERVER_START_RESPONSE,
    end_body,
    server_frames_chunks,
    take_head,
)
from glm_proxy.api._line_watch import watch_line
from glm_proxy.api._opening import OpeningStream
from glm_proxy.api._stream_state import WATCH, StreamState, end_broken
from glm_proxy.api._wire import Wire
from glm_proxy.errors import GLMProxyError
from glm_proxy.services.answer import AnswerJob
from glm_proxy.services.job_queue import QUIET
from glm_proxy.web import json_response

if TYPE_CHECKING:
    from glm_proxy.config import Settings
    from glm_proxy.observability.record import RequestRecord

log = logging.getLogger(__name__)

__all__ = ["STREAM_HEADERS", "Wire", "collect", "pump", "respond"]

STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
    "Connection": "keep-alive",
}


def respond(
    job: AnswerJob,
    wire: Wire,
    *,
    stream: bool,
    settings: Settings,
    record: RequestRecord,
    error_response: Callable[[GLMProxyError], Response],
) -> Response:
    """The HTTP response for a started job: JSON, an early error, or the SSE stream."""
    if has_request_context():
        watch_line(job, request.environ.get("gunicorn.socket"))  # hang-ups while in line
    if not stream:
        return json_response(collect(job, wire, record))
    state, body = _prepare(job, wire, settings.keepalive_interval, record)
    # Returned at once: the wait for the first event is the body's first step
    # (glm_proxy.api._opening), after Flask's and the server's work on the response.
    # With direct delivery the producer writes the head with the first deltas itself.
    return OpeningStream(
        body,
        job=job,
        header_wait=settings.stream_header_wait,
        record=record,
        error_response=error_response,
        headers=STREAM_HEADERS,
        pump_state=state if state.lends_sink else None,
    )


def collect(job: AnswerJob, wire: Wire, record: RequestRecord) -> dict[str, Any]:
    """The non-stream answer: every delta folded by the wire; a failure is raised."""
    try:
        body = wire.collect(list(job.deltas()))
    finally:
        job.cancel()
        record.note_account(job.account)
    record.usage = wire.usage  # per-key usage (glm_proxy.access.limits)
    return body


def pump(
    job: AnswerJob,
    wire: Wire,
    keepalive_interval: float,
    record: RequestRecord,
    *,
    stall_timeout: float | None = None,
    client: socket.socket | None = None,
) -> Iterator[bytes]:
    """SSE bytes for one streamed answer, until ``JobDone`` or ``Failure``.

    Items already waiting in the job's queue are written together in one
    yield: under load that is one socket write instead of many, and the
    client sees the same events. Each yield is a write the server performs
    before asking for more; one still pending after ``stall_timeout``
    seconds (default: the job's ``STREAM_STALL_TIMEOUT``) aborts the job and
    shuts ``client`` down (default: this request's connection). Call it in
    the request (it reads the connection now); iterate it in the response.
    """
    return _prepare(job, wire, keepalive_interval, record, stall_timeout, client)[1]


def _prepare(
    job: AnswerJob,
    wire: Wire,
    keepalive_interval: float,
    record: RequestRecord,
    stall_timeout: float | None = None,
    client: socket.socket | None = None,
) -> tuple[StreamState, Iterator[bytes]]:
    """``pump()``, and the state it writes through (the opening step may write first)."""
    settings = getattr(job.services, "settings", None)
    if stall_timeout is None and settings is not None:
        stall_timeout = settings.stream_stall_timeout
    start_response = None
    if client is None and has_request_context():
        client = request.environ.get("gunicorn.socket")
        start_response = request.environ.get(SERVER_START_RESPONSE)
        send_buffer = getattr(settings, "stream_send_buffer", 0)
        if client is not None and send_buffer:
            try:  # what the kernel holds for a client that stopped reading
                client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
            except OSError:
                pass
    direct = client if client is not None and server_frames_chunks() else None
    state = _new_state(job, wire, keepalive_interval, record, stall_timeout, client, direct)
    return state, _run(state, start_response)


def _pump(
    job: AnswerJob,
    wire: Wire,
    keepalive_interval: float,
    record: RequestRecord,
    stall_timeout: float | None,
    client: socket.socket | None,
    direct: socket.socket | None = None,
    start_response: Any = None,
) -> Iterator[bytes]:
    """The pump over a connection the caller names (``direct``: frame chunks on it)."""
    state = _new_state(job, wire, keepalive_interval, record, stall_timeout, client, direct)
    return _run(state, start_response)


def _new_state(
    job: AnswerJob,
    wire: Wire,
    keepalive_interval: float,
    record: RequestRecord,
    stall_timeout: float | None,
    client: socket.socket | None,
    direct: socket.socket | None,
) -> StreamState:
    state = StreamState(job, wire, record)
    state.client, state.direct = client, direct
    state.stall_timeout, state.keepalive_interval = stall_timeout, keepalive_interval
    return state


def _run(state: StreamState, start_response: Any) -> Iterator[bytes]:
    job, wire, direct = state.job, state.wire, state.direct
    state.started = time.monotonic()
    # No timer per wait or per write: the worker's one watch queues QUIET for a
    # pump that waited ``keepalive_interval`` and ends one whose write is stuck.
    period = state.keepalive_interval / 2
    if state.stall_timeout:
        period = min(period, state.stall_timeout / 4)
    WATCH.add(state, period)
    # The producer may write deltas itself while the pump waits (AnswerJob's sink).
    lend = state.lends_sink
    try:
        if direct is not None:
            head = take_head(start_response)  # the server's head, to go with the first chunk
            if head is None:
                yield b""  # the server sends the head (an empty chunk is not written)
            else:
                state.head = head
                if not job.ready():
                    state.write(b"")  # nothing to go with it: the head alone, now
        while True:
            state.waiting_since = time.monotonic()
            if lend and state.opened:
                job.sink = state.write_deltas
            item = job.next_item()
            job.sink = None
            state.waiting_since = None
            if state.broken:
                end_broken(state)
            if item is QUIET:
                if state.writing_since is not None:
                    continue  # the producer is writing: no keep-alive needed
                if direct is not None:
                    state.write(wire.keepalive())
                else:
                    state.writing_since = time.monotonic()
                    yield wire.keepalive()
                    state.writing_since = None
                continue
            out: list[bytes] = []
            done = state.render(item, out)
            # One write takes at most about a queue's worth of bytes: what waits for a
            # client that stopped reading is the queue plus one write, not more.
            cap = getattr(job, "byte_limit", 0)
            while not done and not (cap and sum(map(len, out)) >= cap):
                ready = job.next_ready()
                if ready is None:
                    break
                if ready is not QUIET:
                    done = state.render(ready, out)
            data = b"".join(out)
            out.clear()  # the pieces are not kept while the write waits
            if direct is not None:
                # The answer's last event carries the body's last chunk, if the server lets it.
                state.write(data, end_body(start_response) if done else b"")
            else:
                state.writing_since = time.monotonic()
                yield data
                state.writing_since = None
            data = b""
            if done:
                return
    finally:
        job.sink = None
        WATCH.discard(state)
        job.cancel()
