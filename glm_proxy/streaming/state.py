"""One stream's state: what the pump renders, and what the stream watch times.

The pump (``glm_proxy.streaming.pump``) is a generator; while it waits for the
job's next item or for the server to write what it yielded, it does not run.
Its timings therefore live here, where one greenlet per worker (``WATCH``)
looks at every open stream: a pump that waited ``KEEPALIVE_INTERVAL`` gets
``QUIET`` queued (it then yields the format's keep-alive), and one whose
yielded bytes the server has not written after ``STREAM_STALL_TIMEOUT`` ends
the answer and hangs up (``StreamState.stalled``). No timer per wait or per
write: those would be armed and cancelled for every streamed event.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import TYPE_CHECKING, Any

from gevent.queue import Full

from glm_proxy.services.aborts import ClientStalled
from glm_proxy.streaming.connection import hang_up
from glm_proxy.streaming.periodic import PeriodicWatch
from glm_proxy.streaming.queue import QUIET, Failure, JobDone, QueuedItems
from glm_proxy.streaming.wire import Wire

if TYPE_CHECKING:
    from glm_proxy.observability.record import RequestRecord

log = logging.getLogger("glm_proxy.streaming.pump")

__all__ = ["WATCH", "StreamState", "check_stream"]


class StreamState:
    """One stream: its job and wire, its connection, and what the watch checks."""

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
        "__weakref__",
    )

    def __init__(
        self,
        job: QueuedItems,
        wire: Wire,
        record: RequestRecord,
        *,
        keepalive_interval: float,
        stall_timeout: float | None = None,
        client: socket.socket | None = None,
    ) -> None:
        self.job: Any = job  # an AnswerJob or a ChoiceJobs
        self.wire = wire
        self.record = record
        self.opened = False
        self.started = time.monotonic()
        self.client = client  # hung up on when the client stops reading
        self.stall_timeout = stall_timeout
        self.keepalive_interval = keepalive_interval
        self.waiting_since: float | None = None  # the pump waits for the job's next item
        self.writing_since: float | None = None  # the server writes what the pump yielded

    def stalled(self) -> None:
        """The client has not taken the last write for too long: end the answer, hang up."""
        log.info("client stopped reading; ending the answer")
        self.record.error = ClientStalled.code
        self.record.note_account(self.job.account)
        self.job.abort(ClientStalled("the client stopped reading the answer"))
        if self.client is not None:
            hang_up(self.client)

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


def check_stream(state: StreamState, now: float) -> None:
    """The stream watch's look at one pump (see ``WATCH``)."""
    since = state.writing_since
    if since is not None and state.stall_timeout and now - since > state.stall_timeout:
        state.writing_since = None
        WATCH.discard(state)
        state.stalled()
        return
    since = state.waiting_since
    if since is not None and now - since >= state.keepalive_interval:
        state.waiting_since = now  # the next one after another interval
        try:
            state.job.queue.put_nowait(QUIET)
        except Full:
            pass  # items are waiting: the pump is about to write anyway


# Times every open stream of this worker (see the module docstring).
WATCH: PeriodicWatch[StreamState] = PeriodicWatch(check_stream, "a stream")
