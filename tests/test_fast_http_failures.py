"""The lean upstream HTTP client: failures and their errors, TLS, the idle pool, and the
same answers on both transports end to end (server: ``tests/raw_upstream.py``)."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time

import orjson
import pytest
import requests

from glm_proxy.config import Settings
from glm_proxy.errors import UpstreamConnectError, UpstreamRetryable, UpstreamTimeout
from glm_proxy.store.memory import MemoryStore
from glm_proxy.upstream.client import UpstreamClient
from glm_proxy.upstream.fast_http import BodyBroken, FastHTTP, FastResponse
from tests.raw_upstream import (  # the fixtures serve, refused_url: conftest.py
    CHUNKED_HEAD,
    CLOSE,
    RESET,
    TIMEOUT,
    RawServer,
    body_of,
    chunked,
    ok,
)

# -- failures --------------------------------------------------------------------------


def test_a_refused_connection_is_a_connect_error(refused_url) -> None:
    with pytest.raises(UpstreamConnectError) as info:
        FastHTTP().request("GET", refused_url, {}, None, timeout=TIMEOUT)
    assert info.value.code == "upstream_connect_error"


def test_no_answer_within_the_read_timeout_is_a_504(serve) -> None:
    never = threading.Event()
    server = serve([never])
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as info:
        FastHTTP().request("GET", server.url(), {}, None, timeout=(2.0, 0.3))
    assert info.value.status == 504
    assert info.value.code == "upstream_timeout"
    assert time.monotonic() - started < 2.0
    never.set()


def test_a_connect_timeout_has_its_own_code() -> None:
    """A listener whose accept queue is full drops new connection attempts (Linux)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):  # fill the queue: these connect (or hang) without being accepted
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.05)
        probe = socket.socket()
        probe.settimeout(0.3)
        try:
            probe.connect(("127.0.0.1", port))
        except TimeoutError:
            pass
        else:
            pytest.skip("this system does not drop connection attempts to a full queue")
        finally:
            probe.close()
        with pytest.raises(UpstreamTimeout) as info:
            FastHTTP().request("GET", f"http://127.0.0.1:{port}/", {}, None, timeout=(0.3, 2.0))
        assert info.value.code == "upstream_connect_timeout"
        assert info.value.status == 504
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_garbage_instead_of_a_status_line_is_retryable(serve) -> None:
    server = serve(b"garbage\r\n\r\n")
    with pytest.raises(UpstreamRetryable) as info:
        FastHTTP().request("GET", server.url(), {}, None, timeout=TIMEOUT)
    assert type(info.value) is UpstreamRetryable
    assert "InvalidResponse" in info.value.message


def test_a_compressed_body_is_retryable(serve) -> None:
    server = serve(ok(b"\x1f\x8b\x08\x00", b"Content-Encoding: gzip\r\n"))
    with pytest.raises(UpstreamRetryable) as info:
        FastHTTP().request("GET", server.url(), {}, None, timeout=TIMEOUT)
    assert "unexpected encoding gzip" in info.value.message


