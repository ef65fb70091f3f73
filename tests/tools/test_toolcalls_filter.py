"""The tool-call answer filter (sans-IO): prose, calls, asking again, and fuzzing.

Every sample is fed whole, one character at a time, and followed by junk
(h11's ``tr()`` idea): the deltas must be the same however the text is cut. The
scanner, the block parser and the tools' definitions are tested in ``test_toolcalls.py``.
"""

from __future__ import annotations

import itertools
import logging

import orjson
import pytest

from glm_proxy.protocol.events import (
    ConversationStarted,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallArguments,
    ToolCallStart,
)
from glm_proxy.protocol.parsers import FilterChain, Reask
from glm_proxy.tools.calls import Text, parse_block
from glm_proxy.tools.definitions import (
    ToolConfig,
)
from glm_proxy.tools.filter import ToolCallFilter
from glm_proxy.tools.schema import Toolbox
from tests.support.tool_samples import CALL, TOOLS, cuts, scan

# -- the filter ----------------------------------------------------------------


def ids():
    counter = itertools.count()
    return lambda: f"call_{next(counter)}"


def run_filter(pieces, config=None, *, final=False, streamed=True, before=(), finished="stop"):
    f = ToolCallFilter(config or ToolConfig(TOOLS), final=final, new_id=ids(), streamed=streamed)
    out: list = []
    for delta in before:
        out.extend(f.feed(delta))
    for piece in pieces:
        out.extend(f.feed(TextDelta(piece)))
    out.extend(f.feed(Finished(finished)))
    out.extend(f.finish())
    return merge_deltas(out)


def merge_deltas(deltas):
    merged: list = []
    for d in deltas:
        if isinstance(d, TextDelta) and merged and isinstance(merged[-1], TextDelta):
            merged[-1] = TextDelta(merged[-1].text + d.text)
        else:
            merged.append(d)
    return merged


TWO_CALLS = (
    "<glm_tool_calls>\n"
    '<invoke name="get_weather"><parameter name="city">Paris</parameter></invoke>\n'
    '<invoke name="write_file"><parameter name="path">a.txt</parameter>'
    '<parameter name="content"><![CDATA[x < y\n]]></parameter></invoke>\n'
    "</glm_tool_calls>\nThe weather in Paris is sunny (invented)."
)


@pytest.mark.parametrize("pieces", cuts(CALL))
def test_filter_prose_then_call(pieces):
    out = run_filter(pieces)
    assert out == [
        TextDelta("Let me check.\n"),
        ToolCallStart(0, "call_0", "get_weather"),
        ToolCallArguments(0, '{"city":"Paris","days":3}'),
        Finished("tool_calls"),
    ]


@pytest.mark.parametrize("pieces", cuts(TWO_CALLS))
def test_filter_parallel_calls_and_drops_text_after_the_block(pieces):
    out = run_filter(pieces)
    assert out == [
        ToolCallStart(0, "call_0", "get_weather"),
        ToolCallArguments(0, '{"city":"Paris"}'),
        ToolCallStart(1, "call_1", "write_file"),
        ToolCallArguments(1, orjson.dumps({"path": "a.txt", "content": "x < y\n"}).decode()),
        Finished("tool_calls"),
    ]


def test_filter_parallel_false_keeps_the_first_call():
    out = run_filter([TWO_CALLS], ToolConfig(TOOLS, parallel=False))
    assert [type(d) for d in out] == [ToolCallStart, ToolCallArguments, Finished]


def test_filter_missing_end_marker_is_tolerated():
    text = CALL.removesuffix("</glm_tool_calls>")
    out = run_filter(list(text))
    assert out[1] == ToolCallStart(0, "call_0", "get_weather")
    assert out[-1] == Finished("tool_calls")


def test_filter_passes_other_deltas_and_plain_text():
    started = ConversationStarted("c1", "m1")
    out = run_filter(["Hello <b>", " world"], before=[started, ReasoningDelta("hm")])
    assert out == [started, ReasoningDelta("hm"), TextDelta("Hello <b> world"), Finished("stop")]


def test_filter_invalid_call_asks_again_when_nothing_was_shown():
    bad = '<glm_tool_calls><invoke name="get_weather"><parameter name="days">x</parameter>'
    out = run_filter([bad + "</invoke></glm_tool_calls>"])
    assert len(out) == 1 and isinstance(out[0], Reask)
    assert "city" in out[0].text and "<glm_tool_calls>" in out[0].text


def test_filter_invalid_call_after_streamed_text_becomes_text(caplog):
    text = 'Sure.\n<glm_tool_calls><invoke name="nope"></invoke></glm_tool_calls>'
    with caplog.at_level(logging.WARNING):
        out = run_filter(["Sure.\n", text[len("Sure.\n") :]])
    assert out == [TextDelta(text), Finished("stop")]
    assert "no tool named 'nope'" in caplog.text


def test_filter_invalid_call_non_stream_may_ask_again_after_text():
    text = 'Sure.\n<glm_tool_calls><invoke name="nope"></invoke></glm_tool_calls>'
    out = run_filter(["Sure.\n", text[6:]], streamed=False)
    assert isinstance(out[-1], Reask)


def test_filter_final_try_never_asks_again():
    out = run_filter(['<glm_tool_calls><invoke name="nope"/></glm_tool_calls>'], final=True)
    assert out == [
        TextDelta('<glm_tool_calls><invoke name="nope"/></glm_tool_calls>'),
        Finished("stop"),
    ]


