"""The translator: one answer described once, delivered in all three event shapes.

A ``Script`` lists the parts of an answer, each as cumulative content snapshots.
``events(script, shape)`` turns it into upstream events (spec §6.4):

* ``all``: every event repeats every part started so far (E2 default);
* ``current``: each event carries only the part being written;
* ``delta``: like ``current``, but ``init`` frames carry only new characters (and
  new image URLs), and the part's ``finish`` frame carries its full content (E3).

The top-level end status rides on the last part's finish frame, as in spec §6.5.
Every scenario must give the same text and reasoning in all three shapes.
"""

from __future__ import annotations

import copy
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from glm_proxy.protocol.sse import SSEDecoder, decode_json
from glm_proxy.protocol.translate import Phase, TranslateOptions, Translator, translate_all
from glm_proxy.protocol.translate._segments import merge_value
from glm_proxy.protocol.translate._state import TRANSITIONS, PhaseMachine, Trigger

MESSAGE_ID = "65eef45f3901fe6e0bb7153b"
CONVERSATION_ID = "65eef45e3901fe6e0bb7153a"
ASSISTANT_ID = "65940acff94777010aa6b796"
SHAPES = ("all", "current", "delta")
GROWING = {"text": "text", "think": "think", "code": "code", "execution_output": "content"}
# a raw marker; checked on the joined text, so fragments leaked by separate deltas are
# caught too. Plain brackets (【注意】, a never-closed 【turn2) are ordinary text.
RAW_MARKER = re.compile(
    r"【\d+†[^】\n]{0,16}】|【turn\d+[a-zA-Z]+\d+】|(?<![A-Za-z])turn\d+[a-zA-Z]+\d+"
)


@dataclass
class Part:
    logic_id: str
    snapshots: list[list[dict[str, Any]]]  # cumulative content after each init frame
    final: list[dict[str, Any]] | None = None  # finish frame content (default: last snapshot)
    finishes: bool = True
    role: str = "assistant"
    meta_data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Script:
    parts: list[Part]
    end: str = "finish"  # finish | intervene | error | close (stream just ends)
    last_error: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None


def _part(p: Part, content: list[dict[str, Any]], status: str) -> dict[str, Any]:
    return {
        "id": MESSAGE_ID,
        "logic_id": p.logic_id,
        "role": p.role,
        "content": [{**item, "status": status} for item in copy.deepcopy(content)],
        "model": "chatglm-all-tools",
        "recipient": "all",
        "created_at": "2025-06-01 12:00:00",
        "meta_data": {"toolCallRecipient": None, **copy.deepcopy(p.meta_data)},
        "status": status,
    }


def _event(parts: list[dict[str, Any]], status: str = "init") -> dict[str, Any]:
    return {
        "id": MESSAGE_ID,
        "conversation_id": CONVERSATION_ID,
        "assistant_id": ASSISTANT_ID,
        "parts": parts,
        "created_at": "2025-06-01 12:00:00",
        "meta_data": {},
        "status": status,
        "last_error": {},
    }


def _delta(items: list[dict[str, Any]], previous: list[dict[str, Any]] | None) -> list[dict]:
    """Items with growing fields cut to what is new; positions kept, other items repeated."""
    out = []
    for i, item in enumerate(items):
        old = previous[i] if previous and i < len(previous) else None
        if old is None or old["type"] != item["type"]:
            out.append(item)
        elif item["type"] == "image":
            out.append({**item, "image": [x for x in item["image"] if x not in old["image"]]})
        elif item["type"] in GROWING:
            key = GROWING[item["type"]]
            assert item[key].startswith(old[key]), "script snapshots must grow"
            out.append({**item, key: item[key][len(old[key]) :]})
        else:
            out.append(item)
    return out


