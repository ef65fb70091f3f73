"""``fetch``: the guarded, pinned, size-capped downloader, against a local file server."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from glm_proxy.attachments import AllowList, FetchError, FetchGuard, FetchLimits, fetch
from glm_proxy.errors import PayloadTooLarge
from tests.conftest import free_port
from tests.support.fileserver import FileServer, pdf_bytes, start_file_server

LIMITS = FetchLimits(max_size=1024 * 1024, connect_timeout=2, read_timeout=5)


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    server, httpd = start_file_server()
    yield server
    httpd.shutdown()


def local_guard() -> FetchGuard:
    return FetchGuard(AllowList.parse(["127.0.0.1"]))


def test_fetch_follows_checked_redirects(files):
    url = files.add("/doc.pdf", pdf_bytes(), "application/pdf")
    with fetch(files.url(f"/redirect?to={url}"), LIMITS, local_guard()) as blob:
        assert blob.read_all() == pdf_bytes()
        assert blob.filename == "doc.pdf" and blob.declared_type == "application/pdf"


def test_a_redirect_to_a_blocked_address_is_refused():
    """The first hop is allowed (by host name); the redirect target is not."""
    guard = FetchGuard(AllowList.parse(["localhost"]), lambda host, port: ["127.0.0.1"])
    server, httpd = start_file_server()
    try:
        port = server.base.rsplit(":", 1)[1]
        server.add("/x", b"secret")
        start = f"http://localhost:{port}/redirect?to=http://127.0.0.1:{port}/x"
        with pytest.raises(FetchError, match="Refusing to fetch .*loopback") as info:
            fetch(start, LIMITS, guard)
        assert info.value.code == "url_not_allowed"
        assert server.hit_count("/x") == 0
    finally:
        httpd.shutdown()


def test_default_guard_refuses_loopback(files):
    url = files.add("/a.txt", b"hello")
    with pytest.raises(FetchError, match="loopback"):
        fetch(url, LIMITS, FetchGuard(AllowList()))
    assert files.hit_count("/a.txt") == 0  # refused before connecting


def test_non_2xx_and_unreachable_name_the_url(files):
    with pytest.raises(FetchError, match=r"/status/404: the server answered HTTP 404"):
        fetch(files.url("/status/404"), LIMITS, local_guard())
    dead = f"http://127.0.0.1:{free_port()}/gone.pdf"
    with pytest.raises(FetchError, match=r"gone\.pdf: the server is unreachable"):
        fetch(dead, LIMITS, local_guard())
    with pytest.raises(FetchError, match="does not resolve"):
        fetch("http://no-such-host.invalid/x", LIMITS, None)
    with pytest.raises(FetchError, match="only http"):
        fetch("ftp://example.com/x", LIMITS, None)


def test_size_limit_from_content_length_and_while_streaming(files):
    big = files.add("/big.bin", b"x" * (LIMITS.max_size + 1))
    with pytest.raises(PayloadTooLarge):
        fetch(big, LIMITS, local_guard())
    with pytest.raises(PayloadTooLarge):
        fetch(files.url("/endless"), LIMITS, local_guard())


def test_read_timeout_is_reported():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never answers
    port = listener.getsockname()[1]
    try:
        limits = FetchLimits(max_size=1024, connect_timeout=1, read_timeout=0.5)
        with pytest.raises(FetchError, match="did not answer within 0.5s"):
            fetch(f"http://127.0.0.1:{port}/slow", limits, local_guard())
    finally:
        listener.close()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """An HTTPS server on 127.0.0.1 with a self-signed certificate for ``pinned.test``."""
    import shutil
    import ssl
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    tmp = tmp_path_factory.mktemp("tls")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=pinned.test",
            "-addext",
            "subjectAltName=DNS:pinned.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            body = f"host={self.headers['Host']}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1], str(cert)
    httpd.shutdown()


def test_https_connects_to_the_checked_address_and_verifies_the_name(tls_server, monkeypatch):
    """DNS is asked once (by the guard); the TLS connection goes to that address with the
    URL's host name for SNI and certificate checks."""
    port, ca = tls_server
    import certifi

    monkeypatch.setattr(certifi, "where", lambda: ca)
    lookups = []

    def resolver(host, _port):
        lookups.append(host)
        return ["127.0.0.1"]

    guard = FetchGuard(AllowList.parse(["127.0.0.1"]), resolver)
    with fetch(f"https://pinned.test:{port}/x", LIMITS, guard) as blob:
        assert blob.read_all() == f"host=pinned.test:{port}".encode()
    assert lookups == ["pinned.test"]
    with pytest.raises(FetchError, match="TLS certificate verification failed"):
        fetch(f"https://other.test:{port}/x", LIMITS, guard)


def test_an_internationalised_host_name_is_fetched_in_punycode(files):
    """``例子.test`` travels as ``xn--fsqu00a.test`` (guard, Host header); the raw name
    could not even be encoded into the request line (a 500)."""
    url = files.add("/idn.txt", b"idn")
    port = url.split(":")[2].split("/")[0]
    asked = []

    def resolver(host, _port):
        asked.append(host)
        return ["127.0.0.1"]

    guard = FetchGuard(AllowList.parse(["127.0.0.1"]), resolver)
    with fetch(f"http://例子.test:{port}/idn.txt", LIMITS, guard) as blob:
        assert blob.read_all() == b"idn"
    assert asked == ["xn--fsqu00a.test"]
    assert files.last_host == f"xn--fsqu00a.test:{port}"
    by_name = FetchGuard(AllowList.parse(["例子.test"]), lambda host, port: ["127.0.0.1"])
    with fetch(f"http://例子.test:{port}/idn.txt", LIMITS, by_name) as blob:
        assert blob.read_all() == b"idn"  # an allow-list entry may be written either way


def test_an_invalid_internationalised_host_is_a_400():
    guard = FetchGuard(AllowList.parse(["127.0.0.1"]), lambda host, port: ["127.0.0.1"])
    with pytest.raises(FetchError, match="not a valid domain name") as info:
        fetch("http://" + "ü" * 70 + ".test/x", LIMITS, guard)
    assert info.value.status == 400


def test_the_next_checked_address_is_tried_when_one_refuses(files):
    """Like a dual-stack host whose first address has no route: 127.0.0.2 refuses (the
    server listens on 127.0.0.1 only), 127.0.0.1 answers."""
    url = files.add("/dual.txt", b"dual")
    port = url.split(":")[2].split("/")[0]
    guard = FetchGuard(AllowList.parse(["127.0.0.0/8"]), lambda h, p: ["127.0.0.2", "127.0.0.1"])
    with fetch(f"http://dual.test:{port}/dual.txt", LIMITS, guard) as blob:
        assert blob.read_all() == b"dual"
