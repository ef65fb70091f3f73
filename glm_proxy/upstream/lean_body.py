"""One HTTP/1.1 response read off one socket, framed by ``httptools`` (sans-IO).

``LeanBody`` is what ``LeanAdapter`` puts in ``requests.Response.raw``: it offers
the part of urllib3's ``HTTPResponse`` that ``requests`` and this project use
(``stream``, ``close``, ``release_conn``) and fails the way urllib3
fails (``ProtocolError``, ``ReadTimeoutError``, ``DecodeError``), so
``iter_content`` maps the errors as it always does.

``httptools`` (llhttp, in C) parses the status line, the headers and the body's
framing (``Content-Length``, chunked, or until the connection closes); this
module only moves bytes from the socket into it and hands the body on. A body
read to its end gives the connection back to the pool (``release``); a body
left unread closes it.
"""

from __future__ import annotations

import socket
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import httptools
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from glm_proxy.streaming.periodic import PeriodicWatch

__all__ = ["HeadError", "LeanBody", "READ_SIZE"]

READ_SIZE = 65536
MAX_HEAD = 64 * 1024  # bytes of status line and headers; more is not an HTTP head


class HeadError(Exception):
    """No usable response head: ``closed`` when the connection ended before its first byte
    (a kept-alive connection the server had dropped: the request may be sent again)."""

    def __init__(self, message: str, *, closed: bool = False) -> None:
        super().__init__(message)
        self.closed = closed


def _decoder(encoding: str) -> Any:
    """A zlib decoder for ``gzip``/``deflate`` (the only codings the adapter accepts)."""
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    return None


