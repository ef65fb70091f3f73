"""The streaming pump's per-stream state: its direct writes, its render, and the watch.

Split from the pump (``glm_proxy.api._streaming``) so that the opening step
(``glm_proxy.api._opening``), which may write a stream's first deltas before
the pump runs, shares the same writer without importing the pump.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gevent.queue import Full

from glm_proxy.api._chunked import chunk_sender, hang_up, send_chunk
from glm_proxy.api._wire import Wire
from glm_proxy.periodic import PeriodicWatch
from glm_proxy.services.aborts import ClientGone, ClientStalled
from glm_proxy.services.job_queue import QUIET, Failure, JobDone

if TYPE_CHECKING:
    from glm_proxy.observability.record import RequestRecord
    from glm_proxy.services.answer import AnswerJob

log = logging.getLogger("glm_proxy.api._streaming")

__all__ = ["WATCH", "StreamState", "check_stream", "end_broken"]


class StreamState:
    """One stream's pump: its wire, its writes on the connection, and what the watch checks."""

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
        "_send_data",
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
        self._send_data: Callable[[bytes], None] | None = None  # chunk_sender(direct)

    @property
    def lends_sink(self) -> bool:
        """The producer may write through this stream's writer (direct mode, a job that can)."""
        return self.direct is not None and self.job.direct_delivery

    def stalled(self) -> None:
        """The client has not taken the last write for too long: end the answer, hang up."""
        log.info("client stopped reading; ending the answer")
        self.record.error = ClientStalled.code
        self.record.note_account(self.job.account)
        self.job.abort(ClientStalled("the client stopped reading the answer"))
        if self.client is not None:
            hang_up(self.client)

    def write(self, data: bytes, tail: bytes = b"") -> None:
        """One direct write (pump or producer); the watch sees it pending.

        ``tail``: the body's last chunk, when the server let us end the body
        (``glm_proxy.api._chunked.end_body``).
        """
        self.writing_since = time.monotonic()
        try:
            if data and not tail and not self.head:  # a streamed event's chunk: the usual write
                send_data = self._send_data
                if send_data is None:
                    send_data = self._send_data = chunk_sender(self.direct)  # type: ignore[arg-type]
                send_data(data)
            else:
                send_chunk(self.direct, data, self.head, tail)  # type: ignore[arg-type]
                self.head = b""
        except BaseException:
            self.broken = True  # maybe half a frame went out: the stream is over
            raise
        finally:
            self.writing_since = None

    def write_deltas(self, deltas: list[Any]) -> None:
        """The sink lent to the job: runs in the producer, while the pump waits.

        Only deltas come this way (the job's last item goes through its queue),
        so once the stream is open each is what the wire makes of it.
        Raises ``ClientGone`` when the connection failed (now or before).
        """
        if self.broken:
            raise ClientGone("the client connection failed")
        if self.opened:
            feed = self.wire.feed
            data = feed(deltas[0]) if len(deltas) == 1 else b"".join([feed(d) for d in deltas])
        else:
            out: list[bytes] = []
            for delta in deltas:
                self.render(delta, out)
            data = b"".join(out)
        try:
            self.write(data)
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


def end_broken(state: StreamState) -> None:
    """A direct write failed (or was cut short): hang up, and end as a failed write does."""
    if state.record.error is None:
        state.record.error = ClientGone.code
    if state.client is not None:
        hang_up(state.client)
    raise OSError(errno.EPIPE, "the client connection failed while the answer was written")


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


# Times every open stream of this worker: a pump that has waited ``keepalive_interval``
# for its job gets ``QUIET`` queued (it then writes the format's keep-alive); one whose
# write has been pending longer than its stall timeout is ended (``StreamState.stalled``).
WATCH: PeriodicWatch[StreamState] = PeriodicWatch(check_stream, "a stream")