def events(script: Script, shape: str) -> list[dict[str, Any]]:
    out = [_event([])]
    done: list[dict[str, Any]] = []
    partial = None
    for p in script.parts:
        previous = None
        for items in p.snapshots:
            current = _part(p, items, "init")
            if shape == "all":
                out.append(_event([*done, current]))
            elif shape == "current":
                out.append(_event([current]))
            else:
                out.append(_event([_part(p, _delta(items, previous), "init")]))
            previous = items
        if not p.finishes:
            partial = current
            break
        finished = _part(p, p.final if p.final is not None else p.snapshots[-1], "finish")
        out.append(_event([*done, finished] if shape == "all" else [finished]))
        done.append(finished)
    if script.end == "close":
        return out
    last = out[-1]
    if partial is not None or not script.parts:
        # the end status comes in its own event: all parts again, or nothing new
        last = _event([*done, partial] if shape == "all" and partial is not None else [])
        out.append(last)
    last["status"] = script.end
    last["last_error"] = dict(script.last_error)
    if script.error is not None:
        last["error"] = dict(script.error)
    return out


def grow(kind: str, *values: str) -> list[list[dict[str, Any]]]:
    """Snapshots of one growing item."""
    return [[{"type": kind, GROWING[kind]: v}] for v in values]


def prefixes(text: str) -> list[str]:
    """Every prefix: the upstream may cut anywhere, inside markers too."""
    return [text[:i] for i in range(1, len(text) + 1)]


def collect(deltas: list) -> tuple[str, str]:
    text = "".join(d.text for d in deltas if isinstance(d, TextDelta))
    reasoning = "".join(d.text for d in deltas if isinstance(d, ReasoningDelta))
    return text, reasoning


def run_shapes(script: Script, options: TranslateOptions | None = None) -> list:
    """Deltas for every shape; asserts identical text/reasoning and shared invariants."""
    results = {shape: translate_all(events(script, shape), options) for shape in SHAPES}
    first = collect(results["all"])
    for shape, deltas in results.items():
        assert collect(deltas) == first, shape
        assert not RAW_MARKER.search(first[0]) and not RAW_MARKER.search(first[1])
        assert deltas[0] == ConversationStarted(CONVERSATION_ID, MESSAGE_ID)
        assert sum(isinstance(d, ConversationStarted) for d in deltas) == 1
        assert isinstance(deltas[-1], Finished)
        assert sum(isinstance(d, Finished) for d in deltas) == 1
        for d in deltas:
            if isinstance(d, TextDelta | ReasoningDelta):
                assert d.text, "no empty deltas"
        # announcements are the same in every shape
        announced = [d for d in deltas if isinstance(d, Citation | ImageGenerated)]
        assert announced == [d for d in results["all"] if isinstance(d, Citation | ImageGenerated)]
    return results["all"]


# -- scenarios ---------------------------------------------------------------

EARLY_SOURCES = [
    {"title": "来源一", "url": "https://one.example.com/a"},
    {"title": "Source [two]", "url": "https://two.example.org/b"},
    {"title": "Source three", "url": "https://three.example.net/c"},
    {"title": "not a web page", "url": "ftp://four.example/d"},
]
EARLY_TEXT = (
    "据报道【1†source】，北京【3†来源】晴【2†源】。再次【1†source】【4†source】【9†source】完 🔎"
)
EARLY_EXPECTED = (
    "据报道 [1](https://one.example.com/a)，北京 [2](https://three.example.net/c)晴"
    " [3](https://two.example.org/b)。再次 [1](https://one.example.com/a)完 🔎"
    "\n\n**Sources**\n1. [来源一](https://one.example.com/a)"
    "\n2. [Source three](https://three.example.net/c)"
    "\n3. [Source \\[two\\]](https://two.example.org/b)"
)
LATE_RESULTS = [
    {"match_key": "turn0search0", "title": "结果零", "url": "https://r0.example.com/"},
    {"match_key": "turn0search1", "title": "Result one", "url": "https://r1.example.com/"},
]
LATE_TEXT = "据报道【turn0search1】，另见 turn0search0。未知turn0search7完，return0x1 不是标记。"
LATE_EXPECTED = (
    "据报道 [1](https://r1.example.com/)，另见 [2](https://r0.example.com/)。"
    "未知完，return0x1 不是标记。"
    "\n\n**Sources**\n1. [Result one](https://r1.example.com/)\n2. [结果零](https://r0.example.com/)"
)


