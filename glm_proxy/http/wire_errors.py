"""JSON instead of gunicorn's HTML pages for requests gunicorn refuses itself.

Some requests never reach the app: a request line or header block past
gunicorn's hard limits, conflicting framing headers (two ``Content-Length``,
``Content-Length`` with ``Transfer-Encoding``), an unsupported transfer
coding, control characters in a header. gunicorn answers those with a small
HTML page; API clients expect an error object. gunicorn writes every such
page through one function, ``gunicorn.util.write_error``, so ``install()``
(called from ``gunicorn.conf.py``, before the workers fork) replaces it with
one that writes the same status as JSON.

The page has the OpenAI shape plus Anthropic's top-level ``"type": "error"``:
the route is not known at this point (often not even parsed), and both SDKs
read the message from it. The connection is closed after it, as gunicorn does.

This module imports nothing from the app: it runs in gunicorn's master process,
before gevent patches anything.
"""

from __future__ import annotations

import json
import re
from typing import Any


def error_page(status: int, reason: str, message: str) -> bytes:
    """The whole HTTP response gunicorn sends for a request it refused."""
    code = re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_") or "bad_request"
    body = json.dumps(
        {
            "type": "error",
            "error": {
                "message": message or reason,
                "type": "invalid_request_error" if status < 500 else "api_error",
                "param": None,
                "code": code,
            },
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def install() -> None:
    """Make gunicorn write its own error responses as JSON (see module docstring)."""
    from gunicorn import util

    if getattr(util.write_error, "glm_proxy_json", False):
        return

    def write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
        util.write_nonblock(sock, error_page(int(status_int), str(reason), str(mesg)))

    # A mark on the function itself: install() then knows gunicorn has ours already.
    write_error.glm_proxy_json = True  # type: ignore[attr-defined]
    util.write_error = write_error
