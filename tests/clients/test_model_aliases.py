"""Model names agent clients send map to a GLM model, unless ``STRICT_MODELS`` is on.

Claude Code sends ``claude-opus-4-8`` (and ``claude-haiku-*`` for small
tasks), Codex ``gpt-*``/``o3``/``codex-*`` names. ``MODEL_ALIASES`` maps them
through the model table (documented in docs/clients.md, overridable); with
``STRICT_MODELS`` they are a clear 400 ``model_not_found``.
"""

from __future__ import annotations

import anthropic
import openai
import pytest
import requests

from glm_proxy.config import ConfigError, Settings
from glm_proxy.protocol.model_table import DEFAULT_ALIASES, ModelTable
from tests.conftest import start_proxy, stop_proxy
from tests.support.tools import script


@pytest.mark.parametrize(
    ("name", "selected", "mode"),
    [
        ("claude-opus-4-8", "glm-5.3", None),
        ("claude-sonnet-4-6", "glm-5.3", None),
        ("claude-haiku-4-5-20251001", "glm-5.3-flash", None),
        ("gpt-5.5-codex", "glm-5.3", None),
        ("gpt-4o-mini", "glm-5.3-flash", None),
        ("o3", "glm-5.3", "thinking"),
        ("o4-mini", "glm-5.3", "thinking"),
        ("codex-mini-latest", "glm-5.3", None),
    ],
)
def test_default_aliases(name, selected, mode):
    spec = ModelTable.load(aliases=DEFAULT_ALIASES).resolve(name)
    assert spec.known and spec.name == name and not spec.listed
    assert (spec.selected_model, spec.mode) == (selected, mode)


def test_table_names_win_over_aliases():
    table = ModelTable.load(aliases="*=glm-5.3")
    assert table.resolve("glm-5.3-flash-thinking").selected_model == "glm-5.3-flash"


def test_aliases_are_overridable_and_unknown_names_stay_unknown():
    table = ModelTable.load(aliases="claude-*=glm-5.3-flash-thinking, *=glm-5.3")
    spec = table.resolve("claude-opus-4-8")
    assert (spec.selected_model, spec.mode) == ("glm-5.3-flash", "thinking")
    assert table.resolve("anything").selected_model == "glm-5.3"
    assert not ModelTable.load(aliases="").resolve("claude-opus-4-8").known
    assert not ModelTable.load(aliases=DEFAULT_ALIASES).resolve("llama-3").known
    with pytest.raises(ConfigError):
        Settings.from_env({"MODEL_ALIASES": "claude-*"})


def test_claude_code_default_model_answers_with_the_aliased_glm_model(proxy, simulator, token):
    script(simulator, token, "hello")
    claude = anthropic.Anthropic(base_url=proxy.base, api_key=token, max_retries=0, timeout=30)
    message = claude.messages.create(
        model="claude-opus-4-8", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.model == "claude-opus-4-8" and message.content[0].text == "hello"
    sent = [
        r["body"]
        for r in simulator.requests_log("/assistant/stream")
        if r.get("account") == token and r.get("stream")
    ][-1]
    assert sent["meta_data"]["selected_model"] == "glm-5.3"


def test_models_report_a_context_window_and_resolve_aliases(client):
    listed = {m.id: m for m in client.models.list().data}
    assert listed["glm-5.3"].model_extra["context_window"] == 128000
    assert client.models.retrieve("claude-opus-4-8").id == "claude-opus-4-8"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("llama-3")


@pytest.fixture(scope="module")
def strict_proxy(simulator, tmp_path_factory):
    server = start_proxy(simulator, tmp_path_factory.mktemp("strict"), STRICT_MODELS="true")
    yield server
    stop_proxy(server)


def test_strict_models_refuses_client_names_clearly(strict_proxy, token):
    resp = requests.post(
        f"{strict_proxy.v1}/chat/completions",
        json={"model": "gpt-5.5-codex", "messages": [{"role": "user", "content": "x"}]},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "model_not_found"
    claude = anthropic.Anthropic(
        base_url=strict_proxy.base, api_key=token, max_retries=0, timeout=30
    )
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(
            model="claude-opus-4-8", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert "claude-opus-4-8" in info.value.body["error"]["message"]
    models = requests.get(
        f"{strict_proxy.v1}/models/claude-opus-4-8",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert models.status_code == 404


def test_anthropic_callers_get_the_anthropic_models_shape(proxy, token):
    claude = anthropic.Anthropic(base_url=proxy.base, api_key=token, max_retries=0, timeout=30)
    page = claude.models.list()
    ids = [m.id for m in page.data]
    assert "glm-5.3" in ids and all(m.type == "model" for m in page.data)
    assert page.data[0].created_at.year == 2025
    model = claude.models.retrieve("claude-opus-4-8")
    assert (model.id, model.type, model.display_name) == (
        "claude-opus-4-8",
        "model",
        "claude-opus-4-8",
    )
    assert model.model_extra["context_window"] == 128000
