"""The request path's shortcuts answer exactly what the long way did: random ids in
``uuid4().hex``'s shape, cached metric children that are the metric's own, setting maps
parsed once per text (never once per process)."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY

from glm_proxy.ids import uuid4_hex
from glm_proxy.observability import metrics
from glm_proxy.protocol.profiles import mode_table, pairs_table, parse_mode_map, parse_pairs


def test_uuid4_hex_is_a_uuid4_without_dashes() -> None:
    seen = set()
    for _ in range(2000):
        text = uuid4_hex()
        assert len(text) == 32 and text == text.lower()
        parsed = uuid.UUID(hex=text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert parsed.hex == text
        seen.add(text)
    assert len(seen) == 2000


def _sample(name: str, labels: dict[str, str]) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_observe_counts_through_the_metrics_own_children() -> None:
    labels = {"route": "/test/request-path", "method": "POST", "status": "299"}
    assert _sample("glm_proxy_requests_total", labels) is None  # nothing made in advance
    metrics.observe("/test/request-path", "POST", 299, 0.02, None)
    metrics.observe("/test/request-path", "POST", 299, 0.03, "test_code")
    assert _sample("glm_proxy_requests_total", labels) == 2
    assert metrics.REQUESTS.labels("/test/request-path", "POST", "299")._value.get() == 2
    count = _sample("glm_proxy_request_duration_seconds_count", {"route": "/test/request-path"})
    assert count == 2
    assert _sample("glm_proxy_stream_errors_total", {"code": "test_code"}) == 1
    metrics.observe("/test/request-path", "POST", 298, 0.01, None)  # another status: its own
    assert _sample("glm_proxy_requests_total", {**labels, "status": "298"}) == 1
    assert _sample("glm_proxy_requests_total", labels) == 2


def test_labelled_is_the_labels_child_once_used() -> None:
    assert _sample("glm_proxy_upstream_stops_total", {"outcome": "test-outcome"}) is None
    child = metrics.labelled(metrics.UPSTREAM_STOPS, "test-outcome")
    assert child is metrics.labelled(metrics.UPSTREAM_STOPS, "test-outcome")
    assert child is metrics.UPSTREAM_STOPS.labels("test-outcome")
    child.inc(3)
    assert _sample("glm_proxy_upstream_stops_total", {"outcome": "test-outcome"}) == 3
    other = metrics.labelled(metrics.CLOCK_SYNCS, "test-outcome")  # same values, other metric
    assert other is not child and other is metrics.CLOCK_SYNCS.labels("test-outcome")


def test_setting_maps_are_parsed_per_text() -> None:
    first = "fast=:,thinking=thinking:high"
    second = "fast=zero:,thinking=deep_thinking:low"
    assert dict(mode_table(first)) == parse_mode_map(first)
    assert dict(mode_table(second)) == parse_mode_map(second)
    assert mode_table(first)["thinking"] == ("thinking", "high")
    assert mode_table(second)["thinking"] == ("deep_thinking", "low")
    assert mode_table(first) is mode_table(first)
    assert dict(pairs_table("low=fast,high=thinking")) == parse_pairs("low=fast,high=thinking")
    assert pairs_table("high=research")["high"] == "research"
    with pytest.raises(TypeError):
        mode_table(first)["fast"] = ("", "")  # type: ignore[index]
    with pytest.raises(ValueError):
        mode_table("no pairs here")


def test_plan_chat_follows_each_apps_mode_map() -> None:
    from glm_proxy.config import Settings
    from glm_proxy.protocol.model_table import ModelTable
    from glm_proxy.services.chat import plan_chat

    body = {"model": "glm-4", "messages": [{"role": "user", "content": "hi"}]}
    models = ModelTable.load("")
    plans = [
        plan_chat(dict(body, reasoning_effort="high"), Settings.from_env(env), models)
        for env in (
            {"GLM_MODE_MAP": "fast=:,thinking=thinking:high", "GLM_EFFORT_MAP": "high=thinking"},
            {"GLM_MODE_MAP": "fast=:,thinking=deep:low", "GLM_EFFORT_MAP": "high=thinking"},
            {"GLM_MODE_MAP": "fast=:,thinking=deep:low", "GLM_EFFORT_MAP": "high=fast"},
        )
    ]
    answers = [(plan.chat_mode, plan.reasoning_effort) for plan in plans]
    assert answers == [("thinking", "high"), ("deep", "low"), ("", "")]
