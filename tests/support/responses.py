"""Responses API helpers: the simulator's default answer, the Codex request fixture, and what
the simulator was asked."""

from __future__ import annotations

from pathlib import Path

SIM_TEXT = "你好！这是模拟回答。Simulated answer 🚀"


CODEX_FIXTURE = Path(__file__).parent.parent / "fixtures" / "codex_responses_request.json"


def stream_requests(simulator, token: str) -> list[dict]:
    return [
        r
        for r in simulator.requests_log("/assistant/stream")
        if r.get("account") == token and r.get("stream")
    ]


def prompt_of(entry: dict) -> str:
    return "".join(
        c["item"].get("text") or ""
        for c in entry["stream"]["content"]
        if c["item"].get("type") == "text"
    )
