"""Serve the simulator: `python -m tests.simulator --host 127.0.0.1 --port 8001`.

The gevent monkey-patch must run before Flask, requests or sockets are imported, so the
imports happen inside `run()`; see `server.py` for the options.
"""

from __future__ import annotations


def run() -> None:
    from gevent import monkey

    monkey.patch_all()
    from .server import main

    main()


if __name__ == "__main__":
    run()
