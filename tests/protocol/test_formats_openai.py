"""OpenAI chat formats: chunk and completion shapes, reasoning styles, and the promise that a
stream's concatenated content equals the non-stream content for the same deltas.

Also covers ``glm_proxy.protocol.usage`` (the ``usage`` object both paths attach).
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from glm_proxy.protocol.events import (
    Citation,
    ConversationStarted,
    Delta,
    Finished,
    ImageGenerated,
    ReasoningDelta,
    TextDelta,
)
from glm_proxy.protocol.formats.openai import (
    ChatStreamFormatter,
    ChatWire,
    CompletionAccumulator,
    ReasoningStyle,
    build_completion,
    chat_usage,
)
from glm_proxy.protocol.sse import SSEDecoder, decode_json, encode_event
from glm_proxy.protocol.translate import translate_all
from glm_proxy.protocol.usage import _WIDE, estimate_tokens, usage_dict

STYLES: tuple[ReasoningStyle, ...] = ("reasoning_content", "think_tags", "hidden")
RECORDINGS = Path(__file__).parent.parent / "recordings"
USAGE = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}


def fmt(style: ReasoningStyle = "reasoning_content") -> ChatStreamFormatter:
    return ChatStreamFormatter("chatcmpl-1", "glm-4", 1700000000, style)


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "glm-4",
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def stream(deltas: list[Delta], style: ReasoningStyle) -> list[dict[str, Any]]:
    f = fmt(style)
    return [f.first_chunk()] + [c for d in deltas for c in f.feed(d)]


def streamed(chunks: list[dict[str, Any]], key: str) -> str:
    return "".join(c["choices"][0]["delta"].get(key, "") for c in chunks if c["choices"])


def recording_deltas(name: str) -> list[Delta]:
    decoder = SSEDecoder()
    events = decoder.feed((RECORDINGS / name).read_bytes()) + decoder.finish()
    return translate_all(decode_json(e) for e in events)


THINK_THEN_TEXT: list[Delta] = [
    ConversationStarted("c1", "m1"),
    ReasoningDelta("想一想"),
    ReasoningDelta("……"),
    Citation(1, "t", "https://a.example/"),
    TextDelta("答案"),
    ImageGenerated("https://a.example/1.png"),
    TextDelta(" [1](https://a.example/)"),
    ReasoningDelta("又想到"),  # reasoning after the answer began
    TextDelta("！"),
    Finished("stop"),
]
SAMPLES: dict[str, list[Delta]] = {
    "think_then_text": THINK_THEN_TEXT,
    "reasoning_only": [ReasoningDelta("只想不说"), Finished("stop")],
    "text_only": [TextDelta("你好 🚀"), Finished("stop")],
    "filtered": [TextDelta("一半"), TextDelta("\n\n不合规"), Finished("content_filter", "不合规")],
    "empty": [Finished("stop")],
    "e2_think_search": recording_deltas("e2_think_search.sse"),
    "e2_code_crlf": recording_deltas("e2_code_crlf.sse"),
    "e2_intervene": recording_deltas("e2_intervene.sse"),
}


# -- stream chunks -----------------------------------------------------------------


def test_first_chunk_announces_the_role() -> None:
    assert fmt().first_chunk() == chunk({"role": "assistant", "content": ""})


def test_text_and_finish_chunks() -> None:
    f = fmt()
    assert f.feed(TextDelta("你好")) == [chunk({"content": "你好"})]
    assert f.feed(TextDelta("")) == []
    assert f.feed(Finished("stop")) == [chunk({}, "stop")]
    assert fmt().feed(Finished("content_filter", "x")) == [chunk({}, "content_filter")]


@pytest.mark.parametrize(
    "delta",
    [ConversationStarted("c", "m"), Citation(1, "t", "https://u/"), ImageGenerated("https://i/")],
)
def test_other_deltas_produce_no_chunk(delta: Delta) -> None:
    assert fmt().feed(delta) == []


def test_reasoning_content_style() -> None:
    f = fmt("reasoning_content")
    assert f.feed(ReasoningDelta("想")) == [chunk({"reasoning_content": "想"})]
    assert f.feed(TextDelta("答")) == [chunk({"content": "答"})]


def test_hidden_style_drops_reasoning() -> None:
    assert fmt("hidden").feed(ReasoningDelta("想")) == []


def test_think_tags_open_once_and_close_before_the_answer() -> None:
    f = fmt("think_tags")
    assert f.feed(ReasoningDelta("想")) == [chunk({"content": "<think>\n想"})]
    assert f.feed(ReasoningDelta("好了")) == [chunk({"content": "好了"})]
    assert f.feed(TextDelta("答")) == [chunk({"content": "\n</think>\n\n答"})]
    assert f.feed(ReasoningDelta("后来的想法")) == []  # never a second <think>
    assert f.feed(TextDelta("案")) == [chunk({"content": "案"})]
    assert f.feed(Finished("stop")) == [chunk({}, "stop")]


def test_empty_answer_text_leaves_the_think_block_open() -> None:
    f = fmt("think_tags")
    f.feed(ReasoningDelta("想"))
    assert f.feed(TextDelta("")) == []
    assert f.feed(ReasoningDelta("还在想")) == [chunk({"content": "还在想"})]


def test_think_tags_closed_at_finish_when_no_answer_text() -> None:
    f = fmt("think_tags")
    f.feed(ReasoningDelta("想"))
    assert f.feed(Finished("stop")) == [chunk({"content": "\n</think>\n\n"}), chunk({}, "stop")]


def test_usage_chunk() -> None:
    assert fmt().usage_chunk(USAGE) == {
        **{k: v for k, v in chunk({}).items() if k != "choices"},
        "choices": [],
        "usage": USAGE,
    }


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_only_the_finish_chunk_has_an_empty_delta(name: str, style: ReasoningStyle) -> None:
    first, *rest = stream(SAMPLES[name], style)
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    for c in rest:
        choice = c["choices"][0]
        assert c["object"] == "chat.completion.chunk"
        assert (choice["delta"] == {}) == (choice["finish_reason"] is not None)
        assert all(v for v in choice["delta"].values())  # no empty content either
    assert sum(c["choices"][0]["finish_reason"] is not None for c in rest) == 1


TRICKY = 'quote " backslash \\ newline \n tab \t nul \x00 </script> \u2028 🚀 中文'


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_chat_wire_bytes_are_the_formatter_chunks_encoded(name: str, style: ReasoningStyle) -> None:
    """ChatWire splices answer text into pre-encoded bytes; they must be the chunks' JSON."""
    *body, end = SAMPLES[name]
    deltas = [*body, TextDelta(""), TextDelta(TRICKY), end]
    if style == "think_tags":
        deltas = [ReasoningDelta("先想"), *deltas]  # the answer text closes the <think>
    wire = ChatWire(
        model="glm-4",
        created=1700000000,
        prompt_text="q",
        response_id=lambda: "chatcmpl-1",
        reasoning_style=style,
    )
    f = fmt(style)
    assert wire.open() == encode_event(f.first_chunk())
    for delta in deltas:
        assert wire.feed(delta) == b"".join(encode_event(c) for c in f.feed(delta))
    wire.finish()  # the streamed text was only counted: the same usage as the whole text
    assert wire.usage == chat_usage("q", CompletionAccumulator().feed_all(deltas))


