"""The consumer side of an answer job: its queue, read by the streaming pump.

A job's producer puts typed deltas into a bounded queue and ends it with one
``JobDone`` (a complete answer) or ``Failure``; the pump and the non-stream
collector are its only readers, through ``QueuedItems``. ``AnswerJob``
(``services.answer``) and the ``n``-choice job (``streaming.choice_jobs``)
share this side.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gevent.queue import Empty, Queue

from glm_proxy.accounts import Account
from glm_proxy.errors import GLMProxyError

__all__ = ["QUIET", "Failure", "JobDone", "QueuedItems", "item_bytes"]

QUIET = object()
"""Returned by ``next_item`` when nothing arrived in time: the pump writes its wire's keep-alive."""


@dataclass(frozen=True)
class Failure:
    error: GLMProxyError


@dataclass(frozen=True)
class JobDone:
    """The job's last item after a complete answer (the lease is already released).

    Not ``events.Finished``: that one is the answer's own end (its finish reason),
    a delta like any other; ``JobDone`` closes the queue after it.
    """

    account: Account | None = None


ITEM_OVERHEAD = 100  # bytes a queued delta costs beyond its text (object, queue slot)


def item_bytes(item: Any) -> int:
    """What a queued item holds in memory: its text's real size (a character takes 1, 2
    or 4 bytes, by the widest one in the string: emoji make it 4) plus a fixed overhead."""
    text = getattr(item, "text", None)
    return ITEM_OVERHEAD + (sys.getsizeof(text) if isinstance(text, str) else 0)


class QueuedItems:
    """The consumer side the pump reads: a queue with keep-alive timeouts and one look-ahead.

    Shared by ``AnswerJob`` and the ``n``-choice job (``streaming.choice_jobs``); the
    subclass sets ``queue`` and ``_peeked = None``.

    The queue is bounded in items by ``Queue(maxsize)`` and, when the producer
    keeps count (``AnswerJob``: ``STREAM_QUEUE_BYTES``), in bytes: a few large
    deltas for a client that stopped reading must not hold a whole answer each.
    ``queued_bytes`` is what waits in the queue now; ``_room`` wakes a producer
    waiting for it to drain.
    """

    queue: Queue
    _peeked: Any
    queued_bytes = 0
    byte_limit = 0  # 0: no byte bound (the item bound alone)
    _room: Any = None

    def _taken(self, item: Any) -> Any:
        """Account for an item the consumer took (the producer may be waiting for room)."""
        if self.byte_limit:
            self.queued_bytes -= item_bytes(item)
            if self.queued_bytes < self.byte_limit and self._room is not None:
                self._room.set()
        return item

    _committed_to_stream = False  # opening_failure() said: stream (see there)

    def next_item(self, timeout: float | None = None) -> Any:
        """The next delta, ``Failure``, ``JobDone``, or ``QUIET`` after ``timeout`` seconds."""
        if self._peeked is not None:
            item, self._peeked = self._peeked, None
            return item
        try:
            return self._taken(self.queue.get(timeout=timeout))
        except Empty:
            return QUIET

    def next_ready(self) -> Any:
        """The next item if one is already waiting, else None (never blocks)."""
        if self._peeked is not None:
            item, self._peeked = self._peeked, None
            return item
        if not self.queue.qsize():
            return None  # the usual answer after each item: no exception raised for it
        try:
            return self._taken(self.queue.get_nowait())
        except Empty:
            return None

    def ready(self) -> bool:
        """An item is waiting (never blocks)."""
        return self._peeked is not None or bool(self.queue.qsize())

    def peek(self, timeout: float | None = None) -> Any:
        if self._peeked is None:
            item = self.next_item(timeout)
            if item is QUIET:
                return QUIET
            self._peeked = item
        return self._peeked

    def abort(self, error: GLMProxyError) -> None:
        """End the answer with ``error`` (the client hung up while in line); subclasses."""
        raise NotImplementedError

    def wait_leased(self, timeout: float | None = None) -> bool:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError

    def opening_failure(self, header_wait: float) -> GLMProxyError | None:
        """For a streaming view: the error to answer with a real HTTP status, if any.

        Waits while the job queues for an account (so a 429 at the deadline
        keeps its status), then up to ``header_wait`` seconds for the upstream;
        a failure by then is returned (and the job cancelled). None means:
        commit to ``200 text/event-stream``; later failures go in the stream.
        Decided once: asked again (a view that looked first, then ``respond()``),
        a commitment stands without a second wait.
        """
        if self._committed_to_stream:
            return None
        self.wait_leased()
        first = self.peek(timeout=header_wait)
        if isinstance(first, Failure):
            self.cancel()
            return first.error
        self._committed_to_stream = True
        return None

    def items(self) -> Iterator[Any]:
        """Every item until the end (no keep-alives): the non-stream path."""
        while True:
            item = self.next_item()
            yield item
            if isinstance(item, JobDone | Failure):
                return

    def deltas(self) -> Iterator[Any]:
        """The answer's items until ``JobDone``; a ``Failure`` is raised. The one drain.

        Does not cancel the job: the caller does, in its ``finally``.
        """
        for item in self.items():
            if isinstance(item, Failure):
                raise item.error
            if isinstance(item, JobDone):
                return
            yield item
