"""What one stream's parsing keeps of a long cumulative answer: one copy, not several.

Every upstream event repeats the whole answer so far. A producer whose client
stopped reading waits with its ``SnapshotParser`` and ``Translator`` alive, a
hundred such streams at once: each copy of the answer they keep is multiplied.
The parser keeps the previous event's prefix as its length, CRC-32 and edges,
not as bytes, and shares the growing string with the translator; these tests
measure with ``tracemalloc`` what the two hold after a long answer (about
1 MB of text, emoji included: four bytes per character in a ``str``) and pin
it to one copy of the text plus a bounded amount. They also check that the
prefix, no longer kept in full, is still proven: an edit anywhere in it, far
from the edges, is seen.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc

import orjson

from glm_proxy.protocol.snapshots import SnapshotParser
from glm_proxy.protocol.sse import SSEDecoder
from glm_proxy.protocol.translate import Translator
from tests.support.snapshots import check_stream, event

SENTENCE = "第{i}句：模拟长回答 🚀。"
BOUNDED = 64 * 1024  # bytes: far below one copy of the answer (over 1 MB)


def long_answer(events: int = 60, chars: int = 300_000) -> list[bytes]:
    """A cumulative answer as the 2026 upstream sends it (``data:`` frames), growing to
    ``chars`` characters in ``events`` snapshots."""
    text = "".join(SENTENCE.format(i=i) for i in range(chars // 10))[:chars]
    return [
        b"data:  " + orjson.dumps(event(text[: chars * k // events])) + b"\n\n"
        for k in range(1, events + 1)
    ]


def _traced() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_the_parser_keeps_no_copy_of_the_previous_event():
    raws = [frame[7:-2] for frame in long_answer()]
    tracemalloc.start()
    try:
        before = _traced()
        parser = SnapshotParser()
        for raw in raws:
            parser.feed(raw)
        value = parser.growth[2]  # the grown string: the translator's to keep
        parser.growth = None
        held = _traced() - before - sys.getsizeof(value)
    finally:
        tracemalloc.stop()
    assert parser.shortcuts >= len(raws) - 3
    assert sys.getsizeof(value) > 1_000_000
    assert held < BOUNDED, f"the parser keeps {held} bytes besides the text"


def test_a_stream_keeps_one_copy_of_the_answer():
    """Decoder, parser and translator as the producer drives them, after every event."""
    frames = long_answer()
    tracemalloc.start()
    try:
        before = _traced()
        decoder, parser, translator = SSEDecoder(), SnapshotParser(), Translator()
        worst = 0
        for k, frame in enumerate(frames, 1):
            for sse in decoder.feed(frame):
                parsed = parser.feed(sse.raw)
                growth, parser.growth = parser.growth, None
                if growth is None:
                    translator.feed(parsed)
                else:
                    translator.feed_grown(parser.current, growth)
                sse.raw = b""  # as the producer does before it waits for the client
                del growth, parsed
            if k % 8 == 0:  # (a collection each time would make the test slow)
                held = _traced() - before - sys.getsizeof(translator.sent_text)
                worst = max(worst, held)
    finally:
        tracemalloc.stop()
    assert len(translator.sent_text) == 300_000
    assert parser.shortcuts >= len(frames) - 3
    assert worst < BOUNDED, f"a stream keeps {worst} bytes besides one copy of the answer"


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
