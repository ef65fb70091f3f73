"""Controls on the answer itself, against the real server and scripted simulated answers.

The simulator is told exactly what the model answers (``/_sim/script``, with
upstream event boundaries between the pieces), so each test knows where a stop string is split,
whether the JSON validates, and how long the answer is; the proxy's output
is then checked through the official SDKs (and LangChain), streamed and not.
"""

from __future__ import annotations

import anthropic
import openai
import pytest
import requests
from pydantic import BaseModel

from glm_proxy.protocol.usage import estimate_tokens
from tests.conftest import start_proxy, stop_proxy
from tests.support.answers import REACT, REACT_KEPT, said
from tests.support.waiting import wait_until


class Person(BaseModel):
    name: str
    age: int


VALID = '{"name": "李雷", "age": 30}'


def script(simulator, token: str, *answers: dict) -> None:
    resp = requests.post(
        f"{simulator.base}/_sim/script", json={"token": token, "answers": list(answers)}, timeout=5
    )
    resp.raise_for_status()


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def stream_requests(simulator, token: str) -> list[dict]:
    return [
        r
        for r in simulator.requests_log("/assistant/stream")
        if r.get("account") == token and r.get("stream")
    ]


@pytest.fixture
def claude(proxy, token):
    return anthropic.Anthropic(base_url=proxy.base, api_key=token, max_retries=0, timeout=30)


# -- structured outputs -------------------------------------------------------------------


@pytest.mark.parametrize(
    "pieces",
    [
        [VALID[:9], VALID[9:]],
        ["```json\n", VALID, "\n```"],
        ["Sure, here it is:\n\n```json\n" + VALID[:5], VALID[5:] + "\n```\nAnything else?"],
        ["The person is ", VALID, " as asked."],
    ],
    ids=["plain", "fenced", "prose-and-fence", "prose"],
)
def test_parse_returns_the_pydantic_object(client, simulator, token, pieces):
    script(simulator, token, said(*pieces))
    completion = client.chat.completions.parse(
        model="glm-4", messages=user("who?"), response_format=Person
    )
    message = completion.choices[0].message
    assert message.parsed == Person(name="李雷", age=30)
    assert completion.choices[0].finish_reason == "stop"
    sent = stream_requests(simulator, token)[-1]["stream"]["content"][0]["item"]["text"]
    assert "JSON" in sent and '"age"' in sent  # the model was given the schema
    assert len(stream_requests(simulator, token)) == 1
    assert simulator.wait_deleted(token)["conversations_alive"] == []


def test_streamed_structured_answer_streams_only_the_json(client, simulator, token):
    script(simulator, token, said("Here you go: ", VALID, " (hope it helps)"))
    with client.chat.completions.stream(
        model="glm-4", messages=user("who?"), response_format=Person
    ) as stream:
        contents = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == Person(name="李雷", age=30)
    assert "".join(contents) == '{"name": "李雷", "age": 30}'


@pytest.mark.parametrize("stream", [False, True])
def test_invalid_first_answer_is_asked_again_in_the_same_conversation(
    client, simulator, token, stream
):
    script(
        simulator, token, said('{"name": "李雷", "age": "thirty"}'), said("```json\n", VALID, "```")
    )
    if stream:
        with client.chat.completions.stream(
            model="glm-4", messages=user("who?"), response_format=Person
        ) as events:
            parsed = events.get_final_completion().choices[0].message.parsed
    else:
        completion = client.chat.completions.parse(
            model="glm-4", messages=user("who?"), response_format=Person
        )
        parsed = completion.choices[0].message.parsed
    assert parsed == Person(name="李雷", age=30)
    first, second = stream_requests(simulator, token)[-2:]
    assert second["stream"]["conversation_id"] == first["stream"]["conversation"]
    correction = second["stream"]["content"][0]["item"]["text"]
    assert "'thirty' is not of type 'integer'" in correction
    assert simulator.wait_deleted(token)["conversations_alive"] == []


