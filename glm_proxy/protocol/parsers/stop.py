"""Stop strings: cut the visible answer before the first one the client named.

OpenAI's ``stop`` (a string or up to four) and Anthropic's ``stop_sequences``
end the answer where the model first writes one of them; the stop string
itself is not returned. The upstream has no such control, so the answer is cut
here, on the text deltas, before any of it reaches a wire format.

A stop string may arrive split across upstream events (``"Obser"`` then
``"vation:"``): the filter holds back the longest tail of the text seen so far
that is a prefix of some stop string, and releases it as soon as the next text
shows it is not one (or when the answer ends). Only visible text is searched;
reasoning, citations, images and tool calls pass through untouched.

After a stop string the filter emits ``Finished(reason="stop",
stop_sequence=...)`` and drops everything else, including the upstream's own
``Finished``; the answer job sees the ``Finished`` and may stop reading.
"""

from __future__ import annotations

from collections.abc import Iterable

from glm_proxy.protocol.events import Delta, Finished, TextDelta
from glm_proxy.protocol.parsers import Reask

__all__ = ["StopFilter", "find_stop", "held_prefix_length"]


def find_stop(text: str, stops: Iterable[str]) -> tuple[int, str] | None:
    """``(position, stop)`` of the stop string that is complete first in ``text``, or None.

    The model writes left to right and stops as soon as a stop string has been
    written, so the occurrence that *ends* first wins (on a tie, the one that
    starts first). Deciding by the end also makes the result independent of
    how the text was cut into deltas.
    """
    best: tuple[int, int, str] | None = None  # (end, start, stop)
    for stop in stops:
        at = text.find(stop)
        if at < 0:
            continue
        candidate = (at + len(stop), at, stop)
        if best is None or candidate[:2] < best[:2]:
            best = candidate
    return (best[1], best[2]) if best is not None else None


def held_prefix_length(text: str, stops: Iterable[str]) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of some stop string.

    That tail may still become a stop string with the next delta, so it must not
    be released yet.
    """
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class StopFilter:
    """Cuts ``TextDelta`` text before the first stop string (see the module docstring)."""

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = tuple(s for s in dict.fromkeys(stops) if s)
        self._held = ""
        self.done = False
        self.stop_sequence: str | None = None

    def feed(self, delta: Delta) -> list[Delta]:
        if self.done:
            return []
        if isinstance(delta, TextDelta):
            return self._text(delta.text)
        if isinstance(delta, Finished):
            self.done = True
            out: list[Delta] = [TextDelta(self._held)] if self._held else []
            self._held = ""
            return [*out, delta]
        return [delta]

    def finish(self) -> list[Delta | Reask]:
        if self.done or not self._held:
            return []
        held, self._held = self._held, ""
        return [TextDelta(held)]

    def _text(self, text: str) -> list[Delta]:
        if not self.stops:
            return [TextDelta(text)] if text else []
        pending = self._held + text
        found = find_stop(pending, self.stops)
        if found is not None:
            at, stop = found
            self.done = True
            self.stop_sequence = stop
            self._held = ""
            before = [TextDelta(pending[:at])] if at else []
            return [*before, Finished("stop", stop_sequence=stop)]
        keep = held_prefix_length(pending, self.stops)
        release = pending[: len(pending) - keep]
        self._held = pending[len(pending) - keep :]
        return [TextDelta(release)] if release else []
