"""A local HTTP file server for attachment tests (a threaded ``http.server``).

Serves generated files (``add``), redirects (``/redirect?to=...``), error
statuses (``/status/<code>``), a slow drip (``/drip?bytes=N&every=S``: one
byte every S seconds, recording how many it sent before the client hung
up), and an endless stream without
``Content-Length`` (``/endless``) that records how many bytes it managed to
send before the client hung up, which is how the tests prove the proxy stops
downloading at the size limit instead of buffering everything.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from tests.conftest import ProxyServer, Simulator, start_proxy, stop_proxy

ENDLESS_CHUNK = 64 * 1024
MEDIA_MAX_FILE_SIZE = 4 * 1024 * 1024
MEDIA_PROXY_ENV = {
    "FETCH_ALLOW_HOSTS": "127.0.0.1",
    "MAX_FILE_SIZE": str(MEDIA_MAX_FILE_SIZE),
    "VIDEO_POLL_INTERVAL": "0.05",
    "VIDEO_DEADLINE": "20",
    "FETCH_READ_TIMEOUT": "5",
}


@dataclass
class FileServer:
    base: str
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    endless_sent: list[int] = field(default_factory=list)
    drip_sent: list[int] = field(default_factory=list)
    last_host: str | None = None  # the Host header of the latest request
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Serve ``data`` at ``path``, counting its hits from zero; returns the full URL.

        A test run twice against one server (once per protocol profile, in
        whatever order the tests run) then counts only its own fetches.
        """
        with self.lock:
            self.files[path] = (data, content_type)
            self.hits.pop(path, None)
        return self.base + path

    def url(self, path: str) -> str:
        return self.base + path

    def hit_count(self, path: str) -> int:
        with self.lock:
            return self.hits.get(path, 0)


def _handler(server: FileServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            with server.lock:
                server.hits[parts.path] = server.hits.get(parts.path, 0) + 1
                server.last_host = self.headers.get("Host")
                entry = server.files.get(parts.path)
            if parts.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", query["to"][0])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if parts.path.startswith("/status/"):
                code = int(parts.path.rsplit("/", 1)[1])
                self._send(code, b"nope", "text/plain")
                return
            if parts.path == "/endless":
                self._endless()
                return
            if parts.path == "/drip":
                self._drip(int(query["bytes"][0]), float(query["every"][0]))
                return
            if entry is None:
                self._send(404, b"not found", "text/plain")
                return
            self._send(200, *entry)

        def _send(self, code: int, data: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _drip(self, total: int, every: float) -> None:
            """A PNG-typed body of ``total`` bytes, one byte every ``every`` seconds."""
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(total))
            self.end_headers()
            sent = 0
            try:
                while sent < total:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    sent += 1
                    time.sleep(every)
            except OSError:
                pass
            finally:
                with server.lock:
                    server.drip_sent.append(sent)
                self.close_connection = True

        def _endless(self) -> None:
            """Random-ish bytes forever, no Content-Length (connection: close framing)."""
            self.send_response(200)
            self.send_header("Content-Type", "application/pdf")
            self.send_header("Connection", "close")
            self.end_headers()
            chunk = b"%PDF-1.4\n" + bytes(range(256)) * (ENDLESS_CHUNK // 256)
            sent = 0
            deadline = time.monotonic() + 60
            try:
                while time.monotonic() < deadline:
                    self.wfile.write(chunk)
                    sent += len(chunk)
            except OSError:
                pass
            finally:
                with server.lock:
                    server.endless_sent.append(sent)
                self.close_connection = True

    return Handler


def start_file_server() -> tuple[FileServer, ThreadingHTTPServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), None)  # type: ignore[arg-type]
    server = FileServer(f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.RequestHandlerClass = _handler(server)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return server, httpd


# -- sample files ---------------------------------------------------------------------


def image_bytes(fmt: str, size: tuple[int, int] = (320, 240), alpha: bool = False) -> bytes:
    """A real image in ``fmt`` (PNG, JPEG, WEBP), optionally with transparency."""
    mode = "RGBA" if alpha else "RGB"
    color = (200, 30, 60, 128) if alpha else (200, 30, 60)
    image = Image.new(mode, size, color)
    stripe = Image.new(mode, (size[0], max(1, size[1] // 5)), (20, 120, 220, 255)[: len(mode)])
    image.paste(stripe, (0, 0))
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def pdf_bytes(text: str = "Hello PDF", pad: int = 0) -> bytes:
    """A minimal valid PDF with one page of text (``pad`` adds a comment block for size)."""
    stream = f"BT /F1 24 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    if pad:
        out += b"%" + b"x" * pad + b"\n"
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    trailer = f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    out += trailer.encode()
    return bytes(out)


# -- fixtures ---------------------------------------------------------------------------
# Import into a test module (the fixtures are named file_server and media_proxy):
# from tests.support.fileserver import file_server_fixture, media_proxy_fixture  # noqa: F401


@pytest.fixture(scope="module", name="file_server")
def file_server_fixture() -> Iterator[FileServer]:
    server, httpd = start_file_server()
    yield server
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module", name="media_proxy")
def media_proxy_fixture(simulator: Simulator, tmp_path_factory) -> Iterator[ProxyServer]:
    """A proxy allowed to fetch from 127.0.0.1, with a 4 MiB file limit and fast video polls."""
    server = start_proxy(simulator, tmp_path_factory.mktemp("media"), **MEDIA_PROXY_ENV)
    yield server
    stop_proxy(server)
