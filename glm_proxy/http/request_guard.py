"""Limits on what a caller sends, applied before any endpoint looks at the request.

One gevent worker serves every client, so one hostile request must not be
able to hold it: the request target and header fields are bounded (414/431),
the body must arrive within ``REQUEST_BODY_TIMEOUT`` (408) and within
``MAX_REQUEST_BODY`` however it is framed (413), a malformed chunked body is
the caller's error (400), and a JSON body's ``messages``, content parts and
JSON schemas (tools, structured outputs) are measured before the (much
slower) validation walks them (400).

The body guard wraps ``wsgi.input`` once per request, so the JSON reader and
werkzeug's form parser both go through it. When it gives up on a body it
tells gunicorn (``Body.failed``, gunicorn's own flag for "reading this body
raised") so the connection is closed after the error instead of gunicorn
draining whatever the client still sends.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
import orjson

from glm_proxy.errors import GLMProxyError, InvalidRequest, PayloadTooLarge
from glm_proxy.protocol.parsers.schema_budget import BudgetExceeded, SchemaBudget, check_budget

try:  # the server's body parser errors, when the server is gunicorn
    from gunicorn.http.errors import NoMoreData, ParseException
except ImportError:  # pragma: no cover - another WSGI server
    # Stand-ins with the same names, for the except clauses below.
    class NoMoreData(OSError):  # type: ignore[no-redef]
        pass

    class ParseException(Exception):  # type: ignore[no-redef]
        pass


SERVER_BODY_ERRORS = (ParseException, NoMoreData)

READ_STEP = 64 * 1024
DRAIN_AT_MOST = 64 * 1024  # unread body the server may still drain after a response
YIELD_EVERY = 200  # items handled between two gevent yields (a few milliseconds of work)
_ticks = 0


class RequestTimeout(GLMProxyError):
    status = 408
    openai_type = "invalid_request_error"
    code = "request_timeout"


class UriTooLong(GLMProxyError):
    status = 414
    openai_type = "invalid_request_error"
    code = "uri_too_long"


class HeadersTooLarge(GLMProxyError):
    status = 431
    openai_type = "invalid_request_error"
    code = "request_header_fields_too_large"


class _Expired(Exception):
    """Raised into a body read by the deadline timer (an ``Exception``, so gunicorn's
    body reader marks itself failed, unlike ``gevent.Timeout`` itself)."""


def abandon_body(stream: Any) -> None:
    """Tell the server the rest of this body will not be read: close, don't drain."""
    inner = getattr(stream, "inner", stream)
    if hasattr(inner, "failed"):
        inner.failed = True


def body_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than the limit of {limit} bytes (MAX_REQUEST_BODY)."
    )


