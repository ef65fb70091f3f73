"""A streamed answer's status is decided in the body's first step, after the view returned.

The app is the real one (its after-request hooks: CORS, the request log, the
metrics, a key's counters); the view is the real ``respond()`` over a job
whose queue the test feeds, so what happens before and after the first event
is seen exactly. End to end, through gunicorn and the SDKs, the same paths
are covered by the error and streaming tests.
"""

from __future__ import annotations

import gc
import time
import weakref

import gevent
import orjson
import pytest
from flask import request
from gevent import socket
from werkzeug.test import EnvironBuilder

from glm_proxy import create_app
from glm_proxy.api._streaming import respond
from glm_proxy.errors import RateLimited
from glm_proxy.observability import metrics
from glm_proxy.protocol.events import ConversationStarted, Finished, TextDelta
from glm_proxy.services import services
from glm_proxy.services.aborts import ClientGone
from glm_proxy.services.job_queue import Failure, JobDone
from glm_proxy.web import error_response, request_record
from tests.support.pump import HandFedJob, wire

ROUTE = "/v1/test-opening"


class Job(HandFedJob):
    def __init__(self) -> None:
        super().__init__()
        self.asked: list[float] = []
        self.wait_leased = lambda timeout=None: True  # type: ignore[method-assign]

    def opening_failure(self, header_wait: float):
        self.asked.append(header_wait)
        return super().opening_failure(header_wait)


@pytest.fixture
def served():
    """The app with one streaming view over the test's job; a key ``team`` with usage."""
    app = create_app(
        {
            "GLM_BASE_URL": "http://127.0.0.1:9",  # never asked: the job is hand-fed
            "API_KEYS": "team:sk-opening",
            "ACCOUNTS": "rt-opening",
            "CORS_ALLOW_ORIGINS": "*",
            "STREAM_HEADER_WAIT": "3",
            "TESTING": True,
        }
    )
    job = Job()

    def view():
        svc = services()
        caller = svc.auth.authenticate(request)
        record = request_record()
        svc.limits.admit(caller, record)
        return respond(
            job,
            wire(),
            stream=True,
            settings=svc.settings,
            record=record,
            error_response=error_response,
        )

    app.add_url_rule(ROUTE, view_func=view, methods=["POST"])
    return app, job


def call(app):
    """The app called as a server calls it: the body and what ``start_response`` got."""
    environ = EnvironBuilder(
        path=ROUTE,
        method="POST",
        json={},
        headers={"Authorization": "Bearer sk-opening", "Origin": "https://ui.example"},
    ).get_environ()
    heads: list[tuple[str, dict[str, str]]] = []
    started = time.monotonic()
    body = app(
        environ, lambda status, headers, exc_info=None: heads.append((status, dict(headers)))
    )
    return body, heads, time.monotonic() - started


def requests_counted(status: str) -> float:
    return metrics.REQUESTS.labels(ROUTE, "POST", status)._value.get()


def test_the_view_returns_before_the_first_event_and_the_status_follows_it(served) -> None:
    app, job = served
    body, heads, _ = call(app)
    assert heads == [] and job.asked == []  # the view did not wait: no status, no wait asked
    for item in (ConversationStarted("conv1", "m"), TextDelta("hello")):
        job.queue.put(item)
    first = next(body)
    assert job.asked == [3.0]
    [(status, headers)] = heads
    assert status == "200 OK"
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["Access-Control-Allow-Origin"] == "*"  # the after-request hooks ran
    assert b'"content":"hello"' in first
    before = requests_counted("200")
    job.queue.put(Finished("stop"))
    job.queue.put(JobDone())
    rest = b"".join(body)
    assert rest.endswith(b"data: [DONE]\n\n")
    body.close()
    assert job.cancels == 1
    assert requests_counted("200") == before + 1


def test_a_failure_before_the_first_event_keeps_its_status_log_and_counters(served) -> None:
    app, job = served
    limits = app.extensions["glm_services"].limits
    errors_before = limits.usage.window("team", 3600).get("errors", 0)
    counted_before = requests_counted("429")
    body, heads, _ = call(app)
    assert heads == []
    job.queue.put(Failure(RateLimited("every account is busy", headers={"Retry-After": "7"})))
    error = orjson.loads(b"".join(body))
    body.close()
    [(status, headers)] = heads
    assert status.startswith("429")
    assert headers["Content-Type"] == "application/json"
    assert headers["Retry-After"] == "7"
    assert headers["Access-Control-Allow-Origin"] == "*"  # kept from the stream's response
    assert "Cache-Control" not in headers and "X-Accel-Buffering" not in headers
    assert error["error"]["code"] == "rate_limit_exceeded"
    assert "every account is busy" in error["error"]["message"]
    # the request log's status, the metrics and the key's error counter all saw the 429
    assert requests_counted("429") == counted_before + 1
    assert limits.usage.window("team", 3600).get("errors", 0) == errors_before + 1


def test_a_body_never_started_still_ends_the_job_and_the_request(served) -> None:
    """A server that closes the body without iterating (the client left at once)."""
    app, job = served
    before = requests_counted("200")
    body, heads, _ = call(app)
    body.close()
    assert heads == [] and job.asked == []
    assert job.cancels == 1  # the lease and the conversation are let go
    assert requests_counted("200") == before + 1  # logged once, as the stream it was


