"""The lean upstream HTTP client against a scripted raw server on 127.0.0.1.

The server records every request's raw bytes and answers each with scripted
pieces (bytes, pauses, waits for the test, a close or a reset), so the wire
format, the response framing in odd splits, the connection reuse and every
failure can be checked exactly, without any client library in between.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
import pytest
import requests

from glm_proxy.config import Settings
from glm_proxy.errors import UpstreamConnectError, UpstreamRetryable, UpstreamTimeout
from glm_proxy.store.memory import MemoryStore
from glm_proxy.upstream.client import UpstreamClient
from glm_proxy.upstream.fast_http import BodyBroken, FastHTTP, FastResponse

CLOSE = "close"  # a reply piece: the server closes the connection (FIN)
RESET = "reset"  # a reply piece: the server resets the connection (RST)
TIMEOUT = (2.0, 2.0)
CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def ok(body: bytes = b"ok", extra: bytes = b"") -> bytes:
    """A complete ``200`` with a ``Content-Length`` body (and extra head lines)."""
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def chunked(*chunks: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"


def read_request(sock: socket.socket, buf: bytes) -> tuple[bytes | None, bytes]:
    """One raw request (head and ``Content-Length`` body) and the bytes after it."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None, b""
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            return None, b""
        rest += data
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


@dataclass
class RawServer:
    """Answers the n-th request (over all connections) with ``replies[n]``.

    A reply is bytes, or a list of pieces: bytes (sent), a float (a pause), a
    ``threading.Event`` (wait until the test sets it), ``CLOSE`` or ``RESET``.
    """

    replies: list
    tls: ssl.SSLContext | None = None
    requests: list[bytes] = field(default_factory=list)
    accepted: int = 0
    ended: list[int] = field(default_factory=list)  # connections the client closed
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.stopped = False
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/") -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{path}"

    def wait_ended(self, count: int, timeout: float = 5.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while len(self.ended) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.ended

    def stop(self) -> None:
        self.stopped = True
        self.listener.close()
        for conn in self.connections:
            try:
                conn.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                number = self.accepted
            self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        conn.settimeout(10)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = b""
        try:
            if self.tls is not None:
                conn = self.tls.wrap_socket(conn, server_side=True)
            while True:
                request, buf = read_request(conn, buf)
                if request is None:
                    self.ended.append(number)
                    return
                with self.lock:
                    self.requests.append(request)
                    reply = self.replies.pop(0) if self.replies else ok()
                for piece in [reply] if isinstance(reply, bytes) else reply:
                    if isinstance(piece, bytes):
                        conn.sendall(piece)
                    elif isinstance(piece, float):
                        time.sleep(piece)
                    elif isinstance(piece, threading.Event):
                        piece.wait(10)
                    elif piece == RESET:
                        conn.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                        conn.close()
                        return
                    elif piece == CLOSE:
                        conn.close()
                        return
        except (OSError, ssl.SSLError) as exc:
            self.errors.append(repr(exc))
        finally:
            conn.close()


@pytest.fixture
def serve() -> Iterator:
    servers: list[RawServer] = []

    def start(*replies, tls: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(list(replies), tls)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def refused_url() -> str:
    """A URL nothing listens on: a client that tried to connect would fail loudly."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/x"


def body_of(response: FastResponse) -> tuple[bytes, int]:
    """The streamed body and how many pieces it came in."""
    pieces = list(response.iter_content())
    return b"".join(pieces), len(pieces)


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
