"""A Redis outage: clear 503s, a log line per request, no tracebacks, and recovery.

The proxy runs on a Redis of the test's own (``private_redis``), which the test
stops and starts again. The sweeper runs every 0.2 s so it is certain to hit
the outage too.
"""

from __future__ import annotations

import requests

from tests.conftest import start_proxy, stop_proxy
from tests.support.redis_fixture import PrivateRedis, private_redis  # noqa: F401
from tests.support.team import ask, assert_no_secrets, new_key, new_tokens
from tests.support.waiting import wait_until


def chat(server, key: str, stream: bool) -> requests.Response:
    return requests.post(
        f"{server.v1}/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "glm-4", "messages": [{"role": "user", "content": "hi"}], "stream": stream},
        timeout=30,
    )


def test_redis_outage_is_a_logged_503_and_the_service_recovers(
    simulator, tmp_path, request
) -> None:
    redis: PrivateRedis = request.getfixturevalue("private_redis")
    (token,) = new_tokens(1)
    key = new_key("alice")
    server = start_proxy(
        simulator,
        tmp_path,
        REDIS_URL=redis.url,
        ACCOUNTS=token,
        API_KEYS=f"alice:{key}",
        KEY_MAX_CONCURRENT="4",
        KEY_RPM="1000",
        SWEEP_INTERVAL="0.2",
    )
    try:
        assert ask(server, key, "before the outage")
        redis.stop()
        for stream in (False, True):
            resp = chat(server, key, stream)
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"]["code"] == "store_unavailable"
            assert resp.headers["Retry-After"] == "5"
        wait_until(lambda: "conversation sweep skipped" in server.logs(), 10, "sweeper ran")
        redis.start()
        wait_until(lambda: chat(server, key, False).status_code == 200, 20, "recovered")
        assert ask(server, key, "after the outage", stream=True)
    finally:
        stop_proxy(server)
    logs = server.logs()
    # Each refused request is in the request log, like any other (it was silently missing).
    assert logs.count("POST /v1/chat/completions 503") == 2, logs
    assert "Traceback" not in logs and "Error handling request" not in logs, logs
    assert_no_secrets(logs, [token, key])
