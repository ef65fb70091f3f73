"""Scripted answers: make the simulated model answer with exactly the text a test gives.

``POST /_sim/script`` queues answers for one account (``token``: its original
refresh token) or for every account (``token: "*"``); each stream request
consumes the next one (the account's queue first), falling back to the
directive scenarios when none is queued. ``DELETE /_sim/script`` forgets them.

An answer::

    {"text": "...",            # the visible answer (required)
     "think": "...",           # optional reasoning before it
     "cuts": [3, 10],          # snapshot ends: the text grows as text[:3], text[:10], text
     "steps": 4,               # or: N even snapshots (default 1 = all at once)
     "shape": "delta",         # optional all | current | delta
     "chunk": 0, "delay": 0,   # optional bytes per write / seconds between events
     "echo": "word-\\w+"}      # optional: "{echo}" in text becomes this regex's last match
                               # in the prompt (group 1 if it has one)

``echo`` lets a test answer with what only the client knows, e.g. the output of a tool the
client ran: the second answer of a tool round trip quotes the tool result it was sent.

``cuts`` puts the upstream event boundaries exactly where a test wants them,
e.g. at every character of a tool-call block.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from typing import Any

from flask import Blueprint, Response, current_app, request

from .common import json_response
from .scripts import SHAPES, Script, Segment, growing, prefixes

bp = Blueprint("scripted", __name__, url_prefix="/_sim")
_KEY = "glm_sim_scripted"
_lock = threading.Lock()


def _queues() -> dict[str, deque[dict[str, Any]]]:
    return current_app.extensions.setdefault(_KEY, {})


def _check(answer: Any) -> str:
    if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
        return "each answer needs a string 'text'"
    cuts = answer.get("cuts")
    if cuts is not None and not (
        isinstance(cuts, list) and all(isinstance(c, int) and c > 0 for c in cuts)
    ):
        return "'cuts' must be a list of positive integers"
    if answer.get("shape") not in (None, *SHAPES):
        return f"'shape' must be one of {SHAPES}"
    echo = answer.get("echo")
    if echo is not None:
        try:
            re.compile(echo)
        except (TypeError, re.error):
            return "'echo' must be a regular expression"
    return ""


def _echoed(text: str, pattern: str, prompt: str) -> str:
    """``text`` with "{echo}" replaced by the pattern's last match in the prompt."""
    matches = list(re.finditer(pattern, prompt))
    if not matches:
        return text.replace("{echo}", f"(no match for {pattern!r} in the prompt)")
    last = matches[-1]
    return text.replace("{echo}", last.group(1) if last.re.groups else last.group(0))


@bp.post("/script")
def queue_answers() -> Response:
    body = request.get_json(silent=True, force=True) or {}
    token = body.get("token")
    answers = body.get("answers")
    if not isinstance(token, str) or not token:
        return json_response({"ok": False, "error": "token is required ('*' = any)"}, 400)
    if not isinstance(answers, list) or not answers:
        return json_response({"ok": False, "error": "answers must be a non-empty list"}, 400)
    for answer in answers:
        problem = _check(answer)
        if problem:
            return json_response({"ok": False, "error": problem}, 400)
    with _lock:
        queue = _queues().setdefault(token, deque())
        queue.extend(answers)
        pending = {k: len(v) for k, v in _queues().items()}
    return json_response({"ok": True, "pending": pending})


@bp.delete("/script")
def clear_answers() -> Response:
    with _lock:
        _queues().clear()
    return json_response({"ok": True})


def _snapshots(text: str, answer: dict[str, Any]) -> list[str]:
    cuts = answer.get("cuts")
    if cuts:
        ends = sorted({min(c, len(text)) for c in cuts} | {len(text)})
        return [text[:end] for end in ends if end > 0] or [text]
    return prefixes(text, int(answer.get("steps") or 1)) if text else [text]


def take(refresh_token: str, prompt: str = "") -> Script | None:
    """The next queued answer for this account (or for any), as a simulator script."""
    with _lock:
        queues = _queues()
        for key in (refresh_token, "*"):
            queue = queues.get(key)
            if queue:
                answer = queue.popleft()
                break
        else:
            return None
    text = answer["text"]
    if answer.get("echo") is not None:
        text = _echoed(text, answer["echo"], prompt)
    segments: list[Segment] = []
    if answer.get("think"):
        segments.append(growing("think", answer["think"], 2))
    segments.append(Segment([[{"type": "text", "text": t}] for t in _snapshots(text, answer)]))
    script = Script("scripted", segments)
    script.shape = answer.get("shape")
    if answer.get("chunk") is not None:
        script.chunk = int(answer["chunk"])
    if answer.get("delay") is not None:
        script.delay = float(answer["delay"])
    return script
