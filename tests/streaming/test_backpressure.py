"""Clients that stop reading: bounded buffering, then the answer is ended.

Runs the real server with a short ``STREAM_STALL_TIMEOUT``. The client is a
raw socket with a tiny receive buffer that sends one long streaming request
and then does not read: the proxy must stop reading the upstream, end the
answer after the stall timeout, delete the upstream conversation while the
client is still connected, and close the connection.
"""

from __future__ import annotations

import socket

import orjson
import pytest

from tests.conftest import start_proxy, stop_proxy
from tests.support.waiting import wait_until

SENTENCES = 5000


@pytest.fixture(scope="module")
def stall_proxy(simulator, tmp_path_factory):
    server = start_proxy(
        simulator,
        tmp_path_factory.mktemp("stall"),
        STREAM_STALL_TIMEOUT="2",
        STREAM_QUEUE_ITEMS="8",
        STREAM_SEND_BUFFER="16K",
    )
    yield server
    stop_proxy(server)


def open_stalled(server, token: str, prompt: str) -> socket.socket:
    port = int(server.base.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", port))
    body = orjson.dumps(
        {"model": "glm-4", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    )
    sock.sendall(
        (
            "POST /v1/chat/completions HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    return sock


def read_all(sock: socket.socket, timeout: float = 20.0) -> tuple[bytes, bool]:
    """Everything the server sent, and whether it closed the connection."""
    sock.settimeout(timeout)
    data = bytearray()
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        return bytes(data), True
    except TimeoutError:
        return bytes(data), False
    return bytes(data), True


def test_a_stalled_client_ends_the_answer_and_its_conversation(stall_proxy, simulator, token):
    prompt = f"[[sim:long n={SENTENCES} delay=0.001 shape=delta]]"
    sock = open_stalled(stall_proxy, token, prompt)
    try:
        # The client reads nothing. Within the stall timeout (plus the watch's
        # tick) the proxy gives up: the conversation goes while we still hold
        # the connection open.
        account = wait_until(
            lambda: (a := simulator.account(token)).get("conversations_deleted") and a,
            60,
            "the stalled answer's conversation to be deleted",
        )
        assert account.get("conversations_alive") == []
        data, closed = read_all(sock)
    finally:
        sock.close()
    assert closed, "the proxy kept the stalled connection open"
    assert data.startswith(b"HTTP/1.1 200")
    assert f"第{SENTENCES}句".encode() not in data  # the answer was cut, not delivered
    assert b"[DONE]" not in data
    assert "client stopped reading" in stall_proxy.logs()
    # the upstream was asked to stop the answer (it may already have written all of
    # it into the socket buffers between it and the proxy)
    stops = [x for x in simulator.state()["stops"] if x["account"] == token]
    assert len(stops) == 1 and stops[0]["history_id"]


def test_a_reading_client_still_gets_the_whole_long_answer(stall_proxy, simulator, token):
    sock = open_stalled(stall_proxy, token, "[[sim:long n=300 delay=0.001 shape=delta]]")
    try:
        data, _ = read_all(sock, timeout=5)
    finally:
        sock.close()
    assert "第300句".encode() in data and b"data: [DONE]" in data
    assert simulator.wait_deleted(token)["conversations_alive"] == []
