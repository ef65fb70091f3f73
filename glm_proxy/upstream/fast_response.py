"""One response on one upstream connection, parsed by ``httptools`` (see ``fast_http``).

``FastResponse`` offers what the upstream client uses of ``requests.Response``:
``status_code``, ``headers``, ``content``, ``iter_content()`` and ``close()``.
A body read to its end hands the connection back (``release``); one closed
early closes it. Failures in the middle of a body are ``requests`` errors
(``BodyBroken``, ``BodyTimeout``), as ``iter_content`` raises there.

Body reads arm no timer: a read timeout per ``recv`` would create and cancel
one for every streamed event. Instead one watch per worker (``_BODY_READS``)
closes a connection whose read has waited longer than ``read_timeout``; the
read then fails and reports the timeout.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent.socket
import httptools
import requests
from requests.structures import CaseInsensitiveDict

from glm_proxy.errors import UpstreamConnectError, UpstreamRetryable, UpstreamTimeout
from glm_proxy.periodic import PeriodicWatch

__all__ = ["BodyBroken", "BodyTimeout", "FastResponse", "StaleConnection", "close_quietly"]

_Cooperative = gevent.socket.socket  # closing one wakes its waiting reader (gevent's hub)
_READ_SIZE = 65536
_MAX_HEAD = 64 * 1024


class BodyBroken(requests.exceptions.ChunkedEncodingError):
    """The connection ended or failed in the middle of a response body (a ``requests``
    error, as ``iter_content`` raises there: code reading an error body copes with it)."""


BodyBroken.__name__ = "ProtocolError"  # named like urllib3's in the stream error message


class BodyTimeout(requests.exceptions.ReadTimeout):
    """No byte of the rest of a response body within the read timeout."""


class StaleConnection(Exception):
    """The connection closed before any byte of the response head."""


class FastResponse:
    """The parts of ``requests.Response`` the upstream client uses, on one connection."""

    def __init__(
        self,
        sock: socket.socket,
        read_timeout: float | None = None,
        release: Callable[[socket.socket], None] | None = None,
    ) -> None:
        self._release = release  # takes the connection back after a complete response
        self._sock: socket.socket | None = sock
        self.read_timeout = read_timeout
        self.waiting_since: float | None = None  # a body read is waiting (see _BODY_READS)
        self._timed_out = False
        # gevent's socket: closing it wakes its waiting reader, and it can wait for data
        self._cooperative = isinstance(sock, _Cooperative)
        self._pending = getattr(sock, "pending", None)  # a TLS socket's decrypted bytes
        # The parser calls back into this response: a reference cycle, cut when the
        # response ends (``_finish``, ``close``) so that refcounting frees both at once
        # (a stream's response lives long enough to reach the oldest generation, and
        # its cycle would wait there for a full collection).
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._head_done = False
        self._keep_alive = False
        # The whole body has been read (what ``iter_content`` yields next is its last part).
        # A plain attribute: the producer asks after every read.
        self.complete = False
        self._seen = 0
        self.status_code = 0
        self.headers: CaseInsensitiveDict = CaseInsensitiveDict()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._head_done = True
        # asked now: llhttp answers for the message being parsed, not after its end
        self._keep_alive = self._parser.should_keep_alive()  # type: ignore[union-attr]

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True

    # reading
    def _feed(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            raise BodyBroken("the response was closed while it was read")
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # pragma: no cover - never asked for
            raise UpstreamRetryable("upstream request failed (unexpected upgrade)") from None
        except httptools.HttpParserError as exc:
            raise UpstreamRetryable(f"upstream request failed (InvalidResponse: {exc})") from None

    def read_head(self) -> None:
        sock = self._sock
        assert sock is not None
        while not self._head_done:
            try:
                data = sock.recv(_READ_SIZE)
            except ConnectionResetError:
                if self._seen == 0:
                    raise StaleConnection from None
                raise
            if not data:
                if self._seen == 0:
                    raise StaleConnection
                raise UpstreamConnectError("could not reach the upstream (ConnectionError)")
            self._seen += len(data)
            if self._seen > _MAX_HEAD and not self._head_done:
                raise UpstreamRetryable("upstream request failed (response head too large)")
            self._feed(data)
        self.status_code = self._parser.get_status_code()  # type: ignore[union-attr]
        self.headers = CaseInsensitiveDict(
            (k.decode("latin-1"), v.decode("latin-1")) for k, v in self._raw_headers
        )
        encoding = self.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise UpstreamRetryable(f"upstream request failed (unexpected encoding {encoding})")
        if self.complete:
            self._finish()

    def iter_content(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """Body bytes as they arrive (``chunk_size`` is ignored: whatever one read brought)."""
        while True:
            if self._body:
                data = b"".join(self._body) if len(self._body) > 1 else self._body[0]
                self._body.clear()
                yield data
            if self.complete or self._sock is None:
                return
            self._read_more()

    def stream(self) -> Iterator[bytes]:
        """``iter_content()`` for an answer stream, closed at its end, with its failures
        as the proxy's own errors (``UpstreamTimeout``, ``UpstreamRetryable``).

        What ``UpstreamClient.iter_stream`` makes of ``iter_content()``, in one
        generator instead of two: it is resumed once for every streamed event.
        """
        body = self._body
        try:
            while True:
                if body:
                    data = b"".join(body) if len(body) > 1 else body[0]
                    body.clear()
                    yield data
                if self.complete or self._sock is None:
                    return
                self._read_more()
        except BodyTimeout:
            raise UpstreamTimeout("the upstream went silent in the middle of the answer") from None
        except BodyBroken as exc:
            raise UpstreamRetryable(
                f"the upstream connection broke in the middle of the answer ({type(exc).__name__})"
            ) from None
        finally:
            self.close()

    def _read_more(self) -> None:
        sock = self._sock
        assert sock is not None
        first = self.waiting_since is None
        if first and self._cooperative and self.read_timeout:
            # The body may take long: no timer armed per read; the watch times the waits.
            sock.settimeout(None)
            _BODY_READS.add(self, min(1.0, max(0.01, self.read_timeout / 4)))
        self.waiting_since = time.monotonic()
        try:
            if not first and self._cooperative and not (self._pending and self._pending()):
                # The last read emptied the socket and the next event is usually some
                # milliseconds away: wait for it first instead of a recv that fails
                # with EAGAIN (a syscall and an exception per event) and then waiting.
                sock._wait(sock._read_event)  # type: ignore[attr-defined]
            data = sock.recv(_READ_SIZE)
        except TimeoutError:
            self.close()
            raise BodyTimeout("the upstream went silent in the middle of the body") from None
        except OSError as exc:
            self.close()
            if self._timed_out:
                raise BodyTimeout("the upstream went silent in the middle of the body") from None
            raise BodyBroken(f"the connection failed in the middle of the body ({exc})") from None
        if data:
            self._feed(data)
            if self.complete:
                self._finish()
            return
        self._sock = None
        close_quietly(sock)
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        if self._keep_alive or chunked or self.headers.get("Content-Length"):
            raise BodyBroken("the connection closed in the middle of the body")
        self.complete = True  # a body delimited by the end of the connection

    def read_all(self) -> None:
        while not self.complete and self._sock is not None:
            self._read_more()

    @property
    def content(self) -> bytes:
        self.read_all()
        data = b"".join(self._body)
        self._body = [data] if data else []
        return data

    def _finish(self) -> None:
        self._parser = None  # done with it (see __init__)
        sock, self._sock = self._sock, None
        if sock is None:
            return
        _BODY_READS.discard(self)
        if self._keep_alive and self._release is not None:
            self._release(sock)
        else:
            close_quietly(sock)

    def close(self) -> None:
        """Done with the response: an unfinished body closes the connection."""
        self._parser = None
        _BODY_READS.discard(self)
        sock, self._sock = self._sock, None
        if sock is not None:
            close_quietly(sock)

    def __enter__(self) -> FastResponse:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def close_quietly(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass


def _check_read(response: FastResponse, now: float) -> None:
    """The read watch's look at one response: close it when its read waited too long."""
    since, limit = response.waiting_since, response.read_timeout
    if since is not None and limit and now - since > limit:
        _BODY_READS.discard(response)
        response._timed_out = True
        sock = response._sock
        if sock is not None:
            close_quietly(sock)  # the waiting recv fails: reported as the timeout


# Times the body reads of every streaming response of this worker.
_BODY_READS: PeriodicWatch[FastResponse] = PeriodicWatch(_check_read, "an upstream read")
