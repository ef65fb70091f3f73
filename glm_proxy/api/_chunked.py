"""The client connection under the pump: chunk frames written directly, and hanging up.

Behind gunicorn on HTTP/1.1 the pump (and, through its sink, the producer)
writes the chunked body's frames to the connection itself; gunicorn sends the
head and the last chunk. See ``glm_proxy.api._streaming`` for why.
"""

from __future__ import annotations

import socket

from flask import has_request_context, request

__all__ = ["hang_up", "send_chunk", "server_frames_chunks"]


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


def send_chunk(client: socket.socket, data: bytes) -> None:
    """One chunk of a chunked body, usually in one ``send`` (the rest, if any, with ``sendall``).

    A failed write raises ``OSError`` out of the pump, as the server's own write would.
    """
    if not data:
        return  # an empty chunk would end the body
    frame = b"%X\r\n%b\r\n" % (len(data), data)
    sent = client.send(frame)
    if sent < len(frame):
        client.sendall(memoryview(frame)[sent:])


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
