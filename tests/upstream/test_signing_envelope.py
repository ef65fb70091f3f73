"""Pure upstream helpers: request signing and envelope classification."""

from __future__ import annotations

import pytest

from glm_proxy.errors import (
    AccessTokenExpired,
    RefreshTokenExpired,
    UpstreamBusy,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRetryable,
)
from glm_proxy.upstream.envelope import classify_failure, unwrap
from glm_proxy.upstream.signing import check_digit_timestamp, sign, signature_headers

SECRET = "8a1317a7468aa3ad86e997d08f3f31cb"


def test_check_digit_worked_example():
    assert check_digit_timestamp(1745827200123) == "1745827200103"


def test_browser_timestamp_already_satisfies_check_digit():
    assert check_digit_timestamp(1790732179905) == "1790732179905"


def test_sign_worked_examples():
    assert (
        sign("1745827200103", "0f3c1a2b4d5e6f708192a3b4c5d6e7f8", SECRET)
        == "de8c561f178c3901aa2173c879beb9f3"
    )
    assert (
        sign("1790732179905", "75988225830f4d93b6702dcd0a2e9baf", SECRET)
        == "a32ee7a2876ad44e6658475f0a7c69eb"
    )


def test_signature_headers_can_skip_check_digit():
    headers = signature_headers(1745827200123, "ab" * 16, SECRET, check_digit=False)
    assert headers["X-Timestamp"] == "1745827200123"
    assert headers["X-Sign"] == sign("1745827200123", "ab" * 16, SECRET)


def test_unwrap_success_both_spellings():
    assert unwrap(200, b'{"status":0,"message":"success","result":{"a":1}}') == {"a": 1}
    assert unwrap(200, b'{"code":0,"result":[1]}') == [1]
    assert unwrap(200, b"") is None
    assert unwrap(200, b'{"plain": true}') == {"plain": True}


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, b'{"status":40102,"message":"token expired (40102)"}', RefreshTokenExpired),
        (200, b'{"status":1,"message":"refresh failed: 40102"}', RefreshTokenExpired),
        (401, b'{"code":401,"status":401,"message":"unauthorized"}', AccessTokenExpired),
        (401, b'{"status":40103,"message":"user needs login"}', AccessTokenExpired),
        (200, b'{"status":10040,"message":"busy"}', UpstreamBusy),
        (500, b'{"status":500,"message":"internal server error"}', UpstreamRetryable),
        (502, b"<html>bad gateway</html>", UpstreamRetryable),
        (400, b'{"status":400,"message":"bad request"}', UpstreamError),
        (200, b"<html>waf</html>", UpstreamProtocolError),
    ],
)
def test_failures_are_classified(status, body, error):
    with pytest.raises(error):
        unwrap(status, body, busy_codes=("10040",))


def test_relogin_message_names_the_action():
    error = classify_failure(401, b'{"status":40102,"message":"x 40102"}')
    assert error.status == 401
    assert "log in" in error.message.lower()


def test_browser_headers_follow_settings_and_carry_the_signature():
    from glm_proxy.config import Settings
    from glm_proxy.upstream.headers import browser_headers

    settings = Settings.from_mapping(
        {"GLM_APP_VERSION": "9.9.9", "GLM_EXTRA_HEADERS": "X-Exp-Groups: a:b; X-Lang: en"}
    )
    signature = signature_headers(1745827200123, "ab" * 16, SECRET)
    headers = browser_headers(
        settings,
        token="at-1",
        referer=None,
        content_type=None,
        accept="text/event-stream",
        request_ids=("1" * 32, "2" * 32),
        signature=signature,
    )
    assert headers["App-Name"] == "chatglm"
    assert headers["X-App-Version"] == "9.9.9"
    assert headers["X-Lang"] == "en" and headers["X-Exp-Groups"] == "a:b"
    assert headers["Authorization"] == "Bearer at-1"
    assert headers["X-Device-Id"] == "1" * 32 and headers["X-Request-Id"] == "2" * 32
    assert headers["X-Sign"] == signature["X-Sign"]
    assert "Content-Type" not in headers
