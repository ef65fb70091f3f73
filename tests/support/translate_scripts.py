"""Answers described once, for the translator's tests: scripts, their events, scenarios.

A ``Script`` lists the parts of an answer, each as cumulative content snapshots.
``events(script, shape)`` turns it into upstream events (spec §6.4):

* ``all``: every event repeats every part started so far (E2 default);
* ``current``: each event carries only the part being written;
* ``delta``: like ``current``, but ``init`` frames carry only new characters (and
  new image URLs), and the part's ``finish`` frame carries its full content (E3).

The top-level end status rides on the last part's finish frame, as in spec §6.5.
Used by ``test_translate.py``, ``test_translate_rules.py`` and
``test_translate_shortcuts.py``.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from glm_proxy.protocol.events import (
    Citation,
    ConversationStarted,
    Finished,
    ImageGenerated,
    ReasoningDelta,
    TextDelta,
)
from glm_proxy.protocol.translate import TranslateOptions, translate_all

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
