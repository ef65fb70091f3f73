"""The lean send path builds exactly the request ``requests`` would, or steps aside."""

from __future__ import annotations

import pytest
import requests

from glm_proxy.upstream.transport import LeanSender

URL = "https://chatglm.cn/chatglm/backend-api/assistant/stream"
HEADERS = {
    "Accept": "text/event-stream",
    "X-Device-Brand": "",
    "Authorization": "Bearer at",
    "Cookie": "a=1; b=2",
    "X-Sign": "abc",
}


def full(method: str, url: str, headers: dict, data) -> requests.PreparedRequest:
    return requests.Request(method, url, headers=headers, data=data).prepare()


@pytest.mark.parametrize(
    ("method", "url", "data"),
    [
        ("POST", URL, b'{"a":1}'),
        ("POST", URL, b""),
        ("POST", URL, None),
        ("GET", URL + "?x=1&y=%E4%BD%A0", None),
        ("GET", "https://chatglm.cn/chatglm/a path/ü", None),
        ("post", URL, "不是字节".encode()),
    ],
)
def test_lean_request_equals_the_requests_one(method, url, data) -> None:
    sender = LeanSender(requests.Session())
    for _ in range(2):  # the second time from the URL cache
        lean = sender.prepare(method, url, dict(HEADERS), data)
        assert lean is not None
        want = full(method, url, dict(HEADERS), data)
        assert (lean.method, lean.url, lean.body) == (want.method, want.url, want.body)
        assert list(lean.headers.items()) == list(want.headers.items())


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Bad": "a\r\nInjected: 1"},
        {"X-Bad": " leading space"},
        {"X-Bad": "a\nb"},
        {"Bad:Name": "x"},
        {" Bad": "x"},
        {"X-Number": 3},
    ],
)
def test_headers_requests_would_refuse_take_the_full_path(headers) -> None:
    sender = LeanSender(requests.Session())
    assert sender.prepare("POST", URL, {**HEADERS, **headers}, b"{}") is None
    with pytest.raises(requests.exceptions.InvalidHeader):
        full("POST", URL, {**HEADERS, **headers}, b"{}")


def test_unusual_requests_take_the_full_path() -> None:
    sender = LeanSender(requests.Session())
    assert sender.prepare("POST", URL, HEADERS, {"form": "field"}) is None
    assert sender.prepare("POST", URL, HEADERS, "text") is None
    assert sender.prepare("GET", "https://user:pw@chatglm.cn/x", HEADERS, None) is None
