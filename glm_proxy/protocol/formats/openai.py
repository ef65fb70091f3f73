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

Tool calls stream as OpenAI does: one ``delta.tool_calls[i]`` chunk naming the
call (``id``, ``type: "function"``, ``function.name`` with ``arguments: ""``),
then chunks carrying ``function.arguments`` pieces; non-stream they become
``message.tool_calls`` (``content`` keeps any prose before the call, ``null``
when there is none).

``ChatWire`` is this format's side of the streaming pump (``glm_proxy.streaming.pump``):
chunk bytes for each delta, and ``collect()`` for the non-stream answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from glm_proxy.errors import GLMProxyError
from glm_proxy.protocol.events import (
    Citation,
    ConversationStarted,
    Delta,
    Finished,
    FinishReason,
    ImageGenerated,
    ReasoningDelta,
    TextDelta,
    ToolCallArguments,
    ToolCallStart,
)
from glm_proxy.protocol.sse import DONE, KEEPALIVE
from glm_proxy.protocol.usage import TokenCounter, estimate_tokens, usage_counts

__all__ = [
    "THINK_CLOSE",
    "THINK_OPEN",
    "ChatStreamFormatter",
    "ChatWire",
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
        index: int = 0,
    ) -> None:
        self.completion_id = completion_id
        self.model = model
        self.created = created
        self.reasoning_style = reasoning_style
        self.index = index  # the choice (``n`` > 1 answers interleave in one stream)
        self._think_open = False
        self._text_started = False

    def first_chunk(self) -> dict[str, Any]:
        """The opening chunk that announces the assistant role."""
        return self._chunk({"role": "assistant", "content": ""})

    def feed(self, delta: Delta) -> list[dict[str, Any]]:
        """Chunks for one delta; empty when the delta has nothing to show."""
        return [self._chunk(d, reason) for d, reason in self.pieces(delta)]

    def pieces(self, delta: Delta) -> list[tuple[dict[str, Any], str | None]]:
        """``(delta, finish_reason)`` pairs for one delta: the chunks without their envelope.

        ``ChatWire`` wraps them in a pre-encoded envelope; ``feed`` in dicts.
        """
        if isinstance(delta, TextDelta):
            content = self.content(delta.text)
            return [({"content": content}, None)] if content else []
        if isinstance(delta, ReasoningDelta):
            return self._reasoning(delta.text)
        if isinstance(delta, ToolCallStart):
            out = self._closing()
            self._text_started = True  # never a <think> after the call
            call = {
                "index": delta.index,
                "id": delta.call_id,
                "type": "function",
                "function": {"name": delta.name, "arguments": ""},
            }
            return [*out, ({"tool_calls": [call]}, None)]
        if isinstance(delta, ToolCallArguments):
            if not delta.text:
                return []
            call = {"index": delta.index, "function": {"arguments": delta.text}}
            return [({"tool_calls": [call]}, None)]
        if isinstance(delta, Finished):
            return [*self._closing(), ({}, delta.reason)]
        return []

    def content(self, text: str) -> str:
        """The ``delta.content`` for answer text ("": no chunk); closes an open ``<think>``.

        The one rule for a ``TextDelta``, shared by :meth:`pieces` and ``ChatWire``,
        which encodes the string into its pre-encoded chunk without building a dict.
        """
        if not text:
            return ""
        self._text_started = True
        return self._close_think() + text if self._think_open else text

    def _closing(self) -> list[tuple[dict[str, Any], str | None]]:
        closing = self._close_think()
        return [({"content": closing}, None)] if closing else []

    def usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        """The final ``stream_options.include_usage`` chunk: no choices, only ``usage``."""
        return {**self._base(), "choices": [], "usage": usage}

    def _reasoning(self, text: str) -> list[tuple[dict[str, Any], str | None]]:
        if not text or self.reasoning_style == "hidden":
            return []
        if self.reasoning_style == "reasoning_content":
            return [({"reasoning_content": text}, None)]
        if self._text_started:
            return []  # think_tags: the block was closed when the answer began
        opening = "" if self._think_open else THINK_OPEN
        self._think_open = True
        return [({"content": opening + text}, None)]

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
        choice = {
            "index": self.index,
            "delta": delta,
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        return {**self._base(), "choices": [choice]}


@dataclass
class CompletionAccumulator:
    """Folds deltas into a whole answer (non-stream responses, usage counting).

    The answer text is kept as pieces and joined when read (usually once, at the
    end): appending each delta to one string would copy the whole answer per delta.
    With ``keep_text`` False (a streamed answer: its text is on the wire already)
    answer and reasoning text are only counted, for ``usage``: a stream whose
    client stopped reading must not hold its answer here too. Tool calls are
    always kept.
    """

    reasoning: str = ""
    leading_reasoning: str = ""  # reasoning that arrived before the first answer text
    finish_reason: FinishReason | None = None
    finish_message: str = ""
    citations: list[Citation] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    conversation_id: str | None = None
    message_id: str | None = None
    stop_sequence: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # OpenAI message.tool_calls
    _calls: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)  # by index
    _text: list[str] = field(default_factory=list, repr=False)  # non-empty pieces
    keep_text: bool = True
    _counted: TokenCounter = field(default_factory=TokenCounter, repr=False)  # keep_text False
    _counted_reasoning: TokenCounter = field(default_factory=TokenCounter, repr=False)

    @property
    def text(self) -> str:
        """The answer text so far."""
        pieces = self._text
        if len(pieces) > 1:
            pieces[:] = ["".join(pieces)]
        return pieces[0] if pieces else ""

    @property
    def tool_arguments(self) -> str:
        """Every tool call's arguments, for the token estimate."""
        return "".join(call["function"]["arguments"] for call in self.tool_calls)

    def visible_tokens(self) -> TokenCounter:
        """The answer text and tool-call arguments, counted (as ``usage`` counts them)."""
        if self.keep_text:
            return TokenCounter(self.text + self.tool_arguments)
        return self._counted.plus(TokenCounter(self.tool_arguments))

    def reasoning_tokens(self) -> TokenCounter:
        return TokenCounter(self.reasoning) if self.keep_text else self._counted_reasoning

    def feed(self, delta: Delta) -> None:
        if isinstance(delta, TextDelta):
            if not delta.text:
                pass
            elif self.keep_text:
                self._text.append(delta.text)
            else:
                self._counted.add(delta.text)
        elif isinstance(delta, ReasoningDelta):
            if not self.keep_text:
                self._counted_reasoning.add(delta.text)
                return
            self.reasoning += delta.text
            if not self._text:
                self.leading_reasoning += delta.text
        elif isinstance(delta, ToolCallArguments):
            call = self._calls.get(delta.index)
            if call is not None:
                call["function"]["arguments"] += delta.text
        elif isinstance(delta, ToolCallStart):
            function = {"name": delta.name, "arguments": ""}
            call = {"id": delta.call_id, "type": "function", "function": function}
            self._calls[delta.index] = call
            self.tool_calls.append(call)
        elif isinstance(delta, Finished):
            self.finish_reason = delta.reason
            self.finish_message = delta.message
            self.stop_sequence = delta.stop_sequence
        elif isinstance(delta, Citation):
            self.citations.append(delta)
        elif isinstance(delta, ImageGenerated):
            self.images.append(delta.url)
        elif isinstance(delta, ConversationStarted):
            self.conversation_id = delta.conversation_id
            self.message_id = delta.message_id

    def feed_all(self, deltas: Iterable[Delta]) -> CompletionAccumulator:
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
    if acc.tool_calls:
        message["content"] = message["content"] or None  # prose before the call, if any
        message["tool_calls"] = acc.tool_calls
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


