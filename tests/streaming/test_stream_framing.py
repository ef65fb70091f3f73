"""The streamed body on the wire: the chunk framing, and what the connection keeps.

The pump yields its bytes and gunicorn frames them (chunked on HTTP/1.1,
close-delimited on HTTP/1.0). These tests read the raw bytes, so a frame
with a wrong size, a missing last chunk or bytes left over after the body
(which would break the next request on a kept-alive connection) fails them.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import orjson

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


def test_the_head_keeps_the_apps_headers_and_the_first_event_follows(proxy, token):
    """The status and the app's headers (CORS) go out once the answer began, then its events."""
    sock = connect(proxy.base)
    try:
        sock.sendall(chat_request(token))
        first = b""
        while b"data: " not in first:
            data = sock.recv(65536)
            assert data, first[:300]
            first += data
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
