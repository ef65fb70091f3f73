"""Answer filters for the client's controls: stop strings, length limits, structured JSON.

Each sample is fed whole (one delta per piece), char by char, and with junk
(other delta kinds interleaved, deltas after ``Finished``); the visible result
must be the same every time, and must match the estimator's figures.
"""

from __future__ import annotations

import json
import random

import pytest

from glm_proxy.protocol.events import (
    Citation,
    ConversationStarted,
    Finished,
    ImageGenerated,
    ReasoningDelta,
    TextDelta,
)
from glm_proxy.protocol.parsers import FilterChain, Reask
from glm_proxy.protocol.parsers.length import LengthFilter, TokenCounter
from glm_proxy.protocol.parsers.stop import StopFilter, held_prefix_length
from glm_proxy.protocol.parsers.structured import (
    JsonSpec,
    StructuredFilter,
    StructuredOutputError,
    extract_json,
    instruction,
)
from glm_proxy.protocol.usage import estimate_tokens

MODES = ("whole", "chars", "junk")


def split(deltas: list, mode: str) -> list:
    """The same answer delivered whole, one character per delta, or with junk around it."""
    if mode == "whole":
        return list(deltas)
    out: list = []
    rng = random.Random(7)
    for delta in deltas:
        if isinstance(delta, TextDelta | ReasoningDelta) and mode in ("chars", "junk"):
            out.extend(type(delta)(c) for c in delta.text)
        else:
            out.append(delta)
        if mode == "junk" and rng.random() < 0.5:
            out.append(Citation(1, "t", "https://example.com"))
    if mode == "junk":
        out += [TextDelta("JUNK AFTER THE END"), Finished("stop"), ImageGenerated("x")]
    return out


def run(filt, deltas: list) -> list:
    out: list = []
    for delta in deltas:
        out.extend(filt.feed(delta))
    out.extend(filt.finish())
    return out


def text_of(out: list) -> str:
    return "".join(d.text for d in out if isinstance(d, TextDelta))


def finishes(out: list) -> list[Finished]:
    return [d for d in out if isinstance(d, Finished)]


# -- stop strings -----------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_stop_cuts_before_a_split_stop_string(mode: str) -> None:
    deltas = [
        TextDelta("Thought: look it up\nAction: search\nObser"),
        TextDelta("vation: invented result"),
        Finished("stop"),
    ]
    out = run(StopFilter(["Observation:"]), split(deltas, mode))
    assert text_of(out) == "Thought: look it up\nAction: search\n"
    assert finishes(out) == [Finished("stop", stop_sequence="Observation:")]
    assert isinstance(out[-1], Finished)  # nothing follows Finished


@pytest.mark.parametrize("mode", MODES)
def test_stop_first_complete_of_several_wins(mode: str) -> None:
    deltas = [TextDelta("一二三 END 四五 STOP 六"), Finished("stop")]
    out = run(StopFilter(["STOP", "END", "never"]), split(deltas, mode))
    assert text_of(out) == "一二三 "
    assert finishes(out)[0].stop_sequence == "END"


@pytest.mark.parametrize("mode", MODES)
def test_stop_absent_releases_held_prefix_at_the_end(mode: str) -> None:
    deltas = [TextDelta("the answer ends with Obs"), Finished("stop")]
    out = run(StopFilter(["Observation:"]), split(deltas, mode))
    assert text_of(out) == "the answer ends with Obs"
    assert finishes(out) == [Finished("stop")]


def test_stop_prefix_released_when_stream_ends_without_finished() -> None:
    f = StopFilter(["\n\nHuman:"])
    assert text_of(f.feed(TextDelta("hello\n"))) == "hello"
    assert text_of(f.finish()) == "\n"


