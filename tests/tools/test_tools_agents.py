"""Agent loops over emulated tools: LangChain ``bind_tools`` and a Claude-Code-like client.

Both run several tool steps to a final answer against the real server; the
model's answers are scripted in the simulator, everything else is real.
"""

from __future__ import annotations

import functools
import operator

import anthropic
import pytest

from tests.support.tools import call_block, invoke, prompt_text, script, stream_requests


@pytest.fixture
def no_tracing(monkeypatch):
    """LangChain must talk to the local server only."""
    for name in ("LANGCHAIN_TRACING_V2", "LANGSMITH_TRACING", "LANGCHAIN_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANGSMITH_TRACING", "false")


@pytest.mark.parametrize("stream", [False, True])
def test_langchain_bind_tools_agent_loop(proxy, simulator, token, no_tracing, stream):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        return f"sunny in {city}, 21C"

    @tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    tools = {t.name: t for t in (get_weather, add)}
    llm = ChatOpenAI(
        model="glm-4", base_url=proxy.v1, api_key=token, max_retries=0, timeout=30
    ).bind_tools(list(tools.values()))
    script(
        simulator,
        token,
        "Let me look.\n" + call_block(invoke("get_weather", city="Paris")),
        call_block(invoke("add", a="2", b="19")),
        "Paris is sunny at 21C; 2 + 19 = 21.",
    )
    messages: list = [HumanMessage("Weather in Paris, and what is 2 + 19?")]
    executed = []
    for _ in range(5):
        if stream:
            ai = functools.reduce(operator.add, llm.stream(messages))
        else:
            ai = llm.invoke(messages)
        messages.append(ai)
        if not ai.tool_calls:
            break
        for call in ai.tool_calls:
            result = tools[call["name"]].invoke(call["args"])
            executed.append((call["name"], call["args"], result))
            messages.append(ToolMessage(str(result), tool_call_id=call["id"]))
    assert executed == [
        ("get_weather", {"city": "Paris"}, "sunny in Paris, 21C"),
        ("add", {"a": 2, "b": 19}, 21),
    ]
    assert messages[-1].content == "Paris is sunny at 21C; 2 + 19 = 21."
    sent = [prompt_text(r) for r in stream_requests(simulator, token)]
    assert len(sent) == 3
    assert "sunny in Paris, 21C" in sent[1] and '<invoke name="get_weather">' in sent[1]
    assert "<![CDATA[21]]>" in sent[2]  # both results travel in the flattened history
    assert simulator.wait_deleted(token)["conversations_alive"] == []


