"""Chat-completion helpers shared by the tests of every route: the simulator's default answer,
a raw POST, an SSE reader and the last stream request the simulator saw."""

from __future__ import annotations

import orjson
import requests

SIM_TEXT = "你好！这是模拟回答。Simulated answer 🚀"


def sse_events(resp: requests.Response) -> tuple[list[dict], list[bytes]]:
    """Parse a proxy SSE body into JSON payloads (and the raw lines, comments included)."""
    payloads, raw_lines = [], []
    for line in resp.iter_lines():
        raw_lines.append(line)
        if line.startswith(b"data: "):
            data = line[len(b"data: ") :]
            payloads.append({"done": True} if data == b"[DONE]" else orjson.loads(data))
    return payloads, raw_lines


def post(proxy, token, body, **kwargs):
    return requests.post(
        f"{proxy.v1}/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        **kwargs,
    )


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def last_stream_request(simulator, token: str) -> dict:
    entries = [
        r
        for r in simulator.requests_log("/assistant/stream")
        if r.get("account") == token and r.get("stream")
    ]
    assert entries, "the simulator saw no stream request for this account"
    return entries[-1]
