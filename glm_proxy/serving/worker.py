"""gunicorn's gevent worker, with a bound on how long a request head may take.

Stock, the gevent worker waits ``keepalive`` seconds (75 here) for a request
head, from the first request on: 2,100 connections that each sent half a
head and waited filled ``WORKER_CONNECTIONS``, and every other request,
``/healthz`` included, queued for up to 75 s. This worker (set as
``worker_class`` in ``gunicorn.conf.py``) changes three things, through the
worker's public hooks (``handle``, ``timeout_ctx``) only:

- A new connection must send its first request head within
  ``REQUEST_HEAD_TIMEOUT`` seconds of being accepted; then it is answered
  408 (or just closed when it sent nothing). Between two requests on a kept
  connection the wait stays ``KEEPALIVE``.
- The first bytes are looked at before parsing: a TLS ClientHello (or any
  other binary) on the plain-HTTP port gets a 400 at once, instead of
  waiting for a line end that never comes.
- When connections reach ``SHED_AT`` of ``WORKER_CONNECTIONS``, the
  connections that have waited longest for a request head (idle kept
  connections and slow heads alike) are closed to make room, so a flood of
  slow heads cannot starve the requests that are actually sent.
"""

from __future__ import annotations

import heapq
import socket
import time
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventWorker

from glm_proxy.http.wire_errors import error_page

__all__ = ["HeadTimeoutWorker"]

SHED_AT = 0.9
# An HTTP/1 request starts with a method (a token: printable ASCII); a PROXY line and
# the HTTP/2 preface ("PRI * HTTP/2.0") too. TLS records start with 0x16.
_PRINTABLE = frozenset(range(0x21, 0x7F))


class _HeadWait:
    """``timeout_ctx``: bound one wait for a request head; shed-able under pressure."""

    def __init__(self, worker: HeadTimeoutWorker, seconds: float, late_answer: bool) -> None:
        self.worker = worker
        self.timer = gevent.Timeout(max(seconds, 0.001), False)
        self.late_answer = late_answer

    def __enter__(self) -> _HeadWait:
        self.greenlet = gevent.getcurrent()
        self.worker.waiting[self.greenlet] = time.monotonic()
        self.timer.start()
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> bool:
        self.worker.waiting.pop(self.greenlet, None)
        self.timer.close()
        if value is not self.timer:
            return False
        client = self.worker.clients.get(self.greenlet)
        if self.late_answer and client is not None:
            message = (
                "The request head did not arrive within REQUEST_HEAD_TIMEOUT "
                f"({self.worker.head_timeout:g} s)."
            )
            try:
                client.sendall(error_page(408, "Request Timeout", message))
            except OSError:
                pass
        return True


class HeadTimeoutWorker(GeventWorker):
    """The gevent worker with a request-head timeout (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from glm_proxy.config import Settings

        self.head_timeout = Settings.from_env().request_head_timeout
        self.waiting: dict[Any, float] = {}  # greenlet -> since when it waits for a head
        self.deadlines: dict[Any, float] = {}  # greenlet -> first head's deadline
        self.clients: dict[Any, Any] = {}  # greenlet -> its connection
        self.connections = 0
        self.shed_at = max(1, int(self.worker_connections * SHED_AT))

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        current = gevent.getcurrent()
        self.connections += 1
        self.deadlines[current] = time.monotonic() + self.head_timeout
        self.clients[current] = client
        try:
            if self.connections >= self.shed_at:
                self._shed()
            client.setblocking(1)
            if not self.cfg.is_ssl and not self._looks_like_http(client):
                return
            super().handle(listener, client, addr)
        finally:
            self.connections -= 1
            self.deadlines.pop(current, None)
            self.waiting.pop(current, None)
            self.clients.pop(current, None)

    def timeout_ctx(self) -> _HeadWait:
        """The first head: what is left of ``REQUEST_HEAD_TIMEOUT``; later ones: ``keepalive``."""
        deadline = self.deadlines.pop(gevent.getcurrent(), None)
        if deadline is None:
            return _HeadWait(self, self.cfg.keepalive, late_answer=False)
        return _HeadWait(self, deadline - time.monotonic(), late_answer=True)

    def _looks_like_http(self, client: Any) -> bool:
        """Wait (within the head timeout) for the first bytes; answer 400 to non-HTTP ones."""
        deadline = self.deadlines.get(gevent.getcurrent(), time.monotonic() + self.head_timeout)
        with _HeadWait(self, deadline - time.monotonic(), late_answer=False):
            first = client.recv(1, socket.MSG_PEEK)
            if not first:
                return False
            if first[0] in _PRINTABLE:
                return True
            message = (
                "This port speaks plain HTTP/1.1; the request does not start like one "
                "(TLS sent to a plain-HTTP port?)."
            )
            client.sendall(error_page(400, "Bad Request", message))
            return False
        return False  # nothing arrived within the head timeout: just close

    def _shed(self) -> None:
        """End the waits for a head that started longest ago, down to below ``shed_at``.

        Shutting the socket down wakes the waiting read with end-of-file, so
        the connection ends the way a client hang-up does; nothing is thrown
        into a greenlet that might meanwhile have started on a request.
        """
        excess = max(self.connections - self.shed_at + 1, 1)
        current = gevent.getcurrent()
        oldest = heapq.nsmallest(excess, self.waiting.items(), key=lambda item: item[1])
        for greenlet, _ in oldest:
            client = self.clients.get(greenlet)
            if greenlet is current or client is None:
                continue
            self.waiting.pop(greenlet, None)
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
