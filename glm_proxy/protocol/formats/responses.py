"""Typed deltas -> OpenAI Responses API events and ``response`` objects. Pure.

One ``ResponseBuilder`` folds the deltas of one answer into output items and
says, for every delta, which typed events announce the change. The stream
writes those events; the non-stream path ignores them and returns
``builder.response()``. Both read the same fold, so a streamed answer and a
non-streamed one always carry the same output.

The event sequence is the one the official SDK's ``responses.stream()``
helper accumulates (``openai/lib/streaming/responses``): ``response.created``,
``response.in_progress``, then per output item ``response.output_item.added``,
its parts and deltas, ``response.output_item.done``; finally
``response.completed`` (or ``response.incomplete``/``response.failed``).
Every event carries a ``sequence_number`` counting from 0.

Output items:

* reasoning -> a ``reasoning`` item whose summary is the reasoning text
  (``reasoning_summary_part``/``reasoning_summary_text`` events);
* answer text -> a ``message`` item with one ``output_text`` part; web sources
  the answer cites become ``url_citation`` annotations on the markdown links
  the translator wrote into the text;
* a tool call -> a ``function_call`` item, or a ``custom_tool_call`` item when
  the name is one of the request's custom tools (offered to the model as a
  function whose one parameter, ``input``, is the free text); a member of a
  ``namespace`` tool is named as the member, with the group in ``namespace``.

No clock, no random: ids come from an injected ``new_id``.

This module is the wire (events -> SSE bytes, the non-stream ``collect``);
the fold is ``_responses_builder.ResponseBuilder`` and the output items are
``_responses_items``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from glm_proxy.errors import GLMProxyError
from glm_proxy.protocol.events import Delta
from glm_proxy.protocol.formats._responses_builder import ResponseBuilder
from glm_proxy.protocol.formats._responses_items import CUSTOM_INPUT, counter_ids, url_annotations
from glm_proxy.protocol.sse import KEEPALIVE

__all__ = [
    "CUSTOM_INPUT",
    "ResponseBuilder",
    "ResponseCancelled",
    "ResponsesWire",
    "counter_ids",
    "encode_response_event",
    "url_annotations",
]


def encode_response_event(event: dict[str, Any]) -> bytes:
    """One SSE event, named like its ``type`` as OpenAI sends them."""
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


class ResponseCancelled(GLMProxyError):
    """The client cancelled the response (``POST /v1/responses/<id>/cancel``).

    Queued into the answer job as a ``Failure`` so the pump ends the stream
    like any other final item; the wire renders it as a cancellation, not an
    error.
    """

    status = 400
    openai_type = "invalid_request_error"
    code = "response_cancelled"


class ResponsesWire:
    """The Responses stream as bytes: the ``Wire`` the streaming pump drives.

    ``on_end`` runs when the answer is over (finished, failed or cancelled),
    before the final event's bytes are returned: the view stores the
    response there, so a client that continues it at once finds it.
    """

    def __init__(
        self, builder: ResponseBuilder, on_end: Callable[[ResponseBuilder], None] | None = None
    ) -> None:
        self.builder = builder
        self.on_end = on_end
        self.opened = False
        self.usage: dict[str, Any] | None = None

    @staticmethod
    def _encode(events: list[dict[str, Any]]) -> bytes:
        return b"".join(encode_response_event(e) for e in events)

    def _ended(self, events: list[dict[str, Any]]) -> bytes:
        usage = self.builder.usage()
        self.usage = {  # OpenAI chat terms, for the per-key counters
            "prompt_tokens": usage["input_tokens"],
            "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["total_tokens"],
        }
        if self.on_end is not None:
            self.on_end(self.builder)
        return self._encode(events)

    def open(self) -> bytes:
        if self.opened:
            return b""
        self.opened = True
        return self._encode(self.builder.start())

    def feed(self, delta: Delta) -> bytes:
        return self._encode(self.builder.feed(delta))

    def finish(self, end: Any = None) -> bytes:
        return self.open() + self._ended(self.builder.finish())

    def error(self, err: GLMProxyError) -> bytes:
        """A failure after the stream began (the SDK needs ``response.created`` first)."""
        if isinstance(err, ResponseCancelled):
            return self.open() + self._ended(self.builder.cancel())
        return self.open() + self._ended(self.builder.fail(err))

    def keepalive(self) -> bytes:
        return KEEPALIVE

    def collect(self, deltas: Iterable[Delta]) -> dict[str, Any]:
        """The non-stream ``response`` object for a whole answer."""
        for delta in deltas:
            self.builder.feed(delta)
        self._ended(self.builder.finish())
        return self.builder.response()
