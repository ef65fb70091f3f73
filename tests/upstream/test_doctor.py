"""``python -m glm_proxy doctor`` against the simulator (2026 profile), as an operator runs it."""

from __future__ import annotations

import uuid

import pytest

from tests.support.doctor import doctor, lines


def test_every_step_passes_and_leaves_no_trace(simulator):
    token = "rt-" + uuid.uuid4().hex
    result = doctor(simulator, token)
    assert result.returncode == 0, result.stdout + result.stderr
    steps = lines(result)
    for name in ("refresh", "time", "models", "answer", "stop", "delete"):
        assert " OK" in steps[name], result.stdout
    assert "via bulk" in steps["delete"]
    assert token not in result.stdout + result.stderr
    account = simulator.account(token)
    assert account["conversations_deleted"] and not account["conversations_alive"]


def test_token_is_read_from_stdin_and_never_from_argv(simulator):
    token = "rt-" + uuid.uuid4().hex
    piped = doctor(simulator, None, stdin=token + "\n")
    assert piped.returncode == 0, piped.stdout
    refused = doctor(simulator, None, "", token)
    assert refused.returncode == 2 and "command line" in refused.stderr
    assert (
        not simulator.account(token).get("refresh_count")
        or simulator.account(token)["refresh_count"] == 1
    )  # only the piped run refreshed


def test_expired_token_is_named_at_the_refresh_step(simulator):
    result = doctor(simulator, "dead-" + uuid.uuid4().hex)
    assert result.returncode == 1
    assert "refresh  FAILED" in result.stdout and "40102" in result.stdout
    assert "GLM_REFRESH_TOKEN" in result.stdout and "answer" not in lines(result)


def test_wrong_sign_secret_is_named_with_its_setting(simulator):
    result = doctor(simulator, "rt-" + uuid.uuid4().hex, GLM_SIGN_SECRET="0" * 32)
    assert result.returncode == 1
    refresh = lines(result)["refresh"]
    assert "FAILED" in refresh and "HTTP 400" in refresh and "invalid signature" in refresh
    assert "GLM_SIGN_SECRET" in refresh


@pytest.fixture
def waf(simulator):
    simulator.config(waf=True)
    yield simulator
    simulator.config(waf=False)


def test_waf_rejection_is_named_and_cookies_fix_it(waf):
    token = "rt-" + uuid.uuid4().hex
    blocked = doctor(waf, token)
    assert blocked.returncode == 1
    refresh = lines(blocked)["refresh"]
    assert "status 40012" in refresh and "cookies" in refresh
    cookie = "acw_tc=waf-" + uuid.uuid4().hex
    passed = doctor(waf, token, GLM_COOKIES=cookie)
    assert passed.returncode == 0, passed.stdout
    assert cookie not in passed.stdout + passed.stderr and token not in passed.stdout
    bad = doctor(waf, token, GLM_COOKIES="garbage without pairs")
    assert bad.returncode == 2 and "config" in bad.stdout