def search_early(step: str = "coarse") -> Script:
    snaps = (
        prefixes(EARLY_TEXT)
        if step == "chars"
        else [
            "据报道【1",
            "据报道【1†sou",
            "据报道【1†source】，北京【3†来源】晴【2",
            "据报道【1†source】，北京【3†来源】晴【2†源】。再次【1†source】【4†source】【9†so",
            EARLY_TEXT,
        ]
    )
    return Script(
        [
            Part("q", [[{"type": "quote_result"}]], meta_data={"metadata_list": EARLY_SOURCES}),
            Part("t", grow("text", *snaps)),
        ]
    )


def search_late(step: str = "coarse") -> Script:
    snaps = (
        prefixes(LATE_TEXT)
        if step == "chars"
        else [
            "据报道【turn0sea",
            "据报道【turn0search1】，另见 turn0sear",
            "据报道【turn0search1】，另见 turn0search0。未知turn0search7完，return0",
            LATE_TEXT,
        ]
    )
    call = {"id": "call_1", "name": "search", "arguments": '{"query": "北京天气"}'}
    return Script(
        [
            Part("call", [[{"type": "tool_calls", "tool_calls": call}]], role="assistant"),
            Part(
                "result",
                [[{"type": "tool_result"}]],
                role="tool",
                meta_data={"tool_result_extra": {"search_results": LATE_RESULTS}},
            ),
            Part("t", grow("text", *snaps)),
        ]
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
    t.feed(_event([_part(part, [{"type": "text", "text": "晴【1†source】 turn"}], "init")]))
    assert t.sent_text == "晴 "  # unknown marker removed, "turn" may still become a marker
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


CODE = 'print("你好 🐍")\nprint(6 * 7)\n'


def code_script() -> Script:
    return Script(
        [
            Part("intro", grow("text", "我来算一下。")),
            Part("code", grow("code", "print(", 'print("你好 🐍")\nprint(6', CODE)),
            Part("out", grow("execution_output", "你好 🐍\n", "你好 🐍\n42\n"), role="observation"),
            Part("mid", grow("text", "结果", "结果是 42。")),
            Part("out2", grow("execution_output", "你好 🐍\n42\n"), role="observation"),
            Part("end", grow("text", "完毕")),
        ]
    )


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


def image_script() -> Script:
    u1 = "https://sfile.chatglm.cn/testpath/abc_0.png"
    u2 = "https://sfile.chatglm.cn/testpath/abc_1.png"
    data = "data:image/png;base64,AAAA"  # not http(s): ignored

    def image(*urls: str) -> dict[str, Any]:
        return {"type": "image", "image": [{"image_url": url} for url in urls]}

    sentinel = {"type": "one_to_more_finish", "image": [{}]}
    return Script(
        [
            Part("t", grow("text", "这是我为您创作的图片：")),
            Part("img", [[image(u1)], [image(u1, data)], [image(u1, data, u2)]]),
            Part("img2", [[image(u1)], [image(u1), sentinel]]),  # u1 repeated: shown once
        ]
    )


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


MARKER_SOUP = [
    "【1†source】",
    "【2†来源】",
    "【3†源】",
    "【9†source】",
    "【turn0search0】",
    "【turn0search1】",
    "turn0search1",
    "turn0search7",
    "【注意】",
    "【",
    "】",
    "turn",
    "return0x1",
    "t",
    "2",
    "晴",
    "北京",
    " ",
    "。",
    "🚀",
    "abc",
    "\n",
]


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


# -- merge rule ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "new", "authoritative", "expected"),
    [
        ("", "abc", False, "abc"),  # first value
        ("abc", "abcdef", False, "abcdef"),  # cumulative snapshot
        ("abc", "abc", False, "abc"),  # unchanged
        ("abcdef", "abc", False, "abcdefabc"),  # a delta equal to the start of the text
        ("abc", "def", False, "abcdef"),  # delta
        ("abc", "xyz", True, "xyz"),  # finish frame is authoritative
        ("abcdef", "abc", True, "abc"),  # ... even when shorter
        ("abc", "", True, "abc"),  # an empty finish frame never wipes text
    ],
)
def test_merge_value(held: str, new: str, authoritative: bool, expected: str) -> None:
    assert merge_value(held, new, authoritative) == expected


