"""Typed deltas -> Anthropic Messages API objects and stream events. Pure.

The same deltas that feed the OpenAI formatter feed this one, so an answer
reads the same through ``/v1/messages`` as through ``/v1/chat/completions``.
Reasoning becomes ``thinking`` content blocks (shown unless the model is
silent); a content-filter stop becomes ``stop_reason: "refusal"``.

Stream events follow the Messages streaming protocol: ``message_start``, then
for each content block ``content_block_start`` / ``content_block_delta``\\* /
``content_block_stop``, then ``message_delta`` (stop reason, output usage) and
``message_stop``. Each event is returned as ``(event_name, payload)``; the
view encodes them as ``event: <name>\\ndata: <json>``.
"""

from __future__ import annotations

from typing import Any

import orjson

from glm_proxy.errors import GLMProxyError
from glm_proxy.events import Delta, Finished, ReasoningDelta, TextDelta

__all__ = [
    "MessageStreamFormatter",
    "anthropic_error",
    "build_message",
    "encode_anthropic_event",
    "stop_reason",
]

STOP_REASONS = {"stop": "end_turn", "content_filter": "refusal", "length": "max_tokens"}
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    502: "api_error",
    503: "overloaded_error",
    504: "api_error",
}

Event = tuple[str, dict[str, Any]]


def stop_reason(finish_reason: str | None) -> str:
    return STOP_REASONS.get(finish_reason or "stop", "end_turn")


def anthropic_error(error: GLMProxyError) -> dict[str, Any]:
    """The Anthropic error body for one of our errors."""
    return {
        "type": "error",
        "error": {"type": ERROR_TYPES.get(error.status, "api_error"), "message": error.message},
    }


def encode_anthropic_event(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def build_message(
    message_id: str,
    model: str,
    *,
    text: str,
    thinking: str,
    finish_reason: str | None,
    input_tokens: int,
    output_tokens: int,
) -> dict[str, Any]:
    """A complete (non-stream) ``message`` object."""
    content: list[dict[str, Any]] = []
    if thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
    content.append({"type": "text", "text": text})
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(finish_reason),
        "stop_sequence": None,
        "usage": _usage(input_tokens, output_tokens),
    }


class MessageStreamFormatter:
    """Deltas -> Anthropic stream events for one message."""

    def __init__(self, message_id: str, model: str, input_tokens: int) -> None:
        self.message_id = message_id
        self.model = model
        self.input_tokens = input_tokens
        self._index = -1
        self._open: str | None = None  # "text" | "thinking" while a block is open
        self._finish: str | None = None

    def start(self) -> list[Event]:
        message = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": _usage(self.input_tokens, 1),
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def feed(self, delta: Delta) -> list[Event]:
        if isinstance(delta, TextDelta) and delta.text:
            return [*self._switch("text"), self._delta({"type": "text_delta", "text": delta.text})]
        if isinstance(delta, ReasoningDelta) and delta.text:
            return [
                *self._switch("thinking"),
                self._delta({"type": "thinking_delta", "thinking": delta.text}),
            ]
        if isinstance(delta, Finished):
            self._finish = delta.reason
        return []

    def finish(self, output_tokens: int) -> list[Event]:
        events = self._close()
        if self._index < 0:  # an empty answer still has one (empty) text block
            events += self._switch("text") + self._close()
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason(self._finish), "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    @staticmethod
    def ping() -> Event:
        return ("ping", {"type": "ping"})

    def _switch(self, kind: str) -> list[Event]:
        if self._open == kind:
            return []
        events = self._close()
        self._index += 1
        self._open = kind
        block: dict[str, Any] = (
            {"type": "text", "text": ""}
            if kind == "text"
            else {"type": "thinking", "thinking": "", "signature": ""}
        )
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": self._index, "content_block": block},
            )
        )
        return events

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        events: list[Event] = []
        if self._open == "thinking":
            events.append(self._delta({"type": "signature_delta", "signature": ""}))
        self._open = None
        events.append(("content_block_stop", {"type": "content_block_stop", "index": self._index}))
        return events

    def _delta(self, delta: dict[str, Any]) -> Event:
        return (
            "content_block_delta",
            {"type": "content_block_delta", "index": self._index, "delta": delta},
        )