# -- non-stream, and agreement with the stream -------------------------------------------


def test_accumulator_folds_every_delta() -> None:
    acc = CompletionAccumulator().feed_all(THINK_THEN_TEXT)
    assert acc.text == "答案 [1](https://a.example/)！"
    assert acc.reasoning == "想一想……又想到"
    assert acc.leading_reasoning == "想一想……"
    assert acc.finish_reason == "stop"
    assert acc.citations == [Citation(1, "t", "https://a.example/")]
    assert acc.images == ["https://a.example/1.png"]
    assert (acc.conversation_id, acc.message_id) == ("c1", "m1")


def test_accumulator_text_reads_the_same_between_and_after_deltas() -> None:
    acc = CompletionAccumulator()
    for delta in (ReasoningDelta("想"), TextDelta(""), ReasoningDelta("再想")):
        acc.feed(delta)
    assert (acc.text, acc.leading_reasoning) == ("", "想再想")  # empty text starts nothing
    acc.feed(TextDelta("一"))
    assert acc.text == "一"
    for delta in (TextDelta("二"), TextDelta("三"), ReasoningDelta("后")):
        acc.feed(delta)
    assert (acc.text, acc.leading_reasoning) == ("一二三", "想再想")
    acc.feed(TextDelta("四"))
    assert acc.text == acc.text == "一二三四"


def test_build_completion_shape() -> None:
    acc = CompletionAccumulator().feed_all(THINK_THEN_TEXT)
    body = build_completion("chatcmpl-1", "glm-4", 1700000000, acc, USAGE, "reasoning_content")
    assert body == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "glm-4",
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "答案 [1](https://a.example/)！",
                    "refusal": None,
                    "reasoning_content": "想一想……又想到",
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }


