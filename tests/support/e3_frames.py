"""2026 ("E3") upstream frames built by hand: a frame, a part, a part that grows, the SSE bytes.

Shaped like the July 2026 recording (upstream-protocol.md §15.4-§15.6).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

H, C = "68f0b8c110eea3e78b0e0e01", "68f0b8c110eea3e78b0e0e02"


def frame(parts: list[dict[str, Any]], status: str = "init", **extra: Any) -> dict[str, Any]:
    return {
        "id": H,
        "conversation_id": C,
        "assistant_id": "65940acff94777010aa6b796",
        "parts": parts,
        "status": status,
        "last_error": {},
        "tool_calls": [],
        "meta_data": {"if_increase_push": False, "if_plus_model": True},
        **extra,
    }


def part(logic_id: str, items: list[dict[str, Any]], status: str, **meta: Any) -> dict:
    role = meta.pop("role", "assistant")
    return {
        "id": H,
        "logic_id": logic_id,
        "role": role,
        "content": [{**i, "status": status, "tool_calls": {}} for i in items],
        "model": "moe_53f",
        "status": status,
        "meta_data": {"auto_glm_data": {}, **meta},
    }


def growing(kind: str, text: str, steps: int = 3, **meta: Any) -> list[dict[str, Any]]:
    logic_id = str(uuid.uuid4())
    cuts = [text[: max(1, len(text) * i // steps)] for i in range(1, steps + 1)]
    frames = [frame([part(logic_id, [{"type": kind, kind: c}], "init", **meta)]) for c in cuts]
    frames.append(frame([part(logic_id, [{"type": kind, kind: text}], "finish", **meta)]))
    return frames


def wire(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        b"data:  " + json.dumps(e, ensure_ascii=False).encode() + b"\n\n" for e in events
    )
