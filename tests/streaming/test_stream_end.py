"""A streamed answer's end: every format ends its body once, and the connection lives on.

The pump yields the answer's last deltas, the format's end and nothing after
it; gunicorn ends the chunked body. Through the real server a body that ends
twice, or leaves bytes behind, breaks the next request on the same kept-alive
connection, which these tests send.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace
from urllib.parse import urlsplit

import orjson

from glm_proxy.protocol.translate import TranslateOptions
from glm_proxy.services.producer import Attempt
from tests.support.e3_frames import growing
from tests.support.e3_frames import wire as upstream_wire
from tests.support.pump import HandFedJob
from tests.support.rawhttp import _read_response


class Upstream:
    """The parts of ``UpstreamClient`` an attempt reads an answer with; reads as given."""

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    def open_stream(self, account, payload, referer=None):
        return SimpleNamespace(close=lambda: None)

    def iter_stream(self, response):
        yield from self.reads


def test_each_upstream_read_is_queued_before_the_next_wait() -> None:
    """The producer queues a read's deltas at once: the pump can send them while it waits."""
    frames = growing("text", "Hello, world.", steps=3)
    job = HandFedJob()
    queued: list[int] = []
    reads = [upstream_wire(frames[:2]), upstream_wire(frames[2:])]

    def iter_stream(response):
        for read in reads:
            yield read
            queued.append(job.queue.qsize())  # the producer would wait for the next read here

    job.services = SimpleNamespace(upstream=Upstream(reads))
    job.services.upstream.iter_stream = iter_stream
    job.request = SimpleNamespace(
        make_filter=None, referer=None, translate_options=TranslateOptions(), buffered=False
    )
    Attempt(job, account=None)._read({}, final=True)
    assert len(queued) == 2 and 0 < queued[0] < queued[1]


def _post(path: str, token: str, body: dict, anthropic: bool = False) -> bytes:
    payload = orjson.dumps(body)
    auth = (
        f"x-api-key: {token}\r\nanthropic-version: 2023-06-01\r\n"
        if anthropic
        else f"Authorization: Bearer {token}\r\n"
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    return head.encode("latin-1") + payload


def test_every_format_ends_its_stream_cleanly_on_one_kept_alive_connection(proxy, token) -> None:
    """Through gunicorn: each body ends once, nothing is left over, the next request is served."""
    prompt = "ends [[sim:long n=5 chars=100 delay=0.01]]"
    user = [{"role": "user", "content": prompt}]
    requests_in_turn = [
        ("/v1/chat/completions", {"model": "glm-4", "stream": True, "messages": user}, False),
        (
            "/v1/messages",
            {"model": "glm-4", "max_tokens": 200, "stream": True, "messages": user},
            True,
        ),
        ("/v1/responses", {"model": "glm-4", "stream": True, "input": prompt}, False),
        (  # output, then the upstream fails: the error event ends the body
            "/v1/chat/completions",
            {
                "model": "glm-4",
                "stream": True,
                "messages": [{"role": "user", "content": "x [[sim:error]]"}],
            },
            False,
        ),
        ("/v1/chat/completions", {"model": "glm-4", "messages": user}, False),
    ]
    parts = urlsplit(proxy.base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    try:
        payloads = []
        for path, body, anthropic in requests_in_turn:
            sock.sendall(_post(path, token, body, anthropic))
            head, payload, rest = _read_response(sock, b"")
            assert head.startswith(b"HTTP/1.1 200"), (path, head[:200])
            assert rest == b"", f"bytes after the body of {path}: {rest[:80]!r}"
            if body.get("stream"):
                assert b"transfer-encoding: chunked" in head.lower()
                assert payload.endswith(b"\n\n"), payload[-120:]  # whole events only
            payloads.append(payload)
        assert b"message_stop" in payloads[1] and b"response.completed" in payloads[2]
        assert b'data: {"error"' in payloads[3]  # the failure is the last event
        assert orjson.loads(payloads[4])["choices"][0]["message"]["content"]
    finally:
        sock.close()