class GuardedInput:
    """``wsgi.input`` with a deadline, a size cap and 4xx errors instead of tracebacks."""

    def __init__(
        self,
        inner: Any,
        *,
        deadline: float,
        timeout: float,
        limit: int,
        expected: int | None = None,
    ) -> None:
        self.inner = inner
        self.deadline = deadline  # time.monotonic() by which the body must be in
        self.timeout = timeout
        self.limit = limit
        self.expected = expected  # Content-Length; None for a chunked body
        self.received = 0
        self.ended = False  # a read returned b"": the body is complete

    @property
    def complete(self) -> bool:
        if self.expected is not None:
            return self.received >= self.expected
        return self.ended

    def _call(self, method: str, size: int) -> bytes:
        remaining = self.deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise _Expired
            with gevent.Timeout(remaining, _Expired()):
                data = getattr(self.inner, method)(size)
        except _Expired:
            abandon_body(self.inner)
            raise RequestTimeout(
                f"The request body did not arrive within {self.timeout:g}s "
                "(REQUEST_BODY_TIMEOUT): the client sent less than it announced, or too slowly."
            ) from None
        except SERVER_BODY_ERRORS as exc:
            abandon_body(self.inner)
            if isinstance(exc, NoMoreData):
                raise InvalidRequest(
                    "The connection closed before the whole request body arrived.",
                    code="incomplete_body",
                ) from None
            raise InvalidRequest(
                f"The request body is malformed ({type(exc).__name__}: {exc}).",
                code="invalid_body",
            ) from None
        self.received += len(data)
        if size and not data:
            self.ended = True
        if self.received > self.limit:
            abandon_body(self.inner)
            raise body_too_large(self.limit)
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            parts = []
            while chunk := self._call("read", READ_STEP):
                parts.append(chunk)
            return b"".join(parts)
        return self._call("read", size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._call("readline", READ_STEP if size is None or size < 0 else size)

    def __iter__(self):
        while line := self.readline():
            yield line


def guard_body(environ: dict[str, Any], settings, started: float) -> None:
    """Replace ``wsgi.input`` with a :class:`GuardedInput` (before anything reads it)."""
    stream = environ.get("wsgi.input")
    if stream is None or isinstance(stream, GuardedInput):
        return
    length = environ.get("CONTENT_LENGTH", "")
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    environ["wsgi.input"] = GuardedInput(
        stream,
        deadline=started + settings.request_body_timeout,
        timeout=settings.request_body_timeout,
        limit=settings.max_request_body,
        expected=None if chunked else int(length) if length.isdigit() else 0,
    )


def settle_body(environ: dict[str, Any]) -> None:
    """After the response: a large or chunked body the app did not read (an error
    came first, say) is not drained by the server, which would read and wait for
    it up to the keep-alive timeout; the connection is closed instead. A small
    remainder (``DRAIN_AT_MOST``) is left to drain so the connection is reused."""
    stream = environ.get("wsgi.input")
    if not isinstance(stream, GuardedInput) or stream.complete:
        return
    if stream.expected is None or stream.expected - stream.received > DRAIN_AT_MOST:
        abandon_body(stream)


def read_body(environ: dict[str, Any], content_length: int | None, limit: int) -> bytes:
    """The whole body: ``Content-Length`` bytes, or up to the end of a chunked body."""
    stream = environ["wsgi.input"]
    if content_length is not None and content_length > limit:
        abandon_body(stream)
        raise body_too_large(limit)
    if content_length is None:
        return stream.read()
    parts, left = [], content_length
    while left > 0:
        chunk = stream.read(min(READ_STEP, left))
        if not chunk:
            raise InvalidRequest(
                "The connection closed before the whole request body arrived.",
                code="incomplete_body",
            )
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def check_head(request, settings) -> None:
    """The request target and header fields against the configured limits (414, 431).

    gunicorn's own limits are set higher (``gunicorn.conf.py``) so that these
    answer first, with an error object in the route's shape. One pass over the
    WSGI environ, counting what werkzeug's ``request.headers`` would list
    (every request goes through here: its view would walk the environ twice).
    """
    environ = request.environ
    target = environ.get("RAW_URI") or request.full_path
    if len(target) > settings.max_url_length:
        raise UriTooLong(
            f"The request target is {len(target)} characters long; the limit is "
            f"{settings.max_url_length} (MAX_URL_LENGTH)."
        )
    count = 0
    oversized: tuple[str, int] | None = None  # the first field over the limit, and its size
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            if key in _BODY_HEADER_KEYS:
                continue  # werkzeug lists the CGI CONTENT_* keys instead
            size = len(key) - 5 + len(value) + 2  # "Name: value", as werkzeug counts it
        elif key in _BODY_HEADER_KEYS_CGI and value:
            size = len(key) + len(value) + 2
        else:
            continue
        count += 1
        if oversized is None and size > settings.max_header_size:
            oversized = (key, size)
    if count > settings.max_headers:
        raise HeadersTooLarge(
            f"The request has {count} header fields; the limit is "
            f"{settings.max_headers} (MAX_HEADERS)."
        )
    if oversized is not None:
        name = _header_name(oversized[0])
        raise HeadersTooLarge(
            f"The header field {name!r} is {oversized[1]} bytes; the limit is "
            f"{settings.max_header_size} (MAX_HEADER_SIZE).",
            param=name,
        )


_BODY_HEADER_KEYS = frozenset({"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"})
_BODY_HEADER_KEYS_CGI = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})


def _header_name(key: str) -> str:
    """A WSGI environ key as werkzeug names the header (``HTTP_X_API_KEY`` -> ``X-Api-Key``)."""
    return (key[5:] if key.startswith("HTTP_") else key).replace("_", "-").title()


