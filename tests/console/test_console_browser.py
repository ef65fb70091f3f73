"""The console in a real browser: Debian's Chromium, driven by Playwright.

Sign in, add an account, create a key and call the API with it through the
``openai`` SDK, find the request in Activity and the chart moved, revoke the
key (401), and see a forged form and an expired session refused. The run
saves a screenshot of every page to ``docs/screenshots/`` (the docs show
them). Skipped, saying why, when ``/usr/bin/chromium`` is not installed
(``.ci/run`` installs it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from glm_proxy.accounts import fingerprint
from tests.conftest import ROOT, start_proxy, stop_proxy
from tests.support.console import ConsoleUser, requests_this_hour
from tests.support.team import ask, assert_no_secrets, client, new_key, new_tokens
from tests.support.waiting import wait_until

CHROMIUM = "/usr/bin/chromium"
SHOTS = ROOT / "docs" / "screenshots"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does it)",
)


@pytest.fixture
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def team(simulator, tmp_path):
    tokens = new_tokens(1)
    key, admin_key = new_key("alice"), new_key("admin")
    proxy = start_proxy(
        simulator,
        tmp_path,
        ACCOUNTS=f"{tokens[0]} name=from-file",
        API_KEYS=f"alice:{key}",
        ADMIN_KEY=admin_key,
    )
    yield {"proxy": proxy, "tokens": tokens, "key": key, "admin": admin_key}
    stop_proxy(proxy)
    assert_no_secrets(proxy.logs(), [*tokens, key, admin_key])


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page, base: str, admin_key: str) -> None:
    page.goto(f"{base}/console/")
    assert page.url.endswith("/console/signin")
    page.fill("#admin_key", admin_key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/console/")


def test_the_console_in_a_browser(browser, team, simulator) -> None:
    proxy, base = team["proxy"], team["proxy"].base
    context = browser.new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
    page = context.new_page()
    page.goto(f"{base}/console/")
    shot(page, "signin")
    page.fill("#admin_key", "not the key")
    page.click("button[type=submit]")
    assert "not the admin key" in page.inner_text(".notice")
    sign_in(page, base, team["admin"])
    cookie = next(c for c in context.cookies() if c["name"] == "glm_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # Add an account: it joins the pool at once.
    token = new_tokens(1)[0]
    page.click("nav >> text=Accounts")
    page.fill("#refresh_token", token)
    page.fill("#acct_name", "added-here")
    page.fill("#cookies", "acw_tc=waf-cookie-value; ssxmod_itna=more")
    page.click("button:has-text('Add to the pool')")
    assert "added to the pool" in page.inner_text(".notice")
    fp = fingerprint(token)
    row = page.locator("table.pool tr", has_text=fp)
    assert "added-here" in row.inner_text() and "acw_tc" in row.inner_text()
    row.locator("button", has_text="doctor").click()
    assert "all steps passed" in page.inner_text("main")
    shot(page, "accounts")

    # Create a key allowed on the new account only, and call the API with it.
    page.click("nav >> text=Keys")
    page.fill("#key_name", "browser-team")
    page.fill("#rpm", "120")
    page.fill("#models", "glm-4, glm-4-plus")
    page.check(f"input[name=accounts][value='{fp}']")
    page.click("button:has-text('Create')")
    secret = page.inner_text("#new-secret").strip()
    assert secret.startswith("sk-glm-")
    page.click("nav >> text=Keys")  # the secret is shown once only
    assert secret not in page.content()
    before = requests_this_hour(page_html(page, f"{base}/console/"))
    answers = [ask(proxy, secret, "hello from the browser test"), ask(proxy, team["key"], "hi")]
    answers.append(ask(proxy, secret, "and a stream", stream=True))
    assert all(answers)

    def activity_shows_it() -> bool:
        page.goto(f"{base}/console/activity")
        rows = page.locator("table.activity tr", has_text="browser-team")
        return rows.count() == 2 and fp in rows.first.inner_text()

    wait_until(activity_shows_it, 10, "the key's requests in Activity")
    assert "hello from the browser test" not in page.content()  # never prompts or answers
    shot(page, "activity")
    wait_until(
        lambda: requests_this_hour(page_html(page, f"{base}/console/")) == before + 3,
        10,
        "the overview's chart moved",
    )
    shot(page, "overview")
    page.goto(f"{base}/console/usage")
    assert page.locator("td", has_text="browser-team").count() >= 1
    shot(page, "usage")
    with page.expect_download() as download:
        page.click("text=CSV download")
    csv_text = Path(download.value.path()).read_text()
    assert "browser-team" in csv_text and "glm-4" in csv_text
    page.goto(f"{base}/console/keys")
    shot(page, "keys")

    # Revoke: the next call is a 401.
    page.locator("tr", has_text="browser-team").locator("button", has_text="revoke").click()
    assert "revoked" in page.inner_text(".notice")
    with pytest.raises(openai.AuthenticationError):
        client(proxy, secret).chat.completions.create(
            model="glm-4", messages=[{"role": "user", "content": "hi"}]
        )

    # A forged form (its CSRF token changed) is refused, and nothing happens.
    page.fill("#key_name", "forged")
    page.locator("form.stack input[name=csrf]").evaluate("e => { e.value = 'f'.repeat(64) }")
    page.click("button:has-text('Create')")
    assert "expired" in page.inner_text("main")
    page.goto(f"{base}/console/keys")
    assert page.locator("td", has_text="forged").count() == 0

    # Sign out: the pages need a sign-in again.
    page.click("button:has-text('Sign out')")
    page.goto(f"{base}/console/keys")
    assert page.url.endswith("/console/signin")
    context.close()
    assert_no_secrets(proxy.logs(), [token, secret, "waf-cookie-value"])


def page_html(page, url: str) -> str:
    page.goto(url)
    return page.content()


def test_an_expired_session_is_refused_in_the_browser(browser, simulator, tmp_path) -> None:
    admin_key = new_key("admin")
    proxy = start_proxy(simulator, tmp_path, ADMIN_KEY=admin_key, CONSOLE_IDLE_TIMEOUT="2")
    try:
        context = browser.new_context()
        page = context.new_page()
        sign_in(page, proxy.base, admin_key)
        page.goto(f"{proxy.base}/console/keys")
        # Sessions started now and looked at once each tell when two idle seconds passed.
        probes = [ConsoleUser(proxy, admin_key) for _ in range(100)]
        for probe in probes:
            probe.signin()
        remaining = iter(probes)

        def expired() -> bool:
            probe = next(remaining)
            resp = probe.http.get(probe.url("/"), allow_redirects=False, timeout=10)
            return resp.status_code == 303

        wait_until(expired, 9, "an idle session expires")
        page.fill("#key_name", "too-late")
        page.click("button:has-text('Create')")
        page.wait_for_url("**/console/signin")
        sign_in(page, proxy.base, admin_key)
        page.goto(f"{proxy.base}/console/keys")
        assert page.locator("td", has_text="too-late").count() == 0
        context.close()
    finally:
        stop_proxy(proxy)
