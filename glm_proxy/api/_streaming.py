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
have sent it. The server still ends the body (the last chunk) and handles a
failed write as before. Anywhere else (another server, HTTP/1.0, ``HEAD``)
the pump yields its bytes to the server as usual.

Direct delivery: in that mode, while the pump waits on an empty queue it lends
the job a sink (``_PumpState.write_deltas``), and the producer writes each
upstream read's deltas itself; waking the pump for every event (a queue put,
two greenlet switches) cost more than the rest of the event's trip. One
writer at a time: the sink is lent only while the pump waits, the pump writes
no keep-alive while a producer write is pending, and a failed or interrupted
write (``broken``) ends the stream (``ClientGone`` in the producer, a failed
write for the server).

A format is a ``Wire``: an object that turns the answer into bytes (``open``,
``feed``, ``finish``, ``error``, ``keepalive``) and folds a non-stream answer
(``collect``). It is pure; it never sees the job or Flask.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from flask import Response, has_request_context, request
from gevent.queue import Full

from glm_proxy.api._chunked import (
    SERVER_START_RESPONSE,
    hang_up,
    send_chunk,
    server_frames_chunks,
    take_head,
)
from glm_proxy.api._opening import OpeningStream
from glm_proxy.errors import GLMProxyError
from glm_proxy.periodic import PeriodicWatch
from glm_proxy.protocol.events import Delta
from glm_proxy.services.aborts import ClientGone, ClientStalled
from glm_proxy.services.answer import AnswerJob
from glm_proxy.services.job_queue import QUIET, Failure, JobDone
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


