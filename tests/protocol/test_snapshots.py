"""``SnapshotParser``: exactly ``orjson.loads``, whatever the stream; cheaper for snapshots.

Every test compares with ``orjson.loads`` event by event (the same value, or
the same refusal): cumulative answers as the simulator sends them, random
streams (growing strings with escapes, non-ASCII, emoji; status changes, new
parts, other encoders, duplicate keys, the growing text twice), junk spliced
into events that would otherwise take the shortcut, and byte-level edits
around the growing string's end. Values returned earlier never change.
"""

from __future__ import annotations

import json
import random

import orjson
import pytest

from glm_proxy.protocol.snapshots import SnapshotParser
from glm_proxy.protocol.sse import SSEDecoder, decode_json
from tests.support.snapshots import (  # noqa: F401 - simulator_answer_reads: a fixture
    check_stream,
    event,
    outcome,
    simulator_answer_reads,
)

PIECES = [
    "plain words ",
    "中文回答，",
    "🚀",
    'a "quoted" bit',
    "back\\slash",
    "line\nbreak",
    "tab\tstop",
    "\u2028",
    "x" * 50,
    "é",
    "/",
    "\x7f",
]


def snapshots(pieces: list[str], encode=orjson.dumps) -> list[bytes]:
    text, out = "", []
    for piece in pieces:
        text += piece
        out.append(encode(event(text)))
    return out


def test_a_cumulative_answer_takes_the_shortcut():
    raws = snapshots([f"第{i}句：模拟长回答 🚀。" * 3 for i in range(60)])
    raws.append(
        orjson.dumps(event(orjson.loads(raws[-1])["parts"][0]["content"][0]["text"], "finish"))
    )
    parser = check_stream(raws)
    assert parser.shortcuts >= 50


@pytest.mark.profiles("2026", "2025")
def test_the_simulators_answers(simulator_answer_reads):  # noqa: F811 - the fixture
    shortcuts = 0
    for reads in simulator_answer_reads:
        decoder, parser = SSEDecoder(), SnapshotParser()
        events = [e for r in reads for e in decoder.feed(r) if e.raw]
        check_stream([e.raw for e in events], parser)
        assert [decode_json(e, SnapshotParser()) for e in events] == [
            decode_json(e) for e in events
        ]
        shortcuts += parser.shortcuts
    assert shortcuts >= 20  # the long answers take the shortcut


@pytest.mark.parametrize("seed", range(60))
def test_random_streams(seed):
    rng = random.Random(seed)
    encoders = [
        orjson.dumps,
        lambda o: json.dumps(o, ensure_ascii=False).encode(),
        lambda o: json.dumps(o).encode(),  # \u escapes: the text never matches; no shortcut
        lambda o: json.dumps(o, ensure_ascii=False, indent=1).encode(),
    ]
    encode = rng.choice(encoders)
    text, raws = "", []
    status = "init"
    for _ in range(rng.randint(5, 80)):
        roll = rng.random()
        if roll < 0.75:
            text += "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 4)))
        elif roll < 0.8:
            status = rng.choice(("init", "processing", "finish", "done"))  # done: as long as init
        elif roll < 0.85:
            raws.append(encode({"status": "processing", "parts": []}))  # a status frame
            continue
        elif roll < 0.9:
            text = text[: rng.randint(0, len(text))]  # a snapshot that shrinks
        obj = event(text, status)
        if rng.random() < 0.1:
            obj["parts"].append({"id": "p2", "content": [{"type": "text", "text": text}]})
        if rng.random() < 0.05:
            obj["echo"] = text  # the growing text twice
        raws.append(encode(obj))
    check_stream(raws)


@pytest.mark.parametrize("seed", range(40))
def test_junk_where_the_shortcut_would_apply(seed):
    """Bytes spliced in at the growing string's end: the shortcut must not hide a difference."""
    rng = random.Random(1000 + seed)
    base = snapshots(["答" * 400, "more text "])
    parser = SnapshotParser()
    check_stream(base, parser)
    head = orjson.dumps(event("答" * 400 + "more text "))
    end = head.rindex(b'","status":"init"}],"model"')
    junk = [
        b'"',
        b"\\",
        b'\\"',
        b'","x":"',
        b'"}',
        b"\n",
        b"\\u12",
        b"\\ud83d",
        b"\\ude80",
        b"\\ud83d\\ude80",
        b"\xff",
        b"\xe4\xb8",
        b"\x00",
        b"ok",
        b'\\"},{"',
    ]
    raws = []
    for _ in range(30):
        spliced = rng.choice(junk) + rng.choice(junk)
        raws.append(head[:end] + spliced + head[end:])
    for raw in raws:
        fresh = SnapshotParser()
        check_stream([*base, raw], fresh)


