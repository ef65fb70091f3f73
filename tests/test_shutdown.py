"""Graceful shutdown: SIGTERM lets an in-flight stream finish (gunicorn ``graceful_timeout``)."""

from __future__ import annotations

import signal
import subprocess

import requests

from tests.conftest import start_proxy, stop_proxy
from tests.test_chat import sse_events, user


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
