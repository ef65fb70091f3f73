"""Typed values that flow out of the protocol core.

The translator turns upstream SSE snapshots into these deltas; the formatters
turn deltas into OpenAI (or Anthropic) objects. Both sides match on the type,
never on dict keys, so a new kind of output is one new class here plus one
branch in each formatter.

These are plain frozen, slotted dataclasses: don't subclass them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "content_filter", "length", "tool_calls"]


@dataclass(frozen=True, slots=True)
class ConversationStarted:
    """The upstream told us which conversation (and reply message) this answer lives in.

    Emitted once, as soon as the first event carrying a ``conversation_id`` arrives.
    """

    conversation_id: str
    message_id: str


@dataclass(frozen=True, slots=True)
class TextDelta:
    """New visible answer text (markdown), already free of raw citation markers."""

    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """New reasoning ("thinking") text; the formatter decides how to show it."""

    text: str


@dataclass(frozen=True, slots=True)
class ImageGenerated:
    """A generated image URL (also rendered into the text as a markdown image)."""

    url: str


@dataclass(frozen=True, slots=True)
class Citation:
    """A web source the answer cites, numbered as the reader sees it."""

    index: int
    title: str
    url: str


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    """The model called one of the client's tools (emulated tool calling).

    Emitted only once the call parsed and validated against the tool's schema;
    the arguments follow as one or more ``ToolCallArguments`` with the same
    ``index``. ``index`` counts this answer's calls from 0.
    """

    index: int
    call_id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolCallArguments:
    """A piece of a tool call's arguments, a JSON object serialised as text."""

    index: int
    text: str


@dataclass(frozen=True, slots=True)
class Finished:
    """The answer is complete. ``message`` carries the content filter's explanation.

    ``stop_sequence`` names the client's stop string that ended the answer
    (``reason`` is then ``"stop"``).
    """

    reason: FinishReason
    message: str = ""
    stop_sequence: str | None = None


Delta = (
    ConversationStarted
    | TextDelta
    | ReasoningDelta
    | ImageGenerated
    | Citation
    | ToolCallStart
    | ToolCallArguments
    | Finished
)

__all__ = [
    "Citation",
    "ConversationStarted",
    "Delta",
    "FinishReason",
    "Finished",
    "ImageGenerated",
    "ReasoningDelta",
    "TextDelta",
    "ToolCallArguments",
    "ToolCallStart",
]
