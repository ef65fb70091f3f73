"""gevent server for the simulator; started via `python -m tests.simulator` (see __main__).

gevent's pywsgi server holds hundreds of concurrent SSE streams in one process. This module
must only be imported after `gevent.monkey.patch_all()`.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
from typing import Any

import gevent
from gevent.pywsgi import WSGIHandler, WSGIServer

from .app import create_app
from .stream import DropConnection


class SimHandler(WSGIHandler):
    """Closes the socket quietly for the `drop_mid_stream` fault instead of logging it.

    Sends without Nagle's delay, as the real upstream's front (nginx, ``tcp_nodelay on``)
    does: otherwise an event written right after the response head waits for the
    client's delayed ACK (up to 40 ms on loopback), which every first-token figure
    measured against the simulator would include.
    """

    def __init__(self, sock: Any, address: Any, server: Any, *args: Any, **kwargs: Any) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP (a test may hand in a socketpair)
        super().__init__(sock, address, server, *args, **kwargs)

    def handle_error(self, t: type[BaseException], v: BaseException, tb: Any) -> None:
        if issubclass(t, DropConnection):
            self.close_connection = True
            return
        super().handle_error(t, v, tb)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.simulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    p.add_argument("--shape", choices=("all", "current", "delta"), default="all")
    p.add_argument("--chunk-size", type=int, default=7, help="bytes per write; 0 = per event")
    p.add_argument("--delay", type=float, default=0.0, help="seconds between events")
    p.add_argument("--access-ttl", type=float, default=3600.0)
    p.add_argument("--rotate-refresh", action="store_true")
    p.add_argument("--rotate-invalidates-old", action="store_true")
    p.add_argument(
        "--refresh-token",
        action="append",
        dest="allowed_refresh_tokens",
        help="accept only these refresh tokens (repeatable); default: any",
    )
    p.add_argument("--sign-secret", default=None)
    p.add_argument("--enforce-check-digit", action="store_true")
    p.add_argument("--require-app-name", action="store_true")
    p.add_argument(
        "--allow-concurrent",
        action="store_true",
        help="do not reject a second concurrent stream per account",
    )
    p.add_argument("--zero-mode-thinks", action="store_true")
    p.add_argument("--video-polls", type=int, default=3, help="status polls until finished")
    p.add_argument("--public-base-url", default=None)
    p.add_argument("--access-log", action="store_true")
    p.add_argument(
        "--era",
        choices=("E2", "E3"),
        default="E3",
        help="protocol era: E3 (2026, the server's default GLM_PROTOCOL) or E2 (2025)",
    )
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> dict[str, Any]:
    config: dict[str, Any] = {
        "shape": args.shape,
        "chunk_size": args.chunk_size,
        "delay": args.delay,
        "access_ttl": args.access_ttl,
        "rotate_refresh": args.rotate_refresh,
        "rotate_invalidates_old": args.rotate_invalidates_old,
        "allowed_refresh_tokens": args.allowed_refresh_tokens,
        "enforce_check_digit": args.enforce_check_digit,
        "require_app_name": args.require_app_name,
        "single_stream": not args.allow_concurrent,
        "zero_mode_thinks": args.zero_mode_thinks,
        "video_polls_to_finish": args.video_polls,
        "public_base_url": args.public_base_url,
        "era": args.era,
    }
    if args.sign_secret:
        config["sign_secret"] = args.sign_secret
    return config


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    app = create_app(config_from_args(args))
    server = WSGIServer(
        (args.host, args.port),
        app,
        handler_class=SimHandler,
        log=sys.stderr if args.access_log else None,
    )
    server.start()
    print(f"simulator listening on http://{args.host}:{server.server_port}", flush=True)
    gevent.signal_handler(signal.SIGTERM, server.stop)
    gevent.signal_handler(signal.SIGINT, server.stop)
    server.serve_forever()
