"""Downloading a URL into a ``Blob``: guarded, pinned, bounded.

For a user-supplied URL, each hop (the URL itself and every redirect, at most
``MAX_REDIRECTS``) is resolved and checked by the :class:`FetchGuard`, and the
connection goes to the very address that was checked: the URL's host only
travels in the ``Host`` header and, for HTTPS, in SNI and certificate
verification. A DNS answer that changes between check and connect (DNS
rebinding) therefore cannot redirect the fetch to an internal address.

Files the *upstream* produced (generated images for ``b64_json``, first
frames for video) are fetched with ``guard=None``: they are not user input,
but size and time are capped all the same.

Every failure becomes a 400 naming the URL (the client sent it; the client can
fix it) except the size limit, which is a 413.
"""

from __future__ import annotations

import logging
import os
import posixpath
import time
from collections.abc import Generator
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

import certifi
import gevent
import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from glm_proxy.attachments.blob import Blob, describe, spool, too_large
from glm_proxy.attachments.guard import BlockedAddress, FetchGuard, Unresolvable
from glm_proxy.errors import InvalidRequest

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REDIRECTS = {301, 302, 303, 307, 308}
CHUNK = 64 * 1024
USER_AGENT = "glm-proxy/0.1 (attachment fetcher)"


@dataclass(frozen=True)
class FetchLimits:
    max_size: int
    connect_timeout: float
    read_timeout: float  # longest silence between two reads
    total_timeout: float = 120.0  # the whole download, redirects included


class _Expired(Exception):
    """The fetch's total deadline passed (raised into it by the timer)."""


class FetchError(InvalidRequest):
    """A URL the client sent could not be fetched (unreachable, refused, non-2xx)."""

    code = "invalid_url"


def _fail(url: str, why: str) -> FetchError:
    return FetchError(f"Could not fetch {describe(url)}: {why}.", code="invalid_url")


def _filename_from(url: str, disposition: str = "") -> str | None:
    if "filename=" in disposition:
        name = disposition.split("filename=", 1)[1].split(";", 1)[0].strip().strip('"')
        name = os.path.basename(unquote(name))
        if name:
            return name
    path = unquote(urlsplit(url).path)
    name = posixpath.basename(path.rstrip("/")) if path else ""
    return name or None


def _pool(scheme: str, host: str, address: str, port: int, limits: FetchLimits):
    """A one-connection pool to ``address``; HTTPS verifies the certificate for ``host``."""
    timeout = urllib3.Timeout(connect=limits.connect_timeout, read=limits.read_timeout)
    if scheme == "https":
        return urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            server_hostname=host,
            assert_hostname=host,
        )
    return urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)


def _ascii_host(url: str, host: str) -> str:
    """The host as it travels on the wire: an internationalised name in punycode.

    ``bücher.example`` is ``xn--bcher-kva.example`` in DNS, the ``Host`` header,
    SNI and certificates; the raw text cannot even be encoded into a header.
    The guard checks this form too, so it judges exactly what is connected to.
    """
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise _fail(url, "the host name is not a valid domain name") from None


