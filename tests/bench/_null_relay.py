"""A TCP relay that only copies bytes both ways: the floor any proxy hop adds.

python tests/bench/_null_relay.py LISTEN_PORT TARGET_PORT   (127.0.0.1 only)
"""

from gevent import monkey

monkey.patch_all()

import socket  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402
from gevent.server import StreamServer  # noqa: E402


def _copy(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def main() -> None:
    listen, target = int(sys.argv[1]), int(sys.argv[2])

    def handle(client: socket.socket, _address) -> None:
        upstream = socket.create_connection(("127.0.0.1", target))
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        back = gevent.spawn(_copy, upstream, client)
        _copy(client, upstream)
        back.join()
        upstream.close()

    StreamServer(("127.0.0.1", listen), handle).serve_forever()


if __name__ == "__main__":
    main()
