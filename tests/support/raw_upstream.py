"""A scripted raw HTTP server on 127.0.0.1 for the upstream transport's tests.

The server records every request's raw bytes and answers each with scripted
pieces (bytes, pauses, waits for the test, a close or a reset), so the wire
format, the response framing in odd splits, the connection reuse and every
failure can be checked exactly, without any client library in between.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

CLOSE = "close"  # a reply piece: the server closes the connection (FIN)
RESET = "reset"  # a reply piece: the server resets the connection (RST)
TIMEOUT = (2.0, 2.0)
CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    """A complete ``200`` with a ``Content-Length`` body (and extra head lines)."""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def read_request(sock: socket.socket, buf: bytes) -> tuple[bytes | None, bytes]:
    """One raw request (head and ``Content-Length`` body) and the bytes after it."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None, b""
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            return None, b""
        rest += data
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


@dataclass
class RawServer:
    """Answers the n-th request (over all connections) with ``replies[n]``.

    A reply is bytes, or a list of pieces: bytes (sent), a float (a pause), a
    ``threading.Event`` (wait until the test sets it), ``CLOSE`` or ``RESET``.
    """

    replies: list
    tls: ssl.SSLContext | None = None
    requests: list[bytes] = field(default_factory=list)
    accepted: int = 0
    ended: list[int] = field(default_factory=list)  # connections the client closed
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.stopped = False
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/") -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def wait_ended(self, count: int, timeout: float = 5.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while len(self.ended) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.ended

    def stop(self) -> None:
        self.stopped = True
        self.listener.close()
        for conn in self.connections:
            try:
                conn.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                number = self.accepted
            self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(10)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            while True:
                request, buf = read_request(conn, buf)
                if request is None:
                    self.ended.append(number)
                    return
                with self.lock:
                    self.requests.append(request)
                    reply = self.replies.pop(0) if self.replies else ok()
                for piece in [reply] if isinstance(reply, bytes) else reply:
                    if isinstance(piece, bytes):
                        conn.sendall(piece)
                    elif isinstance(piece, float):
                        time.sleep(piece)
                    elif isinstance(piece, threading.Event):
                        piece.wait(10)
                    elif piece == RESET:
                        conn.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        conn.close()
                        return
                    elif piece == CLOSE:
                        conn.close()
                        return
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(repr(exc))
        finally:
            conn.close()


@pytest.fixture
def serve() -> Iterator:
    servers: list[RawServer] = []

    def start(*replies, tls: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(list(replies), tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def refused_url() -> str:
    """A URL nothing listens on: a client that tried to connect would fail loudly."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/x"


@pytest.fixture(scope="session")
def certificate(tmp_path_factory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)
