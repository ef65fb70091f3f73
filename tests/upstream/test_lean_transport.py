"""The lean adapter the upstream session mounts (``glm_proxy.upstream.lean_adapter``).

Its body reader is checked whole, byte by byte and with junk; the adapter against the
scripted raw server (``tests/support/raw_upstream.py``) for what ``requests``' own
adapter does: the request on the wire, keep-alive and dropped connections, every body
framing, codings, TLS, and the hand-over of what it does not do itself.
"""

from __future__ import annotations

import gzip
import ssl
import threading
import zlib

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import DecodeError, ProtocolError

from glm_proxy.config import Settings
from glm_proxy.store.memory import MemoryStore
from glm_proxy.upstream.client import UpstreamClient
from glm_proxy.upstream.lean_adapter import LeanAdapter
from glm_proxy.upstream.lean_body import BODY_READS, HeadError, LeanBody
from tests.support.raw_upstream import CHUNKED_HEAD, CLOSE, TIMEOUT, chunked, ok

# -- the body reader, on a scripted socket --------------------------------------------------


class ScriptedSocket:
    """``recv`` hands out the script's pieces one by one, then b"" (the peer closed)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = list(pieces)
        self.closed = False
        self.released = False

    def recv(self, size: int) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""

    def settimeout(self, value: float | None) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def read_whole(pieces: list[bytes], **kwargs) -> tuple[LeanBody, bytes, ScriptedSocket]:
    sock = ScriptedSocket(pieces)
    released: list = []
    body = LeanBody(sock, release=released.append, **kwargs)  # type: ignore[arg-type]
    body.read_head()
    data = b"".join(body.stream(8192))
    sock.released = bool(released)
    return body, data, sock


def bytewise(raw: bytes) -> list[bytes]:
    return [raw[i : i + 1] for i in range(len(raw))]


RESPONSES = {
    "chunked": (
        CHUNKED_HEAD + chunked(b"data: one\n\n", b"data: two\n\n"),
        b"data: one\n\ndata: two\n\n",
    ),
    "chunk extension and trailer": (
        CHUNKED_HEAD + b"5;name=x\r\nfirst\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"first",
    ),
    "content-length": (ok(b"hello world"), b"hello world"),
    "empty": (b"HTTP/1.1 204 No Content\r\n\r\n", b""),
}


@pytest.mark.unit
@pytest.mark.parametrize("name", list(RESPONSES))
@pytest.mark.parametrize("split", ["whole", "byte by byte"])
def test_every_framing_reads_the_same_however_the_bytes_arrive(name: str, split: str) -> None:
    raw, expected = RESPONSES[name]
    _, data, sock = read_whole([raw] if split == "whole" else bytewise(raw))
    assert data == expected
    assert sock.released and not sock.closed  # read to its end: the connection goes back


@pytest.mark.unit
def test_a_body_until_close_ends_with_the_connection_and_is_not_reused() -> None:
    body, data, sock = read_whole([b"HTTP/1.1 200 OK\r\n\r\npart one ", b"part two"])
    assert data == b"part one part two"
    assert sock.closed and not sock.released


@pytest.mark.unit
def test_head_fields_split_anywhere_are_whole_and_repeated_ones_kept() -> None:
    raw = (
        b"HTTP/1.1 404 Not Found\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n"
    )
    body, _, _ = read_whole(bytewise(raw))
    assert (body.status, body.reason) == (404, "Not Found")
    assert body.header_pairs == [
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("Content-Length", "0"),
    ]


@pytest.mark.unit
def test_an_interim_100_is_skipped() -> None:
    body, data, sock = read_whole([b"HTTP/1.1 100 Continue\r\n\r\n", ok(b"final")])
    assert (body.status, data) == (200, b"final")
    assert sock.released  # the interim reply and the final one: the connection is clean


@pytest.mark.unit
def test_a_reply_to_head_has_no_body_whatever_its_length_says() -> None:
    _, data, sock = read_whole([b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n"], head_only=True)
    assert data == b"" and sock.released


@pytest.mark.unit
@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_gzip_and_deflate_bodies_are_decoded(coding: str) -> None:
    plain = b"x" * 1000
    packed = gzip.compress(plain, mtime=0) if coding == "gzip" else zlib.compress(plain)
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: %d\r\n\r\n" % (
        coding.encode(),
        len(packed),
    )
    _, data, _ = read_whole(bytewise(head + packed))
    assert data == b"x" * 1000


@pytest.mark.unit
def test_a_coding_it_does_not_decode_is_a_decode_error() -> None:
    sock = ScriptedSocket(
        [b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 3\r\n\r\nabc"]
    )
    body = LeanBody(sock)  # type: ignore[arg-type]
    body.read_head()
    with pytest.raises(DecodeError):
        list(body.stream())


JUNK_HEADS = [b"garbage\r\n\r\n", b"HTTP/1.1 abc\r\n\r\n", b"\x16\x03\x01\x02\x00" * 20]


@pytest.mark.unit
@pytest.mark.parametrize("junk", JUNK_HEADS)
def test_junk_instead_of_a_head_is_a_head_error(junk: bytes) -> None:
    sock = ScriptedSocket(bytewise(junk))
    with pytest.raises(HeadError) as info:
        LeanBody(sock).read_head()  # type: ignore[arg-type]
    assert not info.value.closed and sock.closed


@pytest.mark.unit
def test_an_endless_head_is_refused() -> None:
    sock = ScriptedSocket([b"HTTP/1.1 200 OK\r\n"] + [b"X-Pad: " + b"p" * 1000 + b"\r\n"] * 100)
    with pytest.raises(HeadError, match="too long"):
        LeanBody(sock).read_head()  # type: ignore[arg-type]


@pytest.mark.unit
def test_a_connection_closed_before_any_byte_says_so() -> None:
    with pytest.raises(HeadError) as info:
        LeanBody(ScriptedSocket([])).read_head()  # type: ignore[arg-type]
    assert info.value.closed


@pytest.mark.unit
@pytest.mark.parametrize(
    "pieces",
    [
        [CHUNKED_HEAD, b"5\r\nfirst\r\n"],  # cut between chunks
        [CHUNKED_HEAD, b"zz\r\nfirst\r\n"],  # junk for a chunk size
        [b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"],  # cut inside a length
    ],
)
def test_a_broken_body_is_urllib3s_protocol_error(pieces: list[bytes]) -> None:
    sock = ScriptedSocket(pieces)
    body = LeanBody(sock)  # type: ignore[arg-type]
    body.read_head()
    with pytest.raises(ProtocolError):
        list(body.stream())
    assert sock.closed


@pytest.mark.unit
def test_stream_pieces_respect_the_size_asked_for() -> None:
    sock = ScriptedSocket([ok(b"a" * 10)])
    body = LeanBody(sock)  # type: ignore[arg-type]
    body.read_head()
    assert list(body.stream(4)) == [b"aaaa", b"aaaa", b"aa"]


# -- the adapter, on the raw server ---------------------------------------------------------


def session(adapter: HTTPAdapter | None = None) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    mounted = adapter or LeanAdapter(max_retries=0)
    s.mount("http://", mounted)
    s.mount("https://", mounted)
    return s


def test_the_request_on_the_wire_has_what_requests_own_adapter_sends(serve) -> None:
    """Same lines, same order; only the values of a few headers requests adds differ."""
    server = serve(ok(), ok())
    headers = {"User-Agent": "ua", "X-Sign": "abc", "Accept": "text/event-stream"}
    for adapter in (LeanAdapter(max_retries=0), HTTPAdapter(max_retries=0)):
        req = requests.Request("POST", server.url("/p/a?x=1"), headers=headers, data=b'{"a":1}')
        session(adapter).send(req.prepare(), timeout=TIMEOUT)
    lean, default = server.requests
    assert lean == default
    assert lean.startswith(b"POST /p/a?x=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nAccept-Encoding: identity\r\n" in lean and lean.endswith(b'\r\n\r\n{"a":1}')


def test_a_kept_alive_connection_the_server_dropped_is_replaced_quietly(serve) -> None:
    server = serve([ok(b"one"), CLOSE], ok(b"two"))
    s = session()
    assert s.get(server.url(), timeout=TIMEOUT).content == b"one"
    server.wait_ended(0)
    assert s.get(server.url(), timeout=TIMEOUT).content == b"two"
    assert server.accepted == 2 and len(server.requests) == 2


def test_connections_are_reused_after_heads_204s_and_plain_bodies(serve) -> None:
    server = serve(
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        ok(b"body"),
        [CHUNKED_HEAD, chunked(b"a", b"b")],
    )
    s = session()
    assert s.head(server.url(), timeout=TIMEOUT).status_code == 200
    assert s.delete(server.url(), timeout=TIMEOUT).status_code == 204
    assert s.get(server.url(), timeout=TIMEOUT).content == b"body"
    resp = s.post(server.url(), data=b"{}", timeout=TIMEOUT, stream=True)
    assert b"".join(resp.iter_content(None)) == b"ab"
    assert server.accepted == 1


def test_a_response_not_read_to_its_end_closes_its_connection(serve) -> None:
    server = serve([CHUNKED_HEAD, b"1\r\na\r\n", threading.Event()], ok(b"next"))
    s = session()
    resp = s.post(server.url(), data=b"{}", timeout=TIMEOUT, stream=True)
    assert next(resp.iter_content(None)) == b"a"
    resp.close()
    assert s.get(server.url(), timeout=TIMEOUT).content == b"next"
    assert server.accepted == 2


def test_the_response_looks_like_the_default_adapters(serve) -> None:
    raw = (
        b"HTTP/1.1 201 Made\r\nContent-Type: application/json; charset=utf-8\r\n"
        b"X-A: 1\r\nx-a: 2\r\nContent-Length: 2\r\n\r\n{}"
    )
    server = serve(raw, raw)
    got = [session(a).get(server.url(), timeout=TIMEOUT) for a in (LeanAdapter(), HTTPAdapter())]
    for resp in got:
        assert (resp.status_code, resp.reason, resp.encoding, resp.json()) == (
            201,
            "Made",
            "utf-8",
            {},
        )
        assert resp.headers["x-a"] == "1, 2"
        assert resp.url == server.url()
    assert dict(got[0].headers) == dict(got[1].headers)


def test_a_proxied_request_goes_through_requests_own_adapter(serve) -> None:
    proxy = serve(ok(b"via proxy"))
    adapter = LeanAdapter(max_retries=0)
    resp = session(adapter).get(
        "http://upstream.invalid/x", proxies={"http": proxy.url().rstrip("/")}, timeout=TIMEOUT
    )
    assert resp.content == b"via proxy"
    assert proxy.requests[0].startswith(b"GET http://upstream.invalid/x HTTP/1.1")
    assert adapter.proxy_manager  # urllib3's proxy manager was used: the default path


def test_a_streamed_body_goes_through_requests_own_adapter(serve) -> None:
    server = serve(ok(b"done"))
    adapter = LeanAdapter(max_retries=0)
    resp = session(adapter).post(server.url(), data=iter([b"ab", b"cd"]), timeout=TIMEOUT)
    assert resp.content == b"done"
    assert b"\r\nTransfer-Encoding: chunked\r\n" in server.requests[0]
    assert adapter.poolmanager.pools


def test_tls_with_a_ca_bundle_and_reuse(serve, certificate) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = serve(ok(b"one"), ok(b"two"), tls=context)
    s = session()
    assert s.get(server.url(), verify=certificate[0], timeout=TIMEOUT).content == b"one"
    assert s.get(server.url(), verify=certificate[0], timeout=TIMEOUT).content == b"two"
    assert server.accepted == 1


def test_tls_without_verification_when_asked(serve, certificate) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = serve(ok(b"unchecked"), tls=context)
    assert session().get(server.url(), verify=False, timeout=TIMEOUT).content == b"unchecked"


def test_a_connection_made_without_checks_never_carries_a_checked_request(
    serve, certificate
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = serve(ok(b"unchecked"), ok(b"must not be served"), tls=context)
    s = session()
    assert s.get(server.url(), verify=False, timeout=TIMEOUT).content == b"unchecked"
    with pytest.raises(requests.exceptions.SSLError):
        s.get(server.url(), timeout=TIMEOUT)  # certifi's bundle: the test certificate fails
    assert len(server.requests) == 1


@pytest.mark.parametrize("transport, kind", [("lean", LeanAdapter), ("requests", HTTPAdapter)])
def test_upstream_transport_chooses_the_adapter(transport: str, kind: type) -> None:
    settings = Settings.from_mapping({"GLM_TIME_SYNC": "false", "UPSTREAM_TRANSPORT": transport})
    adapter = UpstreamClient(settings, MemoryStore()).session.get_adapter("https://chatglm.cn/")
    assert type(adapter) is kind


def test_the_read_watch_holds_a_body_only_while_it_waits(serve) -> None:
    """A body nobody reads or closes is not kept alive by the watch; a silent one times out."""
    never = threading.Event()
    server = serve([CHUNKED_HEAD, b"1\r\na\r\n", never], [CHUNKED_HEAD, never])
    s = session()
    unread = s.post(server.url(), data=b"{}", timeout=(2.0, 0.3), stream=True)
    assert unread.status_code == 200 and not BODY_READS.items
    silent = s.post(server.url(), data=b"{}", timeout=(2.0, 0.3), stream=True)
    with pytest.raises(requests.exceptions.ConnectionError, match="Read timed out"):
        silent.content  # noqa: B018 - reading is the point
    assert not BODY_READS.items
    never.set()
