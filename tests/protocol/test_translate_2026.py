"""The translator on 2026 ("E3") streams (upstream-protocol.md §15.4-§15.6).

One answer shaped like the July 2026 recording: a lifecycle frame, one part
per frame, the server's own tool loop (reasoning, ``finish`` marker call, short
text, ``search`` call, ``role: "tool"`` result with ``search_results``,
reasoning again, the answer), empty ``tool_calls`` containers everywhere, two
spaces after ``data:``, and no top-level ``finish`` (the stream just ends).
It is fed whole, byte by byte and with junk between frames; all must agree.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from glm_proxy.errors import UpstreamBusy, UpstreamError
from glm_proxy.protocol.events import Citation, Finished, ReasoningDelta, TextDelta
from glm_proxy.protocol.sse import SSEDecoder, decode_json
from glm_proxy.protocol.translate import TranslateOptions, Translator
from tests.support.e3_frames import H, frame, growing, part, wire

RESULTS = [
    {"match_key": "turn0search0", "title": "北京天气", "url": "https://w0.example.com/"},
    {"match_key": "turn0search1", "title": "Weather One", "url": "https://w1.example.com/"},
    {"match_key": "turn0search2", "title": "Weather Two", "url": "https://w2.example.com/"},
]


def call(name: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    logic_id = str(uuid.uuid4())
    item = {
        "type": "tool_calls",
        "tool_calls": {
            "id": "tool-" + uuid.uuid4().hex,
            "name": name,
            "arguments": json.dumps(arguments),
        },
    }
    return [
        frame([part(logic_id, [item], status, show_type="mc_tool_call2")])
        for status in ("init", "finish")
    ]


def search_result() -> list[dict[str, Any]]:
    logic_id = str(uuid.uuid4())
    items = [
        {"type": "tool_result", "tool_result": {"name": "search"}},
        {"type": "text", "text": "搜索到 3 个网页"},  # tool chatter, never the answer
    ]
    meta = {
        "role": "tool",
        "show_type": "mc_tool_result2",
        "tool_result_extra": {"search_results": RESULTS, "search_duration": 1.2},
    }
    return [frame([part(logic_id, items, "finish", **dict(meta))])]


REASONING_1 = "用户问天气，需要搜索。"
SHORT_TEXT = "我来搜索一下。"
REASONING_2 = "结果显示晴天。"
ANSWER = "北京今天晴【turn0search0】，气温适中。"


def recording() -> list[dict[str, Any]]:
    return [
        frame([]),  # lifecycle
        *growing("think", REASONING_1, show_type="mc_tool_think2"),
        *call("finish", {}),
        *growing("text", SHORT_TEXT),
        *call("search", {"search_query": [{"q": "北京天气", "recency": "day"}]}),
        *search_result(),
        frame([], status="processing"),  # lifecycle again
        *growing("think", REASONING_2, show_type="mc_tool_think2"),
        *growing("text", ANSWER, 5, think_finished_time=3),
    ]  # no top-level finish: the July recording just ends


def run(
    chunks: list[bytes],
    options: TranslateOptions | None = None,
    translator_class: type[Translator] = Translator,
) -> list:
    translator, decoder, out = translator_class(options), SSEDecoder(), []
    for chunk in chunks:
        for event in decoder.feed(chunk):
            if event.data:
                out.extend(translator.feed(decode_json(event)))
    for event in decoder.finish():
        if event.data:
            out.extend(translator.feed(decode_json(event)))
    out.extend(translator.finish())
    return out


def texts(deltas: list) -> tuple[str, str]:
    text = "".join(d.text for d in deltas if isinstance(d, TextDelta))
    reasoning = "".join(d.text for d in deltas if isinstance(d, ReasoningDelta))
    return text, reasoning


EXPECTED_TEXT = (
    "我来搜索一下。\n\n北京今天晴 [1](https://w0.example.com/)，气温适中。"
    "\n\n**Sources**\n1. [北京天气](https://w0.example.com/)"
    "\n2. [Weather One](https://w1.example.com/)\n3. [Weather Two](https://w2.example.com/)"
)


def test_recording_whole_bytewise_and_with_junk_agree() -> None:
    data = wire(recording())
    whole = run([data])
    bytewise = run([data[i : i + 1] for i in range(len(data))])
    junk = run([data.replace(b"\n\n", b"\n\n: keep-alive\n\nevent: ping\ndata:\n\n")])
    for deltas in (whole, bytewise, junk):
        text, reasoning = texts(deltas)
        assert text == EXPECTED_TEXT
        assert reasoning == REASONING_1 + "\n\n" + REASONING_2
        assert deltas[-1] == Finished("stop")
    assert [d for d in whole if isinstance(d, Citation)] == [
        Citation(1, "北京天气", "https://w0.example.com/")
    ]


def test_server_tool_loop_never_leaks() -> None:
    text, reasoning = texts(run([wire(recording())]))
    for leaked in ("finish", "search_query", "tool-", "搜索到 3 个网页", "tool_calls"):
        assert leaked not in text and leaked not in reasoning


def test_uncited_sources_can_be_turned_off() -> None:
    text, _ = texts(run([wire(recording())], TranslateOptions(include_uncited=False)))
    assert text.endswith("**Sources**\n1. [北京天气](https://w0.example.com/)")


def test_parts_keep_arrival_order_not_logic_id_order() -> None:
    first, second = "zzzz-later-id", "0000-earlier-id"
    events = [
        frame([part(first, [{"type": "text", "text": "一"}], "finish")]),
        frame([part(second, [{"type": "text", "text": "二"}], "finish")]),
        frame([], status="finish"),
    ]
    assert texts(run([wire(events)]))[0] == "一\n\n二"


def test_lifecycle_frames_are_ignored_unless_they_carry_an_error() -> None:
    events = [frame([]), frame([], status="processing"), *growing("text", "好")]
    assert texts(run([wire(events)]))[0] == "好"
    queued = [frame([]), frame([], last_error={"error_code": 10062, "err_msg": "排队中"})]
    with pytest.raises(UpstreamBusy) as busy:
        run([wire(queued)])
    assert busy.value.status == 429 and "10062" in busy.value.message
    failed = [frame([]), frame([], last_error={"code": 500, "message": "internal"})]
    with pytest.raises(UpstreamError) as error:
        run([wire(failed)])
    assert not isinstance(error.value, UpstreamBusy)


def test_generator_exit_after_our_stop_is_a_normal_end() -> None:
    aborted = [
        *growing("text", "半截回答")[:2],
        frame(
            [],
            status="error",
            error={"error_code": 10024, "err_msg": "generator exit"},
            last_error={"error_code": 10024, "err_msg": "generator exit"},
        ),
    ]
    with pytest.raises(UpstreamError):
        run([wire(aborted)])  # nobody asked for a stop: an error
    translator, out = Translator(), []
    translator.stop_requested = True
    for event in aborted:
        out.extend(translator.feed(event))
    assert out[-1] == Finished("stop") and translator.history_id == H
    assert texts(out)[0].startswith("半")


def test_drawing_images_from_unfinished_frames_and_the_sentinel() -> None:
    """Four ``init`` frames with one new image each, shuffled ``_n_``; then the sentinel."""
    logic_id = str(uuid.uuid4())
    urls = [f"https://sfile.example.com/testpath/{H}_{n}_0.jpg" for n in (2, 0, 3, 1)]
    events = [frame([])]
    events += [
        frame([part(logic_id, [{"type": "image", "image": [{"image_url": u}]}], "init")])
        for u in urls
    ]
    sentinel = [{"type": "one_to_more_finish", "image": [{}]}]
    events.append(frame([part(logic_id, sentinel, "finish")], status="finish"))
    deltas = run([wire(events)])
    from glm_proxy.protocol.events import ImageGenerated

    got = [d.url for d in deltas if isinstance(d, ImageGenerated)]
    assert sorted(got) == sorted(urls) and len(got) == 4


class FullRender(Translator):
    """Renders every event in full: the reference for the translator's shortcuts."""

    _shortcuts = False


@pytest.mark.parametrize("options", [None, TranslateOptions(include_reasoning=False)])
def test_shortcuts_give_the_full_render_deltas(options: TranslateOptions | None) -> None:
    data = wire(recording())
    for chunks in ([data], [data[i : i + 97] for i in range(0, len(data), 97)]):
        assert run(chunks, options) == run(chunks, options, FullRender)
