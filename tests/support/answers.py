"""Scripted answers with controls in mind: pieces cut where the test needs them."""

from __future__ import annotations

REACT = ["Thought: I should look it up.\nAction: search[glm]\nObser", "vation: made up result"]


REACT_KEPT = "Thought: I should look it up.\nAction: search[glm]\n"


def said(*pieces: str, reasoning: str | None = None, delay: float | None = None) -> dict:
    """A scripted answer delivered one upstream event per piece."""
    ends = [sum(len(p) for p in pieces[: k + 1]) for k in range(len(pieces))]
    answer: dict = {"text": "".join(pieces), "cuts": [e for e in ends if e > 0]}
    if reasoning:
        answer["think"] = reasoning
    if delay is not None:
        answer["delay"] = delay
    return answer
