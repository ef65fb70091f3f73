"""The smallest valid answers of the Anthropic Messages and OpenAI Responses APIs.

``capture_cli.py`` answers an agent CLI with these (a one-word text, or one tool call),
as JSON or SSE as the request asked, so the CLI finishes its turn and shows every call.
"""

from __future__ import annotations

import json
import time


def sse(events: list[tuple[str | None, dict]]) -> bytes:
    out = []
    for name, data in events:
        head = f"event: {name}\n" if name else ""
        out.append(f"{head}data: {json.dumps(data)}\n\n")
    return "".join(out).encode()


def anthropic_answer(body: dict, text: str, call: dict | None = None) -> tuple[str, bytes]:
    """A one-block Messages answer (text, or ``call``'s tool_use), as SSE when streamed."""
    model = body.get("model", "model")
    usage = {"input_tokens": 1, "output_tokens": 1}
    message = {
        "id": "msg_capture",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    stop = "tool_use" if call else "end_turn"
    if call:
        block = {"type": "tool_use", "id": "toolu_capture", "name": call["name"], "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(call["arguments"])}
        full = {**block, "input": call["arguments"]}
    else:
        block = {"type": "text", "text": ""}
        delta = {"type": "text_delta", "text": text}
        full = {"type": "text", "text": text}
    if not body.get("stream"):
        done = {**message, "content": [full], "stop_reason": stop}
        return "application/json", json.dumps(done).encode()
    return "text/event-stream", sse(
        [
            ("message_start", {"type": "message_start", "message": message}),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": block},
            ),
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "usage": {"output_tokens": 1},
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    )


def responses_answer(body: dict, text: str, call: dict | None = None) -> tuple[str, bytes]:
    """A one-item Responses answer (a message, or ``call``'s function_call), SSE when streamed."""
    if call:
        return responses_call(body, call)
    item = {
        "id": "msg_capture",
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }
    at = {"item_id": item["id"], "output_index": 0, "content_index": 0}
    part = {"type": "output_text", "text": "", "annotations": []}
    middle = [
        ("response.content_part.added", {**at, "part": part}),
        ("response.output_text.delta", {**at, "delta": text}),
        ("response.output_text.done", {**at, "text": text}),
    ]
    added = {**item, "status": "in_progress", "content": []}
    return _one_item(body, item, added, middle)


def responses_call(body: dict, call: dict) -> tuple[str, bytes]:
    item = {
        "id": "fc_capture",
        "type": "function_call",
        "status": "completed",
        "call_id": "call_capture",
        "name": call["name"],
        "arguments": json.dumps(call["arguments"]),
    }
    if call.get("namespace"):
        item["namespace"] = call["namespace"]  # a member of a `namespace` tool
    at = {"item_id": item["id"], "output_index": 0}
    middle = [
        ("response.function_call_arguments.delta", {**at, "delta": item["arguments"]}),
        ("response.function_call_arguments.done", {**at, "arguments": item["arguments"]}),
    ]
    added = {**item, "status": "in_progress", "arguments": ""}
    return _one_item(body, item, added, middle)


def _one_item(
    body: dict, item: dict, added: dict, middle: list[tuple[str, dict]]
) -> tuple[str, bytes]:
    """The response holding ``item``; streamed, its events around ``middle``, numbered."""
    response = {
        "id": "resp_capture",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": body.get("model", "model"),
        "output": [item],
        "usage": {
            "input_tokens": 1,
            "output_tokens": 1,
            "total_tokens": 2,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
    }
    if not body.get("stream"):
        return "application/json", json.dumps(response).encode()
    opened = {**response, "status": "in_progress", "output": [], "usage": None}
    named = [
        ("response.created", {"response": opened}),
        ("response.output_item.added", {"output_index": 0, "item": added}),
        *middle,
        ("response.output_item.done", {"output_index": 0, "item": item}),
        ("response.completed", {"response": response}),
    ]
    events: list[tuple[str | None, dict]] = [
        (name, {"type": name, **data, "sequence_number": number})
        for number, (name, data) in enumerate(named)
    ]
    return "text/event-stream", sse(events)