class Wire(Protocol):
    """One wire format for one answer. Each call returns the bytes to send (maybe ``b""``).

    ``open`` comes before the first ``feed``/``finish`` (not before ``error``
    or ``keepalive``). After ``finish`` or ``collect``, ``usage`` holds the
    answer's usage in OpenAI terms (per-key counters, request log).
    """

    usage: dict[str, Any] | None

    def open(self) -> bytes: ...

    def feed(self, delta: Delta) -> bytes: ...

    def finish(self, end: JobDone) -> bytes: ...

    def error(self, err: GLMProxyError) -> bytes: ...

    def keepalive(self) -> bytes: ...

    def collect(self, deltas: Iterable[Delta]) -> dict[str, Any]: ...


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
    if not stream:
        return json_response(collect(job, wire, record))
    # Returned at once: the wait for the first event is the body's first step
    # (glm_proxy.api._opening), after Flask's and the server's work on the response.
    return OpeningStream(
        pump(job, wire, settings.keepalive_interval, record),
        job=job,
        header_wait=settings.stream_header_wait,
        record=record,
        error_response=error_response,
        headers=STREAM_HEADERS,
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
    return _pump(
        job, wire, keepalive_interval, record, stall_timeout, client, direct, start_response
    )


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
    state = _PumpState(job, wire, record)
    state.client = client
    state.stall_timeout = stall_timeout
    state.keepalive_interval = keepalive_interval
    # No timer per wait or per write: the worker's one watch queues QUIET for a
    # pump that waited ``keepalive_interval`` and ends one whose write is stuck.
    period = keepalive_interval / 2
    if stall_timeout:
        period = min(period, stall_timeout / 4)
    _WATCH.add(state, period)
    state.direct = direct
    # The producer may write deltas itself while the pump waits (AnswerJob's sink).
    lend = direct is not None and job.direct_delivery
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
                _end_broken(state)
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
            while not done:
                ready = job.next_ready()
                if ready is None:
                    break
                if ready is not QUIET:
                    done = state.render(ready, out)
            if direct is not None:
                state.write(b"".join(out))
            else:
                state.writing_since = time.monotonic()
                yield b"".join(out)
                state.writing_since = None
            if done:
                return
    finally:
        job.sink = None
        _WATCH.discard(state)
        job.cancel()


class _PumpState:
    __slots__ = (
        "job",
        "wire",
        "record",
        "opened",
        "started",
        "client",
        "stall_timeout",
        "keepalive_interval",
        "waiting_since",
        "writing_since",
        "direct",
        "broken",
        "head",
        "__weakref__",
    )

    def __init__(self, job: AnswerJob, wire: Wire, record: RequestRecord) -> None:
        self.job = job
        self.wire = wire
        self.record = record
        self.opened = False
        self.started = time.monotonic()
        self.client: socket.socket | None = None
        self.stall_timeout: float | None = None
        self.keepalive_interval = 5.0
        self.waiting_since: float | None = None  # the pump waits for the job's next item
        self.writing_since: float | None = None  # the server writes what the pump yielded
        self.direct: socket.socket | None = None  # the connection the pump frames chunks on
        self.broken = False  # a direct write failed or was cut short: write nothing more
        self.head = b""  # the response head, while it waits to go out with the first chunk

    def stalled(self) -> None:
        """The client has not taken the last write for too long: end the answer, hang up."""
        log.info("client stopped reading; ending the answer")
        self.record.error = ClientStalled.code
        self.record.note_account(self.job.account)
        self.job.abort(ClientStalled("the client stopped reading the answer"))
        if self.client is not None:
            hang_up(self.client)

    def write(self, data: bytes) -> None:
        """One direct write (pump or producer); the watch sees it pending."""
        self.writing_since = time.monotonic()
        try:
            send_chunk(self.direct, data, self.head)  # type: ignore[arg-type] - direct mode only
            self.head = b""
        except BaseException:
            self.broken = True  # maybe half a frame went out: the stream is over
            raise
        finally:
            self.writing_since = None

    def write_deltas(self, deltas: list[Any]) -> None:
        """The sink lent to the job: runs in the producer, while the pump waits.

        Raises ``ClientGone`` when the connection failed (now or before).
        """
        if self.broken:
            raise ClientGone("the client connection failed")
        out: list[bytes] = []
        for delta in deltas:
            self.render(delta, out)
        try:
            self.write(b"".join(out))
        except OSError:
            raise ClientGone("the client closed the connection") from None
        if self.waiting_since is not None:
            self.waiting_since = time.monotonic()  # data went out: no keep-alive due

    def render(self, item: Any, out: list[bytes]) -> bool:
        """Append the bytes for one queue item; True when the answer is over."""
        wire = self.wire
        if isinstance(item, Failure):
            self.record.note_account(self.job.account)
            self.record.error = item.error.code or "error"
            out.append(wire.error(item.error))
            return True
        if not self.opened:
            self.opened = True
            out.append(wire.open())
        if isinstance(item, JobDone):
            out.append(wire.finish(item))
            self.record.usage = wire.usage  # per-key usage (glm_proxy.access.limits)
            self.record.latency_to_end = round(time.monotonic() - self.started, 3)
            self.record.note_account(self.job.account)
            return True
        out.append(wire.feed(item))
        return False


def _end_broken(state: _PumpState) -> None:
    """A direct write failed (or was cut short): hang up, and end as a failed write does."""
    if state.record.error is None:
        state.record.error = ClientGone.code
    if state.client is not None:
        hang_up(state.client)
    raise OSError(errno.EPIPE, "the client connection failed while the answer was written")


def _check_stream(state: _PumpState, now: float) -> None:
    """The stream watch's look at one pump (see ``_WATCH``)."""
    since = state.writing_since
    if since is not None and state.stall_timeout and now - since > state.stall_timeout:
        state.writing_since = None
        _WATCH.discard(state)
        state.stalled()
        return
    since = state.waiting_since
    if since is not None and now - since >= state.keepalive_interval:
        state.waiting_since = now  # the next one after another interval
        try:
            state.job.queue.put_nowait(QUIET)
        except Full:
            pass  # items are waiting: the pump is about to write anyway


# Times every open stream of this worker: a pump that has waited ``keepalive_interval``
# for its job gets ``QUIET`` queued (it then writes the format's keep-alive); one whose
# write has been pending longer than its stall timeout is ended (``_PumpState.stalled``).
_WATCH: PeriodicWatch[_PumpState] = PeriodicWatch(_check_stream, "a stream")
