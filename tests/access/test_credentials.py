"""Credentials that cannot be keys or tokens, and who may read /v1/models and /metrics.

A value with control or non-ASCII characters, or longer than any JWT, is a 400
naming the field, before anything is sent upstream. Raw sockets send the
header bytes that HTTP libraries refuse to.
"""

from __future__ import annotations

import openai
import pytest
import requests

from tests.conftest import start_proxy, stop_proxy
from tests.support.rawhttp import exchange, request_bytes
from tests.support.team import new_key, new_tokens

REFRESH = "/user/refresh"


def refreshes(simulator) -> int:
    return simulator.request_count(REFRESH)


def chat_body() -> bytes:
    return b'{"model": "glm-4", "messages": [{"role": "user", "content": "hi"}]}'


# -- /token/check ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "rt-\u00e9\u4e2d\u6587",  # outside Latin-1: used to be a UnicodeEncodeError (500)
        "rt-abc\x01def",  # a control character: used to go upstream (502)
        "rt-abc\ndef",
        "rt-" + "a" * 16 * 1024,  # 16 KB
        "rt-" + "a" * 1024 * 1024,  # 1 MB
    ],
    ids=["non-latin-1", "control", "newline", "16KB", "1MB"],
)
def test_token_check_refuses_what_cannot_be_a_token(proxy, simulator, bad):
    before = refreshes(simulator)
    resp = requests.post(f"{proxy.base}/token/check", json={"token": bad}, timeout=30)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == "token"
    assert error["code"] == "invalid_credential"
    assert bad[:20] not in error["message"]  # a pasted secret is not echoed
    assert refreshes(simulator) == before  # nothing reached the upstream


def test_token_check_still_checks_a_real_token(proxy, token):
    resp = requests.post(f"{proxy.base}/token/check", json={"token": token}, timeout=30)
    assert resp.status_code == 200
    assert resp.json() == {"live": True}


# -- Authorization / x-api-key --------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Authorization", b"Bearer rt-\xc3\xa9t\xc3\xa9"),  # UTF-8 bytes in the header
        ("Authorization", b"Bearer rt-abc\tdef"),  # gunicorn refuses other controls itself
        ("Authorization", b"Bearer rt-ok, rt-\xffbad"),  # one bad token of several
        ("Authorization", b"Bearer rt-" + b"a" * 6000),
        ("x-api-key", b"rt-abc\xc2\x85def"),
    ],
    ids=["utf8", "tab", "second-token", "6KB", "x-api-key"],
)
def test_header_credentials_that_cannot_be_tokens_are_400(proxy, simulator, header, value):
    before = refreshes(simulator)
    body = chat_body()
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + header.encode()
        + b": "
        + value
        + b"\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    resp = exchange(proxy.base, head + body)
    assert resp.status == 400, resp.body
    error = resp.json()["error"]
    assert error["param"] == header
    assert error["code"] == "invalid_credential"
    assert refreshes(simulator) == before


def test_bad_x_api_key_on_the_anthropic_route_has_the_anthropic_shape(proxy):
    body = b'{"model": "glm-4", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}'
    head = {
        "Host": "x",
        "x-api-key": "sk-\xe9",
        "anthropic-version": "2023-06-01",
        "Content-Type": "application/json",
        "Content-Length": str(len(body)),
    }
    resp = exchange(proxy.base, request_bytes("POST", "/v1/messages", head, body))
    assert resp.status == 400
    payload = resp.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "invalid_request_error"
    assert "x-api-key" in payload["error"]["message"]


def test_several_tokens_in_one_bearer_still_work(proxy):
    tokens = ",".join(new_tokens(2))
    sdk = openai.OpenAI(base_url=proxy.v1, api_key=tokens, max_retries=0, timeout=30)
    done = sdk.chat.completions.create(
        model="glm-4", messages=[{"role": "user", "content": "hello"}]
    )
    assert done.choices[0].message.content


# -- /v1/models and /metrics on a team server --------------------------------------------


@pytest.fixture(scope="module")
def team_server(simulator, tmp_path_factory):
    key, admin_key = new_key("alice"), new_key("admin")
    server = start_proxy(
        simulator,
        tmp_path_factory.mktemp("creds"),
        ACCOUNTS=",".join(new_tokens(1)),
        API_KEYS=f"alice:{key}",
        ADMIN_KEY=admin_key,
    )
    yield server, key, admin_key
    stop_proxy(server)


def test_models_need_a_key_in_team_mode(team_server):
    server, key, _ = team_server
    resp = requests.get(f"{server.v1}/models", timeout=10)
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"
    assert requests.get(f"{server.v1}/models/glm-4", timeout=10).status_code == 401
    wrong = requests.get(f"{server.v1}/models", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    sdk = openai.OpenAI(base_url=server.v1, api_key=key, max_retries=0, timeout=30)
    assert any(m.id == "glm-4" for m in sdk.models.list())
    by_x_api_key = requests.get(f"{server.v1}/models", headers={"x-api-key": key}, timeout=10)
    assert by_x_api_key.status_code == 200


def test_models_public_setting_opens_the_catalogue(simulator, tmp_path):
    server = start_proxy(
        simulator,
        tmp_path,
        ACCOUNTS=",".join(new_tokens(1)),
        API_KEYS=f"bob:{new_key('bob')}",
        MODELS_PUBLIC="true",
    )
    try:
        assert requests.get(f"{server.v1}/models", timeout=10).status_code == 200
    finally:
        stop_proxy(server)


@pytest.mark.parametrize("path", ["/metrics", "/admin/usage"])
def test_admin_key_works_the_same_way_on_metrics_and_admin(team_server, path):
    server, key, admin_key = team_server
    url = server.base + path
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"x-api-key": key}, timeout=10).status_code == 401
    bearer = requests.get(url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=10)
    assert bearer.status_code == 200
    assert requests.get(url, headers={"x-api-key": admin_key}, timeout=10).status_code == 200


def test_a_configured_key_no_client_could_send_is_a_start_up_error():
    from glm_proxy.access.auth import parse_key_entry
    from glm_proxy.config import ConfigError

    assert parse_key_entry("ci:sk-abc_123.x", "API_KEYS").name == "ci"
    for bad in ("ci:sk with space", "ci:sk-\u00e9t\u00e9", "ci:sk-\x01"):
        with pytest.raises(ConfigError, match="printable ASCII"):
            parse_key_entry(bad, "API_KEYS")