def test_build_completion_styles() -> None:
    acc = CompletionAccumulator().feed_all(THINK_THEN_TEXT)

    def message(style: ReasoningStyle) -> dict[str, Any]:
        return build_completion("i", "m", 0, acc, USAGE, style)["choices"][0]["message"]

    assert message("think_tags") == {
        "role": "assistant",
        "content": "<think>\n想一想……\n</think>\n\n答案 [1](https://a.example/)！",
        "refusal": None,
    }
    assert message("hidden") == {"role": "assistant", "content": acc.text, "refusal": None}
    plain = CompletionAccumulator().feed_all([TextDelta("x")])
    no_reasoning = build_completion("i", "m", 0, plain, USAGE, "reasoning_content")
    assert "reasoning_content" not in no_reasoning["choices"][0]["message"]
    assert no_reasoning["choices"][0]["finish_reason"] == "stop"  # stream closed early


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_stream_content_equals_non_stream_content(name: str, style: ReasoningStyle) -> None:
    deltas = SAMPLES[name]
    chunks = stream(deltas, style)
    acc = CompletionAccumulator().feed_all(deltas)
    body = build_completion("chatcmpl-1", "glm-4", 1700000000, acc, USAGE, style)
    choice = body["choices"][0]
    assert streamed(chunks, "content") == choice["message"]["content"]
    assert streamed(chunks, "reasoning_content") == choice["message"].get("reasoning_content", "")
    assert chunks[-1]["choices"][0]["finish_reason"] == choice["finish_reason"]


def test_recorded_intervene_finishes_with_content_filter() -> None:
    acc = CompletionAccumulator().feed_all(SAMPLES["e2_intervene"])
    assert acc.finish_reason == "content_filter"
    assert acc.finish_message == "这个问题我暂时无法回答，让我们换个话题吧。"


# -- usage -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("a", 1),
        ("hello world!", 3),  # 12 narrow chars / 4
        ("你好世界", 4),  # one per ideograph
        ("你好 world", 4),  # 2 wide + ceil(6 / 4)
        ("こんにちは", 5),
        ("🚀", 1),
    ],
)
def test_estimate_tokens(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


def test_estimate_counts_exactly_the_wide_characters_of_the_pattern() -> None:
    """The code-unit count agrees with ``_WIDE`` on every code point and on mixtures."""
    for code in range(0x110000):
        char = chr(code)
        wide = _WIDE.match(char) is not None
        assert estimate_tokens(char * 8) == (8 if wide else 2), hex(code)
    runs = re.compile(_WIDE.pattern + "+")
    rng = random.Random(7)
    edges = [0x2FFF, 0x3000, 0x30FF, 0x3100, 0x4DBF, 0x4DC0, 0x9FFF, 0xA000, 0xD7AF, 0xD7B0]
    edges += [0xD800, 0xDFFF, 0xFFEF, 0xFFF0, 0x1F680, 0x1FFFF, 0x20000, 0x3134F, 0x31350]
    for _ in range(3000):
        text = "".join(
            chr(rng.choice([rng.choice(edges), rng.randrange(0x110000), rng.randrange(128)]))
            for _ in range(rng.randint(1, 40))
        )
        wide = sum(map(len, runs.findall(text)))
        assert estimate_tokens(text) == max(1, wide + (len(text) - wide + 3) // 4), text


def test_usage_dict_counts_reasoning_inside_completion() -> None:
    assert usage_dict("你好", "答案是 42", "想一想") == {
        "prompt_tokens": 2,
        "completion_tokens": 3 + 1 + 3,  # "答案是" + ceil(len(" 42") / 4) + reasoning
        "total_tokens": 2 + 7,
        "completion_tokens_details": {"reasoning_tokens": 3},
    }
    assert usage_dict("", "")["total_tokens"] == 0


@pytest.mark.parametrize("style", STYLES)
def test_openai_sdk_parses_what_we_emit(style: ReasoningStyle) -> None:
    types = pytest.importorskip("openai.types.chat")
    deltas = SAMPLES["e2_think_search"]
    for c in [*stream(deltas, style), fmt(style).usage_chunk(usage_dict("q", "a"))]:
        types.ChatCompletionChunk.model_validate(c)
    acc = CompletionAccumulator().feed_all(deltas)
    body = build_completion("chatcmpl-1", "glm-4", 1, acc, usage_dict("q", acc.text), style)
    parsed = types.ChatCompletion.model_validate(body)
    assert parsed.choices[0].message.content == body["choices"][0]["message"]["content"]
    assert parsed.usage is not None and parsed.usage.completion_tokens_details is not None
