"""Typed deltas -> OpenAI ``chat.completion.chunk`` / ``chat.completion`` objects. Pure.

The stream formatter and the non-stream builder share one rule for reasoning,
so the concatenated stream content always equals the non-stream content:

* ``reasoning_content``: reasoning goes into the separate ``reasoning_content``
  field (DeepSeek/vLLM convention, shown by most chat UIs);
* ``think_tags``: reasoning received before the first answer text is put into
  the content as ``"<think>\\n" + reasoning + "\\n</think>\\n\\n"`` (the tag is
  opened once and closed before the first answer text, or at finish); reasoning
  arriving after the answer text began is not shown, since a second ``<think>``
  in the middle of an answer breaks the clients that parse the tags;
* ``hidden``: reasoning is dropped.

Citations, images and the conversation id are not streamed (the text already
carries links and image markdown); the accumulator keeps them for callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from glm_proxy.events import (
    Citation,
    ConversationStarted,
    Delta,
    Finished,
    FinishReason,
    ImageGenerated,
    ReasoningDelta,
    TextDelta,
)

__all__ = [
    "THINK_CLOSE",
    "THINK_OPEN",
    "ChatStreamFormatter",
    "CompletionAccumulator",
    "ReasoningStyle",
    "build_completion",
]

ReasoningStyle = Literal["reasoning_content", "think_tags", "hidden"]

THINK_OPEN = "<think>\n"
THINK_CLOSE = "\n</think>\n\n"


class ChatStreamFormatter:
    """Deltas -> ``chat.completion.chunk`` dicts for one streamed completion."""

    def __init__(
        self,
        completion_id: str,
        model: str,
        created: int,
        reasoning_style: ReasoningStyle = "reasoning_content",
    ) -> None:
        self.completion_id = completion_id
        self.model = model
        self.created = created
        self.reasoning_style = reasoning_style
        self._think_open = False
        self._text_started = False

    def first_chunk(self) -> dict[str, Any]:
        """The opening chunk that announces the assistant role."""
        return self._chunk({"role": "assistant", "content": ""})

    def feed(self, delta: Delta) -> list[dict[str, Any]]:
        """Chunks for one delta; empty when the delta has nothing to show."""
        if isinstance(delta, TextDelta):
            if not delta.text:
                return []
            content = self._close_think() + delta.text
            self._text_started = True
            return [self._chunk({"content": content})]
        if isinstance(delta, ReasoningDelta):
            return self._reasoning(delta.text)
        if isinstance(delta, Finished):
            out = []
            closing = self._close_think()
            if closing:
                out.append(self._chunk({"content": closing}))
            out.append(self._chunk({}, delta.reason))
            return out
        return []

    def usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        """The final ``stream_options.include_usage`` chunk: no choices, only ``usage``."""
        return {**self._base(), "choices": [], "usage": usage}

    def _reasoning(self, text: str) -> list[dict[str, Any]]:
        if not text or self.reasoning_style == "hidden":
            return []
        if self.reasoning_style == "reasoning_content":
            return [self._chunk({"reasoning_content": text})]
        if self._text_started:
            return []  # think_tags: the block was closed when the answer began
        opening = "" if self._think_open else THINK_OPEN
        self._think_open = True
        return [self._chunk({"content": opening + text})]

    def _close_think(self) -> str:
        if not self._think_open:
            return ""
        self._think_open = False
        return THINK_CLOSE

    def _base(self) -> dict[str, Any]:
        return {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {**self._base(), "choices": [choice]}


@dataclass
class CompletionAccumulator:
    """Folds deltas into a whole answer (non-stream responses, usage counting)."""

    text: str = ""
    reasoning: str = ""
    leading_reasoning: str = ""  # reasoning that arrived before the first answer text
    finish_reason: FinishReason | None = None
    finish_message: str = ""
    citations: list[Citation] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    conversation_id: str | None = None
    message_id: str | None = None

    def feed(self, delta: Delta) -> None:
        if isinstance(delta, TextDelta):
            self.text += delta.text
        elif isinstance(delta, ReasoningDelta):
            self.reasoning += delta.text
            if not self.text:
                self.leading_reasoning += delta.text
        elif isinstance(delta, Finished):
            self.finish_reason = delta.reason
            self.finish_message = delta.message
        elif isinstance(delta, Citation):
            self.citations.append(delta)
        elif isinstance(delta, ImageGenerated):
            self.images.append(delta.url)
        elif isinstance(delta, ConversationStarted):
            self.conversation_id = delta.conversation_id
            self.message_id = delta.message_id

    def feed_all(self, deltas: list[Delta]) -> CompletionAccumulator:
        for delta in deltas:
            self.feed(delta)
        return self


def build_completion(
    completion_id: str,
    model: str,
    created: int,
    acc: CompletionAccumulator,
    usage: dict[str, Any],
    reasoning_style: ReasoningStyle = "reasoning_content",
) -> dict[str, Any]:
    """The non-stream ``chat.completion`` object; same content as the stream would carry."""
    content = acc.text
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if reasoning_style == "think_tags" and acc.leading_reasoning:
        message["content"] = THINK_OPEN + acc.leading_reasoning + THINK_CLOSE + content
    elif reasoning_style == "reasoning_content" and acc.reasoning:
        message["reasoning_content"] = acc.reasoning
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": None,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": acc.finish_reason or "stop",
            }
        ],
        "usage": usage,
    }
