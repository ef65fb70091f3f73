"""The console over HTTP: sign-in, sessions, CSRF, headers, keys made in the console.

The browser tests (``test_console_browser.py``) walk the same pages in Chromium;
here each rule is checked exactly with ``requests`` against the real server.
"""

from __future__ import annotations

import datetime as dt

import openai
import pytest
import requests

from glm_proxy.accounts import fingerprint
from tests.conftest import start_proxy, stop_proxy
from tests.support.console import ConsoleUser, activity
from tests.support.team import assert_no_secrets, client, new_key, new_tokens
from tests.support.waiting import wait_until


@pytest.fixture
def server(simulator, tmp_path):
    """``server(**env)``: a team server with a console; secrets checked in its log afterwards."""
    started = []

    def make(**env: str) -> dict:
        tokens = new_tokens(2)
        key, admin_key = new_key("alice"), new_key("admin")
        settings = {"ACCOUNTS": ",".join(tokens), "API_KEYS": f"alice:{key}", **env}
        settings.setdefault("ADMIN_KEY", admin_key)
        proxy = start_proxy(simulator, tmp_path, **settings)
        info = {"proxy": proxy, "tokens": tokens, "key": key, "admin": admin_key}
        started.append(info)
        return info

    yield make
    for info in started:
        stop_proxy(info["proxy"])
        assert_no_secrets(info["proxy"].logs(), [*info["tokens"], info["key"], info["admin"]])


def test_console_is_off_without_an_admin_key(server) -> None:
    proxy = server(ADMIN_KEY="")["proxy"]
    resp = requests.get(f"{proxy.base}/console/", timeout=10)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"]


def test_sign_in_sets_a_strict_cookie_and_every_page_a_strict_policy(server) -> None:
    info = server()
    user = ConsoleUser(info["proxy"], info["admin"])
    first = requests.get(user.url("/keys"), allow_redirects=False, timeout=10)
    assert first.status_code == 303 and first.headers["Location"].endswith("/console/signin")
    assert user.signin("not-the-key").status_code == 401
    assert user.signin(info["key"]).status_code == 401  # a team key is no admin key
    resp = user.signin()
    assert resp.status_code == 303
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    assert info["admin"] not in cookie
    for path in ("/", "/accounts", "/keys", "/usage", "/usage?period=day", "/activity"):
        page = user.http.get(user.url(path), timeout=30)
        assert page.status_code == 200, path
        policy = page.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in policy and "unsafe-inline" not in policy
        assert "script-src" not in policy and "default-src 'none'" in policy
        assert "<script" not in page.text
        assert page.headers["X-Frame-Options"] == "DENY"
        assert page.headers["Cache-Control"] == "no-store"
        for secret in (*info["tokens"], info["key"], info["admin"]):
            assert secret not in page.text
    behind_tls = requests.post(
        user.url("/signin"),
        data={"admin_key": info["admin"]},
        headers={"X-Forwarded-Proto": "https"},
        allow_redirects=False,
        timeout=10,
    )
    assert "Secure" in behind_tls.headers["Set-Cookie"]


def test_failed_sign_ins_are_rate_limited(server) -> None:
    info = server(CONSOLE_SIGNIN_ATTEMPTS="3")
    user = ConsoleUser(info["proxy"], info["admin"])
    for _ in range(3):
        assert user.signin("wrong").status_code == 401
    refused = user.signin()  # even the right key, until the window passes
    assert refused.status_code == 429
    assert "Set-Cookie" not in refused.headers


def test_forms_need_the_session_csrf_token(server) -> None:
    info = server()
    user = ConsoleUser(info["proxy"], info["admin"])
    user.signin()
    user.page("/keys")
    for token in ("", "0" * 64):
        resp = user.http.post(
            user.url("/keys"), data={"csrf": token, "name": "mallory"}, allow_redirects=False
        )
        assert resp.status_code == 403
    other = ConsoleUser(info["proxy"], info["admin"])  # another session's token
    other.signin()
    assert other.csrf != user.csrf
    resp = user.http.post(user.url("/keys"), data={"csrf": other.csrf, "name": "mallory"})
    assert resp.status_code == 403
    assert "mallory" not in user.page("/keys")


def test_idle_sessions_expire_and_sign_out_ends_the_session(server) -> None:
    info = server(CONSOLE_IDLE_TIMEOUT="1")
    user = ConsoleUser(info["proxy"], info["admin"])
    user.signin()
    user.page("/keys")
    # Probes signed in at the same moment, each looked at once only (a look renews it).
    probes = [ConsoleUser(info["proxy"], info["admin"]) for _ in range(80)]
    for probe in probes:
        probe.signin()
    remaining = iter(probes)

    def probe_expired() -> bool:
        probe = next(remaining)
        resp = probe.http.get(probe.url("/"), allow_redirects=False, timeout=10)
        return resp.status_code == 303

    wait_until(probe_expired, 7.5, "an idle session expires")
    late = user.post("/keys", {"name": "late"})
    assert late.status_code == 303 and late.headers["Location"].endswith("/console/signin")
    user.signin()
    assert "late" not in user.page("/keys")
    stolen = dict(user.http.cookies)
    assert user.post("/signout").status_code == 303
    replay = requests.get(user.url("/"), cookies=stolen, allow_redirects=False, timeout=10)
    assert replay.status_code == 303  # the session ended, not just the cookie