def chat_usage(prompt_text: str, acc: CompletionAccumulator) -> dict[str, Any]:
    """``usage`` for an answer: tool-call arguments count as completion text."""
    return usage_counts(
        estimate_tokens(prompt_text), acc.visible_tokens().tokens, acc.reasoning_tokens().tokens
    )


class ChatWire:
    """Chat Completions on the wire: the pump's ``Wire`` for ``/v1/chat/completions``.

    Every chunk of one completion shares its envelope (id, created, model), so
    the envelope is encoded once, at ``open()``; a delta costs one small
    ``orjson.dumps`` of its own ``delta`` object, answer text (most deltas) only
    that of its string, spliced into ``{"content":...}``.
    """

    def __init__(
        self,
        *,
        model: str,
        created: int,
        prompt_text: str,
        response_id: Callable[[], str],
        reasoning_style: ReasoningStyle = "reasoning_content",
        include_usage: bool = False,
        index: int = 0,
    ) -> None:
        self.index = index  # the choice this wire renders
        self.model = model
        self.created = created
        self.prompt_text = prompt_text
        self.response_id = response_id  # asked at open(): the upstream names it late
        self.reasoning_style = reasoning_style
        self.include_usage = include_usage
        self.acc = CompletionAccumulator()
        self.usage: dict[str, Any] | None = None
        self._formatter: ChatStreamFormatter | None = None
        self._head = b""
        self._content_head = b""  # _head + '{"content":'

    def open(self) -> bytes:
        f = self._formatter = ChatStreamFormatter(
            self.response_id(), self.model, self.created, self.reasoning_style, self.index
        )
        choice = b',"choices":[{"index":%d,"delta":' % self.index
        self._head = b"data: " + orjson.dumps(f._base())[:-1] + choice
        self._content_head = self._head + b'{"content":'
        self.acc.keep_text = False  # streamed: the text is on the wire, only counted
        return self._encode({"role": "assistant", "content": ""}, None)

    def feed(self, delta: Delta) -> bytes:
        self.acc.feed(delta)
        if isinstance(delta, TextDelta):
            # the bytes _encode({"content": content}, None) gives, without the dict
            content = self._formatter.content(delta.text)  # type: ignore[union-attr]  # open() came first
            if not content:
                return b""
            return self._content_head + orjson.dumps(content) + _CONTENT_TAIL
        pieces = self._formatter.pieces(delta)  # type: ignore[union-attr]  # open() came first
        if not pieces:
            return b""
        if len(pieces) == 1:
            return self._encode(*pieces[0])
        return b"".join(self._encode(d, reason) for d, reason in pieces)

    def finish(self, end: object = None) -> bytes:
        self.usage = chat_usage(self.prompt_text, self.acc)
        if not self.include_usage:
            return DONE
        chunk = self._formatter.usage_chunk(self.usage)  # type: ignore[union-attr]  # open() came first
        return b"data: " + orjson.dumps(chunk) + b"\n\n" + DONE

    def error(self, err: GLMProxyError) -> bytes:
        """The final error event; an error that asks for it (a restart) also gets ``[DONE]``."""
        event = b"data: " + orjson.dumps(err.to_dict()) + b"\n\n"
        return event + DONE if getattr(err, "stream_done", False) else event

    def keepalive(self) -> bytes:
        return KEEPALIVE

    def collect(self, deltas: Iterable[Delta]) -> dict[str, Any]:
        """The non-stream ``chat.completion`` for the same deltas."""
        acc = self.acc.feed_all(deltas)
        self.usage = chat_usage(self.prompt_text, acc)
        return build_completion(
            self.response_id(), self.model, self.created, acc, self.usage, self.reasoning_style
        )

    def _encode(self, delta: dict[str, Any], finish_reason: str | None) -> bytes:
        if finish_reason is None:
            return self._head + orjson.dumps(delta) + _TAIL
        return self._head + orjson.dumps(delta) + _TAIL_FINISH % finish_reason.encode()


_TAIL = b',"logprobs":null,"finish_reason":null}]}\n\n'
_CONTENT_TAIL = b"}" + _TAIL  # closes {"content":...}
_TAIL_FINISH = b',"logprobs":null,"finish_reason":"%s"}]}\n\n'
