"""Hostile request framing against the real server: bodies, chunked encoding, heads.

Every case answers a JSON error object with a 4xx, in the route's shape, and
does not keep the connection (or the worker) waiting for bytes that will
never come. Raw sockets send what HTTP libraries refuse to.
"""

from __future__ import annotations

import threading

import orjson
import pytest
import requests

from tests.conftest import start_proxy, stop_proxy
from tests.support.rawhttp import chunked, exchange, request_bytes
from tests.support.waiting import accepted_connections, wait_until

BODY_TIMEOUT = 1.5
BODY_CAP = 64 * 1024


@pytest.fixture(scope="module")
def tight(simulator, tmp_path_factory):
    server = start_proxy(
        simulator,
        tmp_path_factory.mktemp("limits"),
        MAX_REQUEST_BODY=str(BODY_CAP),
        REQUEST_BODY_TIMEOUT=str(BODY_TIMEOUT),
    )
    yield server
    stop_proxy(server)


def chat_head(token: str, **extra: str) -> dict[str, str]:
    return {
        "Host": "127.0.0.1",
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        **extra,
    }


def openai_error(resp) -> dict:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def small_request(text: str = "hi") -> bytes:
    return orjson.dumps({"model": "glm-4", "messages": [{"role": "user", "content": text}]})


# -- chunked bodies ---------------------------------------------------------------------

BAD_CHUNKED = {
    "invalid size": b"zz\r\nabc\r\n0\r\n\r\n",
    "negative size": b"-5\r\nabc\r\n0\r\n\r\n",
    "missing CRLF after data": b"3\r\nabcXY0\r\n\r\n",
    "huge chunk extension": b"3;" + b"x" * 200_000 + b"\r\nabc\r\n0\r\n\r\n",
    "malformed chunk extension": b"3;=\x01\r\nabc\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("case", sorted(BAD_CHUNKED))
def test_malformed_chunked_body_is_400_json(tight, token, case):
    head = chat_head(token, **{"Transfer-Encoding": "chunked"})
    resp = exchange(
        tight.base, request_bytes("POST", "/v1/chat/completions", head, b"") + BAD_CHUNKED[case]
    )
    assert resp.status == 400, resp.body
    error = openai_error(resp)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_body"
    assert resp.closed  # where the next request would start is unknown


def test_malformed_chunked_body_on_anthropic_route_has_anthropic_shape(tight, token):
    head = chat_head(token, **{"Transfer-Encoding": "chunked", "anthropic-version": "2023-06-01"})
    resp = exchange(tight.base, request_bytes("POST", "/v1/messages", head, b"zz\r\nabc\r\n"))
    assert resp.status == 400
    body = resp.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"


def test_chunked_body_over_the_cap_is_413(tight, token):
    text = "x" * (BODY_CAP + 1000)
    payload = small_request(text)
    pieces = [payload[i : i + 8192] for i in range(0, len(payload), 8192)]
    head = chat_head(token, **{"Transfer-Encoding": "chunked"})
    resp = exchange(
        tight.base, request_bytes("POST", "/v1/chat/completions", head) + chunked(*pieces)
    )
    assert resp.status == 413, resp.body
    error = openai_error(resp)
    assert "MAX_REQUEST_BODY" in error["message"]
    assert str(BODY_CAP) in error["message"]


def test_well_formed_chunked_body_is_served(tight, token):
    payload = small_request()

    def pieces():
        yield payload[:10]
        yield payload[10:]

    resp = requests.post(
        f"{tight.v1}/chat/completions",
        data=pieces(),  # requests sends a generator with Transfer-Encoding: chunked
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["message"]["content"]


# -- slow and short bodies --------------------------------------------------------------


def test_body_shorter_than_content_length_is_408_promptly(tight, token):
    payload = small_request()
    head = chat_head(token, **{"Content-Length": str(len(payload) + 500)})
    resp = exchange(tight.base, request_bytes("POST", "/v1/chat/completions", head, payload))
    assert resp.status == 408, resp.body
    error = openai_error(resp)
    assert error["code"] == "request_timeout"
    assert "REQUEST_BODY_TIMEOUT" in error["message"]
    assert resp.closed  # the connection is not held open for the missing bytes


def test_body_dripped_slowly_is_cut_at_the_deadline(tight, token):
    payload = small_request("y" * 200)
    head = chat_head(token, **{"Content-Length": str(len(payload))})
    pieces = [request_bytes("POST", "/v1/chat/completions", head)]
    pieces += [payload[i : i + 4] for i in range(0, len(payload), 4)]
    resp = exchange(tight.base, pieces, pause=0.2)
    assert resp.status == 408, resp.body
    assert resp.sent < len(pieces)  # cut at the deadline, not read to the end of the drip


def test_server_keeps_serving_while_bodies_stall(tight, token):
    payload = small_request()
    head = chat_head(token, **{"Content-Length": str(len(payload) + 10)})
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                exchange(tight.base, request_bytes("POST", "/v1/chat/completions", head, payload))
            )
        )
        for _ in range(20)
    ]
    for thread in threads:
        thread.start()
    wait_until(lambda: accepted_connections(tight) >= 20, 20, "the 20 stalled bodies")
    assert requests.get(f"{tight.base}/healthz", timeout=5).status_code == 200
    assert len(results) < 20  # answered while stalled bodies were still held, not after them
    for thread in threads:
        thread.join(timeout=20)
    assert [r.status for r in results] == [408] * 20


