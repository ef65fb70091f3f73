"""The translator: one answer described once, delivered in all three event shapes.

A ``Script`` lists the parts of an answer, each as cumulative content snapshots.
``events(script, shape)`` turns it into upstream events (spec §6.4):

* ``all``: every event repeats every part started so far (E2 default);
* ``current``: each event carries only the part being written;
* ``delta``: like ``current``, but ``init`` frames carry only new characters (and
  new image URLs), and the part's ``finish`` frame carries its full content (E3).

The top-level end status rides on the last part's finish frame, as in spec §6.5.
Every scenario must give the same text and reasoning in all three shapes.
The scripts and the shapes live in ``tests/support/translate_scripts.py``; the merge rule and
the state machine are tested in ``test_translate_rules.py``, the shortcuts in
``test_translate_shortcuts.py``.
"""

from __future__ import annotations

import random

import pytest

from glm_proxy.errors import UpstreamError, UpstreamProtocolError
from glm_proxy.protocol.events import (
    Citation,
    ConversationStarted,
    Finished,
    ImageGenerated,
    ReasoningDelta,
    TextDelta,
)
from glm_proxy.protocol.translate import Phase, TranslateOptions, Translator, translate_all
from tests.support.translate_scripts import (
    CODE,
    CONVERSATION_ID,
    EARLY_EXPECTED,
    LATE_EXPECTED,
    MARKER_SOUP,
    MESSAGE_ID,
    SHAPES,
    Part,
    Script,
    _event,
    _part,
    code_script,
    collect,
    events,
    grow,
    image_script,
    run_shapes,
    search_early,
    search_late,
)


def test_plain_text() -> None:
    script = Script([Part("t", grow("text", "你好", "你好！我是", "你好！我是 GLM 🚀。"))])
    deltas = run_shapes(script)
    assert collect(deltas) == ("你好！我是 GLM 🚀。", "")
    assert [d.text for d in deltas if isinstance(d, TextDelta)] == ["你好", "！我是", " GLM 🚀。"]
    assert deltas[-1] == Finished("stop")


def test_think_then_text() -> None:
    script = Script(
        [
            Part("think", grow("think", "让我想", "让我想想……🤔")),
            Part("t", grow("text", "答案", "答案是 42。")),
        ]
    )
    deltas = run_shapes(script)
    assert collect(deltas) == ("答案是 42。", "让我想想……🤔")
    kinds = [type(d).__name__ for d in deltas]
    assert kinds.index("ReasoningDelta") < kinds.index("TextDelta")


def test_e1_text_thinking_is_reasoning() -> None:
    script = Script(
        [
            Part(
                "think",
                [
                    [{"type": "text_thinking", "text": "想"}],
                    [{"type": "text_thinking", "text": "想好了"}],
                ],
            ),
            Part("t", grow("text", "好")),
        ]
    )
    assert collect(run_shapes(script)) == ("好", "想好了")


def test_silent_mode_hides_reasoning_and_sources() -> None:
    silent = TranslateOptions(include_reasoning=False, include_sources=False)
    script = Script([Part("think", grow("think", "嗯")), *search_early().parts])
    deltas = run_shapes(script, silent)
    text, reasoning = collect(deltas)
    assert reasoning == "" and not any(isinstance(d, ReasoningDelta) for d in deltas)
    assert text == EARLY_EXPECTED.split("\n\n**Sources**")[0]


@pytest.mark.parametrize("step", ["coarse", "chars"])
def test_search_early_markers(step: str) -> None:
    deltas = run_shapes(search_early(step))
    assert collect(deltas)[0] == EARLY_EXPECTED
    assert [d for d in deltas if isinstance(d, Citation)] == [
        Citation(1, "来源一", "https://one.example.com/a"),
        Citation(2, "Source three", "https://three.example.net/c"),
        Citation(3, "Source [two]", "https://two.example.org/b"),
    ]


