"""Agent SDKs with a function tool and a structured final answer, against the real server.

The OpenAI Agents SDK (an ``Agent`` with a function tool and an ``output_type``,
over the Responses API and over Chat Completions), pydantic-ai (native output
plus a tool) and instructor (``Mode.RESPONSES_TOOLS``). The model is scripted
in the simulator: first a tool call, then the final JSON answer; everything
else (the SDK, the server, its parsing of the model's text) is real.
"""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel

from tests.tool_support import call_block, invoke, prompt_text, script, stream_requests


class Weather(BaseModel):
    city: str
    temp: int


ANSWER = Weather(city="Paris", temp=21)
QUESTION = "How warm is it in Paris? Use the weather tool, then answer."
TOOL_CALL = "I will look it up.\n" + call_block(invoke("get_weather", city="Paris"))
FINAL = json.dumps(ANSWER.model_dump())


def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"sunny, 21C in {city}"


def _tool_round_trip(simulator, token) -> None:
    """The simulator saw the tool call's result in the second request, and no re-ask."""
    sent = [prompt_text(r) for r in stream_requests(simulator, token)]
    assert len(sent) == 2, sent
    assert "sunny, 21C in Paris" in sent[1]


@pytest.fixture
def no_tracing(monkeypatch):
    """The Agents SDK must not export traces anywhere."""
    from agents import set_tracing_disabled

    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    set_tracing_disabled(True)


@pytest.mark.parametrize("api", ["responses", "chat"])
def test_openai_agents_sdk_tool_then_output_type(proxy, simulator, token, no_tracing, api):
    from agents import (
        Agent,
        OpenAIChatCompletionsModel,
        OpenAIResponsesModel,
        Runner,
        function_tool,
    )
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=proxy.v1, api_key=token, max_retries=0, timeout=60)
    kind = OpenAIResponsesModel if api == "responses" else OpenAIChatCompletionsModel
    agent = Agent(
        name="weather",
        instructions="Answer weather questions with the tool.",
        tools=[function_tool(get_weather)],
        output_type=Weather,
        model=kind(model="glm-4", openai_client=client),
    )
    script(simulator, token, TOOL_CALL, FINAL)
    result = Runner.run_sync(agent, QUESTION)
    assert result.final_output == ANSWER
    _tool_round_trip(simulator, token)


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_pydantic_ai_native_output_and_a_tool(proxy, simulator, token, api):
    from pydantic_ai import Agent, NativeOutput
    from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    provider = OpenAIProvider(base_url=proxy.v1, api_key=token)
    kind = OpenAIChatModel if api == "chat" else OpenAIResponsesModel
    agent = Agent(kind("glm-4", provider=provider), output_type=NativeOutput(Weather))
    agent.tool_plain(get_weather)
    script(simulator, token, TOOL_CALL, FINAL)
    result = agent.run_sync(QUESTION)
    assert result.output == ANSWER
    _tool_round_trip(simulator, token)


def test_instructor_responses_tools(proxy, simulator, token):
    import instructor
    from openai import OpenAI

    client = instructor.from_openai(
        OpenAI(base_url=proxy.v1, api_key=token, max_retries=0, timeout=60),
        mode=instructor.Mode.RESPONSES_TOOLS,
    )
    # instructor offers the answer's model as a tool and forces it: the answer is its call.
    script(simulator, token, call_block(invoke("Weather", city="Paris", temp="21")))
    weather = client.responses.create(
        model="glm-4",
        input=QUESTION,
        response_model=Weather,
        max_retries=0,
    )
    assert weather.model_dump() == ANSWER.model_dump()
    assert len(stream_requests(simulator, token)) == 1
