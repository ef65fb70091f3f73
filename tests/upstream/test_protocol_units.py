"""Protocol profiles, model/mode mapping, request bodies, envelopes, deletes, clock, janitor.

Pure or driven through a scripted transport: no network.
"""

from __future__ import annotations

import gevent
import orjson
import pytest
import requests
from requests.adapters import BaseAdapter

from glm_proxy.accounts import Account
from glm_proxy.background.janitor import Janitor
from glm_proxy.config import ConfigError, Settings
from glm_proxy.errors import InvalidRequest, UpstreamBusy, UpstreamError, UpstreamRetryable
from glm_proxy.protocol.model_table import ModelTable, resolve_reasoning
from glm_proxy.protocol.profiles import EFFORT_MAP_2026
from glm_proxy.services.chat import build_upstream_payload, plan_chat
from glm_proxy.store.memory import MemoryStore
from glm_proxy.upstream import control
from glm_proxy.upstream.client import UpstreamClient
from glm_proxy.upstream.envelope import classify_failure

TABLE = ModelTable.load()


def settings(**env) -> Settings:
    return Settings.from_mapping(env)


def test_profiles_are_coherent_and_every_value_overridable() -> None:
    new, old = settings(), settings(GLM_PROTOCOL="2025")
    assert new.glm_upload_path == "/productivity-api/file/chat_upload"
    assert new.glm_delete_methods == ("bulk", "mainchat", "legacy")
    assert new.glm_send_selected_model and new.glm_stop_on_disconnect and new.glm_time_sync
    assert old.glm_upload_path == "/backend-api/assistant/file_upload"
    assert old.glm_delete_methods == ("legacy",)
    assert not (old.glm_send_selected_model or old.glm_stop_on_disconnect or old.glm_time_sync)
    mixed = settings(GLM_PROTOCOL="2025", GLM_DELETE_METHODS="bulk,legacy", GLM_TIME_SYNC="yes")
    assert mixed.glm_delete_methods == ("bulk", "legacy") and mixed.glm_time_sync
    assert mixed.glm_upload_path == "/backend-api/assistant/file_upload"  # the rest stays 2025


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("GLM_PROTOCOL", "2024"),
        ("GLM_DELETE_METHODS", "bulk,shred"),
        ("GLM_MODE_MAP", "fast"),
        ("GLM_DEVICE_ID_STRATEGY", "random"),
    ],
)
def test_bad_protocol_settings_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings(**{name: value})
    assert name in str(info.value)


@pytest.mark.parametrize(
    ("mode", "effort", "expected"),
    [
        (None, None, "fast"),
        ("thinking", None, "thinking"),
        (None, "none", "fast"),
        (None, "minimal", "fast"),
        (None, "low", "fast"),
        (None, "medium", "thinking"),
        (None, "high", "thinking"),
        (None, "xhigh", "deep"),
        (None, "max", "deep"),
        ("deep", "low", "fast"),  # the client's effort wins
        ("research", "none", "research"),  # deep research stays
        (None, "bogus", "fast"),
    ],
)
def test_resolve_reasoning_table(mode, effort, expected) -> None:
    assert resolve_reasoning(mode, effort, EFFORT_MAP_2026) == expected


def test_model_names_suffixes_and_unknowns() -> None:
    assert TABLE.resolve("glm-5.3-thinking").selected_model == "glm-5.3"
    suffixed = TABLE.resolve("glm-5.3-flash-deep-silent")
    assert (suffixed.selected_model, suffixed.mode, suffixed.silent) == (
        "glm-5.3-flash",
        "deep",
        True,
    )
    assert TABLE.resolve("glm-5.3-nosearch").networking is False
    assert TABLE.resolve("65c046a531d3fcb034918abe").assistant_id == "65c046a531d3fcb034918abe"
    assert TABLE.resolve("my-think-model").mode == "thinking"  # old convention kept
    assert TABLE.resolve("gpt-4o").known is False


