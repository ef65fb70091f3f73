"""The upstream client's reactions, driven through a scripted requests transport.

These cover upstream replies the simulator does not produce (the real service's
answers to garbage tokens, connect timeouts) without any network.
"""

from __future__ import annotations

import orjson
import pytest
import requests
from requests.adapters import BaseAdapter

from glm_proxy.accounts import Account
from glm_proxy.config import Settings
from glm_proxy.errors import RefreshTokenExpired, UpstreamBusy, UpstreamTimeout
from glm_proxy.store.memory import MemoryStore
from glm_proxy.upstream.client import UpstreamClient


class Scripted(BaseAdapter):
    """Answers each request with the next scripted (status, body) or raises it."""

    def __init__(self, replies: list) -> None:
        super().__init__()
        self.replies = list(replies)
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request, **kwargs):
        self.sent.append(request)
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        status, body = reply
        resp = requests.Response()
        resp.status_code = status
        resp.headers["Content-Type"] = "application/json"
        resp._content = orjson.dumps(body)
        resp.raw = None
        resp.request = request
        return resp

    def close(self) -> None:
        pass


def client_with(replies: list, **settings) -> tuple[UpstreamClient, Scripted]:
    adapter = Scripted(replies)
    session = requests.Session()
    session.mount("https://", adapter)
    settings = {"GLM_TIME_SYNC": "false", **settings}  # no server-clock call in these scripts
    client = UpstreamClient(Settings.from_mapping(settings), MemoryStore(), session=session)
    client._read_capped = staticmethod(lambda resp: resp.content)  # type: ignore[method-assign]
    return client, adapter


def test_refresh_answered_with_user_needs_login_is_a_dead_refresh_token():
    client, _ = client_with([(401, {"status": 40103, "message": "user needs login"})])
    with pytest.raises(RefreshTokenExpired) as info:
        client.refresh("garbage")
    assert info.value.status == 401
    checker, _ = client_with([(401, {"status": 40103, "message": "user needs login"})])
    assert checker.check_token("garbage") is False


def test_connect_timeout_is_a_504():
    client, _ = client_with([requests.exceptions.ConnectTimeout("slow")])
    with pytest.raises(UpstreamTimeout) as info:
        client.refresh("tok")
    assert info.value.status == 504


def test_busy_account_carries_retry_after():
    client, _ = client_with(
        [
            (200, {"status": 0, "result": {"access_token": "at-1"}}),
            (200, {"status": 10040, "message": "busy"}),
        ]
    )
    with pytest.raises(UpstreamBusy) as info:
        client.call(Account.from_token("tok"), "POST", "/x", json={})
    assert info.value.status == 429
    assert info.value.headers["Retry-After"].isdigit()


def test_check_token_keeps_a_rotated_refresh_token():
    grant = {"access_token": "at-1", "refresh_token": "rotated-2"}
    client, _ = client_with([(200, {"status": 0, "result": grant})], FOLLOW_TOKEN_ROTATION="true")
    seen = []
    client.on_rotation = lambda account, new: seen.append((account.fingerprint, new))
    assert client.check_token("original-1") is True
    account = Account.from_token("original-1")
    assert client.current_refresh_token(account) == "rotated-2"
    assert seen == [(account.fingerprint, "rotated-2")]
