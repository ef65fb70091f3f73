"""Raw HTTP/1.1 over a socket, for requests a client library refuses to send.

``exchange`` writes bytes (optionally in timed pieces), reads one response
(``Content-Length`` or chunked framing) and then reports whether the server
closed the connection, so tests can tell "answered and hung up" from
"answered and kept waiting for the rest of a body".
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float  # seconds from the first byte sent to the whole response read
    closed: bool  # the server closed the connection right after the response
    sent: int = 0  # pieces sent whole before the server stopped taking them

    def json(self) -> dict:
        return orjson.loads(self.body)


def _read_response(sock: socket.socket, buf: bytes) -> tuple[bytes, bytes, bytes]:
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"closed before a response head: {buf[:200]!r}")
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(rest) < length:
            data = sock.recv(65536)
            if not data:
                break
            rest += data
        return head, rest[:length], rest[length:]
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += sock.recv(65536)
            line, _, rest = rest.partition(b"\r\n")
            size = int(line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += sock.recv(65536)
            body, rest = body + rest[:size], rest[size + 2 :]
            if size == 0:
                return head, body, rest
    while data := sock.recv(65536):  # close-delimited
        rest += data
    return head, rest, b""


def exchange(
    base: str,
    pieces: bytes | list[bytes],
    *,
    pause: float = 0.0,
    timeout: float = 30.0,
    close_wait: float = 1.0,
) -> RawResponse:
    """Send ``pieces`` (with ``pause`` seconds between them) and read one response."""
    parts = urlsplit(base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
    started = time.monotonic()
    sent = 0
    try:
        for index, piece in enumerate([pieces] if isinstance(pieces, bytes) else pieces):
            if index and pause:
                time.sleep(pause)  # the scenario: a client that sends slowly
            try:
                sock.sendall(piece)
            except OSError:
                break  # the server answered and closed early; read what it said
            sent += 1
        head, body, extra = _read_response(sock, b"")
        elapsed = time.monotonic() - started
        sock.settimeout(close_wait)
        try:
            closed = not extra and sock.recv(1) == b""
        except TimeoutError:
            closed = False
        except OSError:
            closed = True
    finally:
        sock.close()
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), headers, body, elapsed, closed, sent)


def request_bytes(
    method: str, path: str, headers: dict[str, str] | list[tuple[str, str]], body: bytes = b""
) -> bytes:
    """A request head (plus ``body``) exactly as given: no header is added or fixed."""
    items = headers.items() if isinstance(headers, dict) else headers
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in items)
    return head.encode("latin-1") + b"\r\n" + body


def chunked(*chunks: bytes) -> bytes:
    """A well-formed chunked body."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c)
    return out + b"0\r\n\r\n"
