"""HTTP/1.1 to the upstream on pooled gevent sockets, parsed by ``httptools``.

Why: an answer costs two upstream requests (the stream, the delete) and one
socket read per event. Through ``requests``/``urllib3``/``http.client`` each
request ran some thirty header checks and encodes, a connection liveness poll,
an ``email``-parser pass over the response head and two wrapper responses;
each streamed event a ``readline`` for the chunk size and a buffered read.
Here a request is one ``sendall`` of a head encoded in one pass, and the
response (status, headers, chunked framing) is parsed by ``httptools`` (the C
``llhttp`` parser uvicorn uses) from ``recv`` calls of up to 64 KiB. The
measured figures are in ``tests/bench/README.md``.

Scope: plain requests with a ``bytes`` body to an ``http``/``https`` URL
without credentials, with headers ``requests`` would accept. For anything
else :meth:`FastHTTP.request` returns None before sending and the caller takes
the ``requests`` path. Failures raise the same errors the ``requests`` path
maps to (``UpstreamTimeout``, ``UpstreamConnectError``, ``UpstreamRetryable``).

Connections are kept per (scheme, host, port) after a response was read to
its end, unless the server asked to close; an idle connection is checked with
a zero-timeout ``poll`` before reuse, and dropped after ``idle_timeout``.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from gevent.monkey import get_original

from glm_proxy.errors import GLMProxyError, UpstreamConnectError, UpstreamRetryable, UpstreamTimeout
from glm_proxy.upstream.fast_response import (
    BodyBroken,
    BodyTimeout,
    FastResponse,
    StaleConnection,
    close_quietly,
)
from glm_proxy.upstream.transport import headers_acceptable

# BodyBroken, BodyTimeout and FastResponse live in fast_response; offered here with the client.
__all__ = ["BodyBroken", "BodyTimeout", "FastHTTP", "FastResponse"]

_poll = get_original("select", "poll")  # a zero-timeout liveness check; never blocks
_POLLIN = 0x001


@dataclass(frozen=True, slots=True)
class _Target:
    key: tuple[str, str, int]  # scheme, host, port: the connection pool
    host: str
    port: int
    tls: bool
    host_header: str
    path: str  # request target: path and query, already ASCII
    family: int | None  # an IP literal's address family: connect without a resolver call


class FastHTTP:
    """A small keep-alive HTTP/1.1 client for the upstream client's ordinary requests."""

    def __init__(
        self,
        pool_maxsize: int = 64,
        idle_timeout: float = 50.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.pool_maxsize = pool_maxsize
        self.idle_timeout = idle_timeout
        self._idle: dict[tuple[str, str, int], list[tuple[socket.socket, float]]] = {}
        self._targets: dict[str, _Target | None] = {}
        self._names: set[str] = set()
        self._tls = tls_context  # None: certifi's CA bundle, made on first use

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        *,
        timeout: tuple[float, float],
        stream: bool = False,
    ) -> FastResponse | None:
        """Send one request; None (nothing sent) when it is not one this client handles."""
        if body is not None and type(body) is not bytes:
            return None
        target = self._targets.get(url, False)
        if target is False:
            target = self._target(url)
        if target is None:
            return None
        head = self._head(method, target, headers, body)
        if head is None:
            return None
        connect_timeout, read_timeout = timeout
        payload = head + body if body else head
        try:
            sock, reused = self._connection(target, connect_timeout)
            try:
                response = self._exchange(target, sock, payload, read_timeout)
            except StaleConnection:
                if not reused:
                    raise
                # A kept-alive connection the server closed meanwhile: one fresh try.
                sock, _ = self._connection(target, connect_timeout, fresh=True)
                response = self._exchange(target, sock, payload, read_timeout)
            if not stream:
                try:
                    response.read_all()
                except BaseException:
                    response.close()
                    raise
        except BaseException as exc:
            raise _mapped(exc) from None
        return response

    def _exchange(
        self, target: _Target, sock: socket.socket, payload: bytes, read_timeout: float
    ) -> FastResponse:
        """Send the request on ``sock`` and read the response head."""
        response = FastResponse(sock, read_timeout, lambda done: self.release(target, done))
        try:
            sock.settimeout(read_timeout)
            sock.sendall(payload)
            response.read_head()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
            response.close()
            raise StaleConnection from None
        except BaseException:
            response.close()
            raise
        return response

    # -- building the request ------------------------------------------------

    def _target(self, url: str) -> _Target | None:
        target = None
        try:
            parts = urlsplit(url)
            if (
                parts.scheme in ("http", "https")
                and parts.hostname
                and not parts.username
                and not parts.password
                and url.isascii()
                and " " not in url
            ):
                tls = parts.scheme == "https"
                port = parts.port or (443 if tls else 80)
                default = port == (443 if tls else 80)
                host = parts.hostname
                shown = f"[{host}]" if ":" in host else host
                path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
                target = _Target(
                    (parts.scheme, host, port),
                    host,
                    port,
                    tls,
                    shown if default else f"{shown}:{port}",
                    path,
                    _ip_family(host),
                )
        except ValueError:
            target = None
        if len(self._targets) >= 1024:
            self._targets.clear()
        self._targets[url] = target
        return target

    def _head(
        self, method: str, target: _Target, headers: dict[str, str], body: bytes | None
    ) -> bytes | None:
        method = method.upper()
        if method == "HEAD" or not (method.isascii() and method.isalpha()):
            return None  # a HEAD response's length would mislead the body parser
        if not headers_acceptable(headers, self._names):
            return None
        lines = [f"{method} {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"]
        has_encoding = False
        for name, value in headers.items():
            lower = name.lower()
            if lower in ("host", "content-length", "transfer-encoding"):
                return None  # an explicit Host or framing: leave that to requests
            if lower == "accept-encoding":
                has_encoding = True
            lines.append(f"{name}: {value}\r\n")
        if not has_encoding:
            lines.append("Accept-Encoding: identity\r\n")  # as http.client: nothing to decode
        if body or method != "GET":
            lines.append(f"Content-Length: {len(body) if body else 0}\r\n")
        lines.append("\r\n")
        try:
            return "".join(lines).encode("latin-1")
        except UnicodeEncodeError:
            return None

    # -- connections ---------------------------------------------------------

    def _connection(
        self, target: _Target, connect_timeout: float, fresh: bool = False
    ) -> tuple[socket.socket, bool]:
        idle = self._idle.get(target.key)
        now = time.monotonic()
        while idle and not fresh:
            sock, since = idle.pop()
            if now - since < self.idle_timeout and _alive(sock):
                return sock, True
            close_quietly(sock)
        try:
            if target.family is None:
                sock = socket.create_connection((target.host, target.port), connect_timeout)
            else:
                sock = _connect_ip(target, connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if target.tls:
                sock = self._tls_context().wrap_socket(sock, server_hostname=target.host)
        except TimeoutError:
            raise UpstreamTimeout(
                "could not connect to the upstream in time", code="upstream_connect_timeout"
            ) from None
        except OSError as exc:  # a TLS failure is named: a certificate problem is no outage
            kind = type(exc).__name__ if isinstance(exc, ssl.SSLError) else "ConnectionError"
            raise UpstreamConnectError(f"could not reach the upstream ({kind})") from None
        return sock, False

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            import certifi  # the CA bundle requests uses

            context = ssl.create_default_context(cafile=certifi.where())
            context.set_alpn_protocols(["http/1.1"])
            self._tls = context
        return self._tls

    def release(self, target: _Target, sock: socket.socket) -> None:
        """A connection whose response was read to its end goes back to the pool; reuse
        takes the newest, so expired old ones are closed here or they would linger."""
        idle = self._idle.setdefault(target.key, [])
        now = time.monotonic()
        while idle and now - idle[0][1] >= self.idle_timeout:
            close_quietly(idle.pop(0)[0])
        if len(idle) >= self.pool_maxsize:
            close_quietly(sock)
            return
        idle.append((sock, now))


def _ip_family(host: str) -> int | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return socket.AF_INET6 if address.version == 6 else socket.AF_INET


def _connect_ip(target: _Target, timeout: float) -> socket.socket:
    """``create_connection`` for an IP literal, without the resolver's thread round trip."""
    sock = socket.socket(target.family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((target.host, target.port))
    except BaseException:
        sock.close()
        raise
    return sock


def _alive(sock: socket.socket) -> bool:
    """An idle kept-alive connection is usable when nothing (no EOF, no data) is waiting."""
    try:
        poller = _poll()
        poller.register(sock.fileno(), _POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def _mapped(exc: BaseException) -> BaseException:
    """A transport failure as the error the ``requests`` path would have raised."""
    if isinstance(exc, GLMProxyError):
        return exc
    if isinstance(exc, (TimeoutError, BodyTimeout)):
        return UpstreamTimeout("the upstream did not answer in time")
    if isinstance(exc, BodyBroken):
        return UpstreamRetryable("upstream request failed (ChunkedEncodingError)")
    if isinstance(exc, (OSError, StaleConnection)):
        return UpstreamConnectError("could not reach the upstream (ConnectionError)")
    return exc
