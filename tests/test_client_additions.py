"""What clients add next must not fail a request that can be answered without it.

The rule (docs/clients.md): an unknown request field, beta header, tool type or
content type is ignored (tools and parts left out of the offer or the prompt,
counted in /metrics); a 400 stays only for what would change the answer's
contract if ignored. The table below holds additions the agent CLIs and SDKs
send today, across the three APIs; each request must be answered (200).
"""

from __future__ import annotations

import copy
import re

import pytest
import requests

from tests.tool_support import prompt_text, script, stream_requests

USER = [{"role": "user", "content": "hi"}]
CHAT = {"model": "glm-4", "messages": USER}
RESPONSES = {"model": "glm-4", "input": "hi"}
MESSAGES = {"model": "claude-opus-4-8", "max_tokens": 256, "messages": USER}
FUNCTION = {
    "type": "function",
    "function": {"name": "f", "parameters": {"type": "object", "properties": {}}},
}

# (api, extra body fields, extra headers): each one an addition a client sends.
ADDITIONS = [
    ("chat", {"verbosity": "low", "prediction": {"type": "content", "content": "x"}}, {}),
    ("chat", {"a_field_from_next_year": {"nested": [1, 2]}}, {}),
    ("chat", {"modalities": ["text"], "prompt_cache_key": "k", "safety_identifier": "s"}, {}),
    ("chat", {"tools": [{"type": "custom", "custom": {"name": "grammar_tool"}}, FUNCTION]}, {}),
    ("chat", {"tools": [{"type": "hologram_v9", "hologram": {}}]}, {}),
    (
        "chat",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi"}, {"type": "sticker", "id": "s"}],
                }
            ]
        },
        {},
    ),
    ("chat", {"messages": [{"role": "developer", "content": "Be brief."}, *USER]}, {}),
    ("responses", {"store": False, "include": ["reasoning.encrypted_content"]}, {}),
    ("responses", {"tools": [{"type": "web_search", "external_web_access": False}]}, {}),
    ("responses", {"tools": [{"type": "image_generation", "output_format": "png"}]}, {}),
    ("responses", {"tools": [{"type": "tool_search", "execution": "client"}]}, {}),
    (
        "responses",
        {
            "tools": [
                {
                    "type": "namespace",
                    "name": "multi_agent_v1",
                    "description": "Sub-agents.",
                    "tools": [
                        {"type": "function", "name": "wait", "parameters": {"type": "object"}}
                    ],
                }
            ]
        },
        {},
    ),
    ("responses", {"client_metadata": {"x": "y"}, "context_management": [{"type": "c"}]}, {}),
    (
        "responses",
        {
            "input": [
                {"type": "ghost_snapshot", "ghost_commit": {"id": "abc"}},
                {"type": "message", "role": "developer", "content": "Be brief."},
                {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "hi"}, {"type": "input_sticker"}],
                },
            ]
        },
        {},
    ),
    ("messages", {"thinking": {"type": "adaptive"}, "output_config": {"effort": "xhigh"}}, {}),
    ("messages", {"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}}, {}),
    ("messages", {}, {"anthropic-beta": "mid-conversation-system-2026-04-07,a-beta-from-2027"}),
    ("messages", {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, {}),
    ("messages", {"tools": [{"type": "tool_search_tool_regex_20251119", "name": "ts"}]}, {}),
    ("messages", {"mcp_servers": [{"type": "url", "url": "http://x", "name": "m"}]}, {}),
    (
        "count_tokens",
        {
            "messages": [*USER, {"role": "system", "content": "Skills: none."}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            "context_management": {"edits": []},
        },
        {"anthropic-beta": "token-counting-2024-11-01,a-beta-from-2027"},
    ),
    (
        "messages",
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "system", "content": [{"type": "text", "text": "Agents: explorer."}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "go", "cache_control": {"type": "ephemeral"}},
                        {"type": "container_upload", "file_id": "f"},
                    ],
                },
            ]
        },
        {},
    ),
]
PATHS = {
    "chat": "/chat/completions",
    "responses": "/responses",
    "messages": "/messages",
    "count_tokens": "/messages/count_tokens",
}
BASES = {"chat": CHAT, "responses": RESPONSES, "messages": MESSAGES, "count_tokens": MESSAGES}


@pytest.mark.parametrize(("api", "extra", "headers"), ADDITIONS)
def test_an_addition_does_not_fail_the_request(proxy, token, api, extra, headers):
    body = {**copy.deepcopy(BASES[api]), **extra}
    sent = {"Authorization": f"Bearer {token}", **headers}
    if api in ("messages", "count_tokens"):
        sent["anthropic-version"] = "2023-06-01"
    resp = requests.post(f"{proxy.v1}{PATHS[api]}", json=body, headers=sent, timeout=60)
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    if api == "count_tokens":
        assert answer["input_tokens"] > 0
        return
    text = {
        "chat": lambda: answer["choices"][0]["message"]["content"],
        "responses": lambda: answer["output"][-1]["content"][0]["text"],
        "messages": lambda: answer["content"][-1]["text"],
    }[api]()
    assert text


def _ignored(proxy) -> dict[tuple[str, str], float]:
    body = requests.get(f"{proxy.base}/metrics", timeout=10).text
    found = {}
    for kind, name, value in re.findall(
        r'glm_proxy_ignored_additions_total\{kind="([^"]+)",name="([^"]+)"\} ([0-9.]+)', body
    ):
        found[(kind, name)] = float(value)
    return found


