"""``ResponseBuilder``: the deltas of one Responses answer folded into output items. Pure.

For every delta it returns the typed events that announce the change; the
stream writes them (``formats.responses.ResponsesWire``), the non-stream path
ignores them and reads ``response()``. Both read the same fold, so a streamed
answer and a non-streamed one always carry the same output. The event
sequence and the item kinds are described in ``formats.responses``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from glm_proxy.errors import GLMProxyError
from glm_proxy.protocol.events import (
    Citation,
    ConversationStarted,
    Delta,
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallArguments,
    ToolCallStart,
)
from glm_proxy.protocol.formats._responses_items import (
    ID_PREFIX,
    Item,
    counter_ids,
    url_annotations,
)
from glm_proxy.protocol.usage import estimate_tokens


class ResponseBuilder:
    """Deltas of one answer -> Responses events, and the ``response`` object they build.

    ``skeleton`` is the response object without output (id, model, echoed
    request fields); ``prompt_text`` feeds the usage estimate.
    """

    def __init__(
        self,
        skeleton: dict[str, Any],
        *,
        prompt_text: str = "",
        custom_tools: frozenset[str] = frozenset(),
        new_id: Callable[[str], str] | None = None,
        include_reasoning: bool = True,
        namespaced: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self.skeleton = skeleton
        self.prompt_text = prompt_text
        self.custom_tools = custom_tools
        self.namespaced = namespaced or {}  # flat tool name -> (namespace, member name)
        self.new_id = new_id or counter_ids()
        self.include_reasoning = include_reasoning
        self.items: list[Item] = []
        self.current: Item | None = None
        self.calls: dict[int, Item] = {}  # tool-call index -> item
        self.citations: list[Citation] = []
        self.conversation_id: str | None = None
        self.status = "in_progress"
        self.incomplete_reason: str | None = None
        self.error: dict[str, Any] | None = None
        self.sequence = 0

    # -- events ----------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def start(self) -> list[dict[str, Any]]:
        """``response.created`` and ``response.in_progress``."""
        return [
            self._event("response.created", response=self.response()),
            self._event("response.in_progress", response=self.response()),
        ]

    def feed(self, delta: Delta) -> list[dict[str, Any]]:
        if isinstance(delta, TextDelta):
            return self._text(delta.text) if delta.text else []
        if isinstance(delta, ReasoningDelta):
            if not delta.text or not self.include_reasoning:
                return []
            return self._reasoning(delta.text)
        if isinstance(delta, ToolCallStart):
            return self._call_start(delta)
        if isinstance(delta, ToolCallArguments):
            return self._call_arguments(delta)
        if isinstance(delta, Citation):
            self.citations.append(delta)
        elif isinstance(delta, ConversationStarted):
            self.conversation_id = delta.conversation_id
        elif isinstance(delta, Finished):
            if delta.reason == "content_filter":
                self.incomplete_reason = "content_filter"
            elif delta.reason == "length":
                self.incomplete_reason = "max_output_tokens"
        return []

    def finish(self) -> list[dict[str, Any]]:
        """Close the open item; ``response.completed`` or ``response.incomplete``."""
        events = self._close()
        self.status = "incomplete" if self.incomplete_reason else "completed"
        kind = "response.incomplete" if self.incomplete_reason else "response.completed"
        return [*events, self._event(kind, response=self.response())]

    def fail(self, error: GLMProxyError) -> list[dict[str, Any]]:
        """An upstream failure after the stream began: ``error``, then ``response.failed``."""
        events = self._close(status="incomplete")
        self.status = "failed"
        self.error = {
            "code": "rate_limit_exceeded" if error.status == 429 else "server_error",
            "message": error.message,
        }
        events.append(
            self._event("error", code=error.code, message=error.message, param=error.param)
        )
        events.append(self._event("response.failed", response=self.response()))
        return events

    def cancel(self) -> list[dict[str, Any]]:
        """The client cancelled the response: status ``cancelled``, the stream ends."""
        events = self._close(status="incomplete")
        self.status = "cancelled"
        return [*events, self._event("response.incomplete", response=self.response())]

    # -- the response object -----------------------------------------------------------

    def output(self) -> list[dict[str, Any]]:
        return [item.as_dict() for item in self.items]

    def output_text(self) -> str:
        return "".join(item.text for item in self.items if item.kind == "message")

    def usage(self) -> dict[str, Any]:
        reasoning = sum(estimate_tokens(i.text) for i in self.items if i.kind == "reasoning")
        visible = sum(estimate_tokens(i.text) for i in self.items if i.kind != "reasoning")
        prompt = estimate_tokens(self.prompt_text)
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": visible + reasoning,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + visible + reasoning,
        }

    def response(self) -> dict[str, Any]:
        """The ``response`` object as it stands (final once ``finish``/``fail`` ran)."""
        final = self.status != "in_progress"
        body = {
            **self.skeleton,
            "status": self.status,
            "error": self.error,
            "incomplete_details": (
                {"reason": self.incomplete_reason}
                if self.status == "incomplete" and self.incomplete_reason
                else None
            ),
            "output": self.output(),
            "usage": self.usage() if final else None,
        }
        if final:
            body["output_text"] = self.output_text()
        return body

    # -- items -------------------------------------------------------------------------

    def _open(self, kind: str) -> tuple[Item, list[dict[str, Any]]]:
        events = self._close()
        item = Item(kind, self.new_id(ID_PREFIX[kind]), len(self.items))
        self.items.append(item)
        self.current = item
        return item, events

    def _added(self, item: Item) -> dict[str, Any]:
        return self._event(
            "response.output_item.added", output_index=item.output_index, item=item.as_dict()
        )

    def _text(self, text: str) -> list[dict[str, Any]]:
        item = self.current
        events: list[dict[str, Any]] = []
        if item is None or item.kind != "message":
            item, events = self._open("message")
            events.append(self._added(item))
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=item.id,
                    output_index=item.output_index,
                    content_index=0,
                    part=item.part(),
                )
            )
        item.text += text
        events.append(
            self._event(
                "response.output_text.delta",
                item_id=item.id,
                output_index=item.output_index,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return events

    def _reasoning(self, text: str) -> list[dict[str, Any]]:
        item = self.current
        events: list[dict[str, Any]] = []
        if item is None or item.kind != "reasoning":
            item, events = self._open("reasoning")
            events.append(self._added(item))
            events.append(
                self._event(
                    "response.reasoning_summary_part.added",
                    item_id=item.id,
                    output_index=item.output_index,
                    summary_index=0,
                    part={"type": "summary_text", "text": ""},
                )
            )
        item.text += text
        events.append(
            self._event(
                "response.reasoning_summary_text.delta",
                item_id=item.id,
                output_index=item.output_index,
                summary_index=0,
                delta=text,
            )
        )
        return events

    def _call_start(self, delta: ToolCallStart) -> list[dict[str, Any]]:
        kind = "custom_tool_call" if delta.name in self.custom_tools else "function_call"
        item, events = self._open(kind)
        item.call_id = delta.call_id
        item.namespace, item.name = self.namespaced.get(delta.name, (None, delta.name))
        self.calls[delta.index] = item
        events.append(self._added(item))
        return events

    def _call_arguments(self, delta: ToolCallArguments) -> list[dict[str, Any]]:
        item = self.calls.get(delta.index)
        if item is None or item.status != "in_progress" or not delta.text:
            return []
        item.text += delta.text
        if item.kind == "custom_tool_call":
            return []  # the free text is known only once the JSON arguments are complete
        return [
            self._event(
                "response.function_call_arguments.delta",
                item_id=item.id,
                output_index=item.output_index,
                delta=delta.text,
            )
        ]

    def _close(self, status: str = "completed") -> list[dict[str, Any]]:
        item = self.current
        if item is None:
            return []
        self.current = None
        item.status = status
        where = {"item_id": item.id, "output_index": item.output_index}
        events: list[dict[str, Any]] = []
        if item.kind == "message":
            item.annotations = url_annotations(item.text, self.citations)
            for index, annotation in enumerate(item.annotations):
                events.append(
                    self._event(
                        "response.output_text.annotation.added",
                        **where,
                        content_index=0,
                        annotation_index=index,
                        annotation=annotation,
                    )
                )
            events.append(
                self._event(
                    "response.output_text.done",
                    **where,
                    content_index=0,
                    text=item.text,
                    logprobs=[],
                )
            )
            events.append(
                self._event(
                    "response.content_part.done", **where, content_index=0, part=item.part()
                )
            )
        elif item.kind == "reasoning":
            events.append(
                self._event(
                    "response.reasoning_summary_text.done", **where, summary_index=0, text=item.text
                )
            )
            events.append(
                self._event(
                    "response.reasoning_summary_part.done",
                    **where,
                    summary_index=0,
                    part=item.summary_part(),
                )
            )
        elif item.kind == "function_call":
            events.append(
                self._event("response.function_call_arguments.done", **where, arguments=item.text)
            )
        else:
            text = item.custom_input()
            if text:
                events.append(
                    self._event("response.custom_tool_call_input.delta", **where, delta=text)
                )
            events.append(self._event("response.custom_tool_call_input.done", **where, input=text))
        events.append(
            self._event(
                "response.output_item.done", output_index=item.output_index, item=item.as_dict()
            )
        )
        return events
