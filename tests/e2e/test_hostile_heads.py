"""Request heads that used to hold the worker's connections, replayed against the real server.

Half-sent heads beyond ``WORKER_CONNECTIONS`` must not keep ``/healthz`` out,
a TLS ClientHello on the plain port gets a 400 at once, a partial head a 408
after ``REQUEST_HEAD_TIMEOUT``, and a kept connection still waits ``KEEPALIVE``
between requests.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import pytest
import requests

from tests.conftest import ProxyServer, start_proxy, stop_proxy
from tests.support.hostile import HEALTHZ_BOUND, worker_pid

WORKER_CONNECTIONS = 60


@pytest.fixture(scope="module")
def server(simulator, tmp_path_factory) -> Iterator[ProxyServer]:
    proxy = start_proxy(
        simulator,
        tmp_path_factory.mktemp("heads"),
        WORKER_CONNECTIONS=str(WORKER_CONNECTIONS),
        REQUEST_HEAD_TIMEOUT="30",
    )
    yield proxy
    stop_proxy(proxy)


def test_slow_heads_do_not_starve_the_worker(server):
    """More half-sent heads than WORKER_CONNECTIONS: the oldest waits are shed, /healthz answers."""
    pid = worker_pid(server.proc.pid)
    port = int(server.base.rsplit(":", 1)[1])
    socks = []
    try:
        for _ in range(WORKER_CONNECTIONS + 20):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            socks.append(sock)
        started = time.perf_counter()
        assert requests.get(f"{server.base}/healthz", timeout=60).status_code == 200
        assert time.perf_counter() - started < HEALTHZ_BOUND * 3
        assert socks[0].recv(10) == b""  # the longest wait was closed to make room
    finally:
        for sock in socks:
            sock.close()
    assert worker_pid(server.proc.pid) == pid


def test_tls_client_hello_on_the_plain_port_is_a_400_at_once(server):
    port = int(server.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(bytes.fromhex("16030100a5010000a10303") + b"\x00" * 40)
        answer = sock.recv(4096)  # within the 5 s socket timeout: REQUEST_HEAD_TIMEOUT is 30
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b'"invalid_request_error"' in answer and b"plain HTTP" in answer


@pytest.fixture(scope="module")
def quick_heads(simulator, tmp_path_factory) -> Iterator[ProxyServer]:
    proxy = start_proxy(simulator, tmp_path_factory.mktemp("heads"), REQUEST_HEAD_TIMEOUT="1")
    yield proxy
    stop_proxy(proxy)


def test_partial_head_gets_408_after_the_head_timeout(quick_heads):
    port = int(quick_heads.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"REQUEST_HEAD_TIMEOUT" in answer


def test_silent_connection_is_closed_after_the_head_timeout(quick_heads):
    port = int(quick_heads.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        assert sock.recv(4096) == b""


def test_kept_connection_waits_keepalive_not_the_head_timeout(quick_heads):
    """Between requests on one connection the wait is KEEPALIVE (75 s), not 1 s."""
    port = int(quick_heads.base.rsplit(":", 1)[1])
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(1.5)  # longer than REQUEST_HEAD_TIMEOUT: the kept connection stays
        sock.sendall(request)
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(4096)
    return data
