"""Every response names its request: ``X-Request-Id`` (and ``request-id`` on Anthropic
routes), the same id in the request's log line, and in Anthropic error bodies.

Called with the official SDKs, which read these headers, and with raw requests.
"""

from __future__ import annotations

import re
import time

import anthropic
import openai
import pytest
import requests

from tests.support.chat import user

GENERATED = re.compile(r"req_[0-9a-f]{32}")


def log_line(proxy, request_id: str, timeout: float = 5.0) -> str:
    """The request log's line that names ``request_id`` (it is written when the response ends)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in proxy.logs().splitlines():
            if " glm_proxy.request " in line and line.endswith(f"request_id={request_id}"):
                return line
        time.sleep(0.05)
    raise AssertionError(f"no log line ends with request_id={request_id}")


def test_openai_sdk_sees_the_id_and_the_log_has_it(client, proxy):
    completion = client.chat.completions.create(model="glm-4", messages=user("hello"))
    request_id = completion._request_id
    assert request_id and GENERATED.fullmatch(request_id)
    line = log_line(proxy, request_id)
    assert " POST /v1/chat/completions 200 " in line and "model=glm-4" in line


def test_each_request_gets_its_own_id(client):
    ids = {client.chat.completions.create(model="glm-4", messages=user("hi"))._request_id}
    ids.add(client.models.list().to_dict() and client.models.with_raw_response.list().request_id)
    ids.add(client.chat.completions.create(model="glm-4", messages=user("hi"))._request_id)
    assert len(ids) == 3 and all(GENERATED.fullmatch(i) for i in ids)


def test_a_stream_names_its_request(client, proxy):
    with client.chat.completions.with_streaming_response.create(
        model="glm-4", messages=user("hello"), stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        assert "".join(response.iter_lines())
    assert GENERATED.fullmatch(request_id)
    assert " 200 " in log_line(proxy, request_id)


def test_openai_error_carries_the_id(client, proxy):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="glm-4", messages=[{"role": "robot", "content": "x"}])
    request_id = caught.value.request_id
    assert request_id and GENERATED.fullmatch(request_id)
    assert "request_id" not in caught.value.body  # OpenAI's error object has no such field
    assert " 400 " in log_line(proxy, request_id)


def test_stream_failure_before_output_keeps_the_id(proxy, simulator, token):
    simulator.fault(token, "http_500", count=10)  # every attempt fails: a 502 before any output
    resp = requests.post(
        f"{proxy.v1}/chat/completions",
        json={"model": "glm-4", "stream": True, "messages": user("hi")},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert resp.status_code == 502
    request_id = resp.headers["X-Request-Id"]
    assert GENERATED.fullmatch(request_id)
    assert f" {resp.status_code} " in log_line(proxy, request_id)


def test_anthropic_sdk_sees_the_id(proxy, token):
    claude = anthropic.Anthropic(base_url=proxy.base, api_key=token, max_retries=0, timeout=30)
    message = claude.messages.create(
        model="glm-4", max_tokens=64, messages=[{"role": "user", "content": "hello"}]
    )
    assert message._request_id and GENERATED.fullmatch(message._request_id)
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model="glm-4", max_tokens=64, messages=[])
    error = caught.value
    assert GENERATED.fullmatch(error.request_id)
    assert error.body["request_id"] == error.request_id  # in the body too, as Anthropic's
    assert error.body["type"] == "error"
    assert " 400 " in log_line(proxy, error.request_id)


def test_unknown_anthropic_route_error_has_the_id(proxy):
    resp = requests.post(f"{proxy.base}/v1/messages/nope", json={}, timeout=5)
    assert resp.status_code == 404
    assert resp.json()["request_id"] == resp.headers["request-id"] == resp.headers["X-Request-Id"]


def test_front_proxy_id_is_kept(client, proxy, token):
    given = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"  # what Nginx's $request_id looks like
    raw = client.chat.completions.with_raw_response.create(
        model="glm-4", messages=user("hi"), extra_headers={"X-Request-Id": given}
    )
    assert raw.request_id == given
    assert " 200 " in log_line(proxy, given)


@pytest.mark.parametrize(
    "given",
    ["has space", "tab\there", "x" * 129, "-leading-dash", 'quote"d', "ünï"],
)
def test_odd_front_proxy_ids_are_replaced(proxy, given):
    resp = requests.get(
        f"{proxy.base}/ping", headers={"X-Request-Id": given.encode("utf-8")}, timeout=5
    )
    assert resp.status_code == 200
    assert GENERATED.fullmatch(resp.headers["X-Request-Id"])


def test_cors_headers_by_kind_of_request(client, proxy):
    origin = {"Origin": "http://app.example"}
    raw = client.chat.completions.with_raw_response.create(
        model="glm-4", messages=user("hi"), extra_headers=origin
    )
    headers = raw.headers
    assert headers["access-control-allow-origin"] == "*"
    exposed = [h.strip().lower() for h in headers["access-control-expose-headers"].split(",")]
    assert {"x-request-id", "request-id", "retry-after"} <= set(exposed)
    # Preflight-only fields (Fetch standard) are left off the actual answer.
    for name in ("access-control-allow-methods", "access-control-max-age"):
        assert name not in headers
    preflight = requests.options(
        f"{proxy.v1}/chat/completions",
        headers={**origin, "Access-Control-Request-Method": "POST"},
        timeout=5,
    )
    assert preflight.status_code == 204
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Max-Age"] == "86400"


def test_anthropic_stream_failure_before_output_names_one_id(proxy, simulator, token):
    simulator.fault(token, "http_500", count=10)  # every attempt fails: a 502 before any output
    resp = requests.post(
        f"{proxy.base}/v1/messages",
        json={"model": "glm-4", "max_tokens": 64, "stream": True, "messages": user("hi")},
        headers={"x-api-key": token, "anthropic-version": "2023-06-01"},
        timeout=30,
    )
    assert resp.status_code == 502
    request_id = resp.json()["request_id"]
    assert request_id == resp.headers["request-id"] == resp.headers["X-Request-Id"]
    assert " 502 " in log_line(proxy, request_id)


def test_responses_api_names_its_request(client, proxy):
    response = client.responses.create(model="glm-4", input="hello")
    assert GENERATED.fullmatch(response._request_id)
    assert " POST /v1/responses 200 " in log_line(proxy, response._request_id)
    with client.responses.with_streaming_response.create(
        model="glm-4", input="hello", stream=True
    ) as streamed:
        request_id = streamed.headers["x-request-id"]
        assert "".join(streamed.iter_lines())
    assert GENERATED.fullmatch(request_id) and request_id != response._request_id


def test_an_answers_own_log_lines_name_the_request(client, proxy, simulator, token):
    """A retry is logged by the answer's producer, in its own greenlet: same id."""
    simulator.fault(token, "http_500", count=1)  # one failed attempt, then the answer
    raw = client.chat.completions.with_raw_response.create(model="glm-4", messages=user("hi"))
    request_id = raw.request_id
    assert " 200 " in log_line(proxy, request_id)
    retries = [line for line in proxy.logs().splitlines() if "retrying after" in line]
    assert [line for line in retries if line.endswith(f"request_id={request_id}")]


