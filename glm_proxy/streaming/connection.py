"""The one place the streaming path touches the client's socket itself.

Everything the client receives goes out through the server: the pump yields
its bytes and gunicorn frames and writes them. Two things are done on the
socket the server names in the WSGI environ (``gunicorn.socket``), with
public socket calls only:

* the send buffer is capped (``STREAM_SEND_BUFFER``), so what the kernel holds
  for a client that stopped reading stays small;
* a client that stopped reading is hung up on (``hang_up``): the server's
  write pending on it then fails at once and the response ends.
"""

from __future__ import annotations

import socket

__all__ = ["hang_up", "limit_send_buffer"]


def limit_send_buffer(client: socket.socket, size: int) -> None:
    """Cap what the kernel buffers for ``client`` (0: leave the system's default)."""
    if not size:
        return
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
    except OSError:
        pass


def hang_up(client: socket.socket) -> None:
    """Shut the connection down so the write pending on it fails at once (EPIPE).

    Through a duplicate descriptor: shutting the server's own socket object
    down from another greenlet would cancel its writer with EBADF, which the
    server logs as an error; the kernel-level shutdown ends it the way a
    vanished client does.
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
