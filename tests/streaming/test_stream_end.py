"""A streamed answer's end leaves in one write: the last deltas, the format's end, the last chunk.

Before, the end of every streamed answer took three writes, each waking the
client: the producer's last deltas (the finish reason), then the pump's
``[DONE]``, then gunicorn's last chunk (``0\\r\\n\\r\\n``). Now the read that
ended the upstream answer is not flushed to the sink; its deltas go through
the queue just before ``JobDone``, and the pump writes them, the end and the
body's last chunk together, having told gunicorn the body is complete.

The server side is gunicorn's real response object (over a socket that keeps
each ``send`` apart), so a gunicorn whose response would still write the last
chunk, or would close the kept-alive connection, fails these tests.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace
from urllib.parse import urlsplit

import gevent
import orjson
import pytest
from gunicorn.config import Config
from gunicorn.http import wsgi
from gunicorn.http.parser import RequestParser

from glm_proxy.api._chunked import LAST_CHUNK, end_body
from glm_proxy.api._streaming import _pump
from glm_proxy.errors import UpstreamError
from glm_proxy.observability.record import RequestRecord
from glm_proxy.protocol.events import Finished, TextDelta
from glm_proxy.protocol.translate import TranslateOptions
from glm_proxy.services.job_queue import Failure, JobDone
from glm_proxy.services.producer import Attempt
from tests.support.e3_frames import growing
from tests.support.e3_frames import wire as upstream_wire
from tests.support.pump import HandFedJob, RecordingSocket, wire
from tests.support.rawhttp import _read_response


def gunicorn_response(sock: RecordingSocket, extra_head: bytes = b""):
    """gunicorn's own response object for a parsed request, its ``start_response`` called."""
    cfg = Config()
    raw = b"POST /v1/x HTTP/1.1\r\nHost: 127.0.0.1\r\n%bContent-Length: 0\r\n\r\n" % extra_head
    req = next(RequestParser(cfg, iter([raw]), ("127.0.0.1", 1)))
    response, _ = wsgi.create(req, sock, ("127.0.0.1", 1), ("127.0.0.1", 8000), cfg)
    response.start_response("200 OK", [("Content-Type", "text/event-stream")])
    return response


def pump_started():
    """A pump behind gunicorn's response, one delta written (with the head); the sink lent."""
    sock = RecordingSocket()
    response = gunicorn_response(sock)
    job = HandFedJob()
    job.queue.put(TextDelta("a"))
    gen = _pump(job, wire(), 5.0, RequestRecord(), 5.0, sock, sock, response.start_response)
    runner = gevent.spawn(list, gen)
    gevent.sleep(0.01)
    return sock, response, job, runner


def test_the_last_event_carries_the_last_chunk_and_gunicorn_adds_nothing() -> None:
    sock, response, job, runner = pump_started()
    assert len(sock.sends) == 1 and sock.sends[0].startswith(b"HTTP/1.1 200 OK")
    job.put(Finished("stop"))  # the last read's delta, kept (the sink is lent)
    job._put_final(JobDone())
    runner.join(timeout=5)
    assert runner.successful() and runner.value == []  # nothing for the server to write
    assert len(sock.sends) == 2, sock.sends  # the whole end in one write
    last = sock.sends[1]
    assert b'"finish_reason":"stop"' in last
    assert last.endswith(b"data: [DONE]\n\n\r\n" + LAST_CHUNK)
    response.close()  # what gunicorn does after the body
    assert len(sock.sends) == 2, "gunicorn wrote the last chunk a second time"
    assert not response.should_close()  # the connection is kept alive as for any chunked body


def test_a_failure_carries_the_last_chunk_too() -> None:
    sock, response, job, runner = pump_started()
    job._put_final(Failure(UpstreamError("the upstream broke")))
    runner.join(timeout=5)
    assert runner.successful()
    assert b"the upstream broke" in sock.sends[-1] and sock.sends[-1].endswith(LAST_CHUNK)
    response.close()
    assert sum(s.count(LAST_CHUNK) for s in sock.sends) == 1


def test_a_closing_connection_is_still_closed() -> None:
    """``Connection: close`` from the client: ending the body ourselves keeps that decision."""
    sock = RecordingSocket()
    response = gunicorn_response(sock, b"Connection: close\r\n")
    job = HandFedJob()
    job.queue.put(TextDelta("a"))
    job.queue.put(JobDone())
    gen = _pump(job, wire(), 5.0, RequestRecord(), 5.0, sock, sock, response.start_response)
    assert list(gen) == []
    response.close()
    assert sock.sends[-1].endswith(LAST_CHUNK) and response.should_close()


class NotGunicorns:
    def start_response(self, status, headers, exc_info=None):
        return None


@pytest.mark.parametrize(
    "case",
    ["no server response", "not gunicorn's", "head not sent", "content length", "not chunked"],
)
def test_the_server_ends_the_body_itself_when_it_must(case: str) -> None:
    sock = RecordingSocket()
    response = gunicorn_response(sock)
    start_response = response.start_response
    if case == "no server response":
        start_response = None
    elif case == "not gunicorn's":
        start_response = NotGunicorns().start_response
    elif case == "head not sent":
        pass  # nobody took or sent the head yet
    elif case == "content length":
        response.headers_sent, response.response_length = True, 10
    else:
        response.headers_sent, response.chunked = True, False
    before = vars(response).copy() if start_response is response.start_response else None
    assert end_body(start_response) == b""
    if before is not None:
        assert vars(response) == before  # untouched: gunicorn ends it as usual


class Upstream:
    """The parts of ``UpstreamClient`` an attempt reads an answer with; reads as given."""

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    def open_stream(self, account, payload, referer=None):
        return SimpleNamespace(close=lambda: None)

    def iter_stream(self, response):
        yield from self.reads


def attempt_over(reads: list[bytes]) -> tuple[Attempt, HandFedJob, list[list]]:
    job = HandFedJob()
    job.services = SimpleNamespace(upstream=Upstream(reads))
    job.request = SimpleNamespace(
        make_filter=None, referer=None, translate_options=TranslateOptions(), buffered=False
    )
    written: list[list] = []
    job.sink = written.append  # the pump waits: the sink is lent
    return Attempt(job, account=None), job, written


def test_each_upstream_read_is_flushed_as_it_comes() -> None:
    """Each upstream read's deltas go out together, before the next wait."""
    frames = growing("text", "Hello, world.", steps=3)
    attempt, job, written = attempt_over([upstream_wire(frames[:2]), upstream_wire(frames[2:])])
    upstream = job.services.upstream
    upstream.open_stream = lambda *args, **kwargs: SimpleNamespace(close=lambda: None)
    upstream.iter_stream = lambda response: iter(upstream.reads)
    attempt._read({}, final=True)
    assert len(written) == 2


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
