"""Typed deltas -> Anthropic Messages API objects and stream events. Pure.

The same deltas that feed the OpenAI formatter feed this one, so an answer
reads the same through ``/v1/messages`` as through ``/v1/chat/completions``.
Reasoning becomes ``thinking`` content blocks (shown unless the model is
silent); a content-filter stop becomes ``stop_reason: "refusal"``.

Stream events follow the Messages streaming protocol: ``message_start``, then
for each content block ``content_block_start`` / ``content_block_delta``\\* /
``content_block_stop``, then ``message_delta`` (stop reason, output usage) and
``message_stop``. Each event is returned as ``(event_name, payload)``;
``MessagesWire`` (this format's side of the streaming pump) encodes them as
``event: <name>\\ndata: <json>`` and folds non-stream answers (``collect()``).

Client tool calls become ``tool_use`` blocks (``input_json_delta`` pieces in a
stream, the parsed ``input`` object otherwise) with ``stop_reason:
"tool_use"``; a client stop string ends with ``stop_reason: "stop_sequence"``
and names it in ``stop_sequence``; the length limit is ``"max_tokens"``.
Keep-alives are ``ping`` events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from glm_proxy.errors import GLMProxyError
from glm_proxy.protocol.events import (
    Delta,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallArguments,
    ToolCallStart,
)
from glm_proxy.protocol.formats.openai import CompletionAccumulator
from glm_proxy.protocol.usage import estimate_tokens

log = logging.getLogger(__name__)

__all__ = [
    "MessageStreamFormatter",
    "MessagesWire",
    "anthropic_error",
    "build_message",
    "encode_anthropic_event",
    "stop_reason",
]

STOP_REASONS = {
    "stop": "end_turn",
    "content_filter": "refusal",
    "length": "max_tokens",
    "tool_calls": "tool_use",
}
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


def stop_reason(finish_reason: str | None, stop_sequence: str | None = None) -> str:
    if stop_sequence is not None:
        return "stop_sequence"
    return STOP_REASONS.get(finish_reason or "stop", "end_turn")


def tool_use_id(call_id: str) -> str:
    """Anthropic spells tool-use ids ``toolu_...``; the same call keeps the same suffix."""
    if call_id.startswith("toolu_"):
        return call_id
    return "toolu_" + call_id.removeprefix("call_")


def _tool_input(arguments: str) -> dict[str, Any]:
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        log.warning("tool call arguments are not JSON; sending an empty input")
        return {}
    return value if isinstance(value, dict) else {}


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
    tool_calls: Iterable[dict[str, Any]] = (),
    stop_sequence: str | None = None,
) -> dict[str, Any]:
    """A complete (non-stream) ``message`` object.

    ``tool_calls`` are OpenAI-shaped (``CompletionAccumulator.tool_calls``).
    """
    content: list[dict[str, Any]] = []
    if thinking:
        content.append({"type": "thinking", "thinking": thinking, "signature": ""})
    uses = [
        {
            "type": "tool_use",
            "id": tool_use_id(call["id"]),
            "name": call["function"]["name"],
            "input": _tool_input(call["function"]["arguments"]),
        }
        for call in tool_calls
    ]
    if text or not uses:
        content.append({"type": "text", "text": text})
    content.extend(uses)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(finish_reason, stop_sequence),
        "stop_sequence": stop_sequence,
        "usage": _usage(input_tokens, output_tokens),
    }


class MessageStreamFormatter:
    """Deltas -> Anthropic stream events for one message."""

    def __init__(self, message_id: str, model: str, input_tokens: int) -> None:
        self.message_id = message_id
        self.model = model
        self.input_tokens = input_tokens
        self._index = -1
        self._open: str | None = None  # "text" | "thinking" | "tool_use" while a block is open
        self._tool_index: int | None = None  # the open tool_use block's call index
        self._finish: str | None = None
        self._stop_sequence: str | None = None

    def start(self) -> list[Event]:
        message: dict[str, Any] = {
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
        if isinstance(delta, ToolCallStart):
            events = self._close()
            self._index += 1
            self._open = "tool_use"
            self._tool_index = delta.index
            block = {
                "type": "tool_use",
                "id": tool_use_id(delta.call_id),
                "name": delta.name,
                "input": {},
            }
            events.append(self._block_start(block))
            return events
        if isinstance(delta, ToolCallArguments):
            if not delta.text or self._open != "tool_use" or self._tool_index != delta.index:
                return []
            return [self._delta({"type": "input_json_delta", "partial_json": delta.text})]
        if isinstance(delta, Finished):
            self._finish = delta.reason
            self._stop_sequence = delta.stop_sequence
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
                    "delta": {
                        "stop_reason": stop_reason(self._finish, self._stop_sequence),
                        "stop_sequence": self._stop_sequence,
                    },
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
        events.append(self._block_start(block))
        return events

    def _block_start(self, block: dict[str, Any]) -> Event:
        return (
            "content_block_start",
            {"type": "content_block_start", "index": self._index, "content_block": block},
        )

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


PING = b'event: ping\ndata: {"type":"ping"}\n\n'


class MessagesWire:
    """Anthropic Messages on the wire: the pump's ``Wire`` for ``/v1/messages``."""

    def __init__(
        self,
        *,
        model: str,
        prompt_text: str,
        response_id: Callable[[], str],
        include_thinking: bool = True,
    ) -> None:
        self.model = model
        self.input_tokens = estimate_tokens(prompt_text)
        self.response_id = response_id  # asked at open(): the upstream names it late
        self.include_thinking = include_thinking
        self.acc = CompletionAccumulator()
        self.usage: dict[str, Any] | None = None
        self._formatter: MessageStreamFormatter | None = None

    def open(self) -> bytes:
        self.acc.keep_text = False  # streamed: the text is on the wire, only counted
        self._formatter = MessageStreamFormatter(self.response_id(), self.model, self.input_tokens)
        return _encode_all(self._formatter.start())

    def feed(self, delta: Delta) -> bytes:
        self.acc.feed(delta)
        return _encode_all(self._formatter.feed(delta))  # type: ignore[union-attr]  # open() came first

    def finish(self, end: object = None) -> bytes:
        output = self._output_tokens()
        return _encode_all(self._formatter.finish(output))  # type: ignore[union-attr]  # open() came first

    def error(self, err: GLMProxyError) -> bytes:
        return encode_anthropic_event("error", anthropic_error(err))

    def keepalive(self) -> bytes:
        return PING

    def collect(self, deltas: Iterable[Delta]) -> dict[str, Any]:
        """The non-stream ``message`` for the same deltas."""
        acc = self.acc.feed_all(deltas)
        output = self._output_tokens()
        return build_message(
            self.response_id(),
            self.model,
            text=acc.text,
            thinking=acc.reasoning if self.include_thinking else "",
            finish_reason=acc.finish_reason,
            input_tokens=self.input_tokens,
            output_tokens=output,
            tool_calls=acc.tool_calls,
            stop_sequence=acc.stop_sequence,
        )

    def _output_tokens(self) -> int:
        """Output tokens as the client sees them; also recorded, in OpenAI terms, as ``usage``."""
        acc = self.acc
        visible = acc.visible_tokens()
        output = visible.plus(acc.reasoning_tokens()).tokens if visible.tokens else 0
        self.usage = {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": output,
            "total_tokens": self.input_tokens + output,
        }
        return output


def _encode_all(events: list[Event]) -> bytes:
    return b"".join(encode_anthropic_event(name, payload) for name, payload in events)