def test_stop_leaves_reasoning_and_other_deltas_alone() -> None:
    f = StopFilter(["X"])
    deltas = [
        ConversationStarted("c", "m"),
        ReasoningDelta("X in reasoning is fine"),
        TextDelta("abcX"),
        TextDelta("more"),
    ]
    out = run(f, deltas)
    assert out[0] == ConversationStarted("c", "m")
    assert out[1] == ReasoningDelta("X in reasoning is fine")
    assert text_of(out) == "abc"


def test_stop_at_the_very_start_gives_an_empty_answer() -> None:
    out = run(StopFilter(["Hi"]), [TextDelta("H"), TextDelta("i there"), Finished("stop")])
    assert text_of(out) == ""
    assert out == [Finished("stop", stop_sequence="Hi")]


def test_overlapping_prefixes_are_held_correctly() -> None:
    assert held_prefix_length("aaab", ["aab", "ab"]) == 0
    assert held_prefix_length("xaa", ["aab"]) == 2
    out = run(StopFilter(["aab"]), [TextDelta(c) for c in "xaaab"])
    assert text_of(out) == "xa"


def test_no_stop_strings_passes_everything() -> None:
    deltas = [TextDelta("a"), TextDelta(""), TextDelta("b"), Finished("stop")]
    assert run(StopFilter(["", ""]), deltas) == [TextDelta("a"), TextDelta("b"), Finished("stop")]


# -- length -----------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "a", "abcd", "abcde", "你好", "mixed 中文 and text 🚀!"])
def test_token_counter_matches_the_usage_estimator(text: str) -> None:
    counter = TokenCounter()
    assert counter.fit(text, 10**6) == len(text)
    assert counter.tokens == estimate_tokens(text)


def test_token_counter_counts_pieces_as_the_joined_text() -> None:
    """Pieces are counted in batches: across a batch's edge, and with a ``fit`` between
    two ``add``s, the count is the estimate of the whole text."""
    rng = random.Random(7)
    alphabet = "ab c,中文🚀é\n"
    pieces = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 900))) for _ in range(40)]
    counter = TokenCounter()
    for index, piece in enumerate(pieces):
        if index % 7 == 3:
            assert counter.fit(piece, 10**9) == len(piece)
        else:
            counter.add(piece)
        if index % 5 == 4:  # read now and then: pieces pile up in between
            assert counter.tokens == estimate_tokens("".join(pieces[: index + 1]))
    both = counter.plus(TokenCounter("xyz 中"))
    assert both.tokens == estimate_tokens("".join(pieces) + "xyz 中")


@pytest.mark.parametrize("mode", MODES)
def test_length_cuts_at_the_budget(mode: str) -> None:
    answer = "This is a rather long answer that will not fit in five tokens at all."
    out = run(LengthFilter(5), split([TextDelta(answer), Finished("stop")], mode))
    text = text_of(out)
    assert answer.startswith(text)
    assert estimate_tokens(text) == 5
    assert estimate_tokens(answer[: len(text) + 1]) == 6  # the longest prefix that fits
    assert finishes(out) == [Finished("length")]
    assert isinstance(out[-1], Finished)


@pytest.mark.parametrize("mode", MODES)
def test_length_counts_cjk_characters_one_token_each(mode: str) -> None:
    out = run(LengthFilter(3), split([TextDelta("一二三四五六"), Finished("stop")], mode))
    assert text_of(out) == "一二三"
    assert finishes(out) == [Finished("length")]


@pytest.mark.parametrize("mode", MODES)
def test_length_answer_within_budget_keeps_the_upstream_finish(mode: str) -> None:
    out = run(LengthFilter(100), split([TextDelta("short answer"), Finished("stop")], mode))
    assert text_of(out) == "short answer"
    assert finishes(out) == [Finished("stop")]