def body(model: str, **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


def test_unknown_model_is_default_or_400_when_strict(caplog) -> None:
    caplog.set_level("INFO", logger="glm_proxy.services.chat")
    plan = plan_chat(body("gpt-4o"), settings(), TABLE)
    assert plan.selected_model == "glm-5.3-flash"
    assert "unknown model 'gpt-4o'" in caplog.text
    with pytest.raises(InvalidRequest) as info:
        plan_chat(body("gpt-4o"), settings(STRICT_MODELS="true"), TABLE)
    assert info.value.status == 400 and info.value.param == "model"
    assert plan_chat(body("glm-5.3"), settings(STRICT_MODELS="true"), TABLE).selected_model


def test_payload_meta_per_profile() -> None:
    new = build_upstream_payload(plan_chat(body("glm-5.3-deep"), settings(), TABLE))["meta_data"]
    assert (new["selected_model"], new["chat_mode"], new["reasoning_effort"]) == (
        "glm-5.3",
        "deep_thinking",
        "max",
    )
    assert "if_plus_model" not in new
    fast = build_upstream_payload(plan_chat(body("glm-5.3"), settings(), TABLE))["meta_data"]
    assert fast["chat_mode"] == "" and fast["reasoning_effort"] == "low"
    old_settings = settings(GLM_PROTOCOL="2025")
    old = build_upstream_payload(plan_chat(body("glm-5.3-deep"), old_settings, TABLE))["meta_data"]
    assert old["chat_mode"] == "zero" and old["if_plus_model"] is True
    assert "selected_model" not in old and "reasoning_effort" not in old
    plain = build_upstream_payload(plan_chat(body("glm-4"), old_settings, TABLE))["meta_data"]
    assert "chat_mode" not in plain
    custom = settings(GLM_MODE_MAP="fast=normal:,thinking=thinking:medium")
    meta = build_upstream_payload(plan_chat(body("glm-5.3-thinking"), custom, TABLE))["meta_data"]
    assert (meta["chat_mode"], meta["reasoning_effort"]) == ("thinking", "medium")


def test_attachment_items_per_profile() -> None:
    image = {
        "file_id": "f1",
        "file_url": "https://t1.example/x.png",
        "file_name": "x.png",
        "file_size": 9,
        "width": 2,
        "height": 3,
        "source_id": "s",
    }
    doc = {"file_id": "f2", "file_url": "https://t1.example/d.pdf", "filename": "d.pdf", "size": 5}
    plan = plan_chat(body("glm-5.3"), settings(), TABLE)
    content = build_upstream_payload(plan, files=[doc], images=[image])["messages"][0]["content"]
    assert content[1] == {
        "type": "file",
        "file": [
            {
                "file_name": "d.pdf",
                "file_id": "f2",
                "file_url": "https://t1.example/d.pdf",
                "file_size": 5,
                "order": 0,
            }
        ],
    }
    assert content[2]["image"] == [
        {
            "file_name": "x.png",
            "file_id": "f1",
            "image_url": "https://t1.example/x.png",
            "file_size": 9,
            "order": 0,
            "width": 2,
            "height": 3,
        }
    ]
    old = plan_chat(body("glm-4"), settings(GLM_PROTOCOL="2025"), TABLE)
    content = build_upstream_payload(old, images=[image])["messages"][0]["content"]
    assert content[1]["image"] == [image]  # 2025: the whole record


def test_busy_queue_and_waf_envelopes() -> None:
    busy = classify_failure(429, orjson.dumps({"status": 10061, "message": "请等待"}), ("10061",))
    assert isinstance(busy, UpstreamBusy) and busy.status == 429
    waf = classify_failure(400, orjson.dumps({"status": 40012, "message": "blocked"}))
    assert isinstance(waf, UpstreamRetryable) and waf.code == "upstream_waf_blocked"
    assert "cookies" in waf.message and (waf.upstream_http, waf.upstream_code) == (400, 40012)
    plain = classify_failure(400, orjson.dumps({"status": 400, "message": "bad request"}))
    assert type(plain) is UpstreamError


class Scripted(BaseAdapter):
    """Answers by path: ``routes[path suffix] -> list of (status, body)``."""

    def __init__(self, routes: dict[str, list]) -> None:
        super().__init__()
        self.routes = {k: list(v) for k, v in routes.items()}
        self.sent: list[tuple[str, bytes | None]] = []

    def send(self, request, **kwargs):
        path = request.path_url
        self.sent.append((path, request.body))
        key = next(k for k in self.routes if path.split("?")[0].endswith(k))
        status, payload = self.routes[key].pop(0)
        resp = requests.Response()
        resp.status_code = status
        resp.headers["Content-Type"] = "application/json"
        resp._content = orjson.dumps(payload)
        resp.raw = None
        resp.request = request
        return resp

    def close(self) -> None:
        pass


def scripted_client(routes: dict, clock=None, **env) -> tuple[UpstreamClient, Scripted]:
    adapter = Scripted(
        {"/user/refresh": [(200, {"status": 0, "result": {"access_token": "at"}})] * 5, **routes}
    )
    session = requests.Session()
    session.mount("https://", adapter)
    kwargs = {"clock": clock} if clock else {}
    client = UpstreamClient(
        settings(**{"GLM_TIME_SYNC": "false", **env}), MemoryStore(), session=session, **kwargs
    )
    client._read_capped = staticmethod(lambda resp: resp.content)  # type: ignore[method-assign]
    return client, adapter


ACCOUNT = Account.from_token("rt-unit")


def test_delete_tries_the_calls_in_order_and_reports_the_one_that_worked() -> None:
    client, adapter = scripted_client(
        {
            "/bulk_delete": [(404, {"status": 404, "message": "not found"})],
            "/mainchat-api/conversation/delete": [(200, {"status": 500, "message": "db"})],
            "/assistant/conversation/delete": [(200, {"status": 0, "result": None})] * 2,
        }
    )
    assert client.delete_conversations(ACCOUNT, "a1", ["c1", "c2"]) == "legacy"
    paths = [p for p, _ in adapter.sent if "refresh" not in p]
    assert paths == [
        "/chatglm/mainchat-api/conversation/bulk_delete",
        "/chatglm/mainchat-api/conversation/delete",
        "/chatglm/backend-api/assistant/conversation/delete",
        "/chatglm/backend-api/assistant/conversation/delete",
    ]
    assert orjson.loads(adapter.sent[1][1]) == {
        "conversation_ids": ["c1", "c2"],
        "assistant_id": "a1",
    }


def test_delete_counts_already_gone_as_done_and_raises_when_all_fail() -> None:
    client, _ = scripted_client(
        {
            "/assistant/conversation/delete": [
                (200, {"status": 1, "message": "conversation 不存在"})
            ]
        },
        GLM_DELETE_METHODS="legacy",
    )
    assert client.delete_conversation(ACCOUNT, "a1", "gone") == "legacy"
    failing, _ = scripted_client(
        {"/bulk_delete": [(500, {"status": 500, "message": "boom"})]}, GLM_DELETE_METHODS="bulk"
    )
    with pytest.raises(UpstreamRetryable):
        failing.delete_conversation(ACCOUNT, "a1", "c1")


def test_server_clock_offset_and_local_fallback() -> None:
    now = [1_000.0]
    client, adapter = scripted_client(
        {
            "/config/cur_ts": [
                (200, {"status": 0, "result": {"timestamp_ms": 1_000_000 + 3_600_000}})
            ]
        },
        clock=lambda: now[0],
    )
    assert control.sync_clock(client) == pytest.approx(3_600_000, abs=1)
    assert client.now_ms() == pytest.approx(1_000_000 + 3_600_000, abs=1)
    broken, _ = scripted_client(
        {"/config/cur_ts": [(200, {"status": 0, "result": {"nothing": 1}})]},
        clock=lambda: now[0],
        GLM_TIME_SYNC="true",
    )
    control.ensure_clock(broken)  # logs and keeps the local clock
    assert broken.now_ms() == 1_000_000 and broken.clock_synced_at == 1_000.0
    control.ensure_clock(broken)  # not again before the interval (no scripted reply left)


class FakeUpstream:
    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def delete_conversation(self, account, assistant_id, cid):
        self.calls.append(("one", cid))

    def delete_conversations(self, account, assistant_id, ids):
        self.calls.append(("many", list(ids)))

    def stop_stream(self, account, history_id):
        self.calls.append(("stop", history_id))


def test_janitor_batches_per_account_and_stops_before_deleting() -> None:
    upstream = FakeUpstream()
    janitor = Janitor(upstream, settings(GLM_DELETE_BATCH_WINDOW="0.05", GLM_DELETE_BATCH_MAX="2"))
    other = Account.from_token("rt-other")
    janitor.delete_later(ACCOUNT, "a", "c1", stop_history_id="h1")
    janitor.delete_later(ACCOUNT, "a", "c2")
    janitor.delete_later(ACCOUNT, "a", "c3")
    janitor.delete_later(other, "a", "d1")
    gevent.sleep(0)
    janitor.join(5)
    assert upstream.calls[0] == ("stop", "h1")
    assert sorted(map(str, upstream.calls[1:])) == sorted(
        map(str, [("many", ["c2", "c3"]), ("one", "c1"), ("one", "d1")])
    )
    assert janitor.deleted == 4 and janitor.stopped == 1
    off = Janitor(FakeUpstream(), settings(GLM_PROTOCOL="2025"))
    off.delete_later(ACCOUNT, "a", "x", stop_history_id="h")
    off.join(5)
    assert off.upstream.calls == [("one", "x")]  # 2025: no stop endpoint


def test_models_fall_back_to_the_static_list_and_do_not_retry_at_once(monkeypatch) -> None:
    from glm_proxy import create_app
    from glm_proxy.api import models as models_api

    calls = []
    real = models_api.fetch_catalogue
    monkeypatch.setattr(models_api, "fetch_catalogue", lambda *a: calls.append(1) or real(*a))

    app = create_app(
        {
            "GLM_BASE_URL": "http://127.0.0.1:9",  # nothing listens: the catalogue fails
            "ACCOUNTS": "rt-catalogue",
            "API_KEYS": "t:sk-catalogue",
            "GLM_STATIC_MODELS": "glm-static-a",
        }
    )
    client = app.test_client()
    for _ in range(2):
        listed = client.get("/v1/models", headers={"Authorization": "Bearer sk-catalogue"})
        ids = [m["id"] for m in listed.json["data"]]
        assert ids[:3] == ["glm-static-a", "glm-static-a-thinking", "glm-static-a-deep"]
    assert len(calls) == 1  # the failure is remembered for a minute