def tick() -> None:
    """Count one item of per-item request work; every ``YIELD_EVERY`` let others run.

    Validation and prompt building walk every message; at the message caps
    that is a few hundred milliseconds of pure Python, during which the only
    worker would answer nobody else (health checks included). Calling this
    once per item spreads it into slices of a few milliseconds. The sleep is
    positive: that waits for the next turn of the event loop, where other
    requests' sockets and timers are served; ``sleep(0)`` only ran callbacks
    already queued, and a 20 ms timer waited over a second behind the loop.
    """
    global _ticks
    _ticks += 1
    if _ticks >= YIELD_EVERY:
        _ticks = 0
        pause()


def too_many_messages(field: str, limit: int, held: str) -> InvalidRequest:
    """The 400 for a ``messages``/``input`` array over ``MAX_MESSAGES`` (``held``: its size,
    or "more than N" when counted before the parse, ``glm_proxy.http.json_budget``)."""
    return InvalidRequest(
        f"`{field}` holds {held} items; the limit is {limit} (MAX_MESSAGES).",
        param=field,
        code="too_many_messages",
    )


def pause() -> None:
    """Let the event loop serve other requests once (see ``tick``)."""
    gevent.sleep(0.0001)


def _check_schemas(body: dict[str, Any], settings) -> None:
    """The request's JSON schemas within MAX_SCHEMA_BYTES/PROPERTIES/DEPTH/PATTERN_LENGTH."""
    budget = SchemaBudget(
        settings.max_schema_bytes,
        settings.max_schema_properties,
        settings.max_schema_depth,
        settings.max_schema_pattern_length,
    )
    try:
        check_budget(body, budget)
    except BudgetExceeded as exc:
        raise InvalidRequest(str(exc), param=exc.param, code="schema_too_large") from None


def _check_nesting(body: dict[str, Any]) -> None:
    """A body nested deeper than the JSON encoder goes is refused (400), not crashed on later.

    Tool-call arguments, ``tool_use`` inputs and the like are re-encoded for
    the prompt; past 254 levels ``orjson`` refuses, which surfaced as a 500.
    Encoding the whole body once is a C pass, about 6 ms per MB.
    """
    try:
        orjson.dumps(body)
    except TypeError:
        raise InvalidRequest(
            "The request body nests arrays and objects more than 254 levels deep.",
            code="nested_too_deep",
        ) from None


def check_shape(body: Any, settings) -> None:
    """Count tools, messages and content parts before the schema validates each (400).

    ``tools``, ``messages`` (Chat Completions, Anthropic), ``input``
    (Responses) and Anthropic's ``system`` blocks are counted; a request over
    the limits is refused before any per-item work.
    """
    if not isinstance(body, dict):
        return
    tools = body.get("tools")
    if isinstance(tools, list) and len(tools) > settings.max_tools:
        raise InvalidRequest(
            f"`tools` holds {len(tools)} definitions; the limit is {settings.max_tools} "
            "(MAX_TOOLS).",
            param="tools",
            code="too_many_tools",
        )
    _check_schemas(body, settings)
    max_messages, max_parts = settings.max_messages, settings.max_content_parts
    parts = 0
    for field in ("messages", "input", "system"):
        items = body.get(field)
        if not isinstance(items, list):
            continue
        if field != "system" and len(items) > max_messages:
            raise too_many_messages(field, max_messages, str(len(items)))
        if field == "system":
            parts += len(items)
        for index, item in enumerate(items):
            tick()
            content = item.get("content") if isinstance(item, dict) else None
            if isinstance(content, list):
                parts += len(content)
            if parts > max_parts:
                raise InvalidRequest(
                    f"The request holds more than {max_parts} content parts (MAX_CONTENT_PARTS).",
                    param=f"{field}[{index}].content",
                    code="too_many_content_parts",
                )
        if parts > max_parts:
            raise InvalidRequest(
                f"The request holds more than {max_parts} content parts (MAX_CONTENT_PARTS).",
                param=field,
                code="too_many_content_parts",
            )
    _check_nesting(body)
