"""The lean upstream HTTP client (``upstream/fast_http.py``): the request it writes,
the response framing it reads, connection reuse. Failures, TLS, the idle pool and
the end-to-end comparison are in ``test_fast_http_failures.py``."""

from __future__ import annotations

import threading
import time

import pytest

from glm_proxy.errors import UpstreamConnectError
from glm_proxy.upstream.fast_http import FastHTTP
from tests.raw_upstream import (  # the fixtures serve, refused_url: conftest.py
    CHUNKED_HEAD,
    CLOSE,
    RESET,
    TIMEOUT,
    body_of,
    chunked,
    ok,
)

# -- the request on the wire ----------------------------------------------------------


def test_the_request_head_is_exact(serve) -> None:
    server = serve(ok(), ok(), ok(), ok())
    fast = FastHTTP()
    headers = {"X-One": "1", "Content-Type": "application/json", "authorization": "Bearer a"}
    resp = fast.request("post", server.url("/a/b?x=1&y=%E4"), headers, b'{"a":1}', timeout=TIMEOUT)
    assert resp is not None and (resp.status_code, resp.content) == (200, b"ok")
    fast.request("POST", server.url("/empty"), {"X-Two": "2"}, None, timeout=TIMEOUT)
    fast.request("GET", server.url(""), {"Accept-Encoding": "br"}, None, timeout=TIMEOUT)
    fast.request("DELETE", server.url("/d"), {}, b"", timeout=TIMEOUT)
    host = f"Host: 127.0.0.1:{server.port}"

    def wire(*lines: str, body: bytes = b"") -> bytes:
        return "".join(f"{line}\r\n" for line in (*lines, "")).encode() + body

    assert server.requests == [
        wire(
            "POST /a/b?x=1&y=%E4 HTTP/1.1",
            host,
            "X-One: 1",
            "Content-Type: application/json",
            "authorization: Bearer a",
            "Accept-Encoding: identity",
            "Content-Length: 7",
            body=b'{"a":1}',
        ),
        wire(
            "POST /empty HTTP/1.1",
            host,
            "X-Two: 2",
            "Accept-Encoding: identity",
            "Content-Length: 0",
        ),
        wire("GET / HTTP/1.1", host, "Accept-Encoding: br"),
        wire("DELETE /d HTTP/1.1", host, "Accept-Encoding: identity", "Content-Length: 0"),
    ]


@pytest.mark.parametrize(
    ("url", "host_line"),
    [
        ("http://example.test/x", "Host: example.test"),
        ("https://example.test:443/x", "Host: example.test"),
        ("http://example.test:443/x", "Host: example.test:443"),
        ("https://example.test:8443/x", "Host: example.test:8443"),
        ("http://[::1]:8080/x", "Host: [::1]:8080"),
        ("http://[::1]/x", "Host: [::1]"),
    ],
)
def test_the_host_header_carries_the_port_only_when_not_the_default(url, host_line) -> None:
    fast = FastHTTP()
    target = fast._target(url)
    assert target is not None
    head = fast._head("GET", target, {}, None)
    assert head == f"GET /x HTTP/1.1\r\n{host_line}\r\nAccept-Encoding: identity\r\n\r\n".encode()


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({"X-Bad": "a\r\nInjected: 1"}, b""),
        ({"X-Bad": "a\nb"}, b""),
        ({"X-Bad": " leading space"}, b""),
        ({"Bad:Name": "x"}, b""),
        ({" Bad": "x"}, b""),
        ({"": "x"}, b""),
        ({"X-Number": 3}, b""),
        ({"X-Wide": "不是"}, b""),
        ({"Host": "elsewhere.test"}, b""),
        ({"host": "elsewhere.test"}, b""),
        ({"Content-Length": "2"}, b"{}"),
        ({"Transfer-Encoding": "chunked"}, b"{}"),
        ({}, "text"),
        ({}, bytearray(b"{}")),
        ({}, {"form": "field"}),
    ],
)
def test_requests_it_does_not_handle_are_refused_before_sending(refused_url, headers, body) -> None:
    """None, not an error: nothing was sent (the URL refuses connections), requests decides."""
    fast = FastHTTP()
    assert fast.request("POST", refused_url, headers, body, timeout=TIMEOUT) is None
    with pytest.raises(UpstreamConnectError):  # the same request without the oddity is tried
        fast.request("POST", refused_url, {"X-Fine": "1"}, b"{}", timeout=TIMEOUT)


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pw@127.0.0.1:{port}/x",
        "http://user@127.0.0.1:{port}/x",
        "http://127.0.0.1:{port}/ü",
        "http://127.0.0.1:{port}/a path",
        "ftp://127.0.0.1:{port}/x",
        "unix:///tmp/socket",
        "http:///x",
        "http://127.0.0.1:99999/x",
    ],
)
def test_urls_it_does_not_handle_are_refused_before_sending(refused_url, url) -> None:
    port = refused_url.split(":")[2].split("/")[0]
    fast = FastHTTP()
    for _ in range(2):  # the second time from the URL cache
        assert fast.request("GET", url.format(port=port), {}, None, timeout=TIMEOUT) is None