def claude_code_tools(n: int = 30) -> list[dict]:
    """Many tools with long schemas, like Claude Code's."""
    tools = []
    for i in range(n):
        tools.append(
            {
                "name": f"Tool{i}",
                "description": f"Tool number {i}. " + "Detailed usage notes. " * 40,
                "input_schema": {
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "type": "object",
                    "properties": {
                        f"field_{j}": {"type": "string", "description": "A field. " * 10}
                        for j in range(8)
                    },
                    "required": ["field_0"],
                    "additionalProperties": False,
                },
            }
        )
    tools.append(
        {
            "name": "Bash",
            "description": "Run a shell command.",
            "input_schema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {
                    "command": {"type": "string"},
                    "timeout": {"type": "number"},
                    "run_in_background": {"type": "boolean"},
                },
                "required": ["command"],
                "additionalProperties": False,
            },
        }
    )
    tools.append(
        {
            "name": "Read",
            "description": "Read a file.",
            "input_schema": {
                "type": "object",
                "properties": {"file_path": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["file_path"],
            },
        }
    )
    return tools


SYSTEM = [
    {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
    {
        "type": "text",
        "text": "Use the tools with the function_calls format. " + "Be careful. " * 2000,
        "cache_control": {"type": "ephemeral"},
    },
]
COMMAND = "grep -n \"def \" src/*.py | head -5 && echo '<done>'"


@pytest.mark.profiles("2026", "2025")
def test_claude_code_like_loop_streams_tool_use(proxy, simulator, token):
    claude = anthropic.Anthropic(base_url=proxy.base, api_key=token, max_retries=0, timeout=30)
    tools = claude_code_tools()
    script(
        simulator,
        token,
        {
            "text": "I'll read the file first.\n"
            + call_block(invoke("Read", file_path="/repo/src/app.py", limit="50")),
            "steps": 12,
            "think": "The user wants a summary; read the file.",
        },
        {
            "text": call_block(invoke("Bash", command=f"<![CDATA[{COMMAND}]]>", timeout="30")),
            "steps": 9,
        },
        {"text": "The file defines 3 functions.", "steps": 3},
    )
    messages: list[dict] = [{"role": "user", "content": "Summarise src/app.py"}]
    uses = []
    replies = []
    for _ in range(5):
        with claude.messages.stream(
            model="glm-4",
            max_tokens=4096,
            system=SYSTEM,
            tools=tools,
            messages=messages,
            thinking={"type": "enabled", "budget_tokens": 1024},
        ) as stream:
            kinds = [
                (e.type, getattr(getattr(e, "content_block", None), "type", None)) for e in stream
            ]
            message = stream.get_final_message()
        replies.append(message)
        messages.append({"role": "assistant", "content": [b.model_dump() for b in message.content]})
        tool_uses = [b for b in message.content if b.type == "tool_use"]
        if not tool_uses:
            break
        assert message.stop_reason == "tool_use"
        assert ("content_block_start", "tool_use") in kinds
        results = []
        for block in tool_uses:
            assert block.name and block.id and isinstance(block.input, dict) and block.input
            uses.append((block.name, block.input))
            results.append(
                {
                    "type": "tool_result",
                    "tool_use_id": block.id,
                    "content": [{"type": "text", "text": f"output of {block.name}: ok"}],
                    "is_error": block.name == "Bash",
                }
            )
        messages.append({"role": "user", "content": results})
    assert uses == [
        ("Read", {"file_path": "/repo/src/app.py", "limit": 50}),
        ("Bash", {"command": COMMAND, "timeout": 30}),
    ]
    assert message.stop_reason == "end_turn"
    assert message.content[-1].text == "The file defines 3 functions."
    # reasoning stays a thinking block, before the prose and the call
    assert [b.type for b in replies[0].content] == ["thinking", "text", "tool_use"]
    sent = [prompt_text(r) for r in stream_requests(simulator, token)]
    assert len(sent) == 3
    assert sent[0].index("Be careful.") < sent[0].index("# Tools of the user's application")
    assert '<tool name="Tool29">' in sent[0]
    assert 'name="Bash" call_id="' in sent[2] and 'status="error"' in sent[2]
    assert simulator.wait_deleted(token)["conversations_alive"] == []


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "Read"}])
def test_anthropic_forced_tool_choice_corrects_once(proxy, simulator, token, choice):
    claude = anthropic.Anthropic(base_url=proxy.base, api_key=token, max_retries=0, timeout=30)
    script(
        simulator,
        token,
        "Sure, here is a summary without reading.",
        call_block(invoke("Read", file_path="a.py")),
    )
    message = claude.messages.create(
        model="glm-4",
        max_tokens=100,
        tools=claude_code_tools(2),
        tool_choice=choice,
        messages=[{"role": "user", "content": "read a.py"}],
    )
    assert message.stop_reason == "tool_use"
    assert [(b.type, b.input) for b in message.content] == [("tool_use", {"file_path": "a.py"})]
    assert message.content[0].id.startswith("toolu_")


def test_anthropic_bad_tools_are_400(proxy, token):
    claude = anthropic.Anthropic(base_url=proxy.base, api_key=token, max_retries=0, timeout=30)
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(
            model="glm-4",
            max_tokens=10,
            tools=[{"name": "", "input_schema": {"type": "object"}}],
            messages=[{"role": "user", "content": "x"}],
        )
    assert info.value.status_code == 400
    assert info.value.body["error"]["type"] == "invalid_request_error"
    assert "tools[0].name" in info.value.body["error"]["message"]
