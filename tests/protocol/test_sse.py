"""SSE decoder/encoder: WHATWG framing, byte-level splitting, bounds, and recorded streams.

Recorded upstream streams are replayed h11-``tr()`` style: whole, one byte at a
time, in random splits and with trailing junk; every way must yield the same
events and the same translated deltas.
"""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from glm_proxy.errors import UpstreamProtocolError
from glm_proxy.protocol.events import Citation, Finished, ReasoningDelta, TextDelta
from glm_proxy.protocol.sse import (
    DONE,
    KEEPALIVE,
    ServerSentEvent,
    SSEDecoder,
    decode_json,
    encode_event,
)
from glm_proxy.protocol.translate import Translator

RECORDINGS = Path(__file__).parent.parent / "recordings"
TRAILING_JUNK = (
    b"\n\n: trailing comment\n\nretry: 10\n\n"
    b'event:message\ndata: {"status":"init","parts":[]}\n\n'  # an event after the end
    b"\xff\xfe garbage without newline"
)


def decode(chunks: list[bytes], **kwargs: int) -> list[ServerSentEvent]:
    decoder = SSEDecoder(**kwargs)
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events.extend(decoder.feed(chunk))
    return events + decoder.finish()


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def random_splits(data: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 60))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def translate(events: list[ServerSentEvent]) -> list:
    translator = Translator()
    deltas = []
    for event in events:
        deltas.extend(translator.feed(decode_json(event)))
    return deltas + translator.finish()


# -- framing --------------------------------------------------------------------


def test_upstream_event_message_framing() -> None:
    data = b'event:message\ndata: {"a": 1}\n\nevent: message\ndata:{"b": 2}\n\n'
    assert decode([data]) == [
        ServerSentEvent("message", '{"a": 1}'),
        ServerSentEvent("message", '{"b": 2}'),
    ]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_line_endings(eol: bytes) -> None:
    data = eol.join([b"event: x", b"data: 1", b"", b"data: 2", b"", b""])
    assert decode([data]) == [ServerSentEvent("x", "1"), ServerSentEvent("message", "2")]


@pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
def test_event_is_delivered_as_soon_as_its_blank_line_arrives(eol: bytes) -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1" + eol + eol) == [ServerSentEvent("message", "1")]
    assert decoder.feed(b"data: 2" + eol) == []
    assert decoder.feed(eol) == [ServerSentEvent("message", "2")]


def test_cr_only_stream_waits_for_the_next_byte_or_the_end() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\r\r") == []  # the last CR could start a CRLF
    assert decoder.feed(b"d") == [ServerSentEvent("message", "1")]
    assert decoder.feed(b"ata: 2\r\r") == []
    assert decoder.finish() == [ServerSentEvent("message", "2")]


def test_fields_comments_and_multiline_data() -> None:
    data = (
        b"\xef\xbb\xbf: a comment\n"  # BOM, then a comment line
        b"id: 7\nretry: 1500\nevent: update\ndata: first\ndata:  two spaces\ndata\n"
        b"unknown: field\n\n"
        b"data: next\n\n"
        b"id: bad\x00id\nretry: soon\ndata: x\n\n"
    )
    assert decode([data]) == [
        ServerSentEvent("update", "first\n two spaces\n", "7", 1500),
        ServerSentEvent("message", "next", "7", None),  # last id persists, retry does not
        ServerSentEvent("message", "x", "7", None),  # invalid id and retry ignored
    ]


def test_event_without_data_is_not_dispatched() -> None:
    assert decode([b"event: message\n\n: ping\n\nid: 1\n\n"]) == []
    assert decode([b"data:\n\n"]) == [ServerSentEvent("message", "")]


def test_finish_flushes_last_event_without_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event:message\ndata: {}") == []
    assert decoder.finish() == [ServerSentEvent("message", "{}")]
    assert decoder.finish() == []


def test_trailing_cr_waits_for_possible_lf() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\n\r") == []
    assert decoder.feed(b"\n") == [ServerSentEvent("message", "a")]