def test_a_finished_stream_is_freed_without_the_collector(served) -> None:
    """No close callback holds its response (see tests/structure/test_no_cycles.py for why)."""
    app, job = served
    gc.collect()
    gc.disable()
    try:
        body, heads, _ = call(app)
        for item in (
            ConversationStarted("conv1", "m"),
            TextDelta("hi"),
            Finished("stop"),
            JobDone(),
        ):
            job.queue.put(item)
        assert b"".join(body).endswith(b"data: [DONE]\n\n")
        body.close()
        gone = weakref.ref(body._response)
        del body
        assert gone() is None
    finally:
        gc.enable()


def test_a_bug_while_waiting_for_the_first_event_is_a_500_error_object(served) -> None:
    """Raised in the body, it would reach the server, which answers with its own HTML page."""
    app, job = served

    def broken(header_wait: float):
        raise RuntimeError("a bug")

    job.opening_failure = broken  # type: ignore[method-assign]
    body, heads, _ = call(app)
    error = orjson.loads(b"".join(body))
    body.close()
    [(status, headers)] = heads
    assert status.startswith("500")
    assert headers["Content-Type"] == "application/json"
    assert error["error"]["message"] == "The server had an error while processing your request."
    assert job.cancels >= 1


class ServerResponse:
    """The parts of gunicorn's response object the opening and ``take_head`` use."""

    def __init__(self) -> None:
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.chunked = False
        self.headers_sent = False
        self.calls = 0

    def start_response(self, status, headers, exc_info=None):
        self.calls += 1
        self.status, self.headers, self.chunked = status, list(headers), True
        return lambda data: None

    def default_headers(self) -> list[str]:
        return [f"HTTP/1.1 {self.status}\r\n", "Transfer-Encoding: chunked\r\n"]


def call_behind_gunicorn(app, sock, response: ServerResponse):
    """The app called the way gunicorn calls it on HTTP/1.1 (the pump writes frames itself)."""
    environ = EnvironBuilder(
        path=ROUTE, method="POST", json={}, headers={"Authorization": "Bearer sk-opening"}
    ).get_environ()
    environ.update(
        {
            "SERVER_SOFTWARE": "gunicorn/27.0.1",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "gunicorn.socket": sock,
        }
    )
    return app(environ, response.start_response)


def test_the_producer_writes_the_head_with_the_first_deltas_itself(served) -> None:
    """No wake-up of the waiting greenlet between the first deltas and their write."""
    app, job = served
    server, client = socket.socketpair()
    response = ServerResponse()
    try:
        body = call_behind_gunicorn(app, server, response)
        opener = gevent.spawn(next, body)  # the server starts the body: the opening wait
        gevent.sleep(0.01)
        assert response.calls == 0 and job.sink is not None  # undecided; the sink is lent
        job.put(ConversationStarted("conv1", "m"))
        job.put(TextDelta("hello"))
        job.flush()  # the producer's end of one upstream read: no switch since
        client.setblocking(False)
        sent = client.recv(65536)  # already on the wire, in one write
        head, _, chunk = sent.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n")
        assert b'"role":"assistant"' in chunk and b'"content":"hello"' in chunk
        assert response.calls == 1 and response.headers_sent  # gunicorn sends no second head
        assert not opener.ready()
        assert opener.get(timeout=5) == b""  # the opener has nothing left to send
        assert response.calls == 1  # nobody started the response twice
        job.put(Finished("stop"))
        job._put_final(JobDone())
        assert b"".join(body) == b""  # every frame went out on the connection itself
        client.setblocking(True)
        client.settimeout(5)
        rest = b""
        while b"[DONE]" not in rest:
            rest += client.recv(65536)
        assert b'"finish_reason":"stop"' in rest and not rest.startswith(b"HTTP/")
        body.close()
        assert job.cancels == 1
    finally:
        server.close()
        client.close()


def test_a_failed_opening_write_ends_the_answer_as_a_failed_write(served) -> None:
    app, job = served
    server, client = socket.socketpair()
    response = ServerResponse()
    try:
        body = call_behind_gunicorn(app, server, response)
        opener = gevent.spawn(next, body)
        gevent.sleep(0.01)
        client.close()  # the client left
        job.put(TextDelta("hello"))
        with pytest.raises(ClientGone):
            job.flush()  # the producer learns it at once: cleanup stops the upstream
        job._put_final(Failure(ClientGone("the client closed the connection")))
        assert opener.get(timeout=5) == b""
        with pytest.raises(OSError):
            next(body)  # as for any failed write: the server drops the connection
        body.close()
        assert job.cancels == 1
    finally:
        server.close()


def test_deltas_wait_for_the_pump_when_the_server_keeps_its_head(served) -> None:
    """A response whose head this server sends itself (no chunked body here): nothing is lost."""
    app, job = served
    server, client = socket.socketpair()
    response = ServerResponse()
    response.default_headers = None  # type: ignore[assignment] - take_head cannot build it
    try:
        body = call_behind_gunicorn(app, server, response)
        opener = gevent.spawn(next, body)
        gevent.sleep(0.01)
        job.put(TextDelta("hello"))
        job.flush()
        assert response.calls == 1 and not response.headers_sent
        assert opener.get(timeout=5) == b""  # the server's write of nothing: its head
        job._put_final(JobDone())
        assert b"".join(body) == b""
        client.settimeout(5)
        sent = b""
        while b"[DONE]" not in sent:
            sent += client.recv(65536)
        assert sent.count(b'"content":"hello"') == 1 and not sent.startswith(b"HTTP/")
        body.close()
    finally:
        server.close()
        client.close()
