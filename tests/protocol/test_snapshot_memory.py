"""What one stream keeps of a long answer while it waits: no copy of it.

A producer whose client stopped reading waits with its ``SnapshotParser``,
``Translator`` and wire alive, a hundred such streams at once: every copy of
the answer they keep is multiplied, and one copy of a 300,000-character answer
is already 0.6 to 1.2 MB. So the streamed text is not kept anywhere: the parser
keeps the previous event's prefix as its length, CRC-32 and edges and says what
grew, the translator keeps a window of each growing item (its string and its
output, ``_segments.Item``) and counts what it sent, and a streaming wire counts
the text's tokens instead of keeping it. These tests measure with
``tracemalloc`` what the parts hold after every few events of such an answer,
in each event shape (emoji included: four bytes per character in a ``str``),
and pin it far below one copy. They also check that the prefix, no longer kept
in full, is still proven: an edit anywhere in it, far from the edges, is seen.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from glm_proxy.protocol.events import ReasoningDelta, TextDelta
from glm_proxy.protocol.formats.openai import ChatWire, CompletionAccumulator, chat_usage
from glm_proxy.protocol.snapshots import SnapshotParser
from glm_proxy.protocol.sse import SSEDecoder
from glm_proxy.protocol.translate import Translator
from glm_proxy.protocol.translate._segments import Item
from tests.support.snapshots import check_stream, event

SENTENCE = "第{i}句：模拟长回答 🚀。"
BOUNDED = 128 * 1024  # bytes: a tenth of one copy of the answer (over 1.2 MB)
CHARS = 300_000


def long_text(chars: int = CHARS, sentence: str = SENTENCE) -> str:
    return "".join(sentence.format(i=i) for i in range(chars // 5))[:chars]


def long_answer(events: int = 60, chars: int = CHARS) -> list[bytes]:
    """A cumulative answer as the 2026 upstream sends it (``data:`` frames), growing to
    ``chars`` characters in ``events`` snapshots."""
    text = long_text(chars)
    return [
        b"data:  " + orjson.dumps(event(text[: chars * k // events])) + b"\n\n"
        for k in range(1, events + 1)
    ]


def _frame(parts: list[dict[str, Any]], status: str = "init") -> bytes:
    body = {"id": "m1", "conversation_id": "c1", "parts": parts, "status": status}
    return b"data: " + orjson.dumps({**body, "last_error": {}}) + b"\n\n"


def _part(logic_id: str, kind: str, value: str, status: str = "init") -> dict[str, Any]:
    item = {"type": kind, kind: value, "status": status}
    return {"logic_id": logic_id, "role": "assistant", "content": [item], "status": status}


def shaped_answer(shape: str, events: int = 60) -> Iterator[bytes]:
    """Reasoning, then a long answer, in one event shape (``all``: every part again
    in every event; ``current``: the growing part, whole; ``delta``: the new
    characters, then the part's finish frame with its whole text)."""
    think, text = long_text(CHARS // 3, "想{i}想 🤔，"), long_text()
    done: list[dict[str, Any]] = []
    for key, kind, value in (("r", "think", think), ("t", "text", text)):
        cut = 0
        for k in range(1, events + 1):
            end = len(value) * k // events
            piece = value[cut:end] if shape == "delta" else value[:end]
            cut = end
            yield _frame(
                [*done, _part(key, kind, piece)] if shape == "all" else [_part(key, kind, piece)]
            )
        finished = _part(key, kind, value, "finish")
        yield _frame([*done, finished] if shape == "all" else [finished])
        if shape == "all":
            done.append(finished)
    yield _frame(done if shape == "all" else [], "finish")


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _wire() -> ChatWire:
    wire = ChatWire(model="glm", created=1, prompt_text="q", response_id=lambda: "chatcmpl-1")
    wire.open()
    return wire


def test_the_parser_keeps_no_copy_of_the_previous_event():
    raws = [frame[7:-2] for frame in long_answer()]
    tracemalloc.start()
    try:
        before = _traced()
        parser = SnapshotParser()
        for raw in raws:
            parser.feed(raw)
            assert parser.growth is None or parser.current()["parts"] is not None
        length, added = parser.growth[1:]
        parser.release()  # as the producer does before it waits
        held = _traced() - before
    finally:
        tracemalloc.stop()
    assert parser.shortcuts >= len(raws) - 3
    assert length + len(added) == CHARS
    assert held < BOUNDED, f"the parser keeps {held} bytes"


@pytest.mark.parametrize("shape", ["all", "current", "delta"])
def test_a_stream_keeps_no_copy_of_the_answer(shape: str) -> None:
    """Decoder, parser, translator and streaming wire as the producer and the pump
    drive them: what they hold after every few events stays bounded."""
    frames = list(shaped_answer(shape))
    tracemalloc.start()
    try:
        before = _traced()
        decoder, parser, translator, wire = SSEDecoder(), SnapshotParser(), Translator(), _wire()
        worst = text = reasoning = 0
        for k, frame in enumerate(frames, 1):
            for sse in decoder.feed(frame):
                parsed = parser.feed(sse.raw)
                growth = parser.growth
                if growth is None:
                    deltas = translator.feed(parsed)
                else:
                    deltas = translator.feed_grown(parser.current, growth)
                parser.release()
                sse.raw = b""  # as the producer does before it waits for the client
                for delta in deltas:
                    wire.feed(delta)
                    text += len(delta.text) if isinstance(delta, TextDelta) else 0
                    reasoning += len(delta.text) if isinstance(delta, ReasoningDelta) else 0
                del growth, parsed, deltas
            frame = b""
            if k % 8 == 0:  # (a collection each time would make the test slow)
                worst = max(worst, _traced() - before)
        for delta in translator.finish():
            wire.feed(delta)
        wire.finish()
    finally:
        tracemalloc.stop()
    assert (text, reasoning) == (CHARS, CHARS // 3)
    assert (translator.sent_chars, translator.sent_reasoning_chars) == (text, reasoning)
    assert parser.shortcuts >= (80 if shape != "delta" else 0)
    assert worst < BOUNDED, f"a stream keeps {worst} bytes of a {CHARS}-character answer"
    assert wire.usage == chat_usage(
        "q",
        CompletionAccumulator().feed_all(
            [ReasoningDelta(long_text(CHARS // 3, "想{i}想 🤔，")), TextDelta(long_text())]
        ),
    )


def test_the_kept_strings_stay_short():
    """The same, by the strings themselves: an item's window and output, the rendering."""
    translator = Translator()
    text = long_text()
    for k in range(1, 301):
        piece = text[(k - 1) * 1000 : k * 1000]
        translator.feed(orjson.loads(_frame([_part("t", "text", piece)])[6:]))
        item = translator._segments["L:t"].items[("text", 0)]
        kept = [item.value, item.head, item.done_out, translator._renderer._last.answer]
        assert max(map(len, kept)) < Item.TRIM + Item.EDGE + 1000, k
    assert item.length == CHARS and item.base > CHARS - Item.TRIM - Item.EDGE - 1000


def test_an_edit_deep_inside_the_kept_prefix_is_seen():
    """The prefix is checked in full (by CRC), not only at its edges."""
    text = "".join(SENTENCE.format(i=i) for i in range(3000))
    first, second = orjson.dumps(event(text)), orjson.dumps(event(text + "更多"))
    assert len(first) > 2 * SnapshotParser.EXACT_HEAD  # a head kept as CRC, not as bytes
    middle = second.index("第1500句".encode())
    edited = second[:middle] + "第1501句".encode() + second[middle + len("第1500句".encode()) :]
    for raw in (edited, second):
        parser = check_stream([first, raw])
        assert parser.shortcuts == (1 if raw is second else 0)


def test_after_a_full_parse_only_a_sketch_is_kept():
    """A status change (the part's finish frame, the answer's end) is parsed in full; what
    the parser keeps of it to compare the next event with holds no copy of the text."""
    raws = [frame[7:-2] for frame in long_answer(events=20)]
    text = orjson.loads(raws[-1])["parts"][0]["content"][0]["text"]
    raws += [orjson.dumps(event(text, "finish")), orjson.dumps(event(text, "finish", {"x": 1}))]
    tracemalloc.start()
    try:
        before = _traced()
        parser = SnapshotParser()
        for raw in raws:
            parser.feed(raw)
        held = _traced() - before
    finally:
        tracemalloc.stop()
    assert parser.growth is None  # the last two were full parses
    assert held < BOUNDED, f"the parser keeps {held} bytes after a full parse"
