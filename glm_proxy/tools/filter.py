"""The answer filter that turns the model's call blocks into tool-call deltas.

``ToolCallFilter`` is a ``DeltaFilter`` (see ``glm_proxy.protocol.parsers``): text goes
through ``CallScanner``; a complete block is parsed, each call validated
against its tool's schema, and only then emitted as ``ToolCallStart`` +
``ToolCallArguments`` (a JSON object), with ``Finished(reason="tool_calls")``.
Reasoning, citations and images pass through untouched.

The policy, decided here and nowhere else:

* Text after the call block is dropped: the model was told to stop there, and
  what follows is usually an invented tool result.
* An invalid block (unknown tool, missing or mistyped parameter, no
  ``<invoke>``), or no call at all when ``tool_choice`` is ``required`` or
  names a tool, asks for one retry (``Reask`` with a short correction) if
  nothing of this try has been shown to the client. With ``required``/named,
  the answer is held back until a call appears so a retry stays possible.
* Otherwise (the final try, or text already streamed) the model's words are
  returned as text, and a warning says why, naming tools and parameters but
  never values.
* ``parallel_tool_calls: false``: only the first call of a block is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import orjson

from glm_proxy.protocol.events import (
    ConversationStarted,
    Delta,
    Finished,
    TextDelta,
    ToolCallArguments,
    ToolCallStart,
)
from glm_proxy.protocol.parsers import Reask
from glm_proxy.tools.calls import CALLS_OPEN, Block, CallScanner, Text, parse_block
from glm_proxy.tools.definitions import ToolConfig
from glm_proxy.tools.schema import Toolbox

__all__ = ["ToolCallFilter"]

log = logging.getLogger(__name__)

FORMAT_HINT = (
    f"Reply again with only the corrected {CALLS_OPEN} block, "
    "in exactly the format described before."
)


class ToolCallFilter:
    """One try's answer -> text and validated tool calls.

    ``new_id`` makes call ids (injected: the parser has no randomness);
    ``streamed`` says deltas reach the client as they come (a non-stream
    answer is held by the job, so a retry is possible even after text).
    """

    def __init__(
        self,
        config: ToolConfig,
        *,
        final: bool,
        new_id: Callable[[], str],
        streamed: bool = True,
        toolbox: Toolbox | None = None,
    ) -> None:
        self.config = config
        self.final = final
        self.new_id = new_id
        self.streamed = streamed
        self.toolbox = toolbox or Toolbox(config.tools)
        self.scanner = CallScanner()
        self.hold_all = config.choice in ("required", "named") and not final
        self.withheld: list[Delta] = []
        self.visible = False  # something of this try has gone (or will go) to the client
        self.calls = 0
        self.finished: Finished | None = None
        self.reask: Reask | None = None

    # -- DeltaFilter ---------------------------------------------------------

    def feed(self, delta: Delta) -> list[Delta]:
        if self.finished is not None or self.reask is not None:
            return []
        if isinstance(delta, Finished):
            self.finished = delta
            return []
        if isinstance(delta, ConversationStarted):
            return [delta]
        if isinstance(delta, TextDelta):
            return self._release(self._handle(self.scanner.feed(delta.text)))
        return self._release([delta])

    def finish(self) -> list[Delta | Reask]:
        out = self._handle(self.scanner.finish()) if self.reask is None else []
        filtered = self.finished is not None and self.finished.reason == "content_filter"
        if self.reask is None and not self.calls and self.config.choice != "auto" and not filtered:
            wanted = (
                f"the tool {self.config.forced!r}" if self.config.choice == "named" else "a tool"
            )
            if self._can_reask():
                self.reask = Reask(
                    f"This reply must call {wanted}, but it contains no {CALLS_OPEN} block. "
                    + FORMAT_HINT,
                    "no tool call",
                )
            else:
                log.warning("tool_choice asked for %s but the model wrote none", wanted)
        if self.reask is not None:
            return [self.reask]
        result: list[Delta | Reask] = [*self._release(out, end=True)]
        if self.finished is not None:
            finished = self.finished
            if self.calls and finished.reason == "stop":
                finished = Finished("tool_calls", finished.message, finished.stop_sequence)
            result.append(finished)
        return result

    # -- internals -----------------------------------------------------------

    def _can_reask(self) -> bool:
        return not self.final and not self.visible

    def _release(self, deltas: list[Delta], end: bool = False) -> list[Delta]:
        """Deltas for the client now; with required/named, held until a call (or the end)."""
        if self.hold_all and not self.calls and not end:
            self.withheld.extend(deltas)
            return []
        if self.withheld:
            deltas, self.withheld = [*self.withheld, *deltas], []
        if self.streamed and any(not isinstance(d, ConversationStarted) for d in deltas):
            self.visible = True
        return deltas

    def _handle(self, events: list[Text | Block]) -> list[Delta]:
        out: list[Delta] = []
        for event in events:
            if self.reask is not None:
                break
            if self.calls:  # the model was told to stop after its block
                continue
            if isinstance(event, Text):
                out.append(TextDelta(event.text))
            else:
                out.extend(self._block(event, visible_before=bool(out)))
        return out

    def _block(self, block: Block, visible_before: bool) -> list[Delta]:
        calls, problem = parse_block(block.body)
        valid: list[tuple[str, dict]] = []
        for call in calls:
            arguments, reason = self.toolbox.arguments(call)
            if arguments is None:
                problem = reason
                break
            if self.config.choice == "named" and call.name != self.config.forced:
                problem = f"this reply must call {self.config.forced!r}, not {call.name!r}"
                break
            valid.append((call.name, arguments))
        if problem or not valid:
            # names in it come from the model: bounded, so junk cannot flood a log line
            problem = (problem or "the block has no usable call")[:300]
            if self._can_reask() and not (visible_before and self.streamed and not self.hold_all):
                self.reask = Reask(
                    f"Your tool call could not be used: {problem}. " + FORMAT_HINT,
                    "invalid tool call",
                )
                return []
            log.warning("tool call block returned as text: %s", problem)
            return [TextDelta(block.raw)]
        if len(valid) > 1 and not self.config.parallel:
            log.info("parallel_tool_calls is false: kept the first of %d calls", len(valid))
            valid = valid[:1]
        out: list[Delta] = []
        for name, arguments in valid:
            index = self.calls
            self.calls += 1
            out.append(ToolCallStart(index, self.new_id(), name))
            out.append(ToolCallArguments(index, orjson.dumps(arguments).decode()))
        return out