def test_still_invalid_after_the_correction_is_a_502_with_the_reason(
    client, proxy, simulator, token
):
    script(simulator, token, said("I'd rather not."), said('{"name": "x"}'))
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.parse(model="glm-4", messages=user("who?"), response_format=Person)
    assert info.value.status_code == 502
    body = info.value.body
    assert body["code"] == "invalid_structured_output"
    assert "did not produce valid JSON" in body["message"]
    assert "'age' is a required property" in body["message"]
    assert simulator.wait_deleted(token)["conversations_alive"] == []

    script(simulator, token, said("no JSON"), said("still none"))
    resp = requests.post(
        f"{proxy.v1}/chat/completions",
        json={
            "model": "glm-4",
            "messages": user("who?"),
            "stream": True,
            "response_format": {"type": "json_object"},
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert resp.status_code == 502  # nothing was streamed: the real status
    assert resp.json()["error"]["code"] == "invalid_structured_output"


def test_json_object_mode(client, simulator, token):
    script(simulator, token, said("```json\n", '{"ok": true, "items": [1, 2]}', "\n```"))
    completion = client.chat.completions.create(
        model="glm-4", messages=user("json please"), response_format={"type": "json_object"}
    )
    assert completion.choices[0].message.content == '{"ok": true, "items": [1, 2]}'


@pytest.mark.parametrize("method", [None, "json_schema", "json_mode"])
def test_langchain_with_structured_output_gets_the_object(proxy, simulator, token, method):
    from langchain_openai import ChatOpenAI

    script(simulator, token, said("Result:\n```json\n", VALID, "\n```"))
    llm = ChatOpenAI(model="glm-4", base_url=proxy.v1, api_key=token, max_retries=0, timeout=30)
    kwargs = {"method": method} if method else {}  # ChatOpenAI's default: json_schema
    structured = llm.with_structured_output(Person, **kwargs)
    result = structured.invoke("Who is 李雷? Answer in JSON with name and age.")
    assert result == Person(name="李雷", age=30)


def test_anthropic_output_format_gets_validated_json(claude, simulator, token):
    script(simulator, token, said("Here:\n```json\n", VALID, "\n```"))
    message = claude.messages.create(
        model="glm-4",
        max_tokens=256,
        messages=user("who?"),
        output_config={"format": {"type": "json_schema", "schema": Person.model_json_schema()}},
    )
    assert Person.model_validate_json(message.content[-1].text) == Person(name="李雷", age=30)


# -- stop strings ---------------------------------------------------------------------------


def test_stop_string_split_across_events_is_cut_exactly(client, simulator, token):
    script(simulator, token, said(*REACT))
    completion = client.chat.completions.create(
        model="glm-4", messages=user("react"), stop=["Observation:"]
    )
    choice = completion.choices[0]
    assert choice.message.content == REACT_KEPT
    assert choice.finish_reason == "stop"

    script(simulator, token, said(*REACT))
    chunks = list(
        client.chat.completions.create(
            model="glm-4", messages=user("react"), stop="Observation:", stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == REACT_KEPT
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert simulator.wait_deleted(token)["conversations_alive"] == []


def test_anthropic_stop_sequences(claude, simulator, token):
    script(simulator, token, said(*REACT))
    message = claude.messages.create(
        model="glm-4", max_tokens=256, messages=user("react"), stop_sequences=["Observation:"]
    )
    assert message.content[-1].text == REACT_KEPT
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "Observation:"

    script(simulator, token, said(*REACT))
    with claude.messages.stream(
        model="glm-4", max_tokens=256, messages=user("react"), stop_sequences=["Observation:"]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == REACT_KEPT
    assert final.stop_reason == "stop_sequence" and final.stop_sequence == "Observation:"


def test_stop_ends_the_upstream_stream_early(client, simulator, token):
    pieces = ["Step one. ", "STOP here. "] + [f"more text {i}. " for i in range(20)]
    script(simulator, token, said(*pieces, delay=0.2))
    completion = client.chat.completions.create(model="glm-4", messages=user("go"), stop="STOP")
    assert completion.choices[0].message.content == "Step one. "
    account = simulator.wait_deleted(token)
    assert account["conversations_alive"] == [] and account["conversations_deleted"]
    # the simulator notices the closed connection at its next write: the stream was cut
    account = wait_until(
        lambda: (a := simulator.account(token))["streams_aborted"] and a, 10, "the aborted stream"
    )
    assert account["streams_aborted"] == 1 and account["streams_completed"] == 0
    # and the upstream was asked to stop generating (GLM_STOP_ON_DISCONNECT, on in 2026)
    assert [s for s in simulator.state()["stops"] if s["account"] == token]


# -- length limits --------------------------------------------------------------------------

LONG = ["This answer is a good deal longer ", "than five tokens, so it is cut ", "short."]


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_cuts_with_finish_reason_length(client, simulator, token, field):
    script(simulator, token, said(*LONG))
    completion = client.chat.completions.create(model="glm-4", messages=user("long"), **{field: 5})
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert "".join(LONG).startswith(choice.message.content)
    assert estimate_tokens(choice.message.content) == 5
    assert completion.usage.completion_tokens == 5

    script(simulator, token, said(*LONG))
    chunks = list(
        client.chat.completions.create(
            model="glm-4",
            messages=user("long"),
            stream=True,
            stream_options={"include_usage": True},
            **{field: 5},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 5


def test_reasoning_counts_only_for_max_completion_tokens(client, simulator, token):
    reasoning = "想" * 8  # 8 tokens of reasoning
    script(simulator, token, said("一二三四", reasoning=reasoning))
    completion = client.chat.completions.create(model="glm-4", messages=user("r"), max_tokens=5)
    assert completion.choices[0].message.content == "一二三四"
    assert completion.choices[0].finish_reason == "stop"

    script(simulator, token, said("一二三四", reasoning=reasoning))
    completion = client.chat.completions.create(
        model="glm-4", messages=user("r"), max_completion_tokens=10
    )
    assert completion.choices[0].message.content == "一二"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 10


def test_anthropic_max_tokens(claude, simulator, token):
    script(simulator, token, said(*LONG))
    message = claude.messages.create(model="glm-4", max_tokens=5, messages=user("long"))
    assert message.stop_reason == "max_tokens"
    assert estimate_tokens(message.content[-1].text) == 5
    assert message.usage.output_tokens == 5

    script(simulator, token, said(*LONG))
    with claude.messages.stream(model="glm-4", max_tokens=5, messages=user("long")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == message.content[-1].text
    assert final.stop_reason == "max_tokens"


def test_length_limit_ends_the_upstream_stream_early(client, simulator, token):
    script(simulator, token, said(*[f"word{i} " for i in range(30)], delay=0.15))
    completion = client.chat.completions.create(model="glm-4", messages=user("go"), max_tokens=3)
    assert completion.choices[0].finish_reason == "length"
    assert simulator.wait_deleted(token)["conversations_alive"] == []
    assert [s for s in simulator.state()["stops"] if s["account"] == token]


def test_structured_answer_keeps_think_tags_out_of_the_json(simulator, tmp_path_factory, token):
    server = start_proxy(simulator, tmp_path_factory.mktemp("tags"), REASONING_OUTPUT="think_tags")
    try:
        client = openai.OpenAI(base_url=server.v1, api_key=token, max_retries=0, timeout=30)
        script(simulator, token, said(VALID, reasoning="让我想想"))
        completion = client.chat.completions.parse(
            model="glm-4", messages=user("who?"), response_format=Person
        )
        assert completion.choices[0].message.parsed == Person(name="李雷", age=30)
        assert completion.choices[0].message.content == '{"name": "李雷", "age": 30}'
        script(simulator, token, said("plain", reasoning="让我想想"))
        plain = client.chat.completions.create(model="glm-4", messages=user("hi"))
        assert plain.choices[0].message.content.startswith("<think>")  # the setting still holds
    finally:
        stop_proxy(server)