def test_filter_required_without_call_holds_the_text_and_asks_again():
    config = ToolConfig(TOOLS, choice="required")
    f = ToolCallFilter(config, final=False, new_id=ids())
    assert f.feed(ReasoningDelta("thinking")) == []
    assert f.feed(TextDelta("I would rather chat.")) == []
    assert f.feed(Finished("stop")) == []
    out = f.finish()
    assert len(out) == 1 and isinstance(out[0], Reask) and "must call a tool" in out[0].text
    # the final try returns the text (and logs a warning)
    out = run_filter(["I would rather chat."], config, final=True)
    assert out == [TextDelta("I would rather chat."), Finished("stop")]


def test_filter_required_releases_held_prose_with_the_call():
    out = run_filter(list(CALL), ToolConfig(TOOLS, choice="required"))
    assert out[0] == TextDelta("Let me check.\n")
    assert isinstance(out[1], ToolCallStart)


def test_filter_named_choice_refuses_another_tool():
    config = ToolConfig(TOOLS, choice="named", forced="write_file")
    out = run_filter([CALL], config)
    assert isinstance(out[0], Reask) and "'write_file'" in out[0].text


def test_filter_code_fence_is_not_a_call():
    text = 'Example:\n```\n<glm_tool_calls>\n<invoke name="get_weather"/>\n</glm_tool_calls>\n```'
    assert run_filter(list(text)) == [TextDelta(text), Finished("stop")]


def test_filter_with_junk_after_finished():
    f = ToolCallFilter(ToolConfig(TOOLS), final=False, new_id=ids())
    out = f.feed(TextDelta(CALL)) + f.feed(Finished("stop"))
    out += f.feed(TextDelta("junk")) + f.finish()
    assert out[-1] == Finished("tool_calls")
    assert TextDelta("junk") not in out


def test_filter_in_a_chain():
    chain = FilterChain([ToolCallFilter(ToolConfig(TOOLS), final=False, new_id=ids())])
    out = []
    for ch in CALL:
        out.extend(chain.feed(TextDelta(ch)))
    out.extend(chain.feed(Finished("stop")))
    out.extend(chain.finish())
    assert merge_deltas(out)[-1] == Finished("tool_calls")


def test_every_call_has_a_name_and_object_arguments():
    """Whatever the junk, a call is never emitted with an empty name or non-object arguments."""
    samples = [
        '<glm_tool_calls><invoke name=""></invoke></glm_tool_calls>',
        '<glm_tool_calls><invoke name="get_weather">[1]</invoke></glm_tool_calls>',
        "<glm_tool_calls></glm_tool_calls>",
        "<glm_tool_calls><invoke",
        '<glm_tool_calls><invoke name="get_weather"><parameter name="city">',
        "<glm_tool_calls>" + "\x00" * 10,
    ]
    for sample in samples:
        for final in (False, True):
            out = run_filter(list(sample), final=final)
            for d in out:
                if isinstance(d, ToolCallStart):
                    assert d.name
                if isinstance(d, ToolCallArguments):
                    assert isinstance(orjson.loads(d.text), dict)
            if final:
                assert "".join(d.text for d in out if isinstance(d, TextDelta)) == sample


TOKENS = [
    "<glm_tool_calls>",
    "</glm_tool_calls>",
    '<invoke name="get_weather">',
    '<parameter name="city">',
    "</parameter>",
    "</invoke>",
    "```\n",
    "~~~\n",
    "\n",
    "abc ",
    "<",
    "<glm_",
    "<![CDATA[",
    "]]>",
    "🚀",
]


def test_scanner_fuzz_is_lossless_and_cut_independent():
    """Random junk: any cut gives the same events, and the events give back the text."""
    import random

    rng = random.Random(7)
    for _ in range(300):
        text = "".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 30)))
        whole = scan([text])
        rebuilt = "".join(e.text if isinstance(e, Text) else e.raw for e in whole)
        assert rebuilt == text
        assert scan(list(text)) == whole
        cuts_at = sorted(rng.sample(range(1, len(text)), min(5, len(text) - 1)))
        pieces = [text[a:b] for a, b in itertools.pairwise([0, *cuts_at, len(text)])]
        assert scan(pieces) == whole


def test_filter_fuzz_never_emits_a_bad_call():
    import random

    rng = random.Random(11)
    for _ in range(200):
        text = "".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 30)))
        for final in (False, True):
            out = run_filter(list(text), final=final)
            assert run_filter([text], final=final) == out
            names = [d.name for d in out if isinstance(d, ToolCallStart)]
            assert all(n == "get_weather" for n in names)
            for d in out:
                if isinstance(d, ToolCallArguments):
                    assert isinstance(orjson.loads(d.text), dict)
            assert out and isinstance(out[-1], Finished | Reask)


@pytest.mark.parametrize(
    "body",
    [
        '<invoke name="get_weather" id="1"><parameter name="city" type="string">Oslo</parameter>'
        "</invoke>",
        "<invoke=get_weather><parameter=city>Oslo</parameter></invoke>",
        '{"name": "get_weather", "arguments": {"city": "Oslo"}}',
        '[{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}]',
        "{'function': {'name': 'get_weather', 'parameters': {'city': 'Oslo',},}}",
    ],
)
def test_common_variants_of_the_syntax_are_understood(body):
    calls, problem = parse_block(body)
    assert problem == ""
    assert Toolbox(TOOLS).arguments(calls[0]) == ({"city": "Oslo"}, "")


def test_json_without_a_name_is_not_a_call():
    assert parse_block('{"arguments": {}}')[1]
    assert parse_block("[1, 2]")[1]


def test_required_does_not_ask_again_after_the_content_filter():
    config = ToolConfig(TOOLS, choice="required")
    out = run_filter(["partial"], config, finished="content_filter")
    assert out == [TextDelta("partial"), Finished("content_filter")]