def _host_header(host: str, port: int, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    return shown if port == default else f"{shown}:{port}"


def _open(url: str, guard: FetchGuard | None, limits: FetchLimits):
    """One request for ``url`` (no redirect following): (response, pool).

    Tries the checked addresses in order until one accepts the connection.
    """
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket: "http://[::1"
        raise _fail(url, "the URL is malformed") from None
    if scheme not in ("http", "https") or not host:
        raise _fail(url, "only http(s) URLs and data: URLs are supported")
    host = _ascii_host(url, host)
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise _fail(url, "the port is invalid") from None
    if guard is not None:
        try:
            addresses = guard.resolve(host, port)
        except BlockedAddress as exc:
            raise FetchError(
                f"Refusing to fetch {describe(url)}: {exc}. URLs must point to public "
                "addresses (an operator can allow hosts with FETCH_ALLOW_HOSTS).",
                code="url_not_allowed",
            ) from None
        except Unresolvable:
            raise _fail(url, "the host name does not resolve") from None
    else:
        addresses = [host]
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    headers = {
        "Host": _host_header(host, port, scheme),
        "User-Agent": USER_AGENT,
        "Accept": "*/*",
        "Accept-Encoding": "identity",
    }
    for index, address in enumerate(addresses):
        pool = _pool(scheme, host, address, port, limits)
        try:
            response = pool.urlopen(
                "GET",
                target,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
                assert_same_host=False,
            )
            return response, pool
        except urllib3.exceptions.NameResolutionError:
            pool.close()
            raise _fail(url, "the host name does not resolve") from None
        except urllib3.exceptions.NewConnectionError as exc:  # (subclasses ConnectTimeoutError)
            pool.close()
            if index + 1 < len(addresses):
                continue  # e.g. an IPv6 address without a route: try the next checked one
            raise _fail(url, f"the server is unreachable ({_reason(exc)})") from None
        except urllib3.exceptions.ConnectTimeoutError:
            pool.close()
            if index + 1 < len(addresses):
                continue
            raise _fail(url, f"connecting timed out after {limits.connect_timeout:g}s") from None
        except urllib3.exceptions.ReadTimeoutError:
            pool.close()
            raise _fail(url, f"the server did not answer within {limits.read_timeout:g}s") from None
        except (Urllib3Error, OSError) as exc:
            pool.close()
            raise _fail(url, f"the server is unreachable ({_reason(exc)})") from None
        except BaseException:
            pool.close()  # the deadline (or a kill) landed mid-request
            raise
    raise _fail(url, "the host has no address")  # pragma: no cover - resolve() never returns []


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "reason", None) or exc
    text = str(inner)
    if "Connection refused" in text:
        return "connection refused"
    if "SSL" in type(inner).__name__ or "certificate" in text.lower():
        lowered = text.lower()
        if "certificate" in lowered or "match" in lowered or "verify" in lowered:
            return "TLS certificate verification failed"
        return "TLS error"
    return type(inner).__name__


def _body(
    url: str, response, pool, limits: FetchLimits, deadline: float
) -> Generator[bytes, None, None]:
    try:
        # read1: what one socket read brought, so a slow server is seen chunk by chunk
        # (read(CHUNK) would wait for a full chunk) and the deadline is checked between.
        while chunk := response.read1(CHUNK, decode_content=True):
            if time.monotonic() > deadline:  # also without gevent's timer (plain threads)
                raise _Expired
            yield chunk
    except urllib3.exceptions.ReadTimeoutError:
        raise _fail(url, f"the server stalled for more than {limits.read_timeout:g}s") from None
    except (Urllib3Error, OSError) as exc:
        raise _fail(url, f"the download broke off ({_reason(exc)})") from None
    finally:
        response.release_conn()
        response.close()
        pool.close()


def fetch(
    url: str,
    limits: FetchLimits,
    guard: FetchGuard | None,
    *,
    filename: str | None = None,
) -> Blob:
    """Download ``url`` (following up to ``MAX_REDIRECTS`` checked redirects) into a Blob.

    The whole download, redirects included, must finish within
    ``limits.total_timeout``: the read timeout alone bounds only the silence
    between two reads, so a server dripping a byte at a time would never hit it.

    Raises:
        FetchError (400): bad scheme, refused address, unresolvable, unreachable,
            timeout, too many redirects, non-2xx status.
        PayloadTooLarge (413): ``Content-Length`` or the running size passes the limit.
    """
    deadline = time.monotonic() + limits.total_timeout
    try:
        with gevent.Timeout(limits.total_timeout, _Expired()):
            return _fetch(url, limits, guard, filename, deadline)
    except _Expired:
        raise _fail(
            url,
            f"the download did not finish within {limits.total_timeout:g}s (FETCH_TOTAL_TIMEOUT)",
        ) from None


def _fetch(
    url: str, limits: FetchLimits, guard: FetchGuard | None, filename: str | None, deadline: float
) -> Blob:
    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        response, pool = _open(current, guard, limits)
        status = response.status
        if status in REDIRECTS and response.headers.get("Location"):
            location = response.headers["Location"]
            response.close()
            pool.close()
            try:
                current = urljoin(current, location)
            except ValueError:
                raise _fail(url, "it redirects to a malformed URL") from None
            continue
        if not 200 <= status < 300:
            response.close()
            pool.close()
            where = "" if current == url else f" (redirected to {describe(current)})"
            raise _fail(url, f"the server answered HTTP {status}{where}")
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > limits.max_size:
            response.close()
            pool.close()
            raise too_large(url, limits.max_size)
        declared = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        name = filename or _filename_from(current, response.headers.get("Content-Disposition", ""))
        body = _body(url, response, pool, limits, deadline)
        try:
            return spool(
                body, limit=limits.max_size, source=url, declared_type=declared, filename=name
            )
        finally:
            body.close()  # stops reading at once when the size limit was hit
    raise _fail(url, f"more than {MAX_REDIRECTS} redirects")
