"""A console user over plain HTTP (``requests``): sign in, read pages, post forms with CSRF.

The browser tests drive the same pages through Chromium; these helpers keep the
many server-side checks fast and exact.
"""

from __future__ import annotations

import html
import re
from typing import Any

import requests

from tests.conftest import ProxyServer

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
SECRET = re.compile(r'id="new-secret">([^<]+)<')


class ConsoleUser:
    def __init__(self, proxy: ProxyServer, admin_key: str) -> None:
        self.proxy = proxy
        self.admin_key = admin_key
        self.http = requests.Session()
        self.csrf = ""

    def url(self, path: str) -> str:
        return f"{self.proxy.base}/console{path}"

    def signin(self, key: str | None = None) -> requests.Response:
        resp = self.http.post(
            self.url("/signin"),
            data={"admin_key": self.admin_key if key is None else key},
            allow_redirects=False,
            timeout=30,
        )
        if resp.status_code == 303:
            self.page("/")
        return resp

    def page(self, path: str) -> str:
        """A page's HTML (its CSRF token remembered); fails on anything but 200."""
        resp = self.http.get(self.url(path), allow_redirects=False, timeout=60)
        where = resp.headers.get("Location")
        assert resp.status_code == 200, (path, resp.status_code, where, resp.text[:300])
        found = CSRF.search(resp.text)
        if found:
            self.csrf = found.group(1)
        return resp.text

    def post(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> requests.Response:
        body = {"csrf": self.csrf, **(data or {})}
        return self.http.post(self.url(path), data=body, allow_redirects=False, timeout=60, **kw)

    def create_key(self, name: str, **fields: Any) -> str:
        """A new console key's secret (shown once, on the answer to the form)."""
        self.page("/keys")
        resp = self.post("/keys", {"name": name, **fields})
        assert resp.status_code == 201, resp.text[:500]
        found = SECRET.search(resp.text)
        assert found, "the new key's secret is shown once"
        return html.unescape(found.group(1))

    def add_account(self, token: str, **fields: Any) -> requests.Response:
        self.page("/accounts")
        resp = self.post("/accounts", {"refresh_token": token, **fields})
        assert resp.status_code == 303, resp.text[:500]
        return resp


ROW = re.compile(r"<tr[^>]*>(.*?)</tr>", re.S)
CELL = re.compile(r"<t[dh][^>]*>(.*?)</t[dh]>", re.S)
TAG = re.compile(r"<[^>]+>")
BAR = re.compile(r"<title>(\d\d:00): (\d+) requests")


def table_rows(page: str) -> list[list[str]]:
    """The text of every table row's cells (header rows included)."""
    rows = []
    for row in ROW.findall(page):
        cells = [html.unescape(TAG.sub("", cell)).strip() for cell in CELL.findall(row)]
        rows.append(cells)
    return rows


def activity(user: ConsoleUser) -> list[dict[str, str]]:
    """The Activity page's rows: time, key, model, path, status, duration, account."""
    names = ("time", "key", "model", "path", "status", "duration", "account")
    rows = table_rows(user.page("/activity"))
    return [dict(zip(names, r, strict=True)) for r in rows if len(r) == 7 and r[0] != "time"]


def requests_this_hour(page: str) -> int:
    """The last bar of a page's hourly chart: requests in the current hour."""
    bars = BAR.findall(page)
    assert bars, "the page has an hourly chart"
    return int(bars[-1][1])
