"""A lean send path for the upstream client's ordinary requests (bytes body, no files).

Why: every answer costs at least two upstream requests (the stream, the delete),
each with some thirty browser headers. ``requests.Request.prepare`` re-parses
the URL, runs two regular expressions per header and rebuilds the header dict
several times, and ``Session.send`` then adds hooks, cookie extraction and
redirect bookkeeping the client never uses (the session holds no cookies: its
policy refuses them; redirects are not followed). Together that was about a
tenth of the CPU of a streamed completion.

:func:`prepare` builds the same ``PreparedRequest`` that ``requests`` would
(method, URL, headers, body, ``Content-Length``) with the URL prepared once per
distinct URL and the header check done in one pass; anything unusual (files,
a non-bytes body, credentials in the URL, a header ``requests`` would refuse)
returns None and the caller takes the full ``requests`` path, so errors stay
exactly what ``requests`` raises. :func:`send` hands the request straight to
the session's mounted adapter, as ``Session.send`` does at its core.
"""

from __future__ import annotations

import re
from typing import Any

import requests
from requests.structures import CaseInsensitiveDict

# requests refuses a header name or value with CR/LF or leading whitespace
# (utils.check_header_validity); headers_acceptable checks the same before the lean path.
_UNSAFE_NAME = re.compile(r"\A\s|[:\r\n]")
_MAX_URLS = 1024


class LeanSender:
    """Caches prepared URLs and checked header names for one session."""

    def __init__(self, session: requests.Session) -> None:
        self.session = session
        self._urls: dict[str, str | None] = {}  # url -> prepared url (None: take the full path)
        self._names: set[str] = set()

    def prepare(
        self, method: str, url: str, headers: dict[str, str], data: Any
    ) -> requests.PreparedRequest | None:
        """The prepared request, or None when the full ``requests`` path must decide."""
        if data is not None and not isinstance(data, bytes):
            return None
        prepared_url = self._urls.get(url, "")
        if prepared_url == "":
            prepared_url = self._prepare_url(url)
        if prepared_url is None or not self._headers_ok(headers):
            return None
        p = requests.PreparedRequest()
        p.method = method.upper()
        p.url = prepared_url
        p.headers = CaseInsensitiveDict(headers)
        p.body = data or None  # as requests: an empty body is no body
        if data:
            p.headers["Content-Length"] = str(len(data))
        elif p.method not in ("GET", "HEAD") and "Content-Length" not in p.headers:
            p.headers["Content-Length"] = "0"
        return p

    def send(
        self, prepared: requests.PreparedRequest, *, stream: bool, timeout: Any
    ) -> requests.Response:
        """``Session.send`` without hooks, cookie extraction and redirect handling."""
        s = self.session
        adapter = s.get_adapter(prepared.url)
        resp = adapter.send(
            prepared, stream=stream, timeout=timeout, verify=s.verify, cert=s.cert, proxies={}
        )
        if not stream:
            resp.content  # noqa: B018 - read now and release the connection, like Session.send
        return resp

    def _prepare_url(self, url: str) -> str | None:
        probe = requests.Request("GET", url).prepare()
        # credentials in the URL become an Authorization header: leave that to requests
        result = None if "Authorization" in probe.headers else probe.url
        if len(self._urls) >= _MAX_URLS:
            self._urls.clear()
        self._urls[url] = result
        return result

    def _headers_ok(self, headers: dict[str, str]) -> bool:
        return headers_acceptable(headers, self._names)


def headers_acceptable(headers: dict[str, str], known_names: set[str]) -> bool:
    """Whether ``requests`` would accept these headers (names and values ``str``, no CR/LF,
    no leading whitespace). ``known_names`` caches names already found acceptable; it is
    shared with the lean HTTP client (``fast_http``), which sends only what passes here."""
    for name in headers:
        if name not in known_names:
            if not isinstance(name, str) or not name or _UNSAFE_NAME.search(name):
                return False
            if len(known_names) < _MAX_URLS:
                known_names.add(name)
    for value in headers.values():
        if type(value) is not str or (value and value[0].isspace()):
            return False
    joined = "".join(headers.values())  # a scan in C: these are some kilobytes (cookies)
    return "\r" not in joined and "\n" not in joined