CUT_CHUNKED = [CHUNKED_HEAD + b"5\r\nfirst\r\n9\r\nsec", CLOSE]
CUT_LENGTH = [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirstsec", CLOSE]


@pytest.mark.parametrize("reply", [CUT_CHUNKED, CUT_LENGTH])
def test_a_body_cut_in_the_middle_breaks_iter_content(serve, reply) -> None:
    server = serve(reply)
    resp = FastHTTP().request("POST", server.url(), {}, b"{}", timeout=TIMEOUT, stream=True)
    received = b""
    with pytest.raises(BodyBroken):
        for piece in resp.iter_content():
            received += piece
    assert received == b"firstsec"


@pytest.mark.parametrize("reply", [CUT_CHUNKED, CUT_LENGTH])
def test_a_body_cut_in_the_middle_of_a_plain_request_is_retryable(serve, reply) -> None:
    server = serve(reply)
    with pytest.raises(UpstreamRetryable):
        FastHTTP().request("POST", server.url(), {}, b"{}", timeout=TIMEOUT)


def fast_client() -> UpstreamClient:
    client = UpstreamClient(
        Settings.from_mapping({"GLM_TIME_SYNC": "false", "UPSTREAM_TRANSPORT": "fast"}),
        MemoryStore(),
    )
    assert client._fast is not None
    return client


def test_a_stream_cut_in_the_middle_is_a_broken_connection_to_the_upstream_client(serve) -> None:
    server = serve(CUT_CHUNKED, [CHUNKED_HEAD + b"5\r\nfirst\r\n", 0.2, RESET])
    client = fast_client()
    for _ in range(2):
        resp = client._send("POST", server.url(), timeout=TIMEOUT, data=b"{}", stream=True)
        assert isinstance(resp, FastResponse)
        with pytest.raises(UpstreamRetryable) as info:
            list(client.iter_stream(resp))
        assert type(info.value) is UpstreamRetryable
        assert "connection broke in the middle of the answer" in info.value.message


def test_a_stream_gone_silent_is_a_timeout_to_the_upstream_client(serve) -> None:
    never = threading.Event()
    server = serve([CHUNKED_HEAD + b"5\r\nfirst\r\n", never])
    client = fast_client()
    resp = client._send("POST", server.url(), timeout=(2.0, 0.3), data=b"{}", stream=True)
    with pytest.raises(UpstreamTimeout) as info:
        list(client.iter_stream(resp))
    assert "went silent" in info.value.message
    never.set()


def test_an_error_body_cut_in_the_middle_reads_as_empty(serve) -> None:
    """As with requests: the status still decides, a broken error body is no crash."""
    server = serve(
        [b'HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\n{"status":', CLOSE],
        [b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\n{", 0.2, RESET],
    )
    client = fast_client()
    for _ in range(2):
        resp = client._send("POST", server.url(), timeout=TIMEOUT, data=b"{}", stream=True)
        assert resp.status_code == 500
        assert client._read_capped(resp) == b""


# -- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


def tls_server(serve, certificate, *replies) -> RawServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    return serve(*replies, tls=context)


def test_tls_refuses_an_untrusted_certificate(serve, certificate) -> None:
    server = tls_server(serve, certificate, ok())
    with pytest.raises(UpstreamConnectError) as info:
        FastHTTP().request("GET", server.url(), {}, None, timeout=TIMEOUT)
    assert "SSLCertVerificationError" in info.value.message
    assert server.requests == []


def test_tls_with_a_trusted_certificate_keeps_the_connection(serve, certificate) -> None:
    server = tls_server(serve, certificate, ok(b"one"), [CHUNKED_HEAD, chunked(b"two")])
    fast = FastHTTP(tls_context=ssl.create_default_context(cafile=certificate[0]))
    assert fast.request("GET", server.url("/x"), {}, None, timeout=TIMEOUT).content == b"one"
    resp = fast.request("POST", server.url("/y"), {}, b"{}", timeout=TIMEOUT, stream=True)
    assert body_of(resp)[0] == b"two"
    assert server.accepted == 1
    assert server.requests[0].startswith(
        f"GET /x HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode()
    )


# -- the idle pool ------------------------------------------------------------------------


def open_two(fast: FastHTTP, server: RawServer) -> tuple[FastResponse, FastResponse]:
    return (
        fast.request("POST", server.url(), {}, b"{}", timeout=TIMEOUT, stream=True),
        fast.request("POST", server.url(), {}, b"{}", timeout=TIMEOUT, stream=True),
    )


def held(go_on: threading.Event) -> list:
    """A chunked answer whose end waits for ``go_on``: the connection stays busy until then."""
    return [CHUNKED_HEAD + b"1\r\na\r\n", go_on, chunked(b"b")]


def test_the_pool_keeps_at_most_pool_maxsize_idle_connections(serve) -> None:
    go_on, go_on_again = threading.Event(), threading.Event()
    server = serve(held(go_on), held(go_on), held(go_on_again), held(go_on_again))
    fast = FastHTTP(pool_maxsize=1)
    first, second = open_two(fast, server)
    assert server.accepted == 2  # both busy at once: two connections
    go_on.set()
    assert body_of(first)[0] == body_of(second)[0] == b"ab"
    assert server.wait_ended(1) == [2]  # the one over the limit was closed
    assert len(fast._idle[("http", "127.0.0.1", server.port)]) == 1
    third, fourth = open_two(fast, server)
    go_on_again.set()
    assert body_of(third)[0] == body_of(fourth)[0] == b"ab"
    assert server.accepted == 3  # one kept connection reused, one new


def test_an_idle_connection_older_than_idle_timeout_is_not_reused(serve) -> None:
    server = serve(ok(b"one"), ok(b"two"))
    fast = FastHTTP(idle_timeout=0.2)
    assert fast.request("GET", server.url(), {}, None, timeout=TIMEOUT).content == b"one"
    time.sleep(0.3)
    assert fast.request("GET", server.url(), {}, None, timeout=TIMEOUT).content == b"two"
    assert server.accepted == 2
    assert server.wait_ended(1) == [1]  # and the expired one was closed


def test_expired_idle_connections_behind_a_busy_one_are_closed(serve) -> None:
    """After a burst the newest idle connection is reused; the older ones expire."""
    go_on = threading.Event()
    server = serve(held(go_on), held(go_on))
    fast = FastHTTP(idle_timeout=1.0)
    first, second = open_two(fast, server)
    go_on.set()
    body_of(first), body_of(second)  # idle: [connection 1, connection 2]
    for _ in range(6):
        assert fast.request("GET", server.url(), {}, None, timeout=TIMEOUT).content == b"ok"
        time.sleep(0.25)
    assert server.accepted == 2
    assert server.wait_ended(1) == [1]


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["fast", "requests"])
def test_the_upstream_client_streams_the_same_answer_on_both_transports(
    simulator, transport
) -> None:
    from glm_proxy.accounts import Account
    from glm_proxy.doctor import _answer

    settings = Settings.from_mapping(
        {
            "GLM_BASE_URL": simulator.glm_base_url,
            "GLM_PROTOCOL": simulator.profile,
            "UPSTREAM_TRANSPORT": transport,
        }
    )
    client = UpstreamClient(settings, MemoryStore())
    opened = []
    open_stream = client.open_stream
    client.open_stream = lambda *a, **k: opened.append(open_stream(*a, **k)) or opened[-1]
    _, _, text = _answer(client, Account.from_token(f"rt-fast-{transport}-{time.time_ns()}"))
    expected = FastResponse if transport == "fast" else requests.Response
    assert [type(r) for r in opened] == [expected]
    assert text.startswith("你好！这是模拟回答。")


def test_the_proxy_answers_the_same_on_both_transports(simulator, tmp_path) -> None:
    from tests.conftest import start_proxy, stop_proxy

    def streamed(transport: str) -> str:
        server = start_proxy(simulator, tmp_path, UPSTREAM_TRANSPORT=transport)
        try:
            resp = requests.post(
                f"{server.v1}/chat/completions",
                json={
                    "model": "glm-4",
                    "stream": True,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                headers={"Authorization": f"Bearer rt-{transport}-{time.time_ns()}"},
                timeout=30,
                stream=True,
            )
            assert resp.status_code == 200
            events = [
                orjson.loads(line[6:]) for line in resp.iter_lines() if line.startswith(b"data: {")
            ]
        finally:
            stop_proxy(server)
        return "".join(c["delta"].get("content") or "" for e in events for c in e["choices"])

    on_fast, on_requests = streamed("fast"), streamed("requests")
    assert on_fast == on_requests
    assert on_fast.startswith("你好！这是模拟回答。")