@pytest.mark.parametrize("step", ["coarse", "chars"])
def test_search_late_markers_bracketed_and_bare(step: str) -> None:
    deltas = run_shapes(search_late(step))
    assert collect(deltas)[0] == LATE_EXPECTED
    assert [d.index for d in deltas if isinstance(d, Citation)] == [1, 2]


def test_bare_marker_right_after_a_turn_word_is_still_found() -> None:
    # greedy letters must not turn "turn2turn0search1" into one unknown glued match
    late = search_late()
    script = Script([*late.parts[:2], Part("t", grow("text", "第turn2turn0search1段"))])
    assert collect(run_shapes(script))[0].startswith("第turn2 [1](https://r1.example.com/)段")


def test_citation_announced_before_the_text_that_links_it() -> None:
    deltas = run_shapes(search_early())
    first_citation = next(i for i, d in enumerate(deltas) if isinstance(d, Citation))
    first_link = next(
        i for i, d in enumerate(deltas) if isinstance(d, TextDelta) and "](" in d.text
    )
    assert first_citation < first_link


def test_open_text_holds_back_incomplete_marker() -> None:
    t = Translator()
    t.feed(_event([]))
    part = Part("t", [])
    assert t.feed(_event([_part(part, [{"type": "text", "text": "晴【1†sou"}], "init")])) == [
        TextDelta("晴")
    ]
    more = t.feed(_event([_part(part, [{"type": "text", "text": "晴【1†source】 turn"}], "init")]))
    assert "晴" + collect(more)[0] == "晴 "  # unknown marker removed, "turn" may still come
    assert t.finish()[:-1] == [TextDelta("turn")]


def test_truncated_bracket_marker_is_dropped_at_close() -> None:
    script = Script([Part("t", grow("text", "见", "见【2†sou"), finishes=False)], end="close")
    assert collect(run_shapes(script))[0] == "见"


def test_multi_segment_text_tool_text() -> None:
    late = search_late()
    script = Script(
        [
            Part("a", grow("text", "我先", "我先查一下。")),
            *late.parts[:2],
            Part("b", grow("text", "查到了：", "查到了：晴【turn0search0】。")),
        ]
    )
    deltas = run_shapes(script)
    # the uncited result the upstream consulted is listed after the cited one
    assert collect(deltas)[0] == (
        "我先查一下。\n\n查到了：晴 [1](https://r0.example.com/)。"
        "\n\n**Sources**\n1. [结果零](https://r0.example.com/)"
        "\n2. [Result one](https://r1.example.com/)"
    )
    cited_only = run_shapes(script, TranslateOptions(include_uncited=False))
    assert collect(cited_only)[0] == (
        "我先查一下。\n\n查到了：晴 [1](https://r0.example.com/)。"
        "\n\n**Sources**\n1. [结果零](https://r0.example.com/)"
    )


def test_custom_segment_separator() -> None:
    script = Script([Part("a", grow("text", "一")), Part("b", grow("text", "二"))])
    deltas = run_shapes(script, TranslateOptions(segment_separator="\n"))
    assert collect(deltas)[0] == "一\n二"


def test_code_execution_output_and_text() -> None:
    deltas = run_shapes(code_script())
    text = collect(deltas)[0]
    assert text == (
        "我来算一下。\n\n```python\n" + CODE.rstrip("\n") + "\n```\n\n```\n你好 🐍\n42\n```"
        "\n\n结果是 42。\n\n完毕"
    )
    assert text.count("```python\n") == 1
    assert text.count("```") == 4  # code fence opened and closed once, one output block
    assert text.count("42\n```") == 1  # the repeated output is shown once


def test_code_fence_opens_while_streaming_and_closes_once() -> None:
    t = Translator()
    code = Part("code", [])
    out = t.feed(_event([_part(code, [{"type": "code", "code": "x = 1"}], "init")]))
    assert out[-1] == TextDelta("```python\nx = 1")
    out = t.feed(_event([_part(code, [{"type": "code", "code": "x = 1\n"}], "finish")]))
    assert out == [TextDelta("\n```")]
    assert t.finish() == [Finished("stop")]


