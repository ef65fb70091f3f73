"""``Translator.feed_grown`` gives exactly what ``feed`` gives, over the same streams.

Most streamed events repeat the last one with one string grown; the producer
hands those to ``feed_grown`` with ``SnapshotParser.growth``, and the translator
updates the one item the string belongs to instead of folding the whole event
in again. Each test runs two translators side by side over the same raw events:
one parses in full and calls ``feed``, the other goes through ``SnapshotParser``
and ``feed_grown``. The deltas of every event, the error an event raises, what
``finish`` adds and the state at the end must all be equal; and the short route
must have been taken, so the comparison is not between two full feeds.
"""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

from glm_proxy.protocol.snapshots import SnapshotParser
from glm_proxy.protocol.sse import SSEDecoder
from glm_proxy.protocol.translate import TranslateOptions, Translator
from tests.support.snapshots import simulator_answer_reads  # noqa: F401 - a fixture
from tests.support.translate_scripts import (
    MARKER_SOUP,
    Part,
    Script,
    code_script,
    events,
    grow,
    image_script,
    search_early,
    search_late,
)

LONG = "很长的开头，" * 200  # past SnapshotParser.MIN_EVENT: the shortcut applies


class _Counting(Translator):
    """A translator that counts its full feeds."""

    full = 0

    def feed(self, event):  # noqa: ANN001, ANN201 - the parent's signature
        self.full += 1
        return super().feed(event)


def _outcome(call, *args):  # noqa: ANN001, ANN202
    try:
        return ("ok", call(*args))
    except Exception as exc:  # noqa: BLE001 - compared, not handled
        return ("raised", type(exc).__name__, str(exc))


def _state(t: Translator) -> tuple:
    return (
        t.sent_chars,
        t.sent_reasoning_chars,
        t.phase,
        t.finished,
        t.history_id,
        t.conversation_id,
    )


def run_both(raws: list[bytes], options: TranslateOptions | None = None) -> int:
    """Feed ``raws`` to both translators; assert equal results; return short-route events."""
    full, grown = Translator(options), _Counting(options)
    parser = SnapshotParser()
    growth_events = fed = 0
    for raw in raws:
        fed += 1
        expected = _outcome(full.feed, orjson.loads(raw))
        parsed = parser.feed(raw)  # as the producer does: the event is built on demand
        growth = parser.growth
        if growth is None:
            got = _outcome(grown.feed, parsed)
        else:
            growth_events += 1
            got = _outcome(grown.feed_grown, parser.current, growth)
        assert got == expected, raw[-160:]
        if expected[0] == "raised":
            break  # the producer reads no further
    else:
        assert _outcome(grown.finish) == _outcome(full.finish)
        assert _state(grown) == _state(full)
    return growth_events - (grown.full - (fed - growth_events))  # growth events fed in full


def encoded(script: Script, shape: str, encode=orjson.dumps) -> list[bytes]:
    return [encode(e) for e in events(script, shape)]


def long_text(*pieces: str) -> list[list[dict[str, Any]]]:
    text, values = LONG, []
    for piece in pieces:
        text += piece
        values.append(text)
    return grow("text", *values)


def test_a_long_answer_takes_the_short_route():
    script = Script([Part("t", long_text(*(f"第{i}句。" for i in range(60))))])
    assert run_both(encoded(script, "all")) >= 55


def test_reasoning_then_answer():
    think = grow("think", *(LONG + "想" * i for i in range(1, 30)))
    script = Script([Part("r", think), Part("t", long_text(*("答" for _ in range(30))))])
    for shape in ("all", "current"):
        assert run_both(encoded(script, shape)) >= 40
        run_both(encoded(script, shape), TranslateOptions(include_reasoning=False))


@pytest.mark.parametrize("maker", [search_early, search_late, code_script, image_script])
@pytest.mark.parametrize("shape", ["all", "current", "delta"])
def test_the_translator_scripts_made_long(maker, shape):
    """The translator's own scripts, with a long answer before them (markers, code, images)."""
    script = maker()
    script.parts.insert(0, Part("lead", long_text(*("前言" for _ in range(12)))))
    run_both(encoded(script, shape))
    run_both(encoded(script, shape, lambda o: json.dumps(o, ensure_ascii=False).encode()))


