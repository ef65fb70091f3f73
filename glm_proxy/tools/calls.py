"""The tool-call syntax the model is asked to write, and a sans-IO scanner for it.

The web model has no tool interface, so it is asked (see ``tools.prompt``) to
write its calls as one XML-like block::

    <glm_tool_calls>
    <invoke name="get_weather">
    <parameter name="city">Paris</parameter>
    <parameter name="note"><![CDATA[line one
    line "two" & <three>]]></parameter>
    </invoke>
    </glm_tool_calls>

Why this shape: the markers are words no prose or program contains; one
element per parameter means a string value needs no quoting or escaping (the
most common way models break JSON arguments); a ``CDATA`` section keeps any
text verbatim, newlines and ``</parameter>`` included. Values of other types
(numbers, booleans, nested objects and arrays) are written as JSON.

``CallScanner`` is the h11-shaped part: ``feed(text)`` / ``finish()`` return
``Text`` (to show as it is) and ``Block`` (the body of one call block). It
holds back a possible prefix of the start marker, treats markers inside fenced
code blocks as text, and is CDATA-aware inside a block. ``parse_block`` turns
a block body into raw calls (name + parameter texts); typing and validation
against the tool's schema is ``tools.schema``'s job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import json5
import orjson

__all__ = [
    "CALLS_CLOSE",
    "CALLS_OPEN",
    "Block",
    "CallScanner",
    "RawCall",
    "Text",
    "parse_block",
]

CALLS_OPEN = "<glm_tool_calls>"
CALLS_CLOSE = "</glm_tool_calls>"
CDATA_OPEN = "<![CDATA["
CDATA_CLOSE = "]]>"
INVOKE_CLOSE = "</invoke>"
PARAM_CLOSE = "</parameter>"
# name="x", name='x', name=x, or the =x shorthand some models write; other attributes ignored
_NAME = r"""(?:\s+name\s*=|\s*=)\s*(?:"([^"]*)"|'([^']*)'|([^\s"'/>]+))"""
_EXTRA = r"""(?:\s+[\w:-]+\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'/>]+))*"""
INVOKE_OPEN = re.compile(r"<invoke" + _NAME + _EXTRA + r"\s*(/?)>")
PARAM_OPEN = re.compile(r"<parameter" + _NAME + _EXTRA + r"\s*>")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")


@dataclass(frozen=True, slots=True)
class Text:
    """Answer text outside any call block."""

    text: str


@dataclass(frozen=True, slots=True)
class Block:
    """The body of one call block; ``closed`` is False when the stream ended inside it."""

    body: str
    closed: bool = True

    @property
    def raw(self) -> str:
        """The block as the model wrote it (for showing it as text after all)."""
        return CALLS_OPEN + self.body + (CALLS_CLOSE if self.closed else "")


