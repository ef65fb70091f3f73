"""Browser identity: cookie jars, token cookies in sync, device ids, client hints (pure)."""

from __future__ import annotations

import base64
import json

import pytest

from glm_proxy.config import Settings
from glm_proxy.upstream.headers import browser_headers
from glm_proxy.upstream.identity import (
    DeviceIds,
    client_hints,
    cookie_header,
    describe_cookies,
    jwt_claim,
    parse_cookies,
    stable_device_id,
)

NETSCAPE = (
    "# Netscape HTTP Cookie File\n"
    ".chatglm.cn\tTRUE\t/\tFALSE\t0\tacw_tc\tabc123\n"
    "#HttpOnly_chatglm.cn\tFALSE\t/\tTRUE\t0\tchatglm_refresh_token\told-refresh\n"
    ".example.com\tTRUE\t/\tFALSE\t0\tother\tnope\n"
)


def jwt(claims: dict) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiJ9.{body}.sig"


def test_cookie_header_and_netscape_file_parse_to_the_same_jar() -> None:
    assert parse_cookies("Cookie: acw_tc=abc123; chatglm_refresh_token=old-refresh") == {
        "acw_tc": "abc123",
        "chatglm_refresh_token": "old-refresh",
    }
    assert parse_cookies(NETSCAPE) == {"acw_tc": "abc123", "chatglm_refresh_token": "old-refresh"}
    assert parse_cookies("  ") == {}


@pytest.mark.parametrize(
    "junk", ["not a cookie", "a=1; b c", "=x", ".example.com\tTRUE\t/\tF\t0\tn\tv"]
)
def test_junk_is_refused_without_echoing_values(junk: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_cookies(junk)
    assert junk not in str(info.value) and "nope" not in str(info.value)


def test_token_cookies_follow_the_tokens_in_use() -> None:
    jar = parse_cookies(NETSCAPE + ".chatglm.cn\tTRUE\t/\tFALSE\t0\tchatglm_token\tstale\n")
    header = cookie_header(jar, "access-now", "refresh-now")
    assert "chatglm_token=access-now" in header and "stale" not in header
    assert "chatglm_refresh_token=refresh-now" in header and "old-refresh" not in header
    assert "acw_tc=abc123" in header
    assert cookie_header({}, "a", "r") == ""  # no jar: no cookies at all (2025 behaviour)
    # while refreshing the bearer is the refresh token: the jar's access cookie stays
    assert "chatglm_token=stale" in cookie_header(jar, None, "refresh-now")


def test_describe_shows_names_and_a_fingerprint_only() -> None:
    shown = describe_cookies(parse_cookies(NETSCAPE))
    assert shown["names"] == ["acw_tc", "chatglm_refresh_token"]
    assert "abc123" not in json.dumps(shown) and "old-refresh" not in json.dumps(shown)
    assert describe_cookies({}) == {"configured": False}


def test_device_id_strategies() -> None:
    token = jwt({"device_id": "dev-from-claim", "type": "refresh"})
    assert jwt_claim(token, "device_id") == "dev-from-claim"
    assert jwt_claim("not.a.jwt!", "device_id") is None and jwt_claim("rt-plain", "x") is None
    claim = DeviceIds("jwt_claim")
    assert claim.for_request(token, "fp1") == "dev-from-claim"
    stable = {claim.for_request("rt-plain", "fp1") for _ in range(3)}
    assert stable == {stable_device_id("rt-plain", "fp1")} and len(stable.pop()) == 32
    assert claim.for_request("rt-plain", "fp1") != claim.for_request("rt-plain", "fp2")
    assert DeviceIds("fixed", "f" * 32).for_request(token, "fp") == "f" * 32
    per_request = DeviceIds("per_request")
    assert len({per_request.for_request(token, "fp") for _ in range(5)}) == 5
    rotating = DeviceIds("rotate", rotate_every=3)
    seen = [rotating.for_request(None, None) for _ in range(9)]
    assert len(set(seen)) == 4 and seen[0] == seen[1] and seen[2] == seen[4] != seen[0]


@pytest.mark.parametrize(
    ("ua", "brand", "platform"),
    [
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Chrome/143.0.0.0 Safari/537.36 Edg/143.0.0.0",
            '"Microsoft Edge";v="143"',
            '"Windows"',
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
            "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
            '"Google Chrome";v="131"',
            '"macOS"',
        ),
    ],
)
def test_client_hints_agree_with_the_user_agent(ua: str, brand: str, platform: str) -> None:
    hints = client_hints(ua)
    assert brand in hints["Sec-Ch-Ua"] and hints["Sec-Ch-Ua-Platform"] == platform


def test_firefox_sends_no_client_hints_and_headers_carry_the_cookie() -> None:
    firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    assert client_hints(firefox) == {}
    settings = Settings.from_mapping({"GLM_USER_AGENT": firefox})
    headers = browser_headers(
        settings,
        token="t",
        referer=None,
        content_type=None,
        accept="*/*",
        request_ids=("d" * 32, "r" * 32),
        signature=None,
        cookie="acw_tc=1",
    )
    assert headers["Cookie"] == "acw_tc=1" and "Sec-Ch-Ua" not in headers
    assert headers["X-Exp-Groups"] == "mainchat_server_app:exp:A"  # 2026 profile default


def test_accounts_file_cookies_option(tmp_path) -> None:
    from glm_proxy.config import ConfigError
    from glm_proxy.pool.registry import parse_entry, rewrite_token

    jar = tmp_path / "main.cookies"
    jar.write_text("acw_tc=secret-waf-value; ssxmod_itna=1\n")
    entry = parse_entry(f"rt-abc name=main cookies={jar}", 1, "ACCOUNTS_FILE")
    assert entry.account.cookies.startswith("acw_tc=") and "secret" not in repr(entry.account)
    (tmp_path / "bad.cookies").write_text("secret-waf-value but no pairs\n")
    with pytest.raises(ConfigError) as bad:
        parse_entry(f"rt-abc cookies={tmp_path / 'bad.cookies'}", 1, "ACCOUNTS_FILE")
    assert "secret-waf-value" not in str(bad.value) and "cookies=" in str(bad.value)
    with pytest.raises(ConfigError):
        parse_entry(f"rt-abc cookies={tmp_path / 'missing'}", 1, "ACCOUNTS_FILE")
    accounts = tmp_path / "accounts.txt"
    accounts.write_text(f"rt-abc name=main cookies={jar}\n")
    assert rewrite_token(str(accounts), entry.account.fingerprint, "rt-new")
    assert accounts.read_text().split()[1:3] == ["name=main", f"cookies={jar}"]  # kept on rotation
