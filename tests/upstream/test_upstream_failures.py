"""The upstream transport (one ``requests`` session): failures and the errors they become,
TLS, and outbound proxies (server: ``tests/support/raw_upstream.py``)."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest

from glm_proxy.accounts import Account
from glm_proxy.config import ConfigError, Settings
from glm_proxy.errors import UpstreamConnectError, UpstreamRetryable, UpstreamTimeout
from glm_proxy.pool.registry import parse_entry
from glm_proxy.store.memory import MemoryStore
from glm_proxy.upstream.client import UpstreamClient
from tests.support.raw_upstream import (  # the fixtures serve, refused_url: conftest.py
    CHUNKED_HEAD,
    CLOSE,
    RESET,
    TIMEOUT,
    chunked,
    ok,
)

TRANSPORT = {"name": "lean"}


@pytest.fixture(autouse=True, params=["lean", "requests"])
def transport(request) -> str:
    """Every case twice: on the lean adapter, and on requests' own (UPSTREAM_TRANSPORT)."""
    TRANSPORT["name"] = request.param
    return request.param


def client(**settings: str) -> UpstreamClient:
    mapping = {"GLM_TIME_SYNC": "false", "UPSTREAM_TRANSPORT": TRANSPORT["name"], **settings}
    return UpstreamClient(Settings.from_mapping(mapping), MemoryStore())


# -- failures --------------------------------------------------------------------------


def test_a_refused_connection_is_a_connect_error(refused_url) -> None:
    with pytest.raises(UpstreamConnectError) as info:
        client()._send("GET", refused_url, timeout=TIMEOUT)
    assert info.value.code == "upstream_connect_error"
    assert "ConnectionRefusedError" in info.value.message


def test_no_answer_within_the_read_timeout_is_a_504(serve) -> None:
    never = threading.Event()
    server = serve([never])
    with pytest.raises(UpstreamTimeout) as info:
        client()._send("GET", server.url(), timeout=(2.0, 0.3))
    assert info.value.status == 504
    assert info.value.code == "upstream_timeout"
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
            client()._send("GET", f"http://127.0.0.1:{port}/", timeout=(0.3, 2.0))
        assert info.value.code == "upstream_connect_timeout"
        assert info.value.status == 504
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_garbage_instead_of_a_status_line_is_retryable(serve) -> None:
    server = serve(b"garbage\r\n\r\n")
    with pytest.raises(UpstreamRetryable):
        client()._send("GET", server.url(), timeout=TIMEOUT)


