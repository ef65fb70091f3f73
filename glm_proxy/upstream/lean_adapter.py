"""The upstream session's transport adapter: HTTP/1.1 on pooled sockets, parsed in C.

Why it exists: every answer is one streamed upstream call and a share of a
delete. Sent and read through urllib3 and ``http.client`` (a buffered reader, a
header parser written in Python, the chunk framing in Python, a timer per socket
read), the transport took a quarter of the worker's CPU per answer and over a
millisecond of each answer's first-token time (``tests/bench/README.md``).

What it does itself, for the requests the upstream client makes: a direct
connection (``http``/``https``, with ``verify`` on, off or a CA bundle), a
body of bytes (or none), kept-alive connections pooled per host, the response
framed by ``httptools`` (``lean_body.py``), ``gzip``/``deflate`` bodies. What it
hands to ``requests``' own ``HTTPAdapter``, unchanged: any request through a proxy
(``UPSTREAM_PROXY``, an account's ``proxy=``), client certificates, streamed
(iterator or file) bodies, a ``urllib3.Timeout`` object, and requests whose
``Accept-Encoding`` asks for a coding other than those two. So the session
supports everything the default adapter does; ``UPSTREAM_TRANSPORT=requests``
mounts the default adapter alone.

Failures are the ``requests`` exceptions the default adapter raises
(``ConnectTimeout``, ``ReadTimeout``, ``SSLError``, ``ConnectionError``), with
the cause chained, so ``upstream.client`` translates them in its one place.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import gevent.socket
import gevent.ssl
import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_encoding_from_headers, select_proxy
from urllib3.util import wait_for_read

from glm_proxy.upstream.lean_body import HeadError, LeanBody

__all__ = ["LeanAdapter"]

_Key = tuple[str, str, int]  # scheme, host, port
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LEAN_CODINGS = frozenset({"identity", "gzip", "deflate", "x-gzip"})


def _target(url: str) -> tuple[_Key, str, str]:
    """(pool key, ``Host`` header value, request target) of an absolute URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    port = parts.port or _DEFAULT_PORTS[scheme]
    shown = f"[{host}]" if ":" in host else host
    if port != _DEFAULT_PORTS[scheme]:
        shown = f"{shown}:{port}"
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    return (scheme, host, port), shown, target


def _dropped(sock: socket.socket, tls: bool) -> bool:
    """Whether an idle kept-alive connection can no longer carry a request: the server
    closed it, or sent bytes nobody asked for. A plain socket is asked without waiting
    (a one-byte peek); a TLS one, whose bytes cannot be peeked, by a zero-time poll."""
    if tls:
        return sock.pending() > 0 or wait_for_read(sock, timeout=0.0)  # type: ignore[attr-defined]  # an SSLSocket
    sock.settimeout(0.0)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True  # b"" (closed) or unasked-for bytes


def _connect(host: str, port: int, timeout: float | None) -> socket.socket:
    """A connected gevent socket, patched or not: a waiting read yields, and closing the
    socket wakes it (the body's read timeout relies on that: ``lean_body.BODY_READS``).

    An address given as a number is connected to as it is: a name goes through
    ``getaddrinfo``, which gevent runs on a thread, a hand-off that waits for a core
    when the machine is busy, on the path of the first token.
    """
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return gevent.socket.create_connection((host, port), timeout=timeout)
    sock = gevent.socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _timeouts(timeout: Any) -> tuple[float | None, float | None]:
    if isinstance(timeout, tuple):
        connect, read = timeout
        return connect, read
    return timeout, timeout


