"""Scenario scripts: what the simulated model answers, as growing segments.

A `Script` is shape-independent: an ordered list of `Segment`s (one per upstream part /
`logic_id`), each a list of cumulative snapshots of its content items. `events.py` turns a
script into SSE events in the `all`, `current` or `delta` shape, so all three shapes always
describe the same answer. Every text below is deterministic so tests can assert on it.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DRAWING_ASSISTANT_ID = "65a232c082ff90a2ad2f15e2"
DIRECTIVE_RE = re.compile(r"\[\[sim:([A-Za-z0-9_]+)((?:\s+[A-Za-z0-9_]+=[^\s\]]*)*)\s*\]\]")

# The exact texts, exported so other tests can assert against them.
TEXT_ANSWER = "你好！这是模拟回答。Simulated answer 🚀 (prompt {length} chars, turn {turn})"
THINK_REASONING = "让我想一想……用户在打招呼。Thinking it over 🤔"
THINK_ANSWER = "思考完毕：这是模拟回答。Answer after thinking 🚀"
SEARCH_SOURCES = [
    {"title": "模拟来源一 Simulated source one", "url": "https://example.com/source-1"},
    {"title": "模拟来源二 Simulated source two", "url": "https://example.org/source-2"},
]
SEARCH_ANSWER = "根据搜索结果【1†source】，这是模拟答案；另见【2†来源】。Search answer 🔎"
SEARCH_LATE_RESULTS = [
    {
        "match_key": "turn0search0",
        "title": "模拟结果一 Result zero",
        "url": "https://example.com/r0",
    },
    {
        "match_key": "turn0search1",
        "title": "模拟结果二 Result one",
        "url": "https://example.org/r1",
    },
]
SEARCH_LATE_ANSWER = (
    "据报道【turn0search0】，这是模拟答案。另见 turn0search1。Late search answer 🔎"
)
SEARCH_TOOL_CALL = {
    "id": "call_sim_search_0",
    "name": "search",
    "arguments": json.dumps({"query": "模拟搜索 simulated search"}, ensure_ascii=False),
}
CODE_SOURCE = 'print("模拟代码 🐍")\nprint(6 * 7)\n'
CODE_OUTPUT = "模拟代码 🐍\n42\n图像已保存到 /mnt/data/x.png"
CODE_ANSWER = "代码执行完毕，结果是 42。Code done ✅"
IMAGE_ANSWER = "这是生成的图片。Here is your image 🎨"
MULTI_FIRST = "第一段：我先查一下。Part one 🚀"
MULTI_SECOND = "第二段：查到了。Part two ✅"
INTERVENE_PARTIAL = "这是一段可能不合规的回答"
INTERVENE_TEXT = "内容不合规 (simulated filter)"
ERROR_PARTIAL = "回答进行中，随后发生错误"
ERROR_OBJECT = {"error_code": 10024, "err_msg": "generator exit"}
LONG_SENTENCE = "第{i}句：模拟长回答 🚀。"
UNKNOWN_ANSWER = "未知类型已忽略。Unknown types ignored 🧩"
DRAW_ANSWER = "这是我为您创作的图片，希望您喜欢。Here are your pictures 🎨"
DRAW_REWRITTEN = "画面描述：{prompt}"
NOIMAGE_ANSWER = "抱歉，这次没有生成图片。No image this time 🙈"
DRAW_IMAGE_COUNT = 4
SHAPES = ("all", "current", "delta")


@dataclass
class Segment:
    """One upstream part: a stable logic_id and its cumulative content snapshots."""

    snapshots: list[list[dict[str, Any]]]
    role: str = "assistant"
    recipient: str = "all"
    meta_data: dict[str, Any] = field(default_factory=dict)
    finishes: bool = True
    logic_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    final: list[dict[str, Any]] | None = None  # finish-frame content (default: last snapshot)


@dataclass
class Script:
    """A whole answer plus how to deliver it (end status, pacing, shape override)."""

    name: str
    segments: list[Segment]
    end_status: str = "finish"  # finish | intervene | error
    last_error: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    wait: float = 0.0
    delay: float | None = None
    shape: str | None = None
    chunk: int | None = None

    def answer_text(self) -> str:
        """Visible text of the answer (text items only), for the conversation history."""
        texts = [
            item["text"]
            for seg in self.segments
            for item in seg.snapshots[-1]
            if item["type"] == "text"
        ]
        return "\n".join(texts)


@dataclass(frozen=True)
class Context:
    """What a scenario may depend on; all of it is deterministic per request."""

    prompt: str
    turn: int
    message_id: str
    base_url: str
    args: dict[str, str]

    def int_arg(self, key: str, default: int, low: int = 1, high: int = 100_000) -> int:
        try:
            return min(high, max(low, int(self.args[key])))
        except (KeyError, ValueError):
            return default


@dataclass(frozen=True)
class Directive:
    name: str
    args: dict[str, str]


def find_directive(text: str) -> Directive | None:
    """The LAST `[[sim:NAME key=value ...]]` in the text (flattened history repeats old ones)."""
    matches = list(DIRECTIVE_RE.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    args = dict(pair.split("=", 1) for pair in last.group(2).split())
    return Directive(last.group(1).lower(), args)


def strip_directives(text: str) -> str:
    return DIRECTIVE_RE.sub("", text).strip()


def prefixes(text: str, steps: int) -> list[str]:
    """`steps` growing prefixes of `text`, the last one complete."""
    steps = max(1, min(steps, len(text)))
    return [text[: math.ceil(len(text) * i / steps)] for i in range(1, steps + 1)]


def growing(kind: str, text: str, steps: int = 4, **part: Any) -> Segment:
    """A segment whose single item of `kind` (text/think/code) grows over `steps` snapshots."""
    return Segment([[{"type": kind, kind: p}] for p in prefixes(text, steps)], **part)


def static(items: list[dict[str, Any]], repeats: int = 1, **part: Any) -> Segment:
    """A segment whose content is complete at once and repeated identically."""
    return Segment([items for _ in range(repeats)], **part)


def tool_call_segment() -> Segment:
    return static(
        [{"type": "tool_calls", "tool_calls": dict(SEARCH_TOOL_CALL)}], recipient="search"
    )


def image_url(ctx: Context, n: int) -> str:
    return f"{ctx.base_url}/sfile/testpath/{ctx.message_id}_{n}_0.png"


def text_answer(ctx: Context) -> str:
    return TEXT_ANSWER.format(length=len(ctx.prompt), turn=ctx.turn)


def sc_text(ctx: Context) -> Script:
    return Script("text", [growing("text", text_answer(ctx))])


def sc_slow(ctx: Context) -> Script:
    script = Script("slow", [growing("text", text_answer(ctx))])
    script.wait = 5.0
    return script


def sc_think(ctx: Context) -> Script:
    return Script("think", [growing("think", THINK_REASONING, 3), growing("text", THINK_ANSWER, 3)])


def sc_search(ctx: Context) -> Script:
    quote = static(
        [{"type": "quote_result"}],
        role="tool",
        meta_data={"metadata_list": [dict(s) for s in SEARCH_SOURCES]},
    )
    return Script("search", [quote, growing("text", SEARCH_ANSWER)])


def sc_search_late(ctx: Context) -> Script:
    results = static(
        [{"type": "tool_result"}],
        role="tool",
        meta_data={"tool_result_extra": {"search_results": [dict(r) for r in SEARCH_LATE_RESULTS]}},
    )
    answer = growing("text", SEARCH_LATE_ANSWER)
    return Script("search_late", [tool_call_segment(), results, answer])


def sc_code(ctx: Context) -> Script:
    output = static([{"type": "execution_output", "content": CODE_OUTPUT}], 3, role="tool")
    code = growing("code", CODE_SOURCE, 3, recipient="python")
    return Script("code", [code, output, growing("text", CODE_ANSWER, 3)])


def sc_image(ctx: Context) -> Script:
    image = static([{"type": "image", "image": [{"image_url": image_url(ctx, 0)}]}], 2)
    return Script("image", [image, growing("text", IMAGE_ANSWER, 3)])


def sc_multi(ctx: Context) -> Script:
    return Script(
        "multi",
        [growing("text", MULTI_FIRST, 3), tool_call_segment(), growing("text", MULTI_SECOND, 3)],
    )


def sc_intervene(ctx: Context) -> Script:
    partial = growing("text", INTERVENE_PARTIAL, 2, finishes=False)
    last_error = {"intervene_text": INTERVENE_TEXT}
    return Script("intervene", [partial], end_status="intervene", last_error=last_error)


def sc_error(ctx: Context) -> Script:
    partial = growing("text", ERROR_PARTIAL, 2, finishes=False)
    error = dict(ERROR_OBJECT)
    return Script("error", [partial], end_status="error", last_error=dict(error), error=error)


def sc_long(ctx: Context) -> Script:
    n = ctx.int_arg("n", 50, high=5000)
    sentences = [LONG_SENTENCE.format(i=i) for i in range(1, n + 1)]
    snapshots = [[{"type": "text", "text": "".join(sentences[:k])}] for k in range(1, n + 1)]
    chars = ctx.int_arg("chars", 0, low=0, high=1_000_000)
    if chars:  # benchmarks: exactly `chars` characters over the n snapshots
        text = ("".join(sentences) * (chars // max(1, len("".join(sentences))) + 1))[:chars]
        snapshots = [[{"type": "text", "text": text[: chars * k // n]}] for k in range(1, n + 1)]
    script = Script("long", [Segment(snapshots)])
    script.delay = 0.05
    return script


def sc_unknown_types(ctx: Context) -> Script:
    browser = static(
        [
            {
                "type": "browser_result",
                "browser_result": {"title": "网页", "url": "https://example.com"},
            }
        ],
        role="tool",
        recipient="browser",
    )
    text = growing("text", UNKNOWN_ANSWER, 3)
    text.snapshots[-1] = [*text.snapshots[-1], {"type": "one_to_more_finish", "image": [{}]}]
    return Script("unknown_types", [browser, text])


def sc_draw(ctx: Context) -> Script:
    urls = [{"image_url": image_url(ctx, n)} for n in range(DRAW_IMAGE_COUNT)]
    images = Segment([[{"type": "image", "image": urls[: k + 1]}] for k in range(len(urls))])
    segments = [growing("text", DRAW_ANSWER, 2)]
    if ctx.args.get("code", "1") != "0":
        rewritten = DRAW_REWRITTEN.format(prompt=strip_directives(ctx.prompt))
        segments.append(growing("code", rewritten, 2, recipient="cogview"))
    return Script("draw", [*segments, images])


def sc_noimage(ctx: Context) -> Script:
    return Script("noimage", [growing("text", NOIMAGE_ANSWER, 2)])


SCENARIOS: dict[str, Callable[[Context], Script]] = {
    "text": sc_text,
    "slow": sc_slow,
    "think": sc_think,
    "search": sc_search,
    "search_late": sc_search_late,
    "code": sc_code,
    "image": sc_image,
    "multi": sc_multi,
    "intervene": sc_intervene,
    "error": sc_error,
    "long": sc_long,
    "unknown_types": sc_unknown_types,
    "draw": sc_draw,
    "noimage": sc_noimage,
}


def _float_arg(args: dict[str, str], key: str) -> float | None:
    try:
        return max(0.0, float(args[key]))
    except (KeyError, ValueError):
        return None


def build_script(prompt: str, turn: int, message_id: str, base_url: str, default: str) -> Script:
    """Pick the scenario (last directive's name, else `default`) and apply common arguments.

    Unknown names fall back to `default`; the chosen name is reported in the request log.
    """
    directive = find_directive(prompt)
    name, args = (directive.name, directive.args) if directive else (default, {})
    ctx = Context(prompt, turn, message_id, base_url, args)
    script = SCENARIOS.get(name, SCENARIOS[default])(ctx)
    if "delay" in args:
        script.delay = _float_arg(args, "delay")
    wait = _float_arg(args, "wait")
    script.wait = wait if wait is not None else script.wait
    script.shape = args.get("shape") if args.get("shape") in SHAPES else None
    if "chunk" in args:
        script.chunk = ctx.int_arg("chunk", 0, low=0)
    return script