def test_multibyte_characters_split_across_reads() -> None:
    data = "data: 你好🚀，世界\n\n".encode()
    for i in range(len(data)):
        assert decode([data[:i], data[i:]]) == [ServerSentEvent("message", "你好🚀，世界")]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert decode([b"data: \xff\n\n"]) == [ServerSentEvent("message", "\ufffd")]


def test_event_larger_than_the_bound_raises() -> None:
    decoder = SSEDecoder(max_event_size=64)
    decoder.feed(b"data: " + b"x" * 40 + b"\n")
    with pytest.raises(UpstreamProtocolError, match="64 bytes"):
        decoder.feed(b"data: " + b"y" * 40)


def test_unterminated_line_larger_than_the_bound_raises() -> None:
    decoder = SSEDecoder(max_event_size=1000)
    with pytest.raises(UpstreamProtocolError):
        for _ in range(100):
            decoder.feed(b"x" * 20)


def test_bound_counts_one_event_not_the_stream() -> None:
    event = b"data: " + b"z" * 50 + b"\n\n"
    assert len(decode([event * 100], max_event_size=64)) == 100


def test_one_byte_feeding_is_linear() -> None:
    data = b"data: " + b"a" * 200_000 + b"\n\n"
    decoder = SSEDecoder()
    events = []
    for chunk in one_byte_at_a_time(data):
        events.extend(decoder.feed(chunk))
    assert len(events) == 1 and len(events[0].data) == 200_000


def test_decode_json_rejects_garbage() -> None:
    assert decode_json(ServerSentEvent(data='{"a": [1]}')) == {"a": [1]}
    with pytest.raises(UpstreamProtocolError):
        decode_json(ServerSentEvent(data="{not json"))


# -- encoder --------------------------------------------------------------------


def test_encoder_constants_and_round_trip() -> None:
    assert DONE == b"data: [DONE]\n\n"
    assert KEEPALIVE == b": keep-alive\n\n"
    obj = {"content": "多行\n文本 🚀", "n": None}
    encoded = encode_event(obj)
    assert encoded.startswith(b"data: {") and encoded.endswith(b"}\n\n")
    assert encoded.count(b"\n") == 2  # JSON escapes newlines: one data line
    assert decode([encoded + KEEPALIVE + DONE]) == [
        ServerSentEvent("message", orjson.dumps(obj).decode()),
        ServerSentEvent("message", "[DONE]"),
    ]


@pytest.mark.parametrize("obj", ["", None, {}, []])
def test_encoder_never_writes_an_empty_data_event(obj: object) -> None:
    assert encode_event(obj) != b"data: \n\n"
    assert encode_event(obj).removeprefix(b"data: ").strip()


# -- recorded upstream streams ------------------------------------------------------

EXPECTED = {
    "e2_think_search.sse": (
        "北京今天晴 [1](https://weather.example.cn/beijing)，空气质量良好"
        " [2](https://aqi.example.com/bj?d=0527)。☀️ 适合出门！"
        "\n\n**Sources**\n1. [北京市气象台](https://weather.example.cn/beijing)"
        "\n2. [Air quality 🌫️ report](https://aqi.example.com/bj?d=0527)",
        "用户问北京天气，先搜索一下 🤔",
        Finished("stop"),
    ),
    "e2_code_crlf.sse": (
        "```python\nimport math\nprint(math.factorial(10))\n```\n\n```\n3628800\n```"
        "\n\n10 的阶乘是 3628800。✅",
        "",
        Finished("stop"),
    ),
    "e2_intervene.sse": (
        "关于这个话题，我认为🙂\n\n这个问题我暂时无法回答，让我们换个话题吧。",
        "",
        Finished("content_filter", "这个问题我暂时无法回答，让我们换个话题吧。"),
    ),
}


@pytest.fixture(params=sorted(EXPECTED))
def recording(request: pytest.FixtureRequest) -> tuple[str, bytes]:
    return request.param, (RECORDINGS / request.param).read_bytes()


