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

import orjson
import pytest
from flask import request
from werkzeug.test import EnvironBuilder

from glm_proxy import create_app
from glm_proxy.errors import RateLimited
from glm_proxy.http.plumbing import error_response, request_record
from glm_proxy.observability import metrics
from glm_proxy.protocol.events import ConversationStarted, Finished, TextDelta
from glm_proxy.services import services
from glm_proxy.streaming.pump import respond
from glm_proxy.streaming.queue import Failure, JobDone
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
