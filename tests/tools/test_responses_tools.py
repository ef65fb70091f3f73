"""Responses API tool calling end to end: function and custom (free-text) tools, round trips
through ``previous_response_id`` and through a whole history sent with ``store: false``."""

from __future__ import annotations

import json

import pytest

from tests.support.tools import (
    call_block,
    invoke,
    prompt_text,
    script,
    stream_requests,
)

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
    "strict": False,
}
PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files with a patch.",
    "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" /.+/'},
}
PATCH_TEXT = "*** Begin Patch\n*** Update File: a.py\n-x = 1\n+x = 2\n*** End Patch"


def create(client, stream: bool, **kwargs):
    """``responses.create``, or the same request through ``responses.stream``."""
    if not stream:
        return client.responses.create(**kwargs), []
    with client.responses.stream(**kwargs) as events:
        seen = list(events)
        return events.get_final_response(), seen


@pytest.mark.parametrize("stream", [False, True])
def test_function_tool_round_trip(client, simulator, token, stream):
    script(simulator, token, call_block(invoke("get_weather", city="Paris", days="3")))
    first, events = create(
        client, stream, model="glm-4", input="Weather in Paris?", tools=[WEATHER]
    )
    (call,) = [o for o in first.output if o.type == "function_call"]
    assert call.name == "get_weather" and call.call_id
    assert json.loads(call.arguments) == {"city": "Paris", "days": 3}
    assert first.status == "completed"
    if stream:
        kinds = [e.type for e in events]
        assert "response.function_call_arguments.delta" in kinds
        assert "response.function_call_arguments.done" in kinds
    script(simulator, token, "It is sunny in Paris.")
    second, _ = create(
        client,
        stream,
        model="glm-4",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}],
        tools=[WEATHER],
    )
    assert second.output_text == "It is sunny in Paris."
    last = stream_requests(simulator, token)[-1]
    assert "sunny, 21C" in prompt_text(last)


@pytest.mark.parametrize("stream", [False, True])
def test_custom_tool_round_trip(client, simulator, token, stream):
    script(simulator, token, call_block(invoke("apply_patch", input=f"<![CDATA[{PATCH_TEXT}]]>")))
    first, events = create(
        client, stream, model="glm-4", input="Set x to 2 in a.py", tools=[PATCH], store=False
    )
    (call,) = [o for o in first.output if o.type == "custom_tool_call"]
    assert call.name == "apply_patch" and call.input == PATCH_TEXT and call.call_id
    if stream:
        kinds = [e.type for e in events]
        assert kinds.index("response.custom_tool_call_input.delta") < kinds.index(
            "response.custom_tool_call_input.done"
        )
    tool_prompt = prompt_text(stream_requests(simulator, token)[-1])
    assert "apply_patch" in tool_prompt and "lark" in tool_prompt
    # Codex-style: store=false, the whole history sent back every turn.
    script(simulator, token, "Patched.")
    history = [
        {"role": "user", "content": "Set x to 2 in a.py"},
        call.model_dump(exclude_none=True),
        {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Success."},
    ]
    second, _ = create(client, stream, model="glm-4", input=history, tools=[PATCH], store=False)
    assert second.output_text == "Patched."
    text = prompt_text(stream_requests(simulator, token)[-1])
    assert "Success." in text and "x = 2" in text


def test_tool_choice_required_with_a_custom_tool(client, simulator, token):
    script(simulator, token, call_block(invoke("apply_patch", input=PATCH_TEXT)))
    response = client.responses.create(
        model="glm-4",
        input="patch it",
        tools=[PATCH, WEATHER],
        tool_choice={"type": "custom", "name": "apply_patch"},
    )
    assert [o.type for o in response.output] == ["custom_tool_call"]
    assert response.tool_choice.name == "apply_patch"
