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

FinishReason = Literal["stop", "content_filter", "length"]


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
class Finished:
    """The answer is complete. ``message`` carries the content filter's explanation."""

    reason: FinishReason
    message: str = ""


Delta = ConversationStarted | TextDelta | ReasoningDelta | ImageGenerated | Citation | Finished

__all__ = [
    "Citation",
    "ConversationStarted",
    "Delta",
    "FinishReason",
    "Finished",
    "ImageGenerated",
    "ReasoningDelta",
    "TextDelta",
]
