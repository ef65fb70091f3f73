"""Scripted answers: a test queues the exact text the simulated model answers next.

``POST /_sim/answers {"token": <refresh token>, "answers": [{"pieces": [...],
"reasoning": "...", "delay": 0.1}, ...]}`` queues answers for that account;
each stream request on it takes the next one (before any ``[[sim:...]]``
directive). ``pieces`` are delivered one upstream event each, so a test can
split a stop string or a JSON document across events exactly where it wants.
A re-ask in the same conversation takes the next queued answer, which is how
a test scripts "invalid first, valid after the correction".
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from .scripts import Script, Segment, growing

_lock = threading.Lock()
_queued: dict[str, deque[dict[str, Any]]] = {}


def queue_answers(token: str, answers: list[dict[str, Any]]) -> int:
    with _lock:
        pending = _queued.setdefault(token, deque())
        pending.extend(answers)
        return len(pending)


def next_answer(token: str) -> dict[str, Any] | None:
    with _lock:
        pending = _queued.get(token)
        return pending.popleft() if pending else None


def scripted(token: str) -> Script | None:
    """The next queued answer for ``token`` as a ``Script``, or None when none is queued."""
    answer = next_answer(token)
    if answer is None:
        return None
    pieces = [str(p) for p in answer.get("pieces") or [""]]
    snapshots = [[{"type": "text", "text": "".join(pieces[: k + 1])}] for k in range(len(pieces))]
    segments = [Segment(snapshots)]
    if answer.get("reasoning"):
        segments.insert(0, growing("think", str(answer["reasoning"]), 3))
    script = Script("scripted", segments)
    if answer.get("delay") is not None:
        script.delay = float(answer["delay"])
    return script