def test_length_ignores_reasoning_unless_the_field_counts_it() -> None:
    deltas = [ReasoningDelta("一二三四五六七八"), TextDelta("一二三"), Finished("stop")]
    out = run(LengthFilter(4), list(deltas))
    assert text_of(out) == "一二三"
    assert finishes(out) == [Finished("stop")]

    out = run(LengthFilter(10, count_reasoning=True), list(deltas))
    assert "".join(d.text for d in out if isinstance(d, ReasoningDelta)) == "一二三四五六七八"
    assert text_of(out) == "一二"
    assert finishes(out) == [Finished("length")]

    out = run(LengthFilter(5, count_reasoning=True), list(deltas))
    assert "".join(d.text for d in out if isinstance(d, ReasoningDelta)) == "一二三四五"
    assert text_of(out) == ""
    assert finishes(out) == [Finished("length")]


# -- structured outputs -----------------------------------------------------

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
VALID = '{"name": "李雷", "age": 30}'
WRAPPED = [
    VALID,
    f"```json\n{VALID}\n```",
    f"Sure! Here is the JSON you asked for:\n\n```json\n{VALID}\n```\nAnything else?",
    f"The person is {VALID} as requested.",
    f"```\n{VALID}\n```",
]


@pytest.mark.parametrize("answer", WRAPPED)
@pytest.mark.parametrize("mode", MODES)
def test_structured_extracts_validated_json(answer: str, mode: str) -> None:
    spec = JsonSpec(PERSON, "person")
    deltas = [ConversationStarted("c", "m"), TextDelta(answer), Finished("stop")]
    out = run(StructuredFilter(spec, final=False), split(deltas, mode))
    assert json.loads(text_of(out)) == {"name": "李雷", "age": 30}
    assert finishes(out) == [Finished("stop")]
    assert out[0] == ConversationStarted("c", "m")


def test_structured_prefers_the_value_that_validates() -> None:
    text = 'First a draft {"name": "x"} then the real one {"name": "y", "age": 2}'
    assert extract_json(text, JsonSpec(PERSON)) == ({"name": "y", "age": 2}, None)


@pytest.mark.parametrize("mode", MODES)
def test_structured_invalid_first_try_asks_again_with_the_error(mode: str) -> None:
    spec = JsonSpec(PERSON, "person")
    deltas = [
        ReasoningDelta("thinking"),
        TextDelta('{"name": "x", "age": "old"}'),
        Finished("stop"),
    ]
    filt = StructuredFilter(spec, final=False)
    fed = [d for delta in split(deltas, mode) for d in filt.feed(delta)]
    assert fed == []  # nothing reaches the client before the JSON validated
    out = filt.finish()
    assert len(out) == 1 and isinstance(out[0], Reask)
    assert "'old' is not of type 'integer'" in out[0].text
    assert '"required":["name","age"]' in out[0].text


def test_structured_final_try_raises_a_502_with_the_validation_message() -> None:
    filt = StructuredFilter(JsonSpec(PERSON, "person"), final=True)
    run_feed = [TextDelta("I cannot answer in JSON, sorry."), Finished("stop")]
    for delta in run_feed:
        filt.feed(delta)
    with pytest.raises(StructuredOutputError) as info:
        filt.finish()
    assert info.value.status == 502
    assert "did not produce valid JSON" in info.value.message
    assert "no JSON value" in info.value.message


def test_structured_final_try_streams_reasoning_live() -> None:
    filt = StructuredFilter(JsonSpec(None), final=True)
    assert filt.feed(ReasoningDelta("r")) == [ReasoningDelta("r")]
    assert filt.feed(TextDelta('{"a": 1}')) == []
    assert run(filt, []) == [TextDelta('{"a": 1}'), Finished("stop")]


def test_json_object_mode_wants_an_object() -> None:
    assert extract_json("[1, 2]", JsonSpec(None))[1] is not None
    assert extract_json('Here: {"k": [1]}', JsonSpec(None)) == ({"k": [1]}, None)


def test_invalid_schema_is_the_callers_400() -> None:
    from glm_proxy.errors import InvalidRequest

    with pytest.raises(InvalidRequest):
        JsonSpec.checked({"type": "no-such-type"})


