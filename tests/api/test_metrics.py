"""``/metrics``: Prometheus exposition, bounded labels, no secrets, admin-gated when configured."""

from __future__ import annotations

import requests

from tests.conftest import start_proxy, stop_proxy
from tests.support.chat import user


def test_metrics_count_requests_streams_and_deletions(proxy, client, simulator, token):
    client.chat.completions.create(model="glm-4", messages=user("hi"))
    for _ in client.chat.completions.create(model="glm-4", messages=user("hi"), stream=True):
        pass
    simulator.wait_deleted(token)
    body = requests.get(f"{proxy.base}/metrics", timeout=10).text
    assert 'glm_proxy_requests_total{method="POST",route="/v1/chat/completions",status="200"}' in (
        body
    )
    assert "glm_proxy_request_duration_seconds_bucket" in body
    assert "glm_proxy_active_streams 0.0" in body
    assert 'glm_proxy_conversation_deletes_total{result="deleted"}' in body
    assert token not in body


def test_unknown_paths_do_not_explode_label_cardinality(proxy):
    for i in range(3):
        requests.get(f"{proxy.base}/nope/{i}", timeout=10)
    body = requests.get(f"{proxy.base}/metrics", timeout=10).text
    assert 'route="unmatched"' in body
    assert "/nope/" not in body


def test_metrics_need_the_admin_key_when_one_is_set(simulator, tmp_path):
    server = start_proxy(simulator, tmp_path, ADMIN_KEY="admin-secret-123")
    try:
        assert requests.get(f"{server.base}/metrics", timeout=10).status_code == 401
        ok = requests.get(
            f"{server.base}/metrics",
            headers={"Authorization": "Bearer admin-secret-123"},
            timeout=10,
        )
        assert ok.status_code == 200 and "glm_proxy_requests_total" in ok.text
    finally:
        stop_proxy(server)
    server = start_proxy(simulator, tmp_path, METRICS_ENABLED="false")
    try:
        assert requests.get(f"{server.base}/metrics", timeout=10).status_code == 404
    finally:
        stop_proxy(server)