def test_merge_value_ignores_a_stale_repeat_of_a_finished_item() -> None:
    assert merge_value("abcdef", "abc", False, finished=True) == "abcdef"
    assert merge_value("abcdef", "gh", False, finished=True) == "abcdefgh"


def test_every_event_shape_repeating_finished_parts_is_a_no_op() -> None:
    t = Translator()
    p = Part("t", [])
    done = _part(p, [{"type": "text", "text": "完整"}], "finish")
    assert t.feed(_event([done]))[-1] == TextDelta("完整")
    assert t.feed(_event([done])) == []
    assert t.feed(_event([done])) == []


def test_parts_without_logic_id_fall_back_to_id_and_position() -> None:
    t = Translator()
    a = {"id": "p1", "content": [{"type": "text", "text": "一"}], "status": "finish"}
    b = {"id": "p1", "content": [{"type": "text", "text": "二"}], "status": "init"}
    t.feed(_event([a, b]))
    t.feed(_event([a, {**b, "content": [{"type": "text", "text": "二二"}]}]))
    t.finish()
    assert t.sent_text == "一\n\n二二"


# -- lifecycle, state machine, errors --------------------------------------------


def test_conversation_started_once_at_first_event_with_id() -> None:
    t = Translator()
    assert t.feed({"status": "init", "parts": []}) == []
    assert t.conversation_id is None
    out = t.feed({"id": "m1", "conversation_id": "c1", "status": "init", "parts": []})
    assert out == [ConversationStarted("c1", "m1")]
    assert (t.conversation_id, t.message_id) == ("c1", "m1")
    assert t.feed({"id": "m2", "conversation_id": "c2", "status": "init"}) == []


def test_non_dict_event_raises_and_leaves_state_unchanged() -> None:
    t = Translator()
    for bad in ([], "x", None, 3):
        with pytest.raises(UpstreamProtocolError):
            t.feed(bad)  # type: ignore[arg-type]
    assert t.phase is Phase.IDLE
    assert t.feed(_event([]))


@pytest.mark.parametrize(
    "event",
    [
        {"status": "init", "parts": {"a": 1}},
        {"status": "init", "parts": ["x"]},
        {"status": "init", "parts": [{"content": "text"}]},
        {"status": "finish", "parts": [{"content": [1]}]},
    ],
)
def test_malformed_parts_raise_before_any_state_change(event: dict) -> None:
    t = Translator()
    with pytest.raises(UpstreamProtocolError):
        t.feed(event)
    assert t.phase is Phase.IDLE and not t.finished


def test_events_after_finish_are_ignored() -> None:
    t = Translator()
    t.feed(_event([]))
    p = Part("t", [])
    out = t.feed(
        {**_event([_part(p, [{"type": "text", "text": "好"}], "finish")]), "status": "finish"}
    )
    assert out[-2:] == [TextDelta("好"), Finished("stop")]
    assert t.finished
    assert t.feed(_event([_part(p, [{"type": "text", "text": "好多了"}], "init")])) == []
    assert t.feed({**_event([]), "status": "error", "error": {"err_msg": "x"}}) == []
    assert t.finish() == []
    assert t.finish() == []


def test_feed_after_finish_call_is_illegal() -> None:
    t = Translator()
    assert t.finish() == [Finished("stop")]
    assert t.phase is Phase.CLOSED
    with pytest.raises(UpstreamProtocolError):
        t.feed(_event([]))
    assert t.phase is Phase.CLOSED


