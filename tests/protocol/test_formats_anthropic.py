"""Pure: Anthropic request conversion and stream event sequence."""

from __future__ import annotations

from glm_proxy.inputs.anthropic import to_chat_body
from glm_proxy.protocol.events import Finished, ReasoningDelta, TextDelta
from glm_proxy.protocol.formats.anthropic import MessageStreamFormatter, build_message


def test_request_becomes_a_chat_body():
    body = to_chat_body(
        {
            "model": "glm-4",
            "max_tokens": 10,
            "system": [{"type": "text", "text": "sys"}],
            "thinking": {"type": "enabled", "budget_tokens": 100},
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                        },
                        {
                            "type": "document",
                            "source": {
                                "type": "base64",
                                "media_type": "application/pdf",
                                "data": "JVBE",
                            },
                            "title": "a.pdf",
                        },
                    ],
                },
                {"role": "assistant", "content": "ok"},
            ],
        }
    )
    assert body["messages"][0] == {"role": "system", "content": "sys"}
    parts = body["messages"][1]["content"]
    assert parts[0] == {"type": "text", "text": "look"}
    assert parts[1]["image_url"]["url"] == "data:image/png;base64,AAAA"
    assert parts[2]["file"] == {
        "file_data": "data:application/pdf;base64,JVBE",
        "filename": "a.pdf",
    }
    assert body["reasoning_effort"] == "high"


def test_stream_events_open_and_close_blocks_in_order():
    fmt = MessageStreamFormatter("msg_1", "glm-4", 3)
    events = fmt.start()
    for delta in (ReasoningDelta("hm"), ReasoningDelta("m"), TextDelta("hi"), Finished("stop")):
        events += fmt.feed(delta)
    events += fmt.finish(5)
    names = [name for name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[1][1]["content_block"]["type"] == "thinking"
    assert events[6][1]["index"] == 1
    assert events[-2][1]["delta"]["stop_reason"] == "end_turn"


def test_empty_answer_still_has_a_text_block_and_refusal_maps():
    fmt = MessageStreamFormatter("msg_1", "glm-4", 3)
    fmt.start()
    fmt.feed(Finished("content_filter"))
    names = [name for name, _ in fmt.finish(0)]
    assert names[:2] == ["content_block_start", "content_block_stop"]
    message = build_message(
        "m",
        "glm-4",
        text="",
        thinking="",
        finish_reason="content_filter",
        input_tokens=1,
        output_tokens=0,
    )
    assert message["stop_reason"] == "refusal"