CUT_CHUNKED = [CHUNKED_HEAD + b"5\r\nfirst\r\n9\r\nsec", CLOSE]
CUT_LENGTH = [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirstsec", CLOSE]


@pytest.mark.parametrize("reply", [CUT_CHUNKED, CUT_LENGTH])
def test_a_body_cut_in_the_middle_of_a_plain_request_is_retryable(serve, reply) -> None:
    server = serve(reply)
    with pytest.raises(UpstreamRetryable):
        client()._send("POST", server.url(), timeout=TIMEOUT, data=b"{}")


def test_a_stream_cut_in_the_middle_is_a_broken_connection(serve) -> None:
    server = serve(CUT_CHUNKED, [CHUNKED_HEAD + b"5\r\nfirst\r\n", 0.2, RESET])
    upstream = client()
    for _ in range(2):
        resp = upstream._send("POST", server.url(), timeout=TIMEOUT, data=b"{}", stream=True)
        with pytest.raises(UpstreamRetryable) as info:
            list(upstream.iter_stream(resp))
        assert type(info.value) is UpstreamRetryable
        assert "connection broke in the middle of the answer" in info.value.message


def test_a_stream_gone_silent_is_a_timeout(serve) -> None:
    never = threading.Event()
    server = serve([CHUNKED_HEAD + b"5\r\nfirst\r\n", never])
    upstream = client()
    resp = upstream._send("POST", server.url(), timeout=(2.0, 0.3), data=b"{}", stream=True)
    with pytest.raises(UpstreamTimeout) as info:
        list(upstream.iter_stream(resp))
    assert "went silent" in info.value.message
    never.set()


def test_an_error_body_cut_in_the_middle_reads_as_empty(serve) -> None:
    """The status still decides; a broken error body is no crash."""
    server = serve(
        [b'HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\n{"status":', CLOSE],
        [b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\n{", 0.2, RESET],
    )
    upstream = client()
    for _ in range(2):
        resp = upstream._send("POST", server.url(), timeout=TIMEOUT, data=b"{}", stream=True)
        assert resp.status_code == 500
        assert upstream._read_capped(resp) == b""


def test_a_streamed_answer_reuses_the_kept_alive_connection(serve) -> None:
    server = serve([CHUNKED_HEAD, chunked(b"one")], ok(b"two"))
    upstream = client()
    resp = upstream._send("POST", server.url(), timeout=TIMEOUT, data=b"{}", stream=True)
    assert b"".join(upstream.iter_stream(resp)) == b"one"
    assert upstream._send("GET", server.url(), timeout=TIMEOUT).content == b"two"
    assert server.accepted == 1


# -- TLS ---------------------------------------------------------------------------------


def test_tls_refuses_an_untrusted_certificate(serve, certificate) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = serve(ok(), tls=context)
    with pytest.raises(UpstreamConnectError) as info:
        client()._send("GET", server.url(), timeout=TIMEOUT)
    assert "SSLCertVerificationError" in info.value.message
    assert server.requests == []


# -- outbound proxies -----------------------------------------------------------------------

UPSTREAM = "http://upstream.invalid/chatglm/x"  # never resolved: the proxy gets the request


def test_upstream_proxy_carries_every_upstream_call(serve) -> None:
    proxy = serve(ok(b"via proxy"))
    upstream = client(UPSTREAM_PROXY=proxy.url().rstrip("/"))
    assert upstream._send("GET", UPSTREAM, timeout=TIMEOUT).content == b"via proxy"
    assert proxy.requests[0].startswith(b"GET http://upstream.invalid/chatglm/x HTTP/1.1\r\n")


def test_an_accounts_proxy_overrides_upstream_proxy(serve, refused_url) -> None:
    proxy = serve(ok(b"the account's proxy"))
    upstream = client(UPSTREAM_PROXY=refused_url.rsplit("/", 1)[0])
    entry = parse_entry(f"rt-proxy proxy={proxy.url().rstrip('/')}", 1, "ACCOUNTS")
    assert entry is not None and str(proxy.port) not in repr(entry.account)  # a secret
    resp = upstream._send("GET", UPSTREAM, timeout=TIMEOUT, account=entry.account)
    assert resp.content == b"the account's proxy"
    with pytest.raises(UpstreamConnectError):  # without the account: UPSTREAM_PROXY (refused)
        upstream._send("GET", UPSTREAM, timeout=TIMEOUT, account=Account.from_token("rt-plain"))


@pytest.mark.parametrize("value", ["ftp://host:21", "host:3128", "http://"])
def test_a_bad_proxy_url_names_the_setting(value) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_mapping({"UPSTREAM_PROXY": value})
    assert "UPSTREAM_PROXY" in str(info.value)
    with pytest.raises(ConfigError) as info:
        parse_entry(f"rt-bad proxy={value}", 1, "ACCOUNTS")
    assert "proxy=" in str(info.value)


def test_a_socks_proxy_is_supported() -> None:
    """``requests[socks]`` is installed with the server, so socks5:// URLs work."""
    import socks  # noqa: F401 - PySocks, what requests needs for socks5://

    assert client(UPSTREAM_PROXY="socks5h://127.0.0.1:1080").settings.upstream_proxy


def test_the_proxy_server_answers_through_upstream_proxy(simulator, tmp_path) -> None:
    """End to end: the real server, its upstream calls relayed by a forward proxy."""
    import requests

    from tests.conftest import start_proxy, stop_proxy
    from tests.support.forward_proxy import ForwardProxy

    relay = ForwardProxy()
    server = start_proxy(simulator, tmp_path, UPSTREAM_PROXY=relay.url)
    try:
        resp = requests.post(
            f"{server.v1}/chat/completions",
            json={"model": "glm-4", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer rt-proxied-{time.time_ns()}"},
            timeout=30,
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["message"]["content"].startswith("你好！这是模拟回答。")
        assert any("/chatglm/" in line for line in relay.requests)
    finally:
        stop_proxy(server)
        relay.stop()
