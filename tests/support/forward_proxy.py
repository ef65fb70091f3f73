"""A small forward HTTP proxy on 127.0.0.1 for the outbound-proxy tests.

It takes absolute-form requests (``POST http://127.0.0.1:PORT/path HTTP/1.1``), as
``requests`` sends them to an ``http://`` proxy, relays them to their target on
this machine only, and streams the answer back; each request line is recorded.
"""

from __future__ import annotations

import http.server
import threading
import urllib.parse

import requests


class ForwardProxy:
    def __init__(self) -> None:
        self.requests: list[str] = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _relay(self) -> None:
                target = urllib.parse.urlsplit(self.path)
                proxy.requests.append(f"{self.command} {self.path}")
                if target.hostname not in ("127.0.0.1", "localhost"):
                    self.send_error(403, "this test proxy relays to 127.0.0.1 only")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "proxy-connection", "connection")
                }
                upstream = requests.request(
                    self.command, self.path, headers=headers, data=body, stream=True, timeout=30
                )
                self.send_response(upstream.status_code)
                for name, value in upstream.headers.items():
                    if name.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for piece in upstream.raw.stream(8192, decode_content=False):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                upstream.close()

            do_GET = do_POST = do_DELETE = do_PUT = _relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