class LeanBody:
    """The parser's callbacks, the head they collect, and the body they queue."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        head_only: bool = False,
        release: Callable[[socket.socket], None] | None = None,
        read_timeout: float | None = None,
    ) -> None:
        self._conn: socket.socket | None = sock
        self.read_timeout = read_timeout
        self.waiting_since: float | None = None  # a body read is waiting (see BODY_READS)
        self.timed_out = False
        self._watched = False  # body reads are timed by BODY_READS, not by the socket
        self._period = max(0.001, read_timeout / 4) if read_timeout else 1.0
        self._release = release
        self._head_only = head_only  # a reply to HEAD: no body, whatever its headers say
        # The parser calls back into this object: a cycle, cut when the response ends.
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self.status = 0
        self.reason = ""
        self.header_pairs: list[tuple[str, str]] = []
        self._head_bytes = 0
        self.head_done = False
        self._parts: list[bytes] = []
        self.done = False
        self._messages = 0
        self._interim = 0
        self._keep_alive = False
        self._until_close = False
        self._decode: Any = None

    # -- httptools callbacks ------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._messages += 1

    def on_status(self, status: bytes) -> None:
        self.reason += status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        if name:
            self.header_pairs.append((name.decode("latin-1"), value.decode("latin-1")))
        else:  # a value continued in the next read: httptools hands it on in parts
            last_name, last_value = self.header_pairs[-1]
            self.header_pairs[-1] = (last_name, last_value + value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        if 100 <= status < 200:  # an interim reply (100 Continue ...): the real one follows
            self._interim += 1
            self.header_pairs = []
            self.reason = ""
            return
        self.status = status
        self.head_done = True
        self._keep_alive = parser.should_keep_alive()
        names = {name.lower(): value for name, value in self.header_pairs}
        chunked = "chunked" in names.get("transfer-encoding", "").lower()
        no_body = self._head_only or self.status in (204, 304)
        self._until_close = not no_body and not chunked and "content-length" not in names
        coding = names.get("content-encoding", "").strip().lower()
        if coding and coding != "identity":
            self._decode = _decoder(coding)
            if self._decode is None:
                self._decode = coding  # unknown: reading the body raises DecodeError
        if self._head_only:
            self.done = True

    def on_body(self, body: bytes) -> None:
        self._parts.append(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            self.done = True

    # -- reading ------------------------------------------------------------------------

    def read_head(self) -> None:
        """Read until the status line and headers are parsed (raises ``HeadError``)."""
        got_any = False
        while not self.head_done:
            assert self._conn is not None
            data = self._conn.recv(READ_SIZE)
            if not data:
                self.close()
                raise HeadError("the connection closed before a response", closed=not got_any)
            got_any = True
            self._head_bytes += len(data)
            try:
                self._feed(data)
            except httptools.HttpParserError as exc:
                self.close()
                raise HeadError(f"not an HTTP response ({exc})") from None
            if not self.head_done and self._head_bytes > MAX_HEAD:
                self.close()
                raise HeadError("the response head is too long")
        if self.done:
            self._finish()
        elif self.read_timeout and self._conn is not None:
            # Body reads arm no timer each (one per streamed event): the watch times them.
            self._conn.settimeout(None)
            self._watched = True

    def _feed(self, data: bytes) -> None:
        parser = self._parser
        assert parser is not None  # cleared only when the response ends
        parser.feed_data(data)

    def _more(self) -> None:
        """Read once from the socket into the parser (the body's next bytes, or its end)."""
        sock = self._conn
        if sock is None:
            raise ProtocolError("Response ended prematurely: the connection is closed")
        watched = self._watched
        if watched:  # watched only while waiting: a body nobody closes is not held by it
            BODY_READS.add(self, self._period)
        self.waiting_since = time.monotonic()
        try:
            data = sock.recv(READ_SIZE)
        except OSError as exc:
            self.close()
            if self.timed_out or isinstance(exc, TimeoutError):
                raise ReadTimeoutError(None, "", "Read timed out.") from None  # type: ignore[arg-type]  # urllib3 takes a pool; there is none
            raise ProtocolError(f"Connection broken: {exc!r}", exc) from None
        finally:
            self.waiting_since = None
            if watched:
                BODY_READS.discard(self)
        if not data:
            if self._until_close:
                self.done = True
                self._keep_alive = False
                self._finish()
                return
            self.close()
            raise ProtocolError("Response ended prematurely")
        try:
            self._feed(data)
        except httptools.HttpParserError as exc:
            self.close()
            raise ProtocolError(f"Invalid response body ({exc})") from None
        if self.done:
            self._finish()

    def _finish(self) -> None:
        """The whole body has arrived: give the connection back, or close it."""
        sock, self._conn = self._conn, None
        self._parser = None
        if sock is None:
            return
        if self._keep_alive and self._messages == 1 + self._interim and self._release is not None:
            self._release(sock)
        else:
            sock.close()

    def _take(self, decode_content: bool) -> bytes:
        parts = self._parts
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        decode = self._decode
        if decode is None or not data or not decode_content:
            return data
        if isinstance(decode, str):
            raise DecodeError(
                f"Received response with content-encoding: {decode}, "
                "which this transport does not decode"
            )
        try:
            return decode.decompress(data)
        except zlib.error as exc:
            raise DecodeError(f"Received response with a broken {exc}") from None

    def stream(
        self, amt: int | None = READ_SIZE, decode_content: bool | None = None
    ) -> Iterator[bytes]:
        """The body as it arrives, in pieces of at most ``amt`` bytes (urllib3's ``stream``)."""
        while True:
            if self._parts:
                data = self._take(decode_content is not False)
                if amt and len(data) > amt:
                    for start in range(0, len(data), amt):
                        yield data[start : start + amt]
                elif data:
                    yield data
            if self.done:
                return
            self._more()

    def close(self) -> None:
        """Stop reading: a connection whose body was not read to its end is closed."""
        sock, self._conn = self._conn, None
        self._parser = None
        if sock is not None:
            sock.close()

    def release_conn(self) -> None:
        """Nothing to do: a body read to its end has already given its connection back."""


def _check_read(body: LeanBody, now: float) -> None:
    """Close a body whose read has waited past its read timeout: the read wakes and fails
    (closing a gevent socket wakes the greenlet waiting on it), and reports the timeout."""
    since = body.waiting_since
    if since is not None and body.read_timeout and now - since > body.read_timeout:
        body.timed_out = True
        body.close()


BODY_READS: PeriodicWatch[LeanBody] = PeriodicWatch(_check_read, "an upstream read")