def test_a_left_out_tool_type_is_counted_with_a_bounded_label(proxy, token):
    before = _ignored(proxy)
    headers = {"Authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"}
    body = {**MESSAGES, "tools": [{"type": "computer_20991231", "name": "computer"}]}
    resp = requests.post(f"{proxy.v1}/messages", json=body, headers=headers, timeout=60)
    assert resp.status_code == 200, resp.text
    after = _ignored(proxy)
    key = ("tool_type", "computer_20991231")
    assert after[key] == before.get(key, 0) + 1


def test_a_tool_choice_naming_a_left_out_tool_is_still_400(proxy, token):
    headers = {"Authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"}
    body = {
        **MESSAGES,
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "tool_choice": {"type": "tool", "name": "web_search"},
    }
    resp = requests.post(f"{proxy.v1}/messages", json=body, headers=headers, timeout=30)
    assert resp.status_code == 400
    assert resp.json()["type"] == "error"
    chat = {**CHAT, "response_format": {"type": "json_schema_v2", "json_schema_v2": {}}}
    resp = requests.post(
        f"{proxy.v1}/chat/completions",
        json=chat,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "response_format"


def test_mid_conversation_system_text_stays_at_its_place(proxy, simulator, token):
    script(simulator, token, "ok")
    headers = {"Authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"}
    body = {
        **MESSAGES,
        "system": "You are Claude Code.",
        "messages": [
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "system", "content": [{"type": "text", "text": "Agent types: explorer."}]},
            {"role": "user", "content": "second question"},
        ],
    }
    resp = requests.post(f"{proxy.v1}/messages", json=body, headers=headers, timeout=60)
    assert resp.status_code == 200, resp.text
    sent = prompt_text(stream_requests(simulator, token)[-1])
    order = [
        sent.index(s)
        for s in (
            "<|system|>\nYou are Claude Code.",
            "first answer",
            "<|system|>\nAgent types: explorer.",
            "<|user|>\nsecond question",
        )
    ]
    assert order == sorted(order)


@pytest.mark.parametrize("stream", [False, True])
def test_a_namespaced_call_comes_back_with_its_namespace(client, simulator, token, stream):
    call = (
        '<glm_tool_calls>\n<invoke name="multi_agent_v1__spawn_agent">\n'
        '<parameter name="message">look around</parameter>\n</invoke>\n</glm_tool_calls>'
    )
    script(simulator, token, call)
    tools = [
        {
            "type": "namespace",
            "name": "multi_agent_v1",
            "description": "Sub-agents.",
            "tools": [
                {
                    "type": "function",
                    "name": "spawn_agent",
                    "description": "Start a sub-agent.",
                    "strict": False,
                    "parameters": {
                        "type": "object",
                        "properties": {"message": {"type": "string"}},
                        "required": ["message"],
                    },
                }
            ],
        }
    ]
    kwargs = {"model": "gpt-5.5-codex", "input": "spawn one", "tools": tools, "store": False}
    if stream:
        events = list(client.responses.create(**kwargs, stream=True))
        done = [e.item for e in events if e.type == "response.output_item.done"]
        response = events[-1].response
        assert [i.namespace for i in done if i.type == "function_call"] == ["multi_agent_v1"]
    else:
        response = client.responses.create(**kwargs)
    calls = [i for i in response.output if i.type == "function_call"]
    assert [(c.name, c.namespace) for c in calls] == [("spawn_agent", "multi_agent_v1")]
    assert calls[0].arguments == '{"message":"look around"}'
    sent = prompt_text(stream_requests(simulator, token)[-1])
    assert "multi_agent_v1__spawn_agent" in sent


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_base_url_answers_with_what_the_server_is(proxy, method):
    resp = requests.request(method, proxy.base + "/", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    if method == "GET":
        about = resp.json()
        assert about["name"] == "glm-proxy" and about["version"] != "unknown"
        assert about["links"] == {"models": "/v1/models", "health": "/healthz"}


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_developer_text_mid_conversation_stays_at_its_place(client, simulator, token, api):
    script(simulator, token, "ok")
    turns = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "first answer"},
        {"role": "developer", "content": "From now on, answer in French."},
        {"role": "user", "content": "second question"},
    ]
    if api == "chat":
        client.chat.completions.create(model="glm-4", messages=turns)
    else:
        client.responses.create(model="glm-4", input=turns, store=False)
    sent = prompt_text(stream_requests(simulator, token)[-1])
    order = [
        sent.index(s)
        for s in (
            "first answer",
            "<|system|>\nFrom now on, answer in French.",
            "<|user|>\nsecond question",
        )
    ]
    assert order == sorted(order)


def test_left_out_names_are_logged_once_and_bounded(caplog):
    from prometheus_client import REGISTRY

    from glm_proxy.observability.additions import MOST_NAMES, note_ignored

    def count(name: str) -> float:
        labels = {"kind": "test_kind", "name": name}
        return REGISTRY.get_sample_value("glm_proxy_ignored_additions_total", labels) or 0

    with caplog.at_level("WARNING"):
        note_ignored("test_kind", "alpha", "tools[0]")
        note_ignored("test_kind", "alpha", "tools[3]")
    assert count("alpha") == 2
    assert sum("'alpha'" in r.message for r in caplog.records) == 1
    for index in range(MOST_NAMES + 5):
        note_ignored("test_kind", f"t{index} \n<script>")
    assert count("other") == 6  # past the cap, names share one label
    assert count("t0___script_") == 1  # cut to a safe alphabet