def test_image_part_rendered_once_when_finished() -> None:
    deltas = run_shapes(image_script())
    text = collect(deltas)[0]
    assert text == (
        "这是我为您创作的图片：\n\n![image](https://sfile.chatglm.cn/testpath/abc_0.png)"
        "\n![image](https://sfile.chatglm.cn/testpath/abc_1.png)"
    )
    assert [d.url for d in deltas if isinstance(d, ImageGenerated)] == [
        "https://sfile.chatglm.cn/testpath/abc_0.png",
        "https://sfile.chatglm.cn/testpath/abc_1.png",
    ]


def test_image_waits_for_part_finish() -> None:
    t = Translator()
    p = Part("img", [])
    item = {"type": "image", "image": [{"image_url": "https://x.example/1.png"}]}
    assert t.feed(_event([_part(p, [item], "init")])) == [
        ConversationStarted(CONVERSATION_ID, MESSAGE_ID)
    ]
    out = t.feed(_event([_part(p, [item], "finish")]))
    assert out == [
        ImageGenerated("https://x.example/1.png"),
        TextDelta("![image](https://x.example/1.png)"),
    ]


def test_unfinished_image_rendered_at_end_of_stream() -> None:
    p = Part(
        "img",
        [[{"type": "image", "image": [{"image_url": "https://x.example/1.png"}]}]],
        finishes=False,
    )
    deltas = run_shapes(Script([p], end="close"))
    assert collect(deltas)[0] == "![image](https://x.example/1.png)"


def test_intervene_after_partial_text() -> None:
    script = Script(
        [Part("t", grow("text", "这是一段", "这是一段可能不合规的回答"), finishes=False)],
        end="intervene",
        last_error={"intervene_text": "内容不合规"},
    )
    deltas = run_shapes(script)
    assert collect(deltas)[0] == "这是一段可能不合规的回答\n\n内容不合规"
    assert deltas[-1] == Finished("content_filter", message="内容不合规")


def test_intervene_before_any_text_has_no_leading_newlines() -> None:
    script = Script([], end="intervene", last_error={"intervene_text": "内容不合规"})
    deltas = run_shapes(script)
    assert deltas[1:] == [TextDelta("内容不合规"), Finished("content_filter", message="内容不合规")]


def test_intervene_does_not_append_sources() -> None:
    script = search_early()
    script.end, script.last_error = "intervene", {"intervene_text": "停"}
    text = collect(run_shapes(script))[0]
    assert "**Sources**" not in text and text.endswith("完 🔎\n\n停")


def test_error_status_raises_with_message() -> None:
    script = Script(
        [Part("t", grow("text", "回答进行中", "回答进行中，随后"), finishes=False)],
        end="error",
        error={"error_code": 10024, "err_msg": "generator exit"},
    )
    for shape in SHAPES:
        t = Translator()
        seen = []
        with pytest.raises(UpstreamError, match="generator exit") as info:
            for event in events(script, shape):
                seen.extend(t.feed(event))
        assert not isinstance(info.value, UpstreamProtocolError)
        assert collect(seen)[0] == "回答进行中，随后", shape
        assert t.finished and t.phase is Phase.FAILED
        assert t.finish() == []  # no Finished("stop") after a failure


def test_unknown_types_and_roles_are_ignored() -> None:
    script = Script(
        [
            Part("browse", [[{"type": "browser_result", "whatever": {"a": 1}}]], role="tool"),
            Part("odd", [[{"type": "mystery", "text": "不该出现"}]], role="weird"),
            Part("echo", grow("text", "用户的问题"), role="user"),
            Part("t", grow("text", "未知类型已忽略 🧩")),
            Part("end", [[{"type": "one_to_more_finish", "image": [{}]}]]),
        ]
    )
    assert collect(run_shapes(script)) == ("未知类型已忽略 🧩", "")


