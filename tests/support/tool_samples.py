"""Sample tools and a tool-call answer for the sans-IO tool-call tests, and the ways to cut it."""

from __future__ import annotations

from glm_proxy.tools.calls import Block, CallScanner, Text
from glm_proxy.tools.definitions import check_tools

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "metric": {"type": "boolean"},
                "options": {
                    "type": "object",
                    "properties": {"hourly": {"type": "boolean"}, "hours": {"type": "integer"}},
                },
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


WRITE = {
    "type": "function",
    "function": {
        "name": "write_file",
        "parameters": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
}


TOOLS = check_tools([WEATHER, WRITE])


def scan(pieces: list[str]) -> list[Text | Block]:
    scanner = CallScanner()
    out = []
    for piece in pieces:
        out.extend(scanner.feed(piece))
    out.extend(scanner.finish())
    return merge_text(out)


def merge_text(events: list) -> list:
    merged: list = []
    for event in events:
        if isinstance(event, Text) and merged and isinstance(merged[-1], Text):
            merged[-1] = Text(merged[-1].text + event.text)
        else:
            merged.append(event)
    return merged


def cuts(text: str) -> list[list[str]]:
    """Whole, char by char, and in 3-char pieces."""
    return [[text], list(text), [text[i : i + 3] for i in range(0, len(text), 3)]]


CALL = (
    'Let me check.\n<glm_tool_calls>\n<invoke name="get_weather">\n'
    '<parameter name="city">Paris</parameter>\n<parameter name="days">3</parameter>\n'
    "</invoke>\n</glm_tool_calls>"
)
