"""Output items of a Responses answer, and URL citations as annotations. Pure.

Split from ``formats.responses`` (the wire) and ``_responses_builder`` (the fold and
its events) so each file reads on its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import orjson

from glm_proxy.protocol.events import Citation

CUSTOM_INPUT = "input"
"""The one parameter of the function a custom tool is offered as."""

ID_PREFIX = {
    "message": "msg_",
    "reasoning": "rs_",
    "function_call": "fc_",
    "custom_tool_call": "ctc_",
}


def counter_ids() -> Callable[[str], str]:
    """Deterministic item ids (``msg_0``, ``rs_1`` ...) for tests."""
    count = itertools.count()
    return lambda prefix: f"{prefix}{next(count)}"


def _md_url(url: str) -> str:
    # Same escaping the translator applies to link targets (translate/_render.md_url).
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def url_annotations(text: str, citations: list[Citation]) -> list[dict[str, Any]]:
    """``url_citation`` annotations for every markdown link in ``text`` to a cited source.

    The span covers the whole link ``[label](url)``, so a client that renders
    annotations highlights what the reader sees as the citation.
    """
    found: list[dict[str, Any]] = []
    for citation in citations:
        target = "](" + _md_url(citation.url) + ")"
        start = 0
        while True:
            at = text.find(target, start)
            if at < 0:
                break
            opening = text.rfind("[", 0, at)
            begin = opening if opening >= 0 else at
            end = at + len(target)
            found.append(
                {
                    "type": "url_citation",
                    "start_index": begin,
                    "end_index": end,
                    "url": citation.url,
                    "title": citation.title,
                }
            )
            start = end
    found.sort(key=lambda a: a["start_index"])
    return found


class Item:
    """One output item being built."""

    def __init__(self, kind: str, item_id: str, output_index: int) -> None:
        self.kind = kind
        self.id = item_id
        self.output_index = output_index
        self.text = ""  # message text, reasoning summary, or tool arguments
        self.call_id = ""
        self.name = ""
        self.namespace: str | None = None  # a namespace tool's member: its group's name
        self.annotations: list[dict[str, Any]] = []
        self.status = "in_progress"

    def as_dict(self) -> dict[str, Any]:
        if self.kind == "message":
            content = []
            if self.status != "in_progress":
                content = [self.part()]
            return {
                "id": self.id,
                "type": "message",
                "status": self.status,
                "role": "assistant",
                "content": content,
            }
        if self.kind == "reasoning":
            summary = [] if self.status == "in_progress" else [self.summary_part()]
            return {"id": self.id, "type": "reasoning", "summary": summary, "status": self.status}
        if self.kind == "function_call":
            arguments = "" if self.status == "in_progress" else self.text
            call = {
                "id": self.id,
                "type": "function_call",
                "status": self.status,
                "call_id": self.call_id,
                "name": self.name,
                "arguments": arguments,
            }
        else:
            call = {
                "id": self.id,
                "type": "custom_tool_call",
                "status": self.status,
                "call_id": self.call_id,
                "name": self.name,
                "input": "" if self.status == "in_progress" else self.custom_input(),
            }
        if self.namespace is not None:
            call["namespace"] = self.namespace
        return call

    def part(self) -> dict[str, Any]:
        return {
            "type": "output_text",
            "text": self.text,
            "annotations": self.annotations,
            "logprobs": [],
        }

    def summary_part(self) -> dict[str, Any]:
        return {"type": "summary_text", "text": self.text}

    def custom_input(self) -> str:
        """The free text of a custom tool call (the ``input`` argument)."""
        try:
            arguments = orjson.loads(self.text or "{}")
        except orjson.JSONDecodeError:
            return self.text
        if isinstance(arguments, dict):
            value = arguments.get(CUSTOM_INPUT)
            if isinstance(value, str):
                return value
            if len(arguments) == 1:
                only = next(iter(arguments.values()))
                return only if isinstance(only, str) else orjson.dumps(only).decode()
        return self.text
