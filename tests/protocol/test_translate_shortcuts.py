"""The translator's shortcuts: an event that changed nothing or grew one item gives the
full render's deltas."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest

from glm_proxy.errors import UpstreamError
from glm_proxy.protocol.events import (
    TextDelta,
)
from glm_proxy.protocol.sse import SSEDecoder, decode_json
from glm_proxy.protocol.translate import TranslateOptions, Translator
from tests.support.translate_scripts import (
    EARLY_SOURCES,
    GROWING,
    LATE_RESULTS,
    MARKER_SOUP,
    MESSAGE_ID,
    SHAPES,
    Part,
    Script,
    _event,
    code_script,
    events,
    grow,
    image_script,
    search_early,
    search_late,
)

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
    assert (fast.sent_chars, fast.sent_reasoning_chars) == (
        full.sent_chars,
        full.sent_reasoning_chars,
    )
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
    data = (Path(__file__).parent.parent / "recordings" / name).read_bytes()
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