def test_unknown_top_level_status_keeps_streaming() -> None:
    t = Translator()
    t.feed({**_event([]), "status": "processing"})
    assert t.phase is Phase.STREAMING


def test_transition_table_is_total_for_live_phases_and_illegal_moves_keep_state() -> None:
    for phase in (Phase.IDLE, Phase.STREAMING, Phase.DONE, Phase.FAILED):
        assert set(TRANSITIONS[phase]) == set(Trigger)
    machine = PhaseMachine()
    machine.transition(Trigger.CLOSE)
    for trigger in (Trigger.INIT, Trigger.FINISH, Trigger.INTERVENE, Trigger.ERROR):
        with pytest.raises(UpstreamProtocolError):
            machine.transition(trigger)
        assert machine.phase is Phase.CLOSED


def test_error_without_details() -> None:
    with pytest.raises(UpstreamError, match="without details"):
        translate_all([{"status": "error"}])


# -- shortcuts: an event that changed nothing or grew one item gives the full render's deltas


class FullRender(Translator):
    """The reference: renders every event in full (no ``Renderer.rerender``)."""

    _shortcuts = False


SHORTCUT_OPTIONS = [
    TranslateOptions(),
    TranslateOptions(include_reasoning=False, include_sources=False),
    TranslateOptions(include_uncited=False, segment_separator="\n"),
]


def feed_both(
    stream: list[dict[str, Any]], options: TranslateOptions, stop_requested: bool = False
) -> int:
    """Feed both translators; every call must give the same deltas (or the same error).

    Returns how many events the shortcut translator answered without a full render.
    """
    fast, full = Translator(options), FullRender(options)
    fast.stop_requested = full.stop_requested = stop_requested
    shortcuts = 0
    rerender = fast._renderer.rerender

    def counting(changed: Any) -> Any:
        nonlocal shortcuts
        rendering = rerender(changed)
        shortcuts += rendering is not None
        return rendering

    fast._renderer.rerender = counting  # type: ignore[method-assign]
    for number, event in enumerate(stream):
        outcome = []
        for translator in (fast, full):
            try:
                outcome.append(translator.feed(copy.deepcopy(event)))
            except UpstreamError as exc:
                outcome.append((type(exc), str(exc)))
        assert outcome[0] == outcome[1], (number, event)
        if isinstance(outcome[0], tuple):
            return shortcuts
    assert fast.finish() == full.finish()
    assert (fast.sent_text, fast.sent_reasoning) == (full.sent_text, full.sent_reasoning)
    return shortcuts


def soup_script(seed: int) -> Script:
    """Sources, then a text of markers and fragments cut at random points."""
    rng = random.Random(seed)
    text = "".join(rng.choice(MARKER_SOUP) for _ in range(rng.randint(10, 40)))
    cuts = sorted(rng.sample(range(1, len(text) + 1), min(len(text), rng.randint(2, 12))))
    sources = [*search_early().parts[:1], *search_late().parts[:2]]
    return Script([*sources, Part("t", grow("text", *(text[:c] for c in cuts), text))])


def all_scripts() -> list[Script]:
    late = search_late()
    return [
        *(soup_script(seed) for seed in range(8)),
        Script([Part("t", grow("text", "你好", "你好！我是", "你好！我是 GLM 🚀。"))]),
        Script(
            [
                Part("think", grow("think", "让我想", "让我想想……🤔")),
                Part("t", grow("text", "答", "答案是 42。")),
            ]
        ),
        search_early(),
        search_early("chars"),
        search_late(),
        search_late("chars"),
        code_script(),
        image_script(),
        Script(
            [
                Part("a", grow("text", "我先", "我先查一下。")),
                *late.parts[:2],
                Part("b", grow("text", "查到了：", "查到了：晴【turn0search0】。")),
            ]
        ),
        Script(
            [
                Part(
                    "t",
                    grow("text", "Hello wo", "Hello wor"),
                    final=[{"type": "text", "text": "Hello World!"}],
                )
            ]
        ),
        Script([Part("t", grow("text", "abc", "abcdef"), final=[{"type": "text", "text": "xyz"}])]),
        Script(
            [Part("t", grow("text", "这是一段", "这是一段可能不合规的回答"), finishes=False)],
            end="intervene",
            last_error={"intervene_text": "内容不合规"},
        ),
        Script(
            [Part("t", grow("text", "说到一半", "说到一半就断了 turn"), finishes=False)],
            end="close",
        ),
        Script([Part("t", grow("text", "见", "见【2†sou"), finishes=False)], end="close"),
        Script(
            [
                Part("echo", grow("text", "用户", "用户的问题"), role="user"),
                Part("t", grow("text", "未知", "未知类型 🧩")),
            ]
        ),
        Script(
            [Part("t", grow("text", "回答进行中", "回答进行中，随后"), finishes=False)],
            end="error",
            error={"error_code": 10024, "err_msg": "generator exit"},
        ),
    ]


