"""2026 ("E3") answer structure (upstream-protocol.md §15.4-§15.7).

``adapt`` rewrites a scenario the way the 2026 upstream delivers the same
answer, without changing what a reader should see: a ``finish`` marker call
after reasoning, search calls with ``show_type`` and ``role: "tool"`` results
(plus the tool's own progress text, which is never the answer), and drawings
as four single-image ``init`` frames in shuffled order followed by the
``one_to_more_finish`` sentinel. ``sc_tools`` is the server-side tool loop of
the July 2026 recording (reasoning, marker, short text, search, result,
sandbox call, reasoning, answer citing one of three results).
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

from .scripts import Context, Script, Segment, growing, image_url, static

TOOLS_REASONING_1 = "用户问天气，需要搜索。Need to search 🔎"
TOOLS_SHORT = "我来搜索一下。Let me search."
TOOLS_REASONING_2 = "结果显示晴天。Sunny it is."
TOOLS_ANSWER = "北京今天晴【turn0search0】，气温适中。Tools answer ☀️"
TOOLS_RESULTS = [
    {
        "match_key": "turn0search0",
        "title": "北京天气 Beijing weather",
        "url": "https://example.com/w0",
    },
    {"match_key": "turn0search1", "title": "天气二 Weather two", "url": "https://example.org/w1"},
    {"match_key": "turn0search2", "title": "天气三 Weather three", "url": "https://example.net/w2"},
]
TOOL_CHATTER = "搜索到 3 个网页 (tool progress, not the answer)"
CALL_META = {"show_type": "mc_tool_call2"}


def call(name: str, arguments: dict[str, Any], nickname: str = "") -> Segment:
    """A server-side tool call part (also the ``finish`` marker, with ``{}``)."""
    item = {
        "type": "tool_calls",
        "tool_calls": {
            "id": "tool-" + uuid.uuid4().hex,
            "name": name,
            "arguments": json.dumps(arguments, ensure_ascii=False),
        },
    }
    extra = {"tool_result_extra": {"tool_nickname": nickname}} if nickname else {}
    return static([item], meta_data={**CALL_META, **extra})


def finish_marker() -> Segment:
    return call("finish", {})


def search_results(results: list[dict[str, Any]]) -> Segment:
    items = [
        {"type": "tool_result", "tool_result": {"name": "search"}},
        {"type": "text", "text": TOOL_CHATTER},
    ]
    meta = {
        "show_type": "mc_tool_result2",
        "tool_result_extra": {"search_results": [dict(r) for r in results], "search_duration": 1.5},
        "chat_mode": "thinking",
    }
    return static(items, role="tool", meta_data=meta)


def think(text: str, steps: int = 3) -> Segment:
    return growing("think", text, steps, meta_data={"show_type": "mc_tool_think2"})


def sc_tools(ctx: Context) -> Script:
    search_args = {"search_query": [{"q": "北京天气", "recency": "day"}]}
    return Script(
        "tools",
        [
            think(TOOLS_REASONING_1),
            finish_marker(),
            growing("text", TOOLS_SHORT, 2),
            call("search", search_args, "搜索网页"),
            search_results(TOOLS_RESULTS),
            call("execute_sandbox_code", {"code": "print(1)"}),
            think(TOOLS_REASONING_2),
            finish_marker(),
            growing("text", TOOLS_ANSWER, 4, meta_data={"think_finished_time": 2}),
        ],
    )


def _is_tool_call(seg: Segment) -> bool:
    return any(i["type"] == "tool_calls" for i in seg.snapshots[-1])


def adapt(script: Script, ctx: Context) -> Script:
    """The same answer in 2026 structure (see the module docstring)."""
    segments: list[Segment] = []
    previous_kind = None
    for seg in script.segments:
        kinds = {i["type"] for i in seg.snapshots[-1]}
        if "think" in kinds:
            seg.meta_data = {**seg.meta_data, "show_type": "mc_tool_think2"}
        if "text" in kinds and previous_kind == "think":
            segments.append(finish_marker())
        if _is_tool_call(seg):
            seg.meta_data = {**seg.meta_data, **CALL_META}
        if seg.role == "tool" and "tool_result" in kinds:
            seg.meta_data = {**seg.meta_data, "show_type": "mc_tool_result2"}
            seg.snapshots = [[*s, {"type": "text", "text": TOOL_CHATTER}] for s in seg.snapshots]
        if "image" in kinds and script.name == "draw":
            seg = _drawing_frames(ctx)
            script.shape = "current"  # single-image frames are not cumulative
        segments.append(seg)
        previous_kind = "think" if "think" in kinds else "other"
    script.segments = segments
    return script


def _drawing_frames(ctx: Context) -> Segment:
    """Four ``init`` frames of one image each, shuffled numbers, then the sentinel (§15.6)."""
    numbers = list(range(4))
    random.Random(ctx.message_id).shuffle(numbers)
    frames = [[{"type": "image", "image": [{"image_url": image_url(ctx, n)}]}] for n in numbers]
    return Segment(frames, final=[{"type": "one_to_more_finish", "image": [{}]}])