def test_instruction_carries_the_schema() -> None:
    text = instruction(JsonSpec(PERSON, "person"))
    assert "JSON" in text and '"additionalProperties":false' in text


# -- the chain the chat service builds ---------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_chain_structured_then_stop_then_length(mode: str) -> None:
    chain = FilterChain(
        [StructuredFilter(JsonSpec(None), final=True), StopFilter(["STOP"]), LengthFilter(1000)]
    )
    deltas = [TextDelta('pre {"a": "b"} post'), Finished("stop")]
    out = run(chain, split(deltas, mode))
    assert text_of(out) == '{"a": "b"}'
    assert finishes(out) == [Finished("stop")]


@pytest.mark.parametrize("mode", MODES)
def test_chain_stop_then_length_whichever_first(mode: str) -> None:
    text = "one two three four five six seven eight nine ten STOP eleven"
    out = run(FilterChain([StopFilter(["STOP"]), LengthFilter(3)]), split([TextDelta(text)], mode))
    assert finishes(out) == [Finished("length")]
    assert estimate_tokens(text_of(out)) == 3
    out = run(
        FilterChain([StopFilter(["STOP"]), LengthFilter(300)]), split([TextDelta(text)], mode)
    )
    assert text_of(out) == "one two three four five six seven eight nine ten "
    assert finishes(out) == [Finished("stop", stop_sequence="STOP")]


# -- randomized: any cut of the answer gives the same result ------------------


def random_cuts(rng: random.Random, text: str) -> list[str]:
    points = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 6))))
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


def test_stop_filter_is_cut_independent_and_matches_the_reference() -> None:
    rng = random.Random(12)
    for _ in range(2000):
        text = "".join(rng.choice("abO:\n") for _ in range(rng.randint(1, 30)))
        stops = ["".join(rng.choice("abO:\n") for _ in range(rng.randint(1, 4))) for _ in range(2)]
        # the model stops as soon as a stop string is complete: the earliest end wins
        ends = [(text.find(s) + len(s), text.find(s), s) for s in stops if s in text]
        expected = text[: min(ends)[1]] if ends else text
        out = run(StopFilter(stops), [TextDelta(p) for p in random_cuts(rng, text)])
        assert text_of(out) == expected, (text, stops)
        if ends:
            assert finishes(out) == [Finished("stop", stop_sequence=min(ends)[2])]


def test_length_filter_is_cut_independent() -> None:
    rng = random.Random(5)
    for _ in range(1000):
        text = "".join(rng.choice("ab 中文!") for _ in range(rng.randint(1, 40)))
        limit = rng.randint(1, 12)
        whole = run(LengthFilter(limit), [TextDelta(text)])
        cut = run(LengthFilter(limit), [TextDelta(p) for p in random_cuts(rng, text)])
        assert text_of(cut) == text_of(whole)
        assert finishes(cut) == finishes(whole)
        assert estimate_tokens(text_of(whole)) <= limit


@pytest.mark.parametrize("mode", MODES)
def test_the_stop_string_written_first_wins_over_a_longer_one_started_earlier(mode: str) -> None:
    out = run(StopFilter(["abcd", "bc"]), split([TextDelta("xabcde"), Finished("stop")], mode))
    assert text_of(out) == "xa"
    assert finishes(out) == [Finished("stop", stop_sequence="bc")]


def test_schemas_with_refs_as_pydantic_writes_them() -> None:
    from pydantic import BaseModel

    class Pet(BaseModel):
        name: str

    class Owner(BaseModel):
        name: str
        pets: list[Pet]

    spec = JsonSpec.checked(Owner.model_json_schema(), "owner", strict=True)
    good = '{"name": "Li", "pets": [{"name": "Mimi"}]}'
    assert extract_json(f"```json\n{good}\n```", spec) == (json.loads(good), None)
    value, problem = extract_json('{"name": "Li", "pets": [{"nom": "Mimi"}]}', spec)
    assert problem is not None and "'name' is a required property" in problem
    assert "pets/0" in problem
