"""Helpers for the tool-calling tests: scripted model answers and sample tools."""

from __future__ import annotations

import requests

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "days": {"type": "integer", "description": "Forecast days"},
            },
            "required": ["city"],
        },
    },
}
WRITE = {
    "type": "function",
    "function": {
        "name": "write_file",
        "description": "Write a text file.",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
}
TOOLS = [WEATHER, WRITE]
CODE = "def f(a, b):\n    return a < b and \"x\" != 'y'  # & </parameter>\n"


def call_block(*invokes: str) -> str:
    return "<glm_tool_calls>\n" + "\n".join(invokes) + "\n</glm_tool_calls>"


def invoke(name: str, **params: str) -> str:
    body = "".join(f'<parameter name="{k}">{v}</parameter>\n' for k, v in params.items())
    return f'<invoke name="{name}">\n{body}</invoke>'


WEATHER_CALL = call_block(invoke("get_weather", city="Paris", days="3"))
WRITE_CALL = invoke("write_file", path="src/f.py", content=f"<![CDATA[{CODE}]]>")


def script(simulator, token: str, *answers: str | dict) -> None:
    """Queue the model's next answers for this account (strings or full answer objects)."""
    items = [a if isinstance(a, dict) else {"text": a} for a in answers]
    resp = requests.post(
        f"{simulator.base}/_sim/script", json={"token": token, "answers": items}, timeout=5
    )
    resp.raise_for_status()


def stream_requests(simulator, token: str) -> list[dict]:
    """The stream requests the simulator saw for this account, oldest first."""
    return [
        r["stream"]
        for r in simulator.requests_log("/assistant/stream")
        if r.get("account") == token and r.get("stream")
    ]


def prompt_text(stream_request: dict) -> str:
    return "\n".join(
        c["item"].get("text", "") for c in stream_request["content"] if c["item"]["type"] == "text"
    )
