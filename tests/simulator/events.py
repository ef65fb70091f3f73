"""Turn a `Script` into upstream SSE events in one of three shapes, and into byte chunks.

Shapes (spec §6.4), all describing the same answer:
  * ``all``     – every event repeats every part started so far, each cumulative (E2 default);
  * ``current`` – each event carries only the part being written (or just finished);
  * ``delta``   – like ``current`` but ``init`` frames carry only what is new in the part
                  (new characters of growing strings, new images; items keep their
                  positions), and the part's ``finish`` frame carries its full content
                  (E3 observations). Frames that would add nothing are skipped.
The final event (top-level ``finish``/``intervene``/``error``) carries: ``all`` every part;
``current`` the last part; ``delta`` the last finished part on ``finish`` and nothing otherwise.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from .scripts import Script, Segment

# Item type -> the payload field that grows (strings grow by suffix, lists by appending).
GROWING_FIELDS = {
    "text": "text",
    "think": "think",
    "code": "code",
    "execution_output": "content",
    "image": "image",
}
PART_MODEL = "chatglm-all-tools"
E3_PART_MODEL = "moe_53f"
E3_META = {
    "input_question_type": "xxxx",
    "retry_log_id": "",
    "if_plus_model": True,
    "plus_model_available": True,
    "if_increase_push": False,
}


@dataclass(frozen=True)
class Envelope:
    """The top-level fields every event of one answer repeats; ``e3`` = 2026 decoration."""

    message_id: str
    conversation_id: str
    assistant_id: str
    created_at: str
    e3: bool = False


def _part(seg: Segment, items: list[dict[str, Any]], status: str, env: Envelope) -> dict[str, Any]:
    if env.e3:
        # every 2026 content item carries an empty tool_calls container (§15.4)
        content = [
            {"tool_calls": {}, **item, "status": status}
            if item["type"] != "tool_calls"
            else {**item, "status": status}
            for item in items
        ]
        meta = {"auto_glm_data": {}, **seg.meta_data}
    else:
        content = [{**item, "status": status} for item in items]
        meta = {"toolCallRecipient": None, **seg.meta_data}
    return {
        "id": env.message_id,
        "logic_id": seg.logic_id,
        "role": seg.role,
        "content": content,
        "model": E3_PART_MODEL if env.e3 else PART_MODEL,
        "recipient": seg.recipient,
        "created_at": env.created_at,
        "meta_data": meta,
        "status": status,
    }


def _event(env: Envelope, parts: list[dict[str, Any]], status: str = "init") -> dict[str, Any]:
    event = {
        "id": env.message_id,
        "conversation_id": env.conversation_id,
        "assistant_id": env.assistant_id,
        "parts": parts,
        "created_at": env.created_at,
        "meta_data": dict(E3_META) if env.e3 and not parts else {},
        "status": status,
        "last_error": {},
    }
    if env.e3:
        event["tool_calls"] = []
    return event


def delta_items(
    items: list[dict[str, Any]], previous: list[dict[str, Any]] | None
) -> tuple[list[dict[str, Any]], bool]:
    """`items` with each growing field cut down to what is new since `previous`.

    Item positions are kept (unchanged growing fields become "" or []; items without a
    growing field are repeated as they are), so a consumer can merge by index. The flag
    says whether anything is new at all; frames with nothing new are not sent.
    """
    out = []
    changed = previous is None or len(items) != len(previous)
    for i, item in enumerate(items):
        old = previous[i] if previous and i < len(previous) else None
        key = GROWING_FIELDS.get(item["type"])
        if old is None or old["type"] != item["type"] or key is None:
            changed = changed or old != item
            out.append(item)
            continue
        before, now = old[key], item[key]
        if now[: len(before)] != before:
            raise ValueError(f"snapshot of {item['type']} does not extend the previous one")
        changed = changed or len(now) > len(before)
        out.append({**item, key: now[len(before) :]})
    return out, changed


def iter_events(script: Script, env: Envelope, shape: str) -> Iterator[dict[str, Any]]:
    """All events of one answer, first (`parts: []`) to final, in the given shape."""
    yield _event(env, [])
    done: list[dict[str, Any]] = []
    last: dict[str, Any] | None = None
    partial: dict[str, Any] | None = None
    for seg in script.segments:
        previous = None
        for items in seg.snapshots:
            current = _part(seg, items, "init", env)
            if shape == "delta":
                new, changed = delta_items(items, previous)
                if changed:
                    yield _event(env, [_part(seg, new, "init", env)])
            else:
                yield _event(env, [*done, current] if shape == "all" else [current])
            previous, last = items, current
        if not seg.finishes:
            partial = last
            break
        final_items = seg.final if seg.final is not None else seg.snapshots[-1]
        finished = _part(seg, final_items, "finish", env)
        yield _event(env, [*done, finished] if shape == "all" else [finished])
        done.append(finished)
        last = finished
    yield _final(script, env, shape, done, last, partial)


def _final(
    script: Script,
    env: Envelope,
    shape: str,
    done: list[dict[str, Any]],
    last: dict[str, Any] | None,
    partial: dict[str, Any] | None,
) -> dict[str, Any]:
    if shape == "all":
        parts = [*done, partial] if partial else done
    elif shape == "current" or (shape == "delta" and partial is None):
        parts = [last] if last else []
    else:
        parts = []
    event = _event(env, parts, script.end_status)
    event["last_error"] = dict(script.last_error)
    if script.error is not None:
        event["error"] = dict(script.error)
    return event


def encode_event(event: dict[str, Any], e3: bool = False) -> bytes:
    """One SSE frame; orjson writes non-ASCII as raw UTF-8 so characters can be split.

    2026 frames have no ``event:`` line and two spaces after ``data:`` (§15.4).
    """
    if e3:
        return b"data:  " + orjson.dumps(event) + b"\n\n"
    return b"event:message\ndata: " + orjson.dumps(event) + b"\n\n"


def split_chunks(data: bytes, size: int) -> list[bytes]:
    """Cut `data` into `size`-byte writes, aligned so one cut falls inside a multi-byte char.

    The grid is shifted so a boundary lands one byte after the lead byte of the first
    multi-byte UTF-8 character, which guarantees at least one split character per frame.
    """
    if size <= 0 or len(data) <= size:
        return [data]
    lead = next((i for i, byte in enumerate(data) if byte >= 0xC0), None)
    start = (lead + 1) % size if lead is not None else 0
    cuts = [0, start] if start else [0]
    cuts.extend(range(start + size if start else size, len(data), size))
    cuts.append(len(data))
    return [data[a:b] for a, b in itertools.pairwise(cuts) if b > a]
