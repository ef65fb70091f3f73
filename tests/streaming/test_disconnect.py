"""Client disconnects at every stage of a stream leave no trace upstream.

A proxy with short header wait and keep-alive interval makes the stages quick to
reach: the client hangs up before any header, during the keep-alives that are
sent while the upstream is silent, or before the upstream sent its first event
(the one that names the conversation). In every case the upstream conversation
is deleted, no upstream stream stays active, and the account is free again.
"""

from __future__ import annotations

import socket
import time

import orjson
import pytest

from tests.conftest import start_proxy, stop_proxy
from tests.support.chat import SIM_TEXT, post, user


@pytest.fixture(scope="module")
def quick_proxy(simulator, tmp_path_factory):
    server = start_proxy(
        simulator,
        tmp_path_factory.mktemp("quick"),
        STREAM_HEADER_WAIT="0.3",
        KEEPALIVE_INTERVAL="0.3",
    )
    yield server
    stop_proxy(server)


def wait_clean(simulator, token: str, timeout: float = 20.0) -> dict:
    """The account once it has a deleted conversation, none alive and no active stream."""
    deadline = time.monotonic() + timeout
    account = simulator.account(token)
    while time.monotonic() < deadline:
        account = simulator.account(token)
        if (
            account.get("conversations_deleted")
            and not account.get("conversations_alive")
            and not account.get("active_streams")
        ):
            break
        time.sleep(0.1)
    return account


def hang_up_after_first_keepalive(proxy, token: str, prompt: str) -> None:
    resp = post(
        proxy, token, {"model": "glm-4", "stream": True, "messages": user(prompt)}, stream=True
    )
    assert resp.status_code == 200
    for line in resp.iter_lines():
        assert line == b": keep-alive", line  # nothing but keep-alives yet
        break
    resp.close()


def hang_up_before_headers(proxy, token: str, prompt: str) -> None:
    body = orjson.dumps({"model": "glm-4", "stream": True, "messages": user(prompt)})
    host, port = proxy.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )


@pytest.mark.parametrize(
    ("stage", "fault", "prompt"),
    [
        ("keep-alives, upstream silent after its headers", None, "x [[sim:slow wait=3]]"),
        ("keep-alives, upstream slow to send headers", "slow_first_byte", "x"),
        ("before any response header", None, "x [[sim:slow wait=3]]"),
    ],
)
def test_disconnect_before_the_first_upstream_event_leaves_no_conversation(
    quick_proxy, simulator, token, stage, fault, prompt
):
    if fault:
        simulator.fault(token, fault, count=1, seconds=3)
    if stage.startswith("before"):
        hang_up_before_headers(quick_proxy, token, prompt)
    else:
        hang_up_after_first_keepalive(quick_proxy, token, prompt)
    account = wait_clean(simulator, token)
    assert account["conversations_alive"] == [], stage
    assert len(account["conversations_deleted"]) == 1, stage
    assert account["active_streams"] == 0
    # the lease was released: the single account serves the next request
    resp = post(quick_proxy, token, {"model": "glm-4", "messages": user("again")})
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"].startswith(SIM_TEXT)
