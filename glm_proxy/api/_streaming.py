"""The one streaming pump: an ``AnswerJob`` out to the client, in any wire format.

Every answer-producing view ends in ``respond()``. The pump owns what every
format shares, so it is written once:

* the status decision before the first byte: a streaming view waits while
  the job queues for an account, then up to ``STREAM_HEADER_WAIT`` for the
  upstream, so a failure by then gets its real HTTP status (429, 401, 502);
  after that it commits to ``200 text/event-stream`` and a later failure is
  one final error event in the format's shape;
* batching: deltas already waiting in the job's queue go out in one write;
* keep-alives while the upstream is silent (``KEEPALIVE_INTERVAL``);
* cleanup in ``finally``: ``job.cancel()`` releases the lease and schedules
  the conversation's deletion, also when the client hangs up (the generator
  is closed: ``GeneratorExit``).

A format is a ``Wire``: an object that turns the answer into bytes (``open``,
``feed``, ``finish``, ``error``, ``keepalive``) and folds a non-stream answer
(``collect``). It is pure; it never sees the job or Flask.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from flask import Response

from glm_proxy.errors import GLMProxyError
from glm_proxy.events import Delta
from glm_proxy.services.answer import KEEPALIVE, AnswerJob, End, Failure
from glm_proxy.web import json_response

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

    def finish(self, end: End) -> bytes: ...

    def error(self, err: GLMProxyError) -> bytes: ...

    def keepalive(self) -> bytes: ...

    def collect(self, deltas: Iterable[Delta]) -> dict[str, Any]: ...


def respond(
    job: AnswerJob,
    wire: Wire,
    *,
    stream: bool,
    settings: Any,
    log_fields: dict[str, Any],
    error_response: Callable[[GLMProxyError], Response],
) -> Response:
    """The HTTP response for a started job: JSON, an early error, or the SSE stream."""
    if not stream:
        return json_response(collect(job, wire, log_fields))
    error = job.opening_failure(settings.stream_header_wait)
    if error is not None:
        _note_account(job, log_fields)
        return error_response(error)
    return Response(
        pump(job, wire, settings.keepalive_interval, log_fields),
        mimetype="text/event-stream",
        headers=STREAM_HEADERS,
    )


def collect(job: AnswerJob, wire: Wire, log_fields: dict[str, Any]) -> dict[str, Any]:
    """The non-stream answer: every delta folded by the wire; a failure is raised."""
    try:
        body = wire.collect(list(job.deltas()))
    finally:
        job.cancel()
        _note_account(job, log_fields)
    log_fields["usage"] = wire.usage  # per-key usage (glm_proxy.limits)
    return body


def pump(
    job: AnswerJob, wire: Wire, keepalive_interval: float, log_fields: dict[str, Any]
) -> Iterator[bytes]:
    """SSE bytes for one streamed answer, until ``End`` or ``Failure``.

    Items already waiting in the job's queue are written together in one
    yield: under load that is one socket write instead of many, and the
    client sees the same events.
    """
    state = _PumpState(job, wire, log_fields)
    try:
        while True:
            item = job.next_item(timeout=keepalive_interval)
            if item is KEEPALIVE:
                yield wire.keepalive()
                continue
            out: list[bytes] = []
            done = state.render(item, out)
            while not done:
                ready = job.next_ready()
                if ready is None:
                    break
                done = state.render(ready, out)
            yield b"".join(out)
            if done:
                return
    finally:
        job.cancel()


class _PumpState:
    __slots__ = ("job", "wire", "log_fields", "opened", "started")

    def __init__(self, job: AnswerJob, wire: Wire, log_fields: dict[str, Any]) -> None:
        self.job = job
        self.wire = wire
        self.log_fields = log_fields
        self.opened = False
        self.started = time.monotonic()

    def render(self, item: Any, out: list[bytes]) -> bool:
        """Append the bytes for one queue item; True when the answer is over."""
        wire = self.wire
        if isinstance(item, Failure):
            _note_account(self.job, self.log_fields)
            self.log_fields["error"] = item.error.code or "error"
            out.append(wire.error(item.error))
            return True
        if not self.opened:
            self.opened = True
            out.append(wire.open())
        if isinstance(item, End):
            out.append(wire.finish(item))
            self.log_fields["usage"] = wire.usage  # per-key usage (glm_proxy.limits)
            self.log_fields["latency_to_end"] = round(time.monotonic() - self.started, 3)
            _note_account(self.job, self.log_fields)
            return True
        out.append(wire.feed(item))
        return False


def _note_account(job: AnswerJob, log_fields: dict[str, Any]) -> None:
    if job.account is not None:
        log_fields["account"] = job.account.fingerprint