def test_log_lines_name_the_request_they_were_written_for():
    """The filter alone: lines written under a request's id end with it, and only those."""
    import contextvars
    import io
    import logging

    from glm_proxy.observability.logs import REQUEST_LOG, NameTheRequest, ScrubSecrets
    from glm_proxy.observability.record import CURRENT_REQUEST_ID

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(NameTheRequest())
    handler.addFilter(ScrubSecrets())
    logger = logging.getLogger("glm_proxy.test_request_id")
    logger.addHandler(handler)
    REQUEST_LOG.addHandler(handler)
    levels = logger.level, REQUEST_LOG.level
    logger.setLevel(logging.INFO)
    REQUEST_LOG.setLevel(logging.INFO)

    def in_request() -> None:
        CURRENT_REQUEST_ID.set("req_abc")
        logger.info("retrying with %s", "Bearer sk-secret-value-123456")
        REQUEST_LOG.info("POST /v1/chat/completions 200 request_id=%s", "req_abc")

    def lines_around_a_request() -> None:
        logger.info("outside any request")
        contextvars.copy_context().run(in_request)
        logger.info("outside again")

    try:
        # In a context of its own: a WSGI call an earlier test never closed may
        # have left its id in this thread's context.
        contextvars.Context().run(lines_around_a_request)
    finally:
        logger.removeHandler(handler)
        REQUEST_LOG.removeHandler(handler)
        logger.setLevel(levels[0])
        REQUEST_LOG.setLevel(levels[1])
    lines = out.getvalue().splitlines()
    assert lines[0] == "outside any request" and lines[3] == "outside again"
    assert lines[1].startswith("retrying with Bearer ") and lines[1].endswith(" request_id=req_abc")
    assert "sk-secret-value-123456" not in lines[1]  # still scrubbed
    assert lines[2].count("request_id=") == 1  # the request's own line names it once


def test_the_id_ends_with_its_request():
    """Lines written after a request ended (the next ones on a kept-alive connection's
    greenlet, or anything else in that context) do not carry its id."""
    import contextvars

    from glm_proxy import create_app
    from glm_proxy.observability.record import CURRENT_REQUEST_ID

    app = create_app({"GLM_BASE_URL": "http://127.0.0.1:9", "ACCOUNTS": "rt-ended"})

    def one_request() -> tuple[str, str | None]:
        client = app.test_client()  # in this context, as a server's greenlet runs it
        response = client.get("/v1/nothing-here", headers={"X-Request-Id": "req_ended_1"})
        response.close()
        return response.headers["X-Request-Id"], CURRENT_REQUEST_ID.get()

    given, after = contextvars.copy_context().run(one_request)
    assert given == "req_ended_1"
    assert after is None


def test_two_handlers_name_the_request_once():
    import contextvars
    import io
    import logging

    from glm_proxy.observability.logs import NameTheRequest
    from glm_proxy.observability.record import CURRENT_REQUEST_ID

    outs = [io.StringIO(), io.StringIO()]
    handlers = [logging.StreamHandler(out) for out in outs]
    logger = logging.getLogger("glm_proxy.test_request_id.twice")
    for handler in handlers:
        handler.addFilter(NameTheRequest())
        logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:

        def in_request() -> None:
            CURRENT_REQUEST_ID.set("req_twice")
            logger.info("cooling down an account")

        contextvars.copy_context().run(in_request)
    finally:
        for handler in handlers:
            logger.removeHandler(handler)
        logger.setLevel(level)
    for out in outs:
        assert out.getvalue().strip() == "cooling down an account request_id=req_twice"
