"""The client connection under the pump: chunk frames written directly, and hanging up.

Behind gunicorn on HTTP/1.1 the pump (and, through its sink, the producer)
writes the chunked body's frames to the connection itself. The head goes out
with the first chunk, in one ``send``: gunicorn would send it alone, one more
write and one more wakeup of the client before the first token. The body's
last chunk goes out with the answer's last event the same way (``end_body``):
gunicorn would send those five bytes alone after it, once more waking the
client, which is then still waiting for the body's end. See
``glm_proxy.api._streaming`` for why the pump writes at all.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Any

from flask import has_request_context, request

__all__ = [
    "SERVER_START_RESPONSE",
    "LAST_CHUNK",
    "RememberStartResponse",
    "chunk_sender",
    "end_body",
    "hang_up",
    "send_chunk",
    "server_frames_chunks",
    "take_head",
]

# The empty chunk that ends a chunked body (RFC 9112, 7.1), with no trailer fields.
LAST_CHUNK = b"0\r\n\r\n"

# The environ key under which the server's ``start_response`` is kept (see below).
SERVER_START_RESPONSE = "glm_proxy.start_response"


class RememberStartResponse:
    """WSGI middleware: keep the server's ``start_response`` in the environ.

    gunicorn's ``start_response`` is a method of its response object, which
    builds the head; the pump asks it for the head (``take_head``) to send it
    with the first chunk.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        environ[SERVER_START_RESPONSE] = start_response
        return self.app(environ, start_response)


def server_frames_chunks() -> bool:
    """gunicorn answers this request with a chunked body the pump may frame itself.

    gunicorn chunks a body without ``Content-Length`` for an HTTP/1.1 request
    that is not ``HEAD``; other protocol versions get the bytes through the server.
    """
    if not has_request_context():
        return False
    environ = request.environ
    return (
        environ.get("SERVER_PROTOCOL") == "HTTP/1.1"
        and environ.get("REQUEST_METHOD") != "HEAD"
        and str(environ.get("SERVER_SOFTWARE", "")).startswith("gunicorn")
    )


def take_head(start_response: Any) -> bytes | None:
    """The head gunicorn would send for this response, now marked as sent; else None.

    Call it after the server's ``start_response`` ran (in the response body).
    The head is built the way gunicorn's ``Response.send_headers`` builds it
    (its default headers, then the app's), so the connection's keep-alive
    decision stays the server's. None (the server then sends its head as
    usual) when the response is not gunicorn's, or not chunked, or its head
    already went out.
    """
    response = getattr(start_response, "__self__", None)
    if (
        response is None
        or getattr(response, "status", None) is None
        or getattr(response, "headers_sent", True)
        or not getattr(response, "chunked", False)
    ):
        return None
    try:
        lines = response.default_headers()
        lines.extend(f"{name}: {value}\r\n" for name, value in response.headers)
        head = ("".join(lines) + "\r\n").encode("latin-1")
    except (AttributeError, TypeError, ValueError):
        return None  # another gunicorn than the one pinned: let it send its own head
    response.headers_sent = True
    return head


def end_body(start_response: Any) -> bytes:
    """``LAST_CHUNK`` if the caller may end gunicorn's chunked body itself, else ``b""``.

    Call it with the bytes of the answer's last event ready: the caller then
    writes the last chunk with them (``send_chunk(..., tail=...)``). gunicorn
    is told the body has ended: its response is no longer chunked and has
    the length it sent, so closing it writes nothing and the connection's
    keep-alive decision is the one a chunked response gets. ``b""`` (gunicorn
    ends the body as usual) when the response is not gunicorn's, or not
    chunked, or its head has not gone out.
    """
    response = getattr(start_response, "__self__", None)
    if (
        response is None
        or not getattr(response, "headers_sent", False)
        or getattr(response, "chunked", False) is not True
        or getattr(response, "response_length", 0) is not None
        or not isinstance(getattr(response, "sent", None), int)
    ):
        return b""
    response.chunked = False
    response.response_length = response.sent  # complete: nothing more goes out
    return LAST_CHUNK


def send_chunk(client: socket.socket, data: bytes, head: bytes = b"", tail: bytes = b"") -> None:
    """One chunk of a chunked body, usually in one ``send`` (the rest, if any, with ``sendall``).

    ``head``, if given, goes first in the same write (the response head);
    ``tail``, after it (the body's last chunk, ``LAST_CHUNK``). A failed write
    raises ``OSError`` out of the pump, as the server's own write would.
    """
    if not data:
        if head or tail:
            client.sendall(head + tail)
        return  # an empty chunk would end the body
    frame = b"%b%X\r\n%b\r\n%b" % (head, len(data), data, tail)
    sent = client.send(frame)
    if sent < len(frame):
        client.sendall(memoryview(frame)[sent:])


def chunk_sender(client: socket.socket) -> Callable[[bytes], None]:
    """``send_chunk(client, data)`` for non-empty ``data``, as one function for one connection.

    Under gevent it calls the connection's own non-blocking ``send`` instead of
    gevent's wrapper, which adds a Python call to every write, and every streamed
    event is one; when the kernel's buffer is full, ``sendall`` waits for the
    rest as before.
    """
    inner = getattr(client, "_sock", None)  # gevent's socket: the real one, non-blocking
    if inner is None or inner.gettimeout() != 0.0:
        return lambda data: send_chunk(client, data)
    send, sendall = inner.send, client.sendall

    def send_data(data: bytes) -> None:
        frame = b"%X\r\n%b\r\n" % (len(data), data)
        try:
            sent = send(frame)
        except BlockingIOError:
            sent = 0
        if sent < len(frame):
            sendall(memoryview(frame)[sent:])

    return send_data


def hang_up(client: socket.socket) -> None:
    """Shut the connection down so the write pending on it fails at once (EPIPE).

    Through a duplicate descriptor: gevent's own ``shutdown`` would cancel the
    writer with EBADF, which the server logs as an error; the kernel-level
    shutdown ends it the way a vanished client does.
    """
    try:
        dup = socket.fromfd(client.fileno(), socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return
    try:
        dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        dup.close()
