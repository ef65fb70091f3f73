"""Sans-IO parsers on the answer itself: client tool calls, stop strings, length, JSON.

The translator turns upstream events into typed deltas; these filters sit
between the translator and the wire formats and rewrite that delta stream:
a tool-call block in the text becomes ``ToolCallStart``/``ToolCallArguments``,
text after a stop string is dropped, text beyond ``max_tokens`` is cut, a
structured answer is reduced to its validated JSON.

Every filter has the h11 shape: ``feed(delta) -> list[Delta]`` and
``finish() -> list[Delta | Reask]``; no I/O, no clock. A filter that needs to
see more text before deciding (a possible prefix of a marker or stop string)
holds it back and releases it later. ``Finished`` is always passed on (it may
be rewritten, e.g. ``reason="tool_calls"``), and nothing follows it.

``Reask`` asks the answer job to prompt the model once more, in the same
upstream conversation, with a short correction (an invalid tool call, JSON
that does not validate). The job honours it only while nothing of this answer
has reached the client, and only once: the filter built for the final try
(``final=True``) never returns one and must decide (fall back to text, or
raise a ``GLMProxyError``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from glm_proxy.protocol.events import Delta

__all__ = ["DeltaFilter", "FilterChain", "FilterFactory", "Reask"]


@dataclass(frozen=True, slots=True)
class Reask:
    """Prompt the model again in the same conversation with ``text``; discard this try."""

    text: str
    reason: str = ""


class DeltaFilter(Protocol):
    def feed(self, delta: Delta) -> list[Delta]: ...

    def finish(self) -> list[Delta | Reask]: ...


FilterFactory = Callable[[bool], DeltaFilter]
"""``factory(final)`` builds a fresh filter for one try; ``final`` forbids ``Reask``."""


class FilterChain:
    """Filters applied in order: each one's output is the next one's input.

    A ``Reask`` from any filter ends the chain's output at once (the try is discarded).
    """

    def __init__(self, filters: Sequence[DeltaFilter]) -> None:
        self.filters = list(filters)

    def feed(self, delta: Delta) -> list[Delta]:
        pending: list[Delta] = [delta]
        for f in self.filters:
            out: list[Delta] = []
            for item in pending:
                out.extend(f.feed(item))
            pending = out
        return pending

    def finish(self) -> list[Delta | Reask]:
        pending: list = []
        for f in self.filters:
            out: list = []
            for item in pending:
                out.extend(f.feed(item))
            out.extend(f.finish())
            for item in out:
                if isinstance(item, Reask):
                    return [item]
            pending = out
        return pending