@pytest.mark.parametrize("seed", range(30))
def test_byte_edits_around_the_end(seed):
    """Deletions, insertions and changes near the growing string's end, and in the tail."""
    rng = random.Random(2000 + seed)
    raws = snapshots(["text " * 60, "more " * 5])
    last = bytearray(raws[-1])
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(last) - 200, len(last))
        kind = rng.random()
        if kind < 0.33:
            del last[at]
        elif kind < 0.66:
            last.insert(at, rng.choice(b'"\\:,{}[]a \x00\xc3'))
        else:
            last[at] = rng.choice(b'"\\:,{}[]a 0')
    check_stream([*raws[:-1], bytes(last) + b" " * rng.randint(0, 1)])


def test_duplicate_keys_follow_orjson():
    first = b'{"text": "' + b"a" * 2000 + b'", "text": "b"}'
    second = b'{"text": "' + b"a" * 2100 + b'", "text": "b"}'
    check_stream([first, second])
    first = b'{"text": "b", "text": "' + b"a" * 2000 + b'"}'
    second = b'{"text": "b", "text": "' + b"a" * 2100 + b'"}'
    assert check_stream([first, second]).shortcuts == 1


def test_the_shortcut_follows_the_string_that_grows():
    """Reasoning grows, then stops while the answer grows (both parts in every frame)."""

    def frame(thinking: str, answer: str) -> bytes:
        parts = [{"id": "r", "content": [{"type": "think", "think": thinking}]}]
        if answer:
            parts.append({"id": "a", "content": [{"type": "text", "text": answer}]})
        return orjson.dumps({"id": "m", "parts": parts, "status": "init"})

    thinking = "思考" * 40
    raws = []
    for _ in range(30):
        thinking += "再想想，" * 5
        raws.append(frame(thinking, ""))
    answer = ""
    for _ in range(30):
        answer += "回答的一部分。" * 2
        raws.append(frame(thinking, answer))
    parser = check_stream(raws)
    assert parser.shortcuts >= 40  # both phases (the answer stays shorter than the reasoning)


def test_a_change_after_the_string_of_the_same_length_is_seen():
    """The bytes after the growing string must be the same, not only as long."""
    raws = [orjson.dumps(event("答" * 600)), orjson.dumps(event("答" * 600 + "再"))]
    raws.append(orjson.dumps(event("答" * 600 + "再多", "done")))  # "done" is as long as "init"
    check_stream(raws)


def test_the_growing_strings_end_is_proven_not_guessed():
    """Its JSON form found once, but as a key: the value is written with escapes."""
    value = "v" * 1500
    escaped = value[:-1] + "\\u0076"
    first = f'{{"{value}": 1, "t": "{escaped}"}}'.encode()
    second = f'{{"{value}X": 1, "t": "{escaped}"}}'.encode()
    assert check_stream([first, second]).shortcuts == 0


def test_small_events_and_non_objects():
    check_stream([b"[]", b'"' + b"a" * 3000 + b'"', b'"' + b"a" * 3100 + b'"', b"1", b"null"])
    check_stream([b'["' + b"z" * 2000 + b'"]', b'["' + b"z" * 2001 + b'"]', b'["', b""])


def test_feed_builds_a_grown_event_only_when_asked():
    """``feed`` is ``parse`` with the value of a shortcut event left to ``current()``."""
    raws = snapshots([f"第{i}句：模拟长回答 🚀。" * 3 for i in range(40)])
    raws.append(orjson.dumps(event("another answer, not grown from the last one")))
    raws.append(b"null")  # a JSON null is a value, not a deferred event
    parser, deferred = SnapshotParser(), 0
    for raw in raws:
        got = parser.feed(raw)
        if parser.growth is None:
            assert got == orjson.loads(raw)
            continue
        deferred += 1
        assert got is None
        built = parser.current()
        assert built == orjson.loads(raw)
        assert parser.current() is built  # built once per event
    assert deferred >= 30
    assert parser.feed(b"null") is None and parser.growth is None


def test_a_stream_that_never_fits_stops_looking():
    rng = random.Random(5)
    raws = [
        orjson.dumps({"seq": i, "text": "".join(rng.choice("abc") for _ in range(2000))})
        for i in range(20)
    ]
    parser = check_stream(raws)
    assert parser.shortcuts == 0
    assert parser._misses >= SnapshotParser.MISSES