class LeanAdapter(HTTPAdapter):
    """``requests`` adapter: the lean path for plain requests, the default one for the rest."""

    def __init__(self, pool_connections: int = 10, pool_maxsize: int = 10, **kwargs: Any) -> None:
        super().__init__(pool_connections=pool_connections, pool_maxsize=pool_maxsize, **kwargs)
        self._idle_max = pool_maxsize
        self._idle: dict[tuple[_Key, Any], list[socket.socket]] = {}  # by (key, verify)
        self._targets: dict[str, tuple[_Key, str, str]] = {}
        self._contexts: dict[Any, ssl.SSLContext] = {}

    # -- routing --------------------------------------------------------------------------

    def _lean(
        self, request: requests.PreparedRequest, timeout: Any, cert: Any, proxies: Any
    ) -> bool:
        """Whether this request takes the lean path (see the module docstring)."""
        if cert or (proxies and select_proxy(request.url or "", proxies)):
            return False
        if timeout is not None and not isinstance(timeout, int | float | tuple):
            return False
        body = request.body
        if body is not None and not isinstance(body, bytes):
            return False  # a file, an iterator (or text, which http.client encodes as Latin-1)
        coding = request.headers.get("Accept-Encoding")
        if (
            coding
            and not {c.split(";")[0].strip().lower() for c in coding.split(",")} <= _LEAN_CODINGS
        ):
            return False
        return (request.url or "").startswith(("http://", "https://"))

    def send(  # the parameters of HTTPAdapter.send
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        if not self._lean(request, timeout, cert, proxies):
            return super().send(
                request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
            )
        url = request.url or ""
        known = self._targets.get(url)
        if known is None:
            known = _target(url)
            if len(self._targets) > 256:
                self._targets.clear()
            self._targets[url] = known
        key, host, target = known
        connect_timeout, read_timeout = _timeouts(timeout)
        payload = self._encode(request, host, target)
        head_only = request.method == "HEAD"
        for _attempt in range(2):
            sock, reused = self._connection(key, connect_timeout, read_timeout, verify, request)
            body = LeanBody(
                sock,
                head_only=head_only,
                release=partial(self._release, (key, verify)),
                read_timeout=read_timeout,
            )
            try:
                sock.sendall(payload)
                body.read_head()
            except HeadError as exc:
                if exc.closed and reused:
                    continue  # a kept-alive connection the server had dropped: once more, fresh
                raise requests.exceptions.ConnectionError(
                    ConnectionAbortedError(str(exc)), request=request
                ) from None
            except TimeoutError as exc:
                body.close()
                raise requests.exceptions.ReadTimeout(exc, request=request) from exc
            except OSError as exc:
                body.close()
                if reused:
                    continue
                raise requests.exceptions.ConnectionError(exc, request=request) from exc
            except BaseException:
                body.close()
                raise
            return self._response(request, body)
        raise requests.exceptions.ConnectionError(  # pragma: no cover - the fresh try raises
            ConnectionAbortedError("the connection closed before a response"), request=request
        )

    # -- the request ------------------------------------------------------------------------

    @staticmethod
    def _encode(request: requests.PreparedRequest, host: str, target: str) -> bytes:
        """The request's head and body as ``http.client`` writes them (``Host`` and
        ``Accept-Encoding: identity`` first, unless the request has its own)."""
        headers = request.headers
        lines = [f"{request.method} {target} HTTP/1.1\r\n"]
        if "Host" not in headers:
            lines.append(f"Host: {host}\r\n")
        if "Accept-Encoding" not in headers:
            lines.append("Accept-Encoding: identity\r\n")
        lines.extend(f"{name}: {value}\r\n" for name, value in headers.items())
        lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        body = request.body
        if not body:
            return head
        return head + body  # type: ignore[operator]  # bytes: _lean sends nothing else

    # -- connections --------------------------------------------------------------------------

    def _connection(
        self,
        key: _Key,
        connect_timeout: float | None,
        read_timeout: float | None,
        verify: bool | str,
        request: requests.PreparedRequest,
    ) -> tuple[socket.socket, bool]:
        """A kept-alive connection still open, else a new one (raises ``requests`` errors).

        Kept connections are pooled by ``verify`` too: one made without checks never
        carries a request that asked for them.
        """
        idle = self._idle.get((key, verify))
        while idle:
            sock = idle.pop()
            if _dropped(sock, key[0] == "https"):  # closed by the server (or sent junk) while idle
                sock.close()
                continue
            sock.settimeout(read_timeout)
            return sock, True
        scheme, host, port = key
        conn: socket.socket | None = None
        try:
            conn = _connect(host, port, connect_timeout)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                conn = self._context(verify).wrap_socket(conn, server_hostname=host)
        except OSError as exc:  # SSL errors and timeouts included
            if conn is not None:
                conn.close()
            kind = requests.exceptions.ConnectionError
            if isinstance(exc, ssl.SSLError):
                kind = requests.exceptions.SSLError
            elif isinstance(exc, TimeoutError):
                kind = requests.exceptions.ConnectTimeout
            raise kind(exc, request=request) from exc
        conn.settimeout(read_timeout)
        return conn, False

    def _context(self, verify: bool | str) -> ssl.SSLContext:
        """One TLS context per ``verify`` value: certifi's bundle, a CA path, or no checks."""
        context = self._contexts.get(verify)
        if context is None:
            if verify is False:
                context = gevent.ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                where = DEFAULT_CA_BUNDLE_PATH if verify is True else str(verify)
                if os.path.isdir(where):
                    context = gevent.ssl.create_default_context(capath=where)
                else:
                    context = gevent.ssl.create_default_context(cafile=where)
            context.set_alpn_protocols(["http/1.1"])
            self._contexts[verify] = context
        return context

    def _release(self, pool: tuple[_Key, Any], sock: socket.socket) -> None:
        """Keep a connection whose response was read to its end, up to ``pool_maxsize``."""
        idle = self._idle.setdefault(pool, [])
        if len(idle) < self._idle_max:
            idle.append(sock)
        else:
            sock.close()

    def close(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        super().close()

    # -- the response -------------------------------------------------------------------------

    def _response(self, request: requests.PreparedRequest, body: LeanBody) -> requests.Response:
        response = requests.Response()
        response.status_code = body.status
        response.reason = body.reason
        fields: dict[str, tuple[str, str]] = {}
        for name, value in body.header_pairs:  # repeated fields joined, as urllib3 joins them
            key = name.lower()
            known = fields.get(key)
            fields[key] = (known[0], f"{known[1]}, {value}") if known else (name, value)
        headers: CaseInsensitiveDict[str] = CaseInsensitiveDict(dict(fields.values()))
        response.headers = headers
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = body
        response.url = request.url or ""
        response.request = request
        response.connection = self
        return response