def _random_script(rng: random.Random) -> Script:
    parts = []
    for n in range(rng.randint(1, 3)):
        kind = rng.choice(("text", "text", "think", "code"))
        field = "code" if kind == "code" else kind
        value, snaps = LONG if rng.random() < 0.8 else "", []
        for _ in range(rng.randint(1, 25)):
            value += "".join(rng.choice(MARKER_SOUP) for _ in range(rng.randint(1, 3)))
            snaps.append([{"type": kind, field: value}])
        meta = {}
        if rng.random() < 0.3:
            meta["metadata_list"] = [
                {"title": f"来源{i}", "url": f"https://example.com/{i}"} for i in range(3)
            ]
        role = rng.choice(("assistant", "assistant", "assistant", "tool", "user"))
        final = None
        if rng.random() < 0.2:
            final = [{"type": kind, field: value[: rng.randint(0, len(value))] + "改"}]
        parts.append(Part(f"p{n}", snaps, final, rng.random() < 0.9, role, meta))
    end = rng.choice(("finish", "finish", "intervene", "error", "close"))
    last_error = {"intervene_text": "停止"} if end == "intervene" else {}
    error = {"code": 10001, "message": "x"} if end == "error" else None
    return Script(parts, end, last_error, error)


@pytest.mark.parametrize("seed", range(80))
def test_random_answers(seed):
    rng = random.Random(seed)
    script = _random_script(rng)
    raws = encoded(script, rng.choice(("all", "current", "delta")))
    if rng.random() < 0.2:  # a status frame, a repeated event, a shrink: full feeds between
        at = rng.randrange(len(raws))
        raws.insert(at, rng.choice([raws[at], orjson.dumps({"status": "processing"})]))
    options = TranslateOptions(
        include_reasoning=rng.random() < 0.7, include_sources=rng.random() < 0.7
    )
    run_both(raws, options)


def test_without_shortcuts_every_event_is_fed_in_full():
    script = Script([Part("t", long_text(*("字" for _ in range(20))))])
    translator = _Counting()
    translator._shortcuts = False
    parser = SnapshotParser()
    raws = encoded(script, "all")
    for raw in raws:
        parsed = parser.parse(raw)
        if parser.growth is None:
            translator.feed(parsed)
        else:
            translator.feed_grown(parsed, parser.growth)
    assert parser.shortcuts > 10 and translator.full == len(raws)


@pytest.mark.profiles("2026", "2025")
def test_the_simulators_answers(simulator_answer_reads):  # noqa: F811 - the fixture
    short = 0
    for reads in simulator_answer_reads:
        decoder = SSEDecoder()
        raws = [e.raw for r in reads for e in decoder.feed(r) if e.raw and e.raw != b"[DONE]"]
        short += run_both(raws)
    assert short >= 20  # the long answers take the short route


def _frame(text: str, status: str = "init") -> bytes:
    part = {"logic_id": "t", "role": "assistant", "status": status, "meta_data": {}}
    part["content"] = [{"type": "text", "text": text, "status": status}]
    return orjson.dumps({"conversation_id": "c1", "id": "m1", "status": status, "parts": [part]})


def _two_parts(first: str, second: str) -> bytes:
    parts = [
        {"logic_id": key, "role": "assistant", "status": "init", "meta_data": {}, "content": [c]}
        for key, c in (
            ("a", {"type": "text", "text": first}),
            ("b", {"type": "text", "text": second}),
        )
    ]
    return orjson.dumps({"conversation_id": "c1", "id": "m1", "status": "init", "parts": parts})


def test_a_value_held_by_the_merge_rule_is_not_routed():
    """A piece that does not extend what an item holds is appended to it (E3 deltas):
    the item then holds more than the event says, and a full feed appends it again.
    A string growing in another part must not route around that."""
    held, piece = "甲" * 400, "乙" * 10
    raws = [_two_parts(held, LONG)]
    raws += [_two_parts(piece, LONG + "一" * n) for n in range(6)]
    assert run_both(raws) == 0
    assert (
        run_both([_frame(LONG), _frame(held), _frame(held + "更多"), _frame(held + "更多字")]) == 0
    )


def test_a_route_out_of_step_with_the_item_feeds_in_full():
    """``length`` is what the item must hold; if it does not, the event is fed in full."""
    parser, translator, full = SnapshotParser(), _Counting(), Translator()
    raws = [_frame(LONG), _frame(LONG + "一"), _frame(LONG + "一二"), _frame(LONG + "一二三")]
    for raw in raws[:3]:
        parsed = parser.parse(raw)
        full.feed(orjson.loads(raw))
        if parser.growth is None:
            translator.feed(parsed)
        else:
            translator.feed_grown(parsed, parser.growth)
    assert translator._route is not None and translator.full == 2  # the third took the route
    parsed = parser.parse(raws[3])
    path, length, added = parser.growth
    fed = translator.full
    got = translator.feed_grown(parsed, (path, length + 1, added))
    assert translator.full == fed + 1
    assert got == full.feed(orjson.loads(raws[3]))