def test_console_keys_authenticate_with_their_own_rules(server, simulator) -> None:
    info = server()
    proxy, tokens = info["proxy"], info["tokens"]
    user = ConsoleUser(proxy, info["admin"])
    user.signin()
    only_second = fingerprint(tokens[1])
    limited = user.create_key("limited", rpm="2", models="glm-4", accounts=only_second)
    sdk = client(proxy, limited)
    for _ in range(2):
        done = sdk.chat.completions.create(
            model="glm-4", messages=[{"role": "user", "content": "hi"}]
        )
        assert done.choices[0].message.content
    with pytest.raises(openai.RateLimitError):
        sdk.chat.completions.create(model="glm-4", messages=[{"role": "user", "content": "hi"}])
    rows = wait_until(
        lambda: [r for r in activity(user) if r["key"] == "limited" and r["status"] == "200"],
        10,
        "the key's requests in Activity",
    )
    assert {r["account"] for r in rows} == {only_second}
    assert all(r["model"] == "glm-4" for r in rows)
    assert [r for r in activity(user) if r["key"] == "limited" and r["status"] == "429"]

    picky = user.create_key("picky", models="glm-4")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client(proxy, picky).chat.completions.create(
            model="glm-4-plus", messages=[{"role": "user", "content": "hi"}]
        )
    assert refused.value.code == "model_not_allowed"
    with pytest.raises(openai.PermissionDeniedError):
        client(proxy, picky).images.generate(prompt="a cat")

    yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=2)).strftime("%Y-%m-%d")
    expired = user.create_key("expired", expires=yesterday)
    with pytest.raises(openai.AuthenticationError):
        client(proxy, expired).models.list()

    plain = user.create_key("plain")
    assert client(proxy, plain).models.list().data
    user.page("/keys")
    assert user.post("/keys/plain/rotate").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        client(proxy, plain).models.list()
    user.page("/keys")
    assert user.post("/keys/picky/revoke").status_code == 303
    with pytest.raises(openai.AuthenticationError):
        client(proxy, picky).models.list()
    # Configured keys are listed read-only: no form acts on them.
    assert user.post("/keys/alice/revoke").status_code == 404
    assert client(proxy, info["key"]).models.list().data
    assert_no_secrets(user.page("/keys"), [limited, plain, picky, expired])
    assert_no_secrets(proxy.logs(), [limited, plain, picky, expired])


def test_accounts_added_in_the_console_serve_at_once(server, simulator) -> None:
    info = server(ACCOUNTS="")
    proxy = info["proxy"]
    user = ConsoleUser(proxy, info["admin"])
    user.signin()
    with pytest.raises(openai.InternalServerError):  # 503: the pool is empty
        client(proxy, info["key"]).models.list() and client(
            proxy, info["key"]
        ).chat.completions.create(model="glm-4", messages=[{"role": "user", "content": "hi"}])
    token = new_tokens(1)[0]
    cookies = "acw_tc=waf-secret-value; ssxmod_itna=another-secret"
    user.add_account(token, name="fresh", cookies=cookies)
    page = user.page("/accounts")
    assert fingerprint(token) in page and "acw_tc" in page
    assert token not in page and "waf-secret-value" not in page
    done = client(proxy, info["key"]).chat.completions.create(
        model="glm-4", messages=[{"role": "user", "content": "hi"}]
    )
    assert done.choices[0].message.content
    assert user.post(f"/accounts/{fingerprint(token)}/disable").status_code == 303
    assert "disabled" in user.page("/accounts")
    assert user.post(f"/accounts/{fingerprint(token)}/remove").status_code == 303
    assert "removed from the pool" in user.page("/accounts")
    assert fingerprint(token) not in user.page("/accounts")  # the notice is shown once
    assert_no_secrets(proxy.logs(), [token, "waf-secret-value"])


def test_accounts_page_shows_reason_credits_and_budget_from_the_pool(server, simulator) -> None:
    """The console's account table reads the pool's care: reasons, points left, budget used."""
    info = server(ACCOUNT_MAX_PER_HOUR="5")
    proxy, tokens = info["proxy"], info["tokens"]
    simulator.fault(tokens[1], "verify_page", count=50)
    for _ in range(2):
        answer = client(proxy, info["key"]).chat.completions.create(
            model="glm-4", messages=[{"role": "user", "content": "hi"}]
        )
        assert answer.choices[0].message.content
    user = ConsoleUser(proxy, info["admin"])
    assert user.signin().status_code == 303
    wait_until(
        lambda: "verification_required" in user.http.get(user.url("/accounts")).text,
        10,
        "the verification page's reason on the accounts page",
    )
    page = user.http.get(user.url("/accounts"), timeout=30).text
    assert " / 5" in page  # answers this hour, of ACCOUNT_MAX_PER_HOUR
    for secret in (*tokens, info["key"], info["admin"]):
        assert secret not in page