def test_recording_translates_to_the_expected_answer(recording: tuple[str, bytes]) -> None:
    name, data = recording
    deltas = translate(decode([data]))
    text = "".join(d.text for d in deltas if isinstance(d, TextDelta))
    reasoning = "".join(d.text for d in deltas if isinstance(d, ReasoningDelta))
    assert (text, reasoning, deltas[-1]) == EXPECTED[name]
    assert not any("【" in d.text for d in deltas if isinstance(d, TextDelta))


def test_recording_every_split_gives_the_same_events(recording: tuple[str, bytes]) -> None:
    _, data = recording
    whole = decode([data])
    assert whole and all(e.event == "message" for e in whole)
    assert decode(one_byte_at_a_time(data)) == whole
    for seed in range(25):
        assert decode(random_splits(data, seed)) == whole, seed
    junk = decode([data + TRAILING_JUNK])
    assert junk[: len(whole)] == whole
    assert decode(one_byte_at_a_time(data + TRAILING_JUNK)) == junk


def test_recording_every_split_gives_the_same_deltas(recording: tuple[str, bytes]) -> None:
    _, data = recording
    expected = translate(decode([data]))
    assert translate(decode(one_byte_at_a_time(data))) == expected
    for seed in range(10):
        assert translate(decode(random_splits(data, seed))) == expected
    # the event after the end is ignored and the garbage line is not an event
    assert translate(decode([data + TRAILING_JUNK])) == expected


def test_recording_citations_are_announced(recording: tuple[str, bytes]) -> None:
    name, data = recording
    citations = [d for d in translate(decode([data])) if isinstance(d, Citation)]
    if name == "e2_think_search.sse":
        assert [c.index for c in citations] == [1, 2]
    else:
        assert citations == []


def test_lf_only_streams_decode_like_crlf_streams_in_any_split() -> None:
    """LF-only input takes the decoder's split fast path; CRLF input the general one."""
    rng = random.Random(7)
    stream = (
        '\ufeffevent:message\ndata: {"a":"第一"}\n\n: comment\nid: 7\nretry: 30\n'
        "data:no space\ndata:  two spaces\nfield-without-colon\ndata\n\n"
        "event: custom\ndata: 🚀 tail\n\ndata: last without blank line"
    ).encode()
    for recording in sorted(RECORDINGS.glob("*.sse"))[:3]:
        stream += b"\n\n" + recording.read_bytes().replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    crlf = stream.replace(b"\n", b"\r\n")
    want = decode([crlf])
    assert len(want) > 5
    for _ in range(30):
        cuts = sorted(rng.sample(range(1, len(stream)), rng.randint(1, 40)))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert decode(chunks) == want
    assert decode([stream[i : i + 1] for i in range(len(stream))]) == want


def test_reads_of_one_whole_event_decode_like_byte_reads() -> None:
    """A read holding exactly one "data:" event takes a shortcut; nothing pending is lost."""
    reads = [
        [b"\xef\xbb\xbfdata: first\n\n", b"data: 1\n\n"],  # the first line: BOM check
        [b"data: first\n\n", b"\xef\xbb\xbfdata: 1\n\n"],  # ... and only the first
        [b"data: 0\n\n", b"event: x\n", b"data: 1\n\n", b"data: 2\n\n"],
        [b"data: 0\n\n", b"id: 5\n", b"data: 1\n\n", b"data:2\n\n"],
        [b"data: 0\n\n", b"retry: 10\n", b"data: 1\n\n", b"data:\n\n"],
        [b"data: 0\n\n", b"data: a\n", b"data: b\n\n", b"data: \n\n"],
        [b"data: 0\n\n", b": ping\n", b"data:  two spaces\n\n", b"data: \xe4\xbd\xa0\n\n"],
        [b"data: 0\n\n", b"data: 1\n\ndata: 2\n\n", b"data: 3\n\n\n", b"data\n\n"],
    ]
    for chunks in reads:
        assert decode(chunks) == decode(one_byte_at_a_time(b"".join(chunks))), chunks


def test_lf_fast_path_still_bounds_an_event() -> None:
    decoder = SSEDecoder(max_event_size=64)
    decoder.feed(b"data: " + b"x" * 40 + b"\n")
    with pytest.raises(UpstreamProtocolError):
        decoder.feed(b"data: " + b"y" * 40 + b"\n")
