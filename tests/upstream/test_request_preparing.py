"""The upstream client prepares what ``requests.Request(...).prepare()`` would, byte for byte.

``RequestHeaders.prepare`` skips per-call work whose result cannot change (the
URL parse, a header's check once its value was seen); these pin that what goes
on the wire, and what is refused, is the same as ``requests`` makes of it.
"""

from __future__ import annotations

import pytest
import requests

from glm_proxy.config import Settings
from glm_proxy.errors import UpstreamRetryable
from glm_proxy.store.memory import MemoryStore
from glm_proxy.upstream.client import UpstreamClient

BASE = "https://chatglm.example/chatglm"
PNG = {"file": ("a.png", b"\x89PNG", "image/png")}


def client() -> UpstreamClient:
    return UpstreamClient(Settings.from_mapping({"GLM_TIME_SYNC": "false"}), MemoryStore())


def same(ours: requests.PreparedRequest, theirs: requests.PreparedRequest) -> None:
    assert (ours.method, ours.url, ours.body) == (theirs.method, theirs.url, theirs.body)
    assert list(ours.headers.items()) == list(theirs.headers.items())


CASES = [
    ("POST", BASE + "/backend-api/assistant/stream", {"App-Name": "chatglm"}, b'{"a": 1}', None),
    ("post", BASE + "/x?y=1&z=%20", {"Accept": "text/event-stream"}, b"", None),
    ("GET", "https://chatglm.example/chatglm/ümlaut/path", {}, None, None),
    ("POST", BASE + "/upload", {"X-Lang": "zh"}, None, PNG),
    ("POST", "https://user:secret@chatglm.example/chatglm/x", {"X-Lang": "zh"}, b"{}", None),
]


@pytest.mark.parametrize(("method", "url", "headers", "data", "files"), CASES)
def test_a_request_is_prepared_as_requests_prepares_it(method, url, headers, data, files):
    upstream = client()
    for _ in range(2):  # the second time from what the first one remembered
        theirs = requests.Request(method, url, headers=headers, data=data, files=files).prepare()
        ours = upstream.prepare(method, url, headers, data, files)
        if files:  # a multipart boundary is random: compare with theirs read as ours
            boundary = theirs.headers["Content-Type"].split("boundary=")[1]
            mine = ours.headers["Content-Type"].split("boundary=")[1]
            theirs.body = theirs.body.replace(boundary.encode(), mine.encode())
            theirs.headers["Content-Type"] = ours.headers["Content-Type"]
        same(ours, theirs)


@pytest.mark.parametrize("value", ["Bearer ok\r\nX-Injected: 1", " leading space", "a\nb"])
def test_a_header_requests_refuses_is_refused_every_time(value):
    upstream = client()
    upstream.prepare("GET", BASE + "/x", {"Authorization": "Bearer ok"})
    for _ in range(2):
        with pytest.raises(requests.exceptions.InvalidHeader):
            upstream.prepare("GET", BASE + "/x", {"Authorization": value})
        with pytest.raises(UpstreamRetryable):  # as a transport failure, before any byte is sent
            upstream._send("GET", BASE + "/x", timeout=1, headers={"Authorization": value})
