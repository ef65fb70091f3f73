"""Graceful shutdown: SIGTERM lets an in-flight stream finish (gunicorn ``graceful_timeout``)."""

from __future__ import annotations

import signal
import subprocess
import threading

import orjson
import requests

from tests.conftest import start_proxy, stop_proxy
from tests.support.chat import sse_events, user
from tests.support.waiting import accepted_connections, wait_until


def test_sigterm_lets_an_in_flight_stream_finish(simulator, tmp_path, token):
    server = start_proxy(simulator, tmp_path)
    try:
        resp = requests.post(
            f"{server.v1}/chat/completions",
            json={
                "model": "glm-4",
                "stream": True,
                "messages": user("[[sim:long n=30 delay=0.05]]"),
            },
            # Connection: close leaves no idle keep-alive connection for shutdown to wait on
            headers={"Authorization": f"Bearer {token}", "Connection": "close"},
            stream=True,
            timeout=30,
        )
        assert resp.status_code == 200
        lines = resp.iter_lines()
        for line in lines:
            if line.startswith(b"data: {"):
                break
        server.proc.send_signal(signal.SIGTERM)  # what Render/Heroku send on a redeploy
        payloads, _ = sse_events(_Rest(lines))
        assert payloads[-1] == {"done": True}
        text = "".join(
            p["choices"][0]["delta"].get("content") or "" for p in payloads if p.get("choices")
        )
        assert "第30句" in text
        assert server.proc.wait(timeout=30) == 0
    except subprocess.TimeoutExpired:
        raise AssertionError("the server did not exit after the stream finished") from None
    finally:
        if server.proc.poll() is None:
            stop_proxy(server)
    assert simulator.wait_deleted(token)["conversations_alive"] == []


class _Rest:
    """The remaining lines of a response, in the shape ``sse_events`` reads."""

    def __init__(self, lines) -> None:
        self._lines = lines

    def iter_lines(self):
        return self._lines


def test_sigterm_ends_long_streams_before_the_grace_period_and_refuses_queued(
    simulator, tmp_path, token
):
    """A stream longer than the grace period ends with a retry-able error and [DONE];
    a request waiting for the same account gets 503 + Retry-After at once; the
    conversation is deleted and the worker exits on its own."""
    server = start_proxy(simulator, tmp_path, GRACEFUL_TIMEOUT="5", SHUTDOWN_MARGIN="2")
    headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
    try:
        resp = requests.post(
            f"{server.v1}/chat/completions",
            json={
                "model": "glm-4",
                "stream": True,
                "messages": user("[[sim:long n=400 delay=0.05]]"),  # 20 s, past the grace
            },
            headers=headers,
            stream=True,
            timeout=30,
        )
        assert resp.status_code == 200
        lines = resp.iter_lines()
        for line in lines:
            if line.startswith(b"data: {"):
                break
        queued: dict = {}

        def wait_in_line() -> None:
            r = requests.post(
                f"{server.v1}/chat/completions",
                json={"model": "glm-4", "messages": user("hi")},
                headers=headers,
                timeout=30,
            )
            queued.update(status=r.status_code, headers=r.headers, body=r.json())

        waiter = threading.Thread(target=wait_in_line)
        waiter.start()
        # the second request is in the worker now, waiting for the only account
        wait_until(lambda: accepted_connections(server) >= 2, 10, "the second request")
        server.proc.send_signal(signal.SIGTERM)
        waiter.join(timeout=10)
        assert queued["status"] == 503
        assert queued["body"]["error"]["code"] == "server_restarting"
        assert int(queued["headers"]["Retry-After"]) >= 1
        # refused at once, not at the deadline: the long answer was still running upstream
        assert simulator.account(token)["conversations_alive"]

        payloads, _ = sse_events(_Rest(lines))
        assert payloads[-1] == {"done": True}
        error = payloads[-2]["error"]  # at GRACEFUL_TIMEOUT - SHUTDOWN_MARGIN, before the kill
        assert error["code"] == "server_restarting" and "retry" in error["message"]
        text = "".join(
            p["choices"][0]["delta"].get("content") or "" for p in payloads if p.get("choices")
        )
        assert "第1句" in text and "第400句" not in text
        assert server.proc.wait(timeout=15) == 0
    finally:
        if server.proc.poll() is None:
            stop_proxy(server)
    assert simulator.wait_deleted(token)["conversations_alive"] == []
    assert "Worker graceful timeout" not in server.logs()  # nothing was left to kill
    stops = [x for x in simulator.state()["stops"] if x["account"] == token]
    # The upstream answer was asked to stop, once. Whether the simulator still counted it
    # as running is a race: the restart interrupts the upstream read, and urllib3 closes
    # the socket on an interrupted read before cleanup sends the stop call.
    assert len(stops) == 1


def test_sigterm_deadline_ends_anthropic_streams_and_non_stream_answers(simulator, tmp_path, token):
    """At the deadline an Anthropic stream gets a final ``event: error`` and a running
    non-stream request gets 503 + Retry-After; both conversations are deleted."""
    other = token + "-b"
    server = start_proxy(simulator, tmp_path, GRACEFUL_TIMEOUT="4", SHUTDOWN_MARGIN="2")
    try:
        stream = requests.post(
            f"{server.v1}/messages",
            json={
                "model": "glm-4",
                "max_tokens": 100_000,  # honoured: must not end the long answer first
                "stream": True,
                "messages": user("[[sim:long n=400 delay=0.05]]"),
            },
            headers={"x-api-key": token, "Connection": "close"},
            stream=True,
            timeout=30,
        )
        assert stream.status_code == 200
        lines = stream.iter_lines()
        for line in lines:
            if line.startswith(b"event: content_block_delta"):
                break
        result: dict = {}

        def non_stream() -> None:
            r = requests.post(
                f"{server.v1}/chat/completions",
                json={"model": "glm-4", "messages": user("[[sim:long n=400 delay=0.05]]")},
                headers={"Authorization": f"Bearer {other}", "Connection": "close"},
                timeout=30,
            )
            result.update(status=r.status_code, headers=r.headers, body=r.json())

        waiter = threading.Thread(target=non_stream)
        waiter.start()
        # it is answering now (leased, its upstream conversation open), not queued
        wait_until(lambda: simulator.account(other).get("conversations_alive"), 10, "the answer")
        server.proc.send_signal(signal.SIGTERM)
        rest = list(lines)
        waiter.join(timeout=15)
        events = [line for line in rest if line.startswith(b"event: ")]
        assert events[-1] == b"event: error"
        last = orjson.loads(rest[rest.index(b"event: error") + 1][len(b"data: ") :])
        assert last["error"]["type"] == "overloaded_error" and "retry" in last["error"]["message"]
        assert result["status"] == 503
        assert result["body"]["error"]["code"] == "server_restarting"
        assert "Retry-After" in result["headers"]
        assert server.proc.wait(timeout=15) == 0
    finally:
        if server.proc.poll() is None:
            stop_proxy(server)
    for t in (token, other):
        assert simulator.wait_deleted(t)["conversations_alive"] == []