def test_stream_closed_without_finish() -> None:
    script = Script(
        [Part("t", grow("text", "说到一半", "说到一半就断了 turn"), finishes=False)], end="close"
    )
    deltas = run_shapes(script)
    assert collect(deltas)[0] == "说到一半就断了 turn"  # held "turn" released at the end
    assert deltas[-1] == Finished("stop")


def test_prefix_rewrite_continues_at_the_sent_position() -> None:
    """Rule: sent text is never retracted or repeated; output resumes at len(sent)."""
    script = Script(
        [
            Part(
                "t",
                grow("text", "Hello wo", "Hello wor"),
                final=[{"type": "text", "text": "Hello World!"}],
            )
        ]
    )
    deltas = run_shapes(script)
    assert [d.text for d in deltas if isinstance(d, TextDelta)] == ["Hello wo", "r", "ld!"]


def test_rewrite_to_shorter_text_emits_nothing() -> None:
    script = Script(
        [Part("t", grow("text", "abc", "abcdef"), final=[{"type": "text", "text": "xyz"}])]
    )
    deltas = run_shapes(script)
    assert collect(deltas)[0] == "abcdef"


def test_delta_equal_to_the_start_of_the_text_is_not_dropped() -> None:
    # delta frames "我", "认为", ..., "我", ... : the second "我" equals the start of what
    # the part holds, which is no reason to read it as a stale snapshot (spec §6.4:
    # only a new text that starts with what is held is a snapshot)
    text = "我认为这个问题我们可以这样看：我同意。The end: T"
    cuts = [1, 3, 5, 7, 8, 9, 15, 16, 18, 19, 29, 30]
    script = Script([Part("t", grow("text", *(text[:c] for c in cuts), text))])
    assert collect(run_shapes(script)) == (text, "")


def test_repeated_characters_in_delta_shape_are_repaired_by_the_finish_frame() -> None:
    # delta "哈" after "哈" looks like an unchanged snapshot; the finish frame "哈哈" extends
    # what was sent, so nothing is lost. (A longer ambiguous run, e.g. "哈" "哈" "哈！",
    # is misread as a snapshot and cannot be repaired once sent: the merge rule's limit.)
    script = Script([Part("t", grow("text", "哈", "哈哈"))])
    assert collect(run_shapes(script))[0] == "哈哈"


@pytest.mark.parametrize("seed", range(40))
def test_incremental_rendering_equals_rendering_the_final_text(seed: int) -> None:
    rng = random.Random(seed)
    text = "".join(rng.choice(MARKER_SOUP) for _ in range(rng.randint(1, 40)))
    cuts = sorted(rng.sample(range(1, len(text) + 1), min(len(text), rng.randint(1, 12))))
    sources = [*search_early().parts[:1], *search_late().parts[:2]]
    streamed = Script([*sources, Part("t", grow("text", *(text[:c] for c in cuts), text))])
    at_once = Script([*sources, Part("t", grow("text", text))])
    expected = collect(translate_all(events(at_once, "all")))
    for shape in ("all", "current"):
        assert collect(translate_all(events(streamed, shape))) == expected, shape
    # the delta shape too, once the part holds more than any one delta: the merge rule's
    # documented limit is a delta equal to (or starting with) everything held so far
    head = "前言：" + "".join(rng.choice(MARKER_SOUP) for _ in range(40))
    cuts = [len(head), *(len(head) + c for c in cuts)]
    text = head + text
    streamed = Script([*sources, Part("t", grow("text", *(text[:c] for c in cuts), text))])
    at_once = Script([*sources, Part("t", grow("text", text))])
    expected = collect(translate_all(events(at_once, "all")))
    assert collect(translate_all(events(streamed, "delta"))) == expected