def test_head_and_odd_methods_are_refused_before_sending(refused_url) -> None:
    fast = FastHTTP()
    assert fast.request("HEAD", refused_url, {}, None, timeout=TIMEOUT) is None
    assert fast.request("GET /x HTTP/1.1\r\n", refused_url, {}, None, timeout=TIMEOUT) is None


# -- response framing -------------------------------------------------------------------

PAYLOAD = b'data: {"text":"\xe4\xbd\xa0\xe5\xa5\xbd"}\n\n' * 3


def test_a_chunked_body_sent_byte_by_byte_streams_through_iter_content(serve) -> None:
    raw = CHUNKED_HEAD + b"1A;name=value\r\n" + PAYLOAD[:26] + b"\r\n"
    raw += b"%x\r\n%s\r\n0\r\n\r\n" % (len(PAYLOAD) - 26, PAYLOAD[26:])
    server = serve(paced(*(bytes([byte]) for byte in raw), pause=0.001))
    resp = FastHTTP().request("POST", server.url(), {}, b"{}", timeout=TIMEOUT, stream=True)
    assert resp is not None and resp.status_code == 200
    assert resp.headers["content-type"] == "text/event-stream"
    body, count = body_of(resp)
    assert body == PAYLOAD
    assert count > 1  # streamed as it came, not gathered


def paced(*pieces: bytes, pause: float = 0.01) -> list:
    """The pieces as separate writes with a pause between them."""
    return [item for piece in pieces for item in (piece, pause)][:-1]


def test_a_chunked_body_in_odd_splits_with_extensions_and_trailers(serve) -> None:
    server = serve(
        paced(
            CHUNKED_HEAD[:20],
            CHUNKED_HEAD[20:] + b"1",
            b"0;a=b;c",
            b'="d"\r',
            b"\n" + PAYLOAD[:7],
            PAYLOAD[7:16] + b"\r",
            b"\n%x\r\n" % (len(PAYLOAD) - 16) + PAYLOAD[16:],
            b"\r\n0\r",
            b"\nX-Trailer: 1\r\n",
            b"\r\n",
        ),
        ok(b"second"),
    )
    fast = FastHTTP()
    resp = fast.request("POST", server.url(), {}, b"{}", timeout=TIMEOUT, stream=True)
    assert body_of(resp)[0] == PAYLOAD
    again = fast.request("GET", server.url(), {}, None, timeout=TIMEOUT)
    assert again.content == b"second"
    assert server.accepted == 1  # the chunked body ended cleanly: the connection was reused


def test_iter_content_yields_before_the_body_is_complete(serve) -> None:
    go_on = threading.Event()
    server = serve([CHUNKED_HEAD + b"5\r\nfirst\r\n", go_on, chunked(b"second")])
    resp = FastHTTP().request("POST", server.url(), {}, b"{}", timeout=TIMEOUT, stream=True)
    pieces = resp.iter_content()
    assert next(pieces) == b"first"
    go_on.set()
    assert b"".join(pieces) == b"second"


def test_a_content_length_body(serve) -> None:
    body = bytes(range(256)) * 1000
    server = serve(paced(ok(body)[:100], ok(body)[100:70000], ok(body)[70000:]))
    fast = FastHTTP()
    resp = fast.request("GET", server.url(), {}, None, timeout=TIMEOUT)
    assert resp.content == body
    assert resp.headers["Content-Length"] == str(len(body))


def test_a_body_delimited_by_the_end_of_the_connection(serve) -> None:
    server = serve(
        [
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\npart one, ",
            0.01,
            b"part two",
            CLOSE,
        ],
        ok(b"next"),
    )
    fast = FastHTTP()
    resp = fast.request("GET", server.url(), {}, None, timeout=TIMEOUT, stream=True)
    assert body_of(resp)[0] == b"part one, part two"
    assert fast.request("GET", server.url(), {}, None, timeout=TIMEOUT).content == b"next"
    assert server.accepted == 2