def test_content_length_over_the_cap_is_413_without_reading(tight, token):
    head = chat_head(token, **{"Content-Length": str(50 * 1024**2)})
    resp = exchange(tight.base, request_bytes("POST", "/v1/chat/completions", head, b"{"))
    assert resp.status == 413
    assert "MAX_REQUEST_BODY" in openai_error(resp)["message"]
    assert resp.closed


# -- request line and headers -----------------------------------------------------------


def json_error_page(resp) -> dict:
    """What gunicorn answers itself (see glm_proxy/http/wire_errors.py): JSON, never HTML."""
    assert resp.headers["content-type"] == "application/json", resp.body
    body = resp.json()
    assert body["type"] == "error"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert resp.closed
    return body["error"]


def get(path: str, extra: list[tuple[str, str]] = ()) -> bytes:
    return request_bytes("GET", path, [("Host", "127.0.0.1"), *extra])


def test_long_request_target_is_414_json_from_the_app(tight):
    resp = exchange(tight.base, get("/v1/models?q=" + "a" * 5000))
    assert resp.status == 414, resp.body
    error = openai_error(resp)
    assert error["code"] == "uri_too_long" and "MAX_URL_LENGTH" in error["message"]


def test_long_request_target_on_anthropic_route_has_anthropic_shape(tight, token):
    head = chat_head(token, **{"Content-Length": "2"})
    resp = exchange(tight.base, request_bytes("POST", "/v1/messages?" + "a" * 5000, head, b"{}"))
    assert resp.status == 414
    assert resp.json()["type"] == "error"


def test_request_line_past_gunicorn_limit_is_414_json(tight):
    resp = exchange(tight.base, get("/v1/models?q=" + "a" * 20000))
    assert resp.status == 414
    assert json_error_page(resp)["code"] == "uri_too_long"


def test_one_large_header_is_431_json_naming_it(tight):
    resp = exchange(tight.base, get("/v1/models", [("X-Big", "a" * 16500)]))
    assert resp.status == 431, resp.body
    error = openai_error(resp)
    assert error["param"] == "X-Big" and "MAX_HEADER_SIZE" in error["message"]
    huge = exchange(tight.base, get("/v1/models", [("X-Big", "a" * 200_000)]))
    assert huge.status == 431
    json_error_page(huge)


def test_too_many_headers_is_431_json(tight):
    many = [(f"X-H{i}", "1") for i in range(110)]
    resp = exchange(tight.base, get("/v1/models", many))
    assert resp.status == 431, resp.body
    assert "MAX_HEADERS" in openai_error(resp)["message"]
    lots = exchange(tight.base, get("/v1/models", [(f"X-H{i}", "1") for i in range(1000)]))
    assert lots.status == 431
    json_error_page(lots)


FRAMING = {
    "two content-lengths": [("Content-Length", "2"), ("Content-Length", "3")],
    "content-length and chunked": [("Content-Length", "2"), ("Transfer-Encoding", "chunked")],
    "chunked twice": [("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked")],
    "negative content-length": [("Content-Length", "-1")],
    "content-length not a number": [("Content-Length", "2x")],
}


@pytest.mark.parametrize("case", sorted(FRAMING))
def test_conflicting_framing_headers_get_a_json_400(tight, token, case):
    head = [("Host", "x"), ("Authorization", f"Bearer {token}"), *FRAMING[case]]
    resp = exchange(tight.base, request_bytes("POST", "/v1/chat/completions", head, b"{}"))
    assert resp.status == 400, resp.body
    json_error_page(resp)


def test_control_character_in_a_header_gets_a_json_400(tight):
    raw = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n"
    resp = exchange(tight.base, raw)
    assert resp.status == 400
    json_error_page(resp)


def test_unsupported_transfer_coding_gets_json(tight, token):
    head = [("Host", "x"), ("Authorization", f"Bearer {token}"), ("Transfer-Encoding", "gzip")]
    resp = exchange(tight.base, request_bytes("POST", "/v1/chat/completions", head, b"{}"))
    assert resp.status in (400, 501)
    json_error_page(resp)


def test_an_unread_body_is_not_waited_for_after_an_early_error(tight):
    """A 401 before the body is read: the connection closes instead of gunicorn
    waiting (up to the keep-alive timeout) for the bytes the client promised."""
    head = {"Host": "x", "Content-Type": "application/json", "Content-Length": "100000"}
    resp = exchange(tight.base, request_bytes("POST", "/v1/chat/completions", head, b'{"a"'))
    assert resp.status == 401
    assert resp.closed


def test_the_connection_stays_open_after_a_fully_read_body(tight, token):
    payload = small_request()
    head = chat_head(token, **{"Content-Length": str(len(payload))})
    resp = exchange(tight.base, request_bytes("POST", "/v1/chat/completions", head, payload))
    assert resp.status == 200
    assert not resp.closed  # kept alive for the next request
    unauthorised = exchange(
        tight.base,
        request_bytes("POST", "/v1/chat/completions", {"Host": "x", "Content-Length": "2"}, b"{}"),
    )
    assert unauthorised.status == 401
    assert not unauthorised.closed  # the body had fully arrived: nothing to wait for