Event = Text | Block


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest proper prefix of ``marker`` that ``text`` ends with."""
    start = text.rfind(marker[0], max(0, len(text) - len(marker) + 1))
    while start != -1:
        tail = text[start:]
        if marker.startswith(tail):
            return len(tail)
        start = text.find(marker[0], start + 1)
    return 0


class CallScanner:
    """Split answer text into ``Text`` and ``Block`` events, incrementally.

    Text is released as soon as it cannot be the start of a marker; only a
    possible prefix of ``<glm_tool_calls>`` at the very end is held back.
    Fenced code (lines opening with ``` or ~~~) is passed through untouched,
    so a model that shows the syntax in a code block is not taken at its word.
    """

    def __init__(self) -> None:
        self._hold = ""  # unreleased text: a possible marker prefix, or a block's body
        self._in_block = False
        self._scan = 0  # block: where the search for the end marker resumes
        self._in_cdata = False
        self._fence: str | None = None  # the opening fence while inside fenced code
        self._line = ""  # the current line's start (enough to recognise a fence)

    def feed(self, text: str) -> list[Event]:
        if not text:
            return []
        self._hold += text
        return self._drain(final=False)

    def finish(self) -> list[Event]:
        """Release everything: held text, or a block the stream ended inside."""
        out = self._drain(final=True)
        if self._in_block:
            out.append(Block(self._hold, closed=False))
        elif self._hold:
            out.append(Text(self._hold))
        self._hold, self._in_block = "", False
        return out

    # -- internals -----------------------------------------------------------

    def _drain(self, final: bool) -> list[Event]:
        out: list[Event] = []
        while self._hold:
            if self._in_block:
                if not self._scan_block(out):
                    break
            elif not self._scan_text(out, final):
                break
        return out

    def _scan_text(self, out: list[Event], final: bool) -> bool:
        """Release text up to a start marker (True: a block began, keep going)."""
        text = self._hold
        pos = 0
        while True:
            newline = text.find("\n", pos)
            end = len(text) if newline == -1 else newline
            if self._fence is None:
                found = text.find(CALLS_OPEN, pos, end)
                if found != -1:
                    self._emit_text(text[:found], out)
                    self._hold = text[found + len(CALLS_OPEN) :]
                    self._in_block, self._scan, self._in_cdata = True, 0, False
                    return True
            if newline == -1:
                break
            self._end_line(text[pos:newline])
            pos = newline + 1
        keep = 0 if final or self._fence is not None else _partial_suffix(text, CALLS_OPEN)
        cut = len(text) - keep
        self._line = (self._line + text[pos:cut])[:64]
        released = text[:cut]
        self._hold = text[cut:]
        if released:
            out.append(Text(released))
        return False

    def _emit_text(self, text: str, out: list[Event]) -> None:
        if text:
            out.append(Text(text))
        self._line = ""

    def _end_line(self, rest: str) -> None:
        """A line ended: it may open or close fenced code."""
        line = (self._line + rest)[:64]
        self._line = ""
        match = _FENCE.match(line)
        if match is None:
            return
        fence, info = match.group(1), match.group(2)
        if self._fence is None:
            if not (fence[0] == "`" and "`" in info):
                self._fence = fence
        elif fence[0] == self._fence[0] and len(fence) >= len(self._fence) and not info.strip():
            self._fence = None

    def _scan_block(self, out: list[Event]) -> bool:
        """Look for the end marker outside CDATA (True: the block ended, keep going)."""
        body = self._hold
        pos = self._scan
        while True:
            if self._in_cdata:
                end = body.find(CDATA_CLOSE, pos)
                if end == -1:
                    self._scan = max(pos, len(body) - len(CDATA_CLOSE) + 1)
                    return False
                self._in_cdata = False
                pos = end + len(CDATA_CLOSE)
                continue
            cdata = body.find(CDATA_OPEN, pos)
            close = body.find(CALLS_CLOSE, pos)
            if close != -1 and (cdata == -1 or close < cdata):
                out.append(Block(body[:close]))
                self._hold = body[close + len(CALLS_CLOSE) :]
                self._in_block = False
                self._line = ""
                return True
            if cdata == -1:
                self._scan = max(pos, len(body) - len(CALLS_CLOSE) + 1)
                return False
            self._in_cdata = True
            pos = cdata + len(CDATA_OPEN)


@dataclass(slots=True)
class RawCall:
    """One ``<invoke>`` as written: the name and each parameter's text, untyped.

    ``body`` holds the invoke's text when it has no parameter elements (a model
    that wrote the arguments as one JSON object); ``problem`` says why the
    invoke cannot be used (never sent to a client, only used in a correction).
    """

    name: str
    params: dict[str, str] = field(default_factory=dict)
    body: str = ""
    problem: str = ""


def _attr(match: re.Match) -> str:
    return next((g for g in match.groups()[:3] if g is not None), "").strip()


def _read_value(body: str, pos: int) -> tuple[str | None, int]:
    """A parameter's text from ``pos`` to its ``</parameter>`` (None if it never ends).

    CDATA sections are taken verbatim; around them, whitespace-only text is
    layout and dropped. Without CDATA, one newline right after the opening tag
    and one before the closing tag are layout too.
    """
    pieces: list[tuple[bool, str]] = []
    while True:
        close = body.find(PARAM_CLOSE, pos)
        cdata = body.find(CDATA_OPEN, pos)
        if cdata != -1 and (close == -1 or cdata < close):
            pieces.append((False, body[pos:cdata]))
            end = body.find(CDATA_CLOSE, cdata + len(CDATA_OPEN))
            if end == -1:
                return None, len(body)
            pieces.append((True, body[cdata + len(CDATA_OPEN) : end]))
            pos = end + len(CDATA_CLOSE)
            continue
        if close == -1:
            return None, len(body)
        pieces.append((False, body[pos:close]))
        pos = close + len(PARAM_CLOSE)
        break
    if any(is_cdata for is_cdata, _ in pieces):
        text = "".join(t for is_cdata, t in pieces if is_cdata or t.strip())
    else:
        text = "".join(t for _, t in pieces)
        text = text.removeprefix("\r\n").removeprefix("\n")
        text = text.removesuffix("\n").removesuffix("\r")
    return text, pos


def _parse_invoke(name: str, body: str, pos: int) -> tuple[RawCall, int]:
    """Parameters of one invoke starting at ``pos``; returns the call and where it ended."""
    call = RawCall(name)
    loose: list[str] = []
    while True:
        param = PARAM_OPEN.search(body, pos)
        close = body.find(INVOKE_CLOSE, pos)
        nxt = INVOKE_OPEN.search(body, pos)
        ends = [i for i in (close, nxt.start() if nxt else -1) if i != -1]
        end = min(ends) if ends else len(body)
        if param is None or param.start() > end:
            loose.append(body[pos:end])
            if close == -1 or close > end:  # no </invoke>: tolerated when nothing is open
                return _loose_body(call, loose), end
            return _loose_body(call, loose), close + len(INVOKE_CLOSE)
        loose.append(body[pos : param.start()])
        key = _attr(param)
        value, pos = _read_value(body, param.end())
        if value is None:
            call.problem = f"parameter {key!r} of {name!r} is not closed with </parameter>"
            return call, len(body)
        if not key:
            call.problem = f"a parameter of {name!r} has no name"
        elif key in call.params:
            call.problem = f"parameter {key!r} of {name!r} is given twice"
        call.params[key] = value


def _loose_body(call: RawCall, loose: list[str]) -> RawCall:
    text = "".join(loose).strip()
    if text and not call.params:
        call.body = text
    return call


def parse_block(body: str) -> tuple[list[RawCall], str]:
    """The invokes in a block body, and a problem with the block as a whole ("" if none)."""
    calls: list[RawCall] = []
    pos = 0
    while True:
        match = INVOKE_OPEN.search(body, pos)
        if match is None:
            break
        name = _attr(match)
        if match.group(4):  # <invoke name="x"/>: a call without arguments
            calls.append(RawCall(name))
            pos = match.end()
            continue
        call, pos = _parse_invoke(name, body, match.end())
        calls.append(call)
    if not calls:
        calls = _json_calls(body)
    if not calls:
        return [], 'the block has no <invoke name="..."> element'
    return calls, ""


def _json_calls(body: str) -> list[RawCall]:
    """Calls a model wrote as JSON inside the block (``{"name": ..., "arguments": {...}}``
    or a list of them), the habit of models trained on JSON tool calls."""
    text = body.strip()
    if text[:1] not in ("{", "["):
        return []
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        try:
            value = json5.loads(text)
        except ValueError:
            return []
    calls = []
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, dict):
            return []
        inner = item.get("function")
        function: dict[str, Any] = inner if isinstance(inner, dict) else item
        name = function.get("name")
        if not isinstance(name, str):
            return []
        arguments: Any = next(
            (function[k] for k in ("arguments", "parameters", "input") if k in function), {}
        )
        body_text = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
        calls.append(RawCall(name.strip(), body=body_text.strip() or "{}"))
    return calls
