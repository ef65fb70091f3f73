"""The streamed body on the wire: chunk framing written by the pump, and what the server keeps.

Behind gunicorn on HTTP/1.1 the pump frames the chunks itself, sends the
server's head with the first one and the body's last chunk with the answer's
end (``tests/streaming/test_stream_end.py`` has the write-by-write view). These tests
read the raw bytes, so a frame
with a wrong size, a missing last chunk or bytes left over after the body
(which would break the next request on a kept-alive connection) fails them.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import orjson
import pytest
from flask import Flask

from glm_proxy.api._chunked import chunk_sender, send_chunk, server_frames_chunks
from tests.support.rawhttp import _read_response

PROMPT = "frames [[sim:long n=6 chars=120 delay=0.01]]"


def chat_request(token: str, *, version: str = "HTTP/1.1", stream: bool = True) -> bytes:
    body = orjson.dumps(
        {
            "model": "glm-4",
            "stream": stream,
            "messages": [{"role": "user", "content": PROMPT}],
        }
    )
    head = (
        f"POST /v1/chat/completions {version}\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def connect(base: str) -> socket.socket:
    parts = urlsplit(base)
    return socket.create_connection((parts.hostname, parts.port), timeout=30)


def sse_text(body: bytes) -> str:
    """The streamed content, checking every event is a complete ``data:`` line."""
    events = body.split(b"\n\n")
    assert events[-1] == b"", "the body ends in the middle of an event"
    assert events[-2] == b"data: [DONE]"
    text = []
    for event in events[:-2]:
        if event.startswith(b":"):
            continue  # keep-alive comment
        assert event.startswith(b"data: "), event[:80]
        chunk = orjson.loads(event[6:])
        text.append(chunk["choices"][0]["delta"].get("content") or "")
    return "".join(text)


def test_streamed_body_is_well_framed_and_the_connection_serves_the_next_request(proxy, token):
    sock = connect(proxy.base)
    try:
        sock.sendall(chat_request(token))
        head, body, rest = _read_response(sock, b"")
        assert head.startswith(b"HTTP/1.1 200")
        assert b"transfer-encoding: chunked" in head.lower()
        assert rest == b"", "bytes after the last chunk"
        streamed = sse_text(body)
        assert len(streamed) >= 120

        # the same connection: a second answer, not stream, parses as one response
        sock.sendall(chat_request(token, stream=False))
        head, body, rest = _read_response(sock, b"")
        assert head.startswith(b"HTTP/1.1 200")
        assert rest == b""
        answer = orjson.loads(body)["choices"][0]["message"]["content"]
        assert answer == streamed
    finally:
        sock.close()


def test_the_head_arrives_with_the_first_event(proxy, token):
    """One write for the head and the first event: the client reads both at once."""
    sock = connect(proxy.base)
    try:
        sock.sendall(chat_request(token))
        first = sock.recv(65536)  # one send on loopback arrives whole
        head, _, body = first.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head.lower()
        assert b"access-control-allow-origin" in head.lower()  # the app's headers kept
        assert b"data: " in body, first[:300]
        head, body, rest = _read_response(sock, first)
        assert rest == b"" and len(sse_text(body)) >= 120
    finally:
        sock.close()


def test_http_1_0_stream_is_close_delimited_without_chunk_frames(proxy, token):
    sock = connect(proxy.base)
    try:
        sock.sendall(chat_request(token, version="HTTP/1.0"))
        head, body, _ = _read_response(sock, b"")
    finally:
        sock.close()
    assert head.startswith(b"HTTP/1.")
    assert b"transfer-encoding" not in head.lower()
    assert len(sse_text(body)) >= 120


@pytest.mark.parametrize(
    ("environ", "direct"),
    [
        ({"SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": "gunicorn/27.0.1"}, True),
        ({"SERVER_PROTOCOL": "HTTP/1.0", "SERVER_SOFTWARE": "gunicorn/27.0.1"}, False),
        ({"SERVER_PROTOCOL": "HTTP/2", "SERVER_SOFTWARE": "gunicorn/27.0.1"}, False),
        ({"SERVER_PROTOCOL": "HTTP/1.1", "SERVER_SOFTWARE": "Werkzeug/3.1"}, False),
        (
            {
                "SERVER_PROTOCOL": "HTTP/1.1",
                "SERVER_SOFTWARE": "gunicorn/27.0.1",
                "REQUEST_METHOD": "HEAD",
            },
            False,
        ),
    ],
)
def test_the_pump_frames_chunks_itself_only_where_gunicorn_chunks(environ, direct):
    app = Flask(__name__)
    method = environ.get("REQUEST_METHOD", "POST")
    overrides = {k: v for k, v in environ.items() if k != "REQUEST_METHOD"}
    with app.test_request_context(
        "/v1/chat/completions", method=method, environ_overrides=overrides
    ):
        assert server_frames_chunks() is direct
    assert server_frames_chunks() is False  # no request at all


def test_send_chunk_frames_and_finishes_a_partial_send():
    class Partial:
        """A socket whose first send takes only 3 bytes."""

        def __init__(self) -> None:
            self.data = b""
            self.first = True

        def send(self, data: bytes) -> int:
            taken = data[:3] if self.first else data
            self.first = False
            self.data += bytes(taken)
            return len(taken)

        def sendall(self, data) -> None:
            self.data += bytes(data)

    sock = Partial()
    send_chunk(sock, b"data: x\n\n")  # type: ignore[arg-type]
    send_chunk(sock, b"")  # never the last chunk by accident
    assert sock.data == b"9\r\ndata: x\n\n\r\n"


def test_chunk_sender_frames_what_a_full_send_buffer_holds_back():
    """The raw send under gevent's socket: a full kernel buffer waits, nothing is lost."""
    import gevent
    import gevent.socket

    writer, reader = gevent.socket.socketpair()
    writer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    filled = bytearray()
    while True:  # the kernel's buffers full before the first write: its send refuses at once
        try:
            filled += b"f" * writer._sock.send(b"f" * 65536)
        except BlockingIOError:
            break
    payload = bytes(range(256)) * 4096  # 1 MiB: far more than the buffers hold
    expected = bytes(filled) + b"%X\r\n%b\r\n9\r\ndata: x\n\n\r\n" % (len(payload), payload)
    got = bytearray()

    def read_slowly() -> None:
        while len(got) < len(expected):
            gevent.sleep(0.001)
            data = reader.recv(65536)
            if not data:
                return
            got.extend(data)

    drain = gevent.spawn(read_slowly)
    send_data = chunk_sender(writer)
    send_data(payload)
    send_data(b"data: x\n\n")
    drain.join(timeout=10)
    assert bytes(got) == expected
    writer.close()
    reader.close()


def test_chunk_sender_without_gevent_uses_the_sockets_own_send():
    class Plain:
        def __init__(self) -> None:
            self.data = b""

        def send(self, data: bytes) -> int:
            self.data += data[:2]
            return 2

        def sendall(self, data) -> None:
            self.data += bytes(data)

    sock = Plain()
    chunk_sender(sock)(b"data: x\n\n")  # type: ignore[arg-type]
    assert sock.data == b"9\r\ndata: x\n\n\r\n"