@pytest.mark.parametrize("options", SHORTCUT_OPTIONS)
def test_shortcuts_equal_full_render_on_the_scripts(options: TranslateOptions) -> None:
    shortcuts = 0
    for script in all_scripts():
        for shape in SHAPES:
            shortcuts += feed_both(events(script, shape), options)
            shortcuts += feed_both(events(script, shape), options, stop_requested=True)
    assert shortcuts > 100  # the shortcut is taken, so the comparison means something


SOUP_SOURCES = {
    "metadata_list": EARLY_SOURCES,
    "tool_result_extra": {"search_results": LATE_RESULTS},
}


def random_stream(rng: random.Random) -> list[dict[str, Any]]:
    """Parts of every kind and role growing in random interleavings, shapes and statuses.

    Values grow by pieces of ``MARKER_SOUP`` (so markers are split across events), as
    snapshots or deltas; a finish frame may rewrite its text; sources may arrive late;
    old events are repeated; lifecycle frames come in between.
    """
    kinds = ["text", "text", "think", "code", "execution_output", "image", "text_thinking"]
    roles = ["assistant"] * 6 + ["tool", "observation", "user"]
    parts = []
    for n in range(rng.randint(1, 4)):
        kind = rng.choice(kinds)
        parts.append(
            {"id": f"L{n}", "kind": kind, "role": rng.choice(roles), "value": "", "urls": []}
        )
    sent: list[dict[str, Any]] = [_event([])]
    for _ in range(rng.randint(1, 30)):
        roll = rng.random()
        if roll < 0.08:
            sent.append({**_event([]), "status": "processing"})
            continue
        if roll < 0.14 and len(sent) > 1:
            sent.append(copy.deepcopy(rng.choice(sent[1:])))  # a stale repeat
            continue
        chosen = rng.sample(parts, rng.randint(1, min(2, len(parts))))
        if rng.random() < 0.3:
            chosen = parts  # E2: every part again
        frame = []
        for p in chosen:
            status = "finish" if rng.random() < 0.12 else "init"
            if rng.random() < 0.05:
                p["role"] = rng.choice(roles)  # e.g. becomes an echo of the prompt
            kind, key = p["kind"], {**GROWING, "text_thinking": "text"}.get(p["kind"], "")
            if kind == "image":
                new = [f"https://img.example/{len(p['urls'])}.png"] if rng.random() < 0.6 else []
                p["urls"] += new
                urls = p["urls"] if rng.random() < 0.5 else new
                item = {"type": "image", "image": [{"image_url": u} for u in urls]}
            else:
                piece = "".join(rng.choice(MARKER_SOUP) for _ in range(rng.randint(0, 4)))
                if status == "finish" and rng.random() < 0.3:
                    p["value"] = p["value"][: rng.randint(0, len(p["value"]))] + piece  # rewrite
                    value = p["value"]
                else:
                    p["value"] += piece
                    value = p["value"] if rng.random() < 0.6 else piece
                item = {"type": kind, key: value}
            meta: dict[str, Any] = {}
            if rng.random() < 0.15:
                meta = {k: v for k, v in SOUP_SOURCES.items() if rng.random() < 0.7}
            if rng.random() < 0.1:
                meta["show_type"] = "mc_tool_result2"
            item_status = status if rng.random() < 0.85 else rng.choice(["init", "finish", "done"])
            content = [{**item, "status": item_status}]
            if rng.random() < 0.15:
                extra = [
                    {"type": "text", "text": rng.choice(MARKER_SOUP)},
                    {"type": "text", "text": ""},
                    {"type": "image", "image": []},
                    {"type": "quote_result"},
                ]
                content.append({**rng.choice(extra), "status": item_status})
            frame.append(
                {
                    "id": MESSAGE_ID,
                    "logic_id": p["id"],
                    "role": p["role"],
                    "content": content,
                    "meta_data": meta,
                    "status": status,
                }
            )
        sent.append(_event(frame))
    end = rng.choice(["finish", "intervene", "close", "close", "error"])
    if end != "close":
        last = _event([])
        last["status"] = end
        if end == "intervene":
            last["last_error"] = {"intervene_text": "停"}
        if end == "error":
            last["error"] = {"error_code": 10024, "err_msg": "generator exit"}
        sent.append(last)
        sent.append(_event([]))  # ignored after the end
    return sent


