"""The wire format of ``n`` > 1 chat choices: one ``ChatWire`` per choice, one ``[DONE]``.

Each choice gets its own ``ChatWire`` with its ``index``: streamed chunks of
the choices interleave as they arrive, as OpenAI's do, and a non-stream
answer lists the choices in index order. The usage adds up the completions
and counts the prompt once. The job side is ``streaming.choice_jobs``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson

from glm_proxy.errors import GLMProxyError
from glm_proxy.protocol.events import Delta
from glm_proxy.protocol.formats.openai import ChatWire, chat_usage
from glm_proxy.protocol.sse import DONE
from glm_proxy.streaming.choice_jobs import Choice

__all__ = ["ChoicesWire"]


def _total_usage(usages: list[dict[str, Any]]) -> dict[str, Any]:
    """The prompt once, the completions added up."""
    prompt = usages[0]["prompt_tokens"]
    completion = sum(u["completion_tokens"] for u in usages)
    reasoning = sum(u["completion_tokens_details"]["reasoning_tokens"] for u in usages)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


class ChoicesWire:
    """The pump's ``Wire`` for ``n`` choices: one ``ChatWire`` per choice, one ``[DONE]``."""

    def __init__(self, make_wire: Callable[[int], ChatWire], n: int, *, include_usage: bool):
        self.wires = [make_wire(index) for index in range(n)]
        self.include_usage = include_usage
        self.usage: dict[str, Any] | None = None
        self._opened = [False] * n

    def open(self) -> bytes:
        return b""  # each choice opens (role chunk) with its first delta

    def _open(self, index: int) -> bytes:
        if self._opened[index]:
            return b""
        self._opened[index] = True
        return self.wires[index].open()

    def feed(self, item: Choice) -> bytes:
        return self._open(item.index) + self.wires[item.index].feed(item.delta)

    def finish(self, end: object = None) -> bytes:
        out = [self._open(index) for index in range(len(self.wires))]
        self.usage = _total_usage([chat_usage(w.prompt_text, w.acc) for w in self.wires])
        if self.include_usage:
            first = self.wires[0]
            chunk = {
                "id": first.response_id(),
                "object": "chat.completion.chunk",
                "created": first.created,
                "model": first.model,
                "system_fingerprint": None,
                "choices": [],
                "usage": self.usage,
            }
            out.append(b"data: " + orjson.dumps(chunk) + b"\n\n")
        out.append(DONE)
        return b"".join(out)

    def error(self, err: GLMProxyError) -> bytes:
        return self.wires[0].error(err)

    def keepalive(self) -> bytes:
        return self.wires[0].keepalive()

    def collect(self, items: Iterable[Choice]) -> dict[str, Any]:
        grouped: list[list[Delta]] = [[] for _ in self.wires]
        for item in items:
            grouped[item.index].append(item.delta)
        bodies = [wire.collect(deltas) for wire, deltas in zip(self.wires, grouped, strict=True)]
        body = dict(bodies[0])
        body["choices"] = [{**b["choices"][0], "index": i} for i, b in enumerate(bodies)]
        self.usage = body["usage"] = _total_usage([b["usage"] for b in bodies])
        return body