def test_statuses_without_a_body(serve) -> None:
    server = serve(b"HTTP/1.1 204 No Content\r\n\r\n", ok(b"after"))
    fast = FastHTTP()
    resp = fast.request("DELETE", server.url(), {}, None, timeout=TIMEOUT)
    assert (resp.status_code, resp.content) == (204, b"")
    assert fast.request("GET", server.url(), {}, None, timeout=TIMEOUT).content == b"after"
    assert server.accepted == 1


# -- keep-alive ---------------------------------------------------------------------------


def test_sequential_requests_reuse_one_connection(serve) -> None:
    server = serve(ok(b"1"), [CHUNKED_HEAD, chunked(b"2")], ok(b"3"))
    fast = FastHTTP()
    assert fast.request("POST", server.url(), {}, b"{}", timeout=TIMEOUT).content == b"1"
    streamed = fast.request("POST", server.url(), {}, b"{}", timeout=TIMEOUT, stream=True)
    assert body_of(streamed)[0] == b"2"
    streamed.close()  # done: already back in the pool, close changes nothing
    assert fast.request("POST", server.url(), {}, b"{}", timeout=TIMEOUT).content == b"3"
    assert server.accepted == 1
    assert len(server.requests) == 3


@pytest.mark.parametrize(
    "reply",
    [
        ok(b"bye", b"Connection: close\r\n"),
        b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye",
    ],
)
def test_a_connection_the_server_wants_closed_is_not_reused(serve, reply) -> None:
    server = serve(reply, ok(b"again"))
    fast = FastHTTP()
    assert fast.request("GET", server.url(), {}, None, timeout=TIMEOUT).content == b"bye"
    assert server.wait_ended(1) == [1]  # the client closed it at once
    assert fast.request("GET", server.url(), {}, None, timeout=TIMEOUT).content == b"again"
    assert server.accepted == 2


def test_a_response_closed_before_its_end_is_not_reused(serve) -> None:
    never = threading.Event()
    server = serve([CHUNKED_HEAD + b"5\r\nfirst\r\n", never], ok(b"fresh"))
    fast = FastHTTP()
    resp = fast.request("POST", server.url(), {}, b"{}", timeout=TIMEOUT, stream=True)
    assert next(resp.iter_content()) == b"first"
    resp.close()
    assert fast.request("GET", server.url(), {}, None, timeout=TIMEOUT).content == b"fresh"
    assert server.accepted == 2
    never.set()


def test_an_idle_connection_the_server_closed_is_replaced(serve) -> None:
    server = serve([ok(b"one"), CLOSE], ok(b"two"))
    fast = FastHTTP()
    assert fast.request("GET", server.url(), {}, None, timeout=TIMEOUT).content == b"one"
    time.sleep(0.1)  # the server's FIN has arrived: the idle check sees it
    assert fast.request("GET", server.url(), {}, None, timeout=TIMEOUT).content == b"two"
    assert server.accepted == 2
    assert len(server.requests) == 2


@pytest.mark.parametrize("how", [CLOSE, RESET])
def test_a_kept_alive_connection_closed_as_the_request_arrives_is_retried_once(serve, how) -> None:
    """The server's idle timer fires just as the request is sent: one fresh try."""
    server = serve(ok(b"one"), [how], ok(b"two"))
    fast = FastHTTP()
    assert fast.request("GET", server.url(), {}, None, timeout=TIMEOUT).content == b"one"
    resp = fast.request("POST", server.url("/again"), {}, b"{}", timeout=TIMEOUT)
    assert resp.content == b"two"
    assert server.accepted == 2
    assert server.requests[1] == server.requests[2]  # the same request, sent again


@pytest.mark.parametrize("how", [CLOSE, RESET])
def test_a_fresh_connection_closed_before_any_response_byte_is_a_connect_error(serve, how) -> None:
    server = serve([how], [how])
    fast = FastHTTP()
    with pytest.raises(UpstreamConnectError):
        fast.request("POST", server.url(), {}, b"{}", timeout=TIMEOUT)
    assert server.accepted == 1  # no second try on a connection that was new


def test_a_connection_closed_in_the_middle_of_the_head_is_a_connect_error(serve) -> None:
    server = serve([b"HTTP/1.1 200 OK\r\nContent-Le", CLOSE])
    with pytest.raises(UpstreamConnectError):
        FastHTTP().request("GET", server.url(), {}, None, timeout=TIMEOUT)