@pytest.mark.parametrize("seed", range(60))
def test_shortcuts_equal_full_render_on_random_streams(seed: int) -> None:
    rng = random.Random(seed)
    shortcuts = 0
    for _ in range(10):
        stream = random_stream(rng)
        for options in SHORTCUT_OPTIONS:
            shortcuts += feed_both(stream, options, stop_requested=rng.random() < 0.5)
    assert shortcuts > 0


def frame_part(logic_id: str, items: list[dict[str, Any]], status: str = "init", **fields: Any):
    return {"logic_id": logic_id, "role": "assistant", "content": items, "status": status, **fields}


HELD = [{"type": "text", "text": "晴 turn"}]  # "turn" is held back while the block is open


@pytest.mark.parametrize(
    "then",
    [
        [frame_part("b", [{"type": "text", "text": ""}])],  # a new, still empty block
        [frame_part("b", [{"type": "image", "image": []}])],
        [frame_part("a", [*HELD, {"type": "code", "code": ""}])],  # a new item, no value
        [frame_part("a", [{**HELD[0], "status": "finish"}])],  # the item alone finishes
        [frame_part("a", HELD, role="user")],  # the part turns out to be a prompt echo
        [frame_part("a", HELD, meta_data={"metadata_list": EARLY_SOURCES})],
        [frame_part("a", [{"type": "text", "text": "晴 turn0search0"}])],  # sources unknown
    ],
)
def test_shortcuts_notice_what_closes_or_hides_a_held_block(then: list[dict[str, Any]]) -> None:
    stream = [_event([frame_part("a", HELD)]), _event(then), _event([])]
    for options in SHORTCUT_OPTIONS:
        feed_both(stream, options)


@pytest.mark.parametrize("name", ["e2_code_crlf.sse", "e2_intervene.sse", "e2_think_search.sse"])
def test_shortcuts_equal_full_render_on_recordings(name: str) -> None:
    decoder = SSEDecoder()
    data = (Path(__file__).parent / "recordings" / name).read_bytes()
    stream = [decode_json(e) for e in decoder.feed(data) + decoder.finish() if e.data]
    for options in SHORTCUT_OPTIONS:
        assert feed_both(stream, options) > 0


def test_an_update_failing_midway_makes_the_next_event_render_in_full() -> None:
    grown = [frame_part("a", [{"type": "text", "text": "晴 turn0 好"}])]
    broken = _event([*grown, frame_part("b", [], role=["not", "hashable"])])
    for translator in (Translator(), FullRender()):
        translator.feed(_event([frame_part("a", HELD)]))
        with pytest.raises(TypeError):
            translator.feed(broken)  # part "a" grew before part "b" failed
        assert translator.feed(_event([])) == [TextDelta("turn0 好")]
