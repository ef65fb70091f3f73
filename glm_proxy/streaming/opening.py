"""A streamed answer's response, whose status is decided when the server starts its body.

Why: a failure before the answer's first event keeps its real HTTP status
(429, 401, 502), so something has to wait for that event before the status
goes out. The view used to wait, and everything after a view (Flask's
after-request hooks, the WSGI head, the server's ``start_response``) then ran
between the first event and its write, on the path of the first token. Here
the view returns at once and that work is done while the upstream is still
thinking; the wait happens in the body's first step, and only then is
``start_response`` called, with ``200`` and the stream or with the failure's
own response. WSGI allows that: an application may call ``start_response``
until its body yields its first bytes (PEP 3333), and servers (gunicorn,
Werkzeug's) send nothing before then.

Code that looks at the status after the view (the request log, the metrics,
a key's error counter) reads it when the response is closed, from the
request's record (``RequestRecord.status``): a failure sets it before its
response is sent. (Not from the response itself: a close callback holding its
response makes a reference cycle, and every stream's objects would then wait
for the garbage collector.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from flask import Response, copy_current_request_context, g, has_request_context

from glm_proxy.errors import GLMProxyError

if TYPE_CHECKING:
    from glm_proxy.observability.record import RequestRecord
    from glm_proxy.streaming.queue import QueuedItems

log = logging.getLogger(__name__)

# The stream's own headers: a failure's JSON answer does not carry them.
_STREAM_ONLY = frozenset(
    ("content-type", "content-length", "cache-control", "x-accel-buffering", "connection")
)


class OpeningStream(Response):
    """``200 text/event-stream`` over ``body``, unless the job fails before its first event."""

    def __init__(
        self,
        body: Iterable[bytes],
        *,
        job: QueuedItems,
        header_wait: float,
        record: RequestRecord,
        error_response: Callable[[GLMProxyError], Response],
        headers: dict[str, str],
    ) -> None:
        super().__init__(body, mimetype="text/event-stream", headers=headers)
        self.job: Any = job
        self.header_wait = header_wait
        self.record = record
        # The failure's response may need the request (its error shape); the request's
        # own context has ended by the time the body runs, so a copy of it is kept.
        self.error_response = error_response
        if has_request_context():
            self.error_response = copy_current_request_context(_in_request(record, error_response))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> _Body:
        return _Body(self, environ, start_response)

    def failed(self, error: GLMProxyError) -> Response:
        """The response a failure before the first event gets, with this one's other headers."""
        answer = self.error_response(error)
        for name, value in self.headers.items():
            if name.lower() not in _STREAM_ONLY and name not in answer.headers:
                answer.headers.add(name, value)  # CORS and the like, set by after-request hooks
        self.record.status = answer.status_code  # for the request log and the key's counters
        return answer


def _in_request(
    record: RequestRecord, error_response: Callable[[GLMProxyError], Response]
) -> Callable[[GLMProxyError], Response]:
    def answer(error: GLMProxyError) -> Response:
        g.request_record = record  # the copy has a fresh ``g``: same request, same id
        return error_response(error)

    return answer


class _Body:
    """The WSGI body: the first ``next()`` decides the status and calls ``start_response``."""

    __slots__ = ("_response", "_environ", "_start_response", "_stream", "_head", "_body")

    def __init__(
        self, response: OpeningStream, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> None:
        self._response = response
        self._environ = environ
        self._start_response = start_response
        # Werkzeug's part of the head now, while the upstream works.
        stream, status, headers = response.get_wsgi_response(environ)
        self._stream: Any = stream  # closing it runs the response's close callbacks
        self._head = (status, headers)
        self._body: Iterator[bytes] | None = None

    def __iter__(self) -> _Body:
        return self

    def __next__(self) -> bytes:
        body = self._body
        if body is None:
            body = self._body = self._open()
        return next(body)

    def _open(self) -> Iterator[bytes]:
        response = self._response
        job = response.job
        try:
            error = job.opening_failure(response.header_wait)
        except Exception:  # noqa: BLE001 - a bug: still an error object, not the server's page
            log.exception("waiting for the answer's first event failed")
            job.cancel()
            error = GLMProxyError("The server had an error while processing your request.")
        if error is None:
            self._start_response(*self._head)
            return self._stream  # Werkzeug's closing iterator over the pump
        response.record.note_account(job.account)
        answer = response.failed(error)
        stream, status, headers = answer.get_wsgi_response(self._environ)
        self._start_response(status, headers)
        return iter(stream)

    def close(self) -> None:
        body, self._body = self._body, None
        try:
            if body is None:
                self._response.job.cancel()  # never started: nobody wants the answer
            elif body is not self._stream:
                close = getattr(body, "close", None)
                if close is not None:
                    close()  # the failure's own body
        finally:
            self._stream.close()  # the pump (if started: its cleanup) and the close callbacks
