"""Responses request -> chat request: input items, tools, tool_choice and the other controls
(pure functions, no server)."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from glm_proxy.api.schemas.base import load
from glm_proxy.api.schemas.responses import ResponsesSchema
from glm_proxy.errors import InvalidRequest
from glm_proxy.inputs.responses import (
    map_tool_choice,
    map_tools,
    output_items,
    to_chat_body,
    to_messages,
)

CODEX_FIXTURE = Path(__file__).parent.parent / "fixtures" / "codex_responses_request.json"


def body(**fields) -> dict:
    return load(ResponsesSchema(), {"model": "glm-4", "input": "hi", **fields})


def test_string_input_and_defaults():
    mapped = to_chat_body(body())
    assert mapped.chat_body["messages"] == [{"role": "user", "content": "hi"}]
    assert mapped.chat_body["keep_conversation"] is True  # store defaults to true
    assert mapped.chat_body["conversation_id"] is None
    assert "tools" not in mapped.chat_body and "web_search" not in mapped.chat_body


def test_tool_items_become_chat_tool_calls():
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "weather and patch?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"role": "assistant", "content": [{"type": "output_text", "text": "On it."}]},
        {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"q":1}'},
        {"type": "custom_tool_call", "call_id": "c2", "name": "apply_patch", "input": "*** P"},
        {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
        {
            "type": "custom_tool_call_output",
            "call_id": "c2",
            "output": [{"type": "input_text", "text": "done"}],
        },
    ]
    messages = to_messages(items)
    assert messages[0] == {
        "role": "user",
        "content": [{"type": "text", "text": "weather and patch?"}],
    }
    assistant = messages[1]
    assert assistant["role"] == "assistant"
    assert assistant["content"] == [{"type": "text", "text": "On it."}]
    assert assistant["tool_calls"] == [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"q":1}'}},
        {
            "id": "c2",
            "type": "function",
            "function": {"name": "apply_patch", "arguments": '{"input":"*** P"}'},
        },
    ]
    assert messages[2] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
    assert messages[3]["tool_call_id"] == "c2"
    assert messages[3]["content"] == [{"type": "text", "text": "done"}]


def test_a_call_without_preceding_text_opens_an_assistant_message():
    messages = to_messages(
        [{"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}}]
    )
    assert messages == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
            ],
        }
    ]


def test_attachments_map_to_chat_parts():
    (message,) = to_messages(
        [
            {
                "role": "user",
                "content": [
                    {"type": "input_image", "image_url": "https://x.example/a.png"},
                    {"type": "input_file", "file_data": "QUJD", "filename": "a.txt"},
                    {"type": "input_file", "file_url": "https://x.example/b.pdf"},
                ],
            }
        ]
    )
    assert message["content"] == [
        {"type": "image_url", "image_url": {"url": "https://x.example/a.png"}},
        {"type": "file", "file": {"file_data": "QUJD", "filename": "a.txt"}},
        {"type": "file", "file_url": {"url": "https://x.example/b.pdf"}},
    ]


@pytest.mark.parametrize(
    ("items", "param"),
    [
        ([{"type": "function_call", "name": "f", "arguments": "{}"}], "input[0].call_id"),
        ([{"type": "function_call", "call_id": "c", "arguments": "{}"}], "input[0].name"),
        ([{"type": "function_call_output", "output": "x"}], "input[0].call_id"),
        ([{"type": "item_reference", "id": "msg_1"}], "input[0]"),
        ([{"role": "user", "content": [{"type": "input_audio"}]}], "input[0].content[0]"),
        ([{"role": "user", "content": 5}], "input[0].content"),
    ],
)
def test_bad_items_name_their_place(items, param):
    with pytest.raises(InvalidRequest) as info:
        to_messages(items)
    assert info.value.param == param


def test_tools_custom_and_web_search():
    tools = [
        {"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}},
        {
            "type": "custom",
            "name": "apply_patch",
            "description": "Apply a patch.",
            "format": {"type": "grammar", "syntax": "lark", "definition": "start: 'x'"},
        },
        {"type": "web_search"},
    ]
    offer = map_tools(tools)
    chat = offer.chat
    assert offer.custom == frozenset({"apply_patch"}) and offer.web_search
    assert chat[0] == {
        "type": "function",
        "function": {"name": "f", "description": "d", "parameters": {"type": "object"}},
    }
    patch = chat[1]["function"]
    assert patch["name"] == "apply_patch"
    assert patch["parameters"]["required"] == ["input"]
    assert patch["parameters"]["properties"]["input"]["type"] == "string"
    assert "lark" in patch["description"] and "start: 'x'" in patch["description"]


@pytest.mark.parametrize(
    ("choice", "expected", "names"),
    [
        ("auto", "auto", ["f", "g"]),
        ("required", "required", ["f", "g"]),
        ({"type": "function", "name": "g"}, {"type": "function", "function": {"name": "g"}}, None),
        ({"type": "custom", "name": "f"}, {"type": "function", "function": {"name": "f"}}, None),
        (
            {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "g"}],
            },
            "required",
            ["g"],
        ),
        ({"type": "web_search"}, "auto", ["f", "g"]),
    ],
)
def test_tool_choice(choice, expected, names):
    offer = map_tools([{"type": "function", "name": "f"}, {"type": "custom", "name": "g"}])
    mapped, kept = map_tool_choice(choice, offer.chat)
    assert mapped == expected
    if names is not None:
        assert [t["function"]["name"] for t in kept] == names


MULTI_AGENT = {
    "type": "namespace",
    "name": "multi_agent_v1",
    "description": "Spawn and steer sub-agents.",
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
        },
        {"type": "custom", "name": "notes", "description": "Free text."},
        {"type": "hologram", "name": "h"},
    ],
}


def test_namespace_members_are_offered_under_flat_names():
    offer = map_tools([{"type": "function", "name": "shell"}, MULTI_AGENT])
    names = [t["function"]["name"] for t in offer.chat]
    assert names == ["shell", "multi_agent_v1__spawn_agent", "multi_agent_v1__notes"]
    assert offer.namespaced == {
        "multi_agent_v1__spawn_agent": ("multi_agent_v1", "spawn_agent"),
        "multi_agent_v1__notes": ("multi_agent_v1", "notes"),
    }
    assert offer.custom == frozenset({"multi_agent_v1__notes"})
    spawn = offer.chat[1]["function"]
    assert spawn["description"] == "Start a sub-agent."
    assert spawn["parameters"]["required"] == ["message"]


def test_a_namespaced_call_in_the_history_keeps_its_flat_name():
    messages = to_messages(
        [
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "spawn_agent",
                "namespace": "multi_agent_v1",
                "arguments": '{"message": "hi"}',
            },
            {"type": "function_call_output", "call_id": "c1", "output": "agent-7"},
        ]
    )
    assert messages[0]["tool_calls"][0]["function"]["name"] == "multi_agent_v1__spawn_agent"
    plain = to_messages(
        [{"type": "function_call", "call_id": "c2", "name": "exec", "namespace": "functions"}]
    )
    assert plain[0]["tool_calls"][0]["function"]["name"] == "exec"  # Codex's default namespace


@pytest.mark.parametrize(
    ("tool", "live"),
    [
        ({"type": "web_search"}, True),
        ({"type": "web_search", "external_web_access": True}, True),
        ({"type": "web_search", "external_web_access": False, "search_context_size": "low"}, False),
    ],
)
def test_web_search_goes_live_unless_the_client_asks_for_cached_only(tool, live):
    assert map_tools([tool]).web_search is live


def test_unknown_tool_types_are_left_out_and_a_choice_of_one_is_400():
    offer = map_tools(
        [{"type": "file_search", "vector_store_ids": ["v"]}, {"type": "function", "name": "f"}]
    )
    assert [t["function"]["name"] for t in offer.chat] == ["f"]
    with pytest.raises(InvalidRequest) as info:
        map_tool_choice({"type": "function", "name": "file_search"}, offer.chat)
    assert info.value.param == "tool_choice.name"


def test_a_namespaced_tool_choice_names_the_member():
    offer = map_tools([MULTI_AGENT])
    choice = {"type": "function", "name": "spawn_agent", "namespace": "multi_agent_v1"}
    mapped, _ = map_tool_choice(choice, offer.chat)
    assert mapped == {"type": "function", "function": {"name": "multi_agent_v1__spawn_agent"}}


def test_tool_choice_naming_an_unknown_tool_is_400():
    with pytest.raises(InvalidRequest) as info:
        map_tool_choice({"type": "function", "name": "nope"}, [])
    assert info.value.param == "tool_choice.name"


def test_controls_map_to_chat_fields():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    mapped = to_chat_body(
        body(
            instructions="Be brief.",
            reasoning={"effort": "low"},
            text={"format": {"type": "json_schema", "name": "x", "schema": schema, "strict": True}},
            max_output_tokens=50,
            parallel_tool_calls=False,
            store=False,
            stream=True,
            user="u1",
        )
    ).chat_body
    assert mapped["messages"][0] == {"role": "system", "content": "Be brief."}
    assert mapped["reasoning_effort"] == "low"
    assert mapped["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": schema, "strict": True},
    }
    assert mapped["max_completion_tokens"] == 50  # counts reasoning too, as at OpenAI
    assert "logprobs" not in mapped
    assert mapped["parallel_tool_calls"] is False
    assert mapped["keep_conversation"] is False and mapped["stream"] is True
    json_object = to_chat_body(body(text={"format": {"type": "json_object"}})).chat_body
    assert json_object["response_format"] == {"type": "json_object"}
    plain = to_chat_body(body(text={"format": {"type": "text"}})).chat_body
    assert "response_format" not in plain
    logprobs = to_chat_body(body(include=["message.output_text.logprobs"], top_logprobs=2))
    assert logprobs.chat_body["logprobs"] is True and logprobs.chat_body["top_logprobs"] == 2


def test_history_is_replayed_unless_the_conversation_continues():
    history = [
        {"role": "user", "content": "first"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "1"}]},
    ]
    replayed = to_chat_body(body(input="second"), history=history)
    assert [m["role"] for m in replayed.chat_body["messages"]] == ["user", "assistant", "user"]
    native = to_chat_body(body(input="second"), history=history, conversation_id="abc123")
    assert native.chat_body["messages"] == [{"role": "user", "content": "second"}]
    assert native.chat_body["conversation_id"] == "abc123"
    assert native.history == history


def test_output_items_drop_reasoning():
    output = [
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "id": "msg_1", "role": "assistant", "content": []},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
    ]
    assert [i["type"] for i in output_items(output)] == ["message", "function_call"]


def test_codex_shaped_request_maps():
    request = orjson.loads(CODEX_FIXTURE.read_bytes())
    mapped = to_chat_body(load(ResponsesSchema(), request))
    chat = mapped.chat_body
    assert chat["messages"][0]["role"] == "system"  # the instructions
    assert mapped.custom_tools == frozenset({"apply_patch"})
    names = [t["function"]["name"] for t in chat["tools"]]
    assert len(names) == len(request["tools"]) and "apply_patch" in names
    assert chat["keep_conversation"] is False  # store: false
    roles = [m["role"] for m in chat["messages"]]
    assert "tool" in roles and roles[-1] == "user"
    assert json.dumps(request).count('"type": "reasoning"') >= 1  # present, and dropped:
    assert all("encrypted" not in json.dumps(m) for m in chat["messages"])


def test_additional_tools_items_are_offered_and_functions_members_stay_plain():
    item = {
        "type": "additional_tools",
        "role": "developer",
        "tools": [
            {
                "type": "namespace",
                "name": "functions",
                "tools": [{"type": "custom", "name": "exec", "description": "Run code."}],
            },
            {
                "type": "namespace",
                "name": "clock",
                "tools": [{"type": "function", "name": "sleep", "parameters": {"type": "object"}}],
            },
        ],
    }
    mapped = to_chat_body(body(input=[item, {"role": "user", "content": "hi"}]))
    names = [t["function"]["name"] for t in mapped.chat_body["tools"]]
    assert names == ["exec", "clock__sleep"]
    assert mapped.custom_tools == frozenset({"exec"})
    assert mapped.namespaced == {"clock__sleep": ("clock", "sleep")}
    assert [m["role"] for m in mapped.chat_body["messages"]] == ["user"]
