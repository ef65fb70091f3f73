"""Waiting for an event instead of sleeping a fixed time.

A fixed sleep is either too short on a busy machine (the test fails) or too long on a quiet
one (the suite crawls). ``wait_until`` polls a condition until it holds or a deadline passes;
the deadline is generous because it is only reached when the test is failing anyway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import psutil

if TYPE_CHECKING:
    from tests.conftest import ProxyServer

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    message: str = "the condition",
    interval: float = 0.05,
) -> T:
    """Poll ``predicate`` until it returns a true value, and return that value.

    Raises ``AssertionError`` naming ``message`` when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def accepted_connections(server: ProxyServer) -> int:
    """Client connections the server's workers have accepted and still hold open.

    The event a test waits for before it signals the server: "my request is in there now"
    (accepted by a worker, not merely queued in the kernel's listen backlog).
    """
    port = urlsplit(server.base).port
    try:
        workers = psutil.Process(server.proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    count = 0
    for worker in workers:
        try:
            sockets = worker.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        count += sum(
            1 for c in sockets if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port
        )
    return count
