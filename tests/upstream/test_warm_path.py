"""A warm account's answer costs one upstream call before its first token: the stream itself.

The first answer on an account refreshes its access token; the next ones reuse
it, and no other call (user info, a conversation created ahead, a credits
check) is made before the stream is asked for. Each extra call there would be
a round trip added to every answer's first token.
"""

from __future__ import annotations

import time

from tests.support.chat import user


def _calls_of(simulator, token: str, since: float, until: float) -> list[str]:
    """Paths of this account's upstream calls in [since, until], refreshes included."""
    return [
        r["path"]
        for r in simulator.requests_log()
        if since <= r["time"] <= until
        and (
            r.get("account") == token
            or r.get("headers", {}).get("Authorization") == f"Bearer {token}"
        )
    ]


def _first_token_window(client, prompt: str) -> tuple[float, float]:
    """Stream one answer; return when it was asked for and when its first text arrived."""
    asked = time.time()
    first = None
    with client.chat.completions.create(
        model="glm-4", messages=user(prompt), stream=True
    ) as stream:
        for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.time()
    assert first is not None, "the answer had no text"
    return asked, first


def test_cold_account_refreshes_then_streams(client, simulator, token):
    asked, first = _first_token_window(client, "cold")
    calls = _calls_of(simulator, token, asked, first)
    assert calls[-1].endswith("/assistant/stream")
    assert any(path.endswith("/refresh") for path in calls[:-1])


def test_warm_account_asks_only_for_the_stream(client, simulator, token):
    client.chat.completions.create(model="glm-4", messages=user("warm up"))
    refreshes = simulator.account(token)["refresh_count"]
    for i in range(3):
        asked, first = _first_token_window(client, f"answer {i}")
        calls = _calls_of(simulator, token, asked, first)
        assert [p.rsplit("/", 2)[-2:] for p in calls] == [["assistant", "stream"]], calls
    assert simulator.account(token)["refresh_count"] == refreshes
