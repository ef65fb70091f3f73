"""Rendering merged segments into answer markdown and reasoning text.

The whole answer is re-rendered from the segments and then diffed against what
was already sent; an event that only changed the last block's item (the usual
streaming event) re-renders that item alone and keeps the blocks before it
(:meth:`Renderer.rerender`). Text blocks render incrementally (the part before a
possibly incomplete marker is final and kept per item), so an event costs time
proportional to what is new, not to the length of the answer.
Rendering is a pure function of the segments plus the citation book, so every
event shape of the same answer renders the same way.

Blocks (one per content item, in segment order, joined with the separator):

* ``text``: answer text with citation markers replaced by `` [n](url)`` links;
* ``code``: ``"```python\\n" + code``, plus ``"\\n```"`` once the block is closed;
* ``execution_output``: once closed, ``"```\\n" + output + "\\n```"``; an output
  identical to one already rendered is skipped (the upstream repeats it);
* ``image``: once closed, ``![image](url)`` per new http(s) URL, one per line;
* ``think``/``text_thinking``: reasoning text (markers removed, never linked).

A block is *closed* when its part (or the item itself) is finished, when the
stream ended, or when a later block of the same channel exists (the upstream
moved on, so the block cannot legitimately change any more).

Citation markers: ``【n†source】`` (also 来源/源; n = n-th entry of the
``metadata_list`` sources, in order of appearance), ``【turn0search1】`` and a
bare ``turn0search1`` (looked up by ``match_key``). A marker becomes a link
numbered by first citation in the answer; a marker without a known source is
removed, except a bare match right after an ASCII letter (``return0x1``),
which is ordinary text unless its key is a known ``match_key``. While a block
is open, a trailing fragment that may still grow into a marker (an unclosed
``【…``, or a prefix of ``turn\\d+[a-z]+\\d+``) is held back; when the block
closes, a truncated bracketed marker is dropped and any other held fragment is
released as plain text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from glm_proxy.protocol.translate._citations import SOURCES_HEADING, CitationBook, md_url
from glm_proxy.protocol.translate._segments import REASONING_KINDS, Item, Segment, Source

__all__ = ["SOURCES_HEADING", "Renderer", "Rendering", "render_marked"]

_MARKED_KINDS = REASONING_KINDS | {"text"}  # rendered by _cached_marked

# bare form: the letters never run into a new "turn<digit>" (turn2turn0search1 is "turn2"
# followed by the marker turn0search1)
_MARKER = re.compile(
    r"【(\d+)†[^】\n]{0,16}】|【(turn\d+[a-zA-Z]+\d+)】|(turn\d+(?:(?!turn\d)[a-zA-Z])+\d+)"
)
_TURN_PREFIX = r"t(?:u(?:r(?:n(?:\d+(?:[a-zA-Z]+\d*)?)?)?)?)?"
_OPEN_TAIL = re.compile(rf"(?:【(?:\d+(?:†[^】\n]{{0,16}})?|{_TURN_PREFIX})?|{_TURN_PREFIX})\Z")
_TRUNCATED_TAIL = re.compile(r"【(?:\d+†[^】\n]{0,16}|turn\d+[a-zA-Z]+\d*)\Z")
_TAIL_WINDOW = 48  # longer than any marker we hold back
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(slots=True)
class Rendering:
    """The rendered answer and reasoning, each as the part from its ``_base`` on.

    The characters before ``answer_base`` (``reasoning_base``) were sent to the
    client already and are no longer kept (:meth:`Renderer.release`); the lengths
    count them (``answer_base + len(answer)`` is the whole answer's length).
    """

    answer: str
    reasoning: str
    images: list[str]  # raw URLs rendered into the answer, in order
    answer_base: int = 0
    reasoning_base: int = 0


class Renderer:
    """Renders segments; owns the citation book so numbering is stable across events.

    :meth:`render` renders everything; :meth:`rerender` is its shortcut for the
    usual streaming event, in which one text grew and nothing else changed: it
    renders that item only and puts it after the other blocks, as kept from the
    last full render. The marker callbacks are bound methods reading the sources
    the last full render collected (an event that adds sources is always rendered
    in full), so no closure is built per event (the markers' replacements are
    bound methods made where used: kept on the renderer they would make a
    reference cycle, and every answer's renderer would wait for the collector).
    """

    def __init__(self, separator: str, include_reasoning: bool) -> None:
        self.separator = separator
        self.include_reasoning = include_reasoning
        self.book = CitationBook()
        self._quotes: list[Source | None] = []  # every segment's metadata_list, in order
        self._results: dict[str, Source] = {}  # match_key -> source, first seen wins
        # what the last streaming (not closing) full render left for rerender():
        self._last: Rendering | None = None
        self._answer_tail: tuple[Segment, Item] | None = None  # the last answer item
        self._answer_head: Block = _EMPTY  # the answer's blocks before it, joined
        self._reasoning_tail: tuple[Segment, Item] | None = None
        self._reasoning_head: Block = _EMPTY

    def render(self, segments: Iterable[Segment], closing: bool) -> Rendering:
        """Render every block; ``closing``: the stream ended, so every block is closed.

        The result is the renderer's own: :meth:`rerender` updates it in place later.
        """
        quotes: list[Source | None] = []
        results: dict[str, Source] = {}
        answer_items: list[tuple[Segment, Item]] = []
        reasoning_items: list[tuple[Segment, Item]] = []
        consult = self.book.consult
        for seg in segments:
            if seg.skipped:
                continue
            if seg.quotes:
                quotes.extend(seg.quotes)
            for key, source in seg.results.items():
                results.setdefault(key, source)
                consult(source)
            for quote in seg.quotes:
                consult(quote)
            for item in seg.items.values():
                target = reasoning_items if item.kind in REASONING_KINDS else answer_items
                target.append((seg, item))
        self._quotes, self._results = quotes, results

        images: list[str] = []
        seen_outputs: set[str] = set()
        answer_blocks: list[Block] = []
        last = len(answer_items) - 1
        for i, (seg, item) in enumerate(answer_items):
            closed = closing or seg.finished or item.finished or i < last
            if item.kind == "text":
                answer_blocks.append(_cached_marked(item, closed, self._link_marker))
            else:
                answer_blocks.append((0, _other_block(item, closed, images, seen_outputs)))

        reasoning_blocks: list[Block] = []
        if self.include_reasoning:
            last = len(reasoning_items) - 1
            for i, (seg, item) in enumerate(reasoning_items):
                closed = closing or seg.finished or item.finished or i < last
                reasoning_blocks.append(_cached_marked(item, closed, self._drop_marker))
        sep = self.separator
        answer_base, answer = _join(sep, answer_blocks)
        reasoning_base, reasoning = _join(sep, reasoning_blocks)
        rendering = Rendering(answer, reasoning, images, answer_base, reasoning_base)
        if closing:
            self._last = None  # the answer is over: nothing to continue from
        else:
            self._last = rendering
            self._answer_tail = answer_items[-1] if answer_items else None
            self._answer_head = _join(sep, answer_blocks[:-1])
            self._reasoning_tail = reasoning_items[-1] if reasoning_blocks else None
            self._reasoning_head = _join(sep, reasoning_blocks[:-1])
        return rendering

    def rerender(self, changed: Item | None) -> Rendering | None:
        """What :meth:`render` (not closing) would return now, rendering only ``changed``.

        Valid when, since the last full render (which was not closing), nothing but
        ``changed``'s value changed (``None``: nothing changed at all). Returns None
        when the shortcut does not apply (``changed`` is not the last text, code or
        reasoning item, or there was no full render yet); the caller then renders in
        full. The returned object is the renderer's own, valid until the next call.
        """
        last = self._last
        if last is None:
            return None
        if changed is None:
            return last
        kind = changed.kind
        if kind in REASONING_KINDS:
            if not self.include_reasoning:
                return last  # reasoning is not rendered at all
            tail = self._reasoning_tail
            if tail is None or tail[1] is not changed:
                return None
            seg = tail[0]
            block = _cached_marked(changed, seg.finished or changed.finished, self._drop_marker)
            last.reasoning_base, last.reasoning = _append(
                self._reasoning_head, self.separator, block
            )
            return last
        tail = self._answer_tail
        if tail is None or tail[1] is not changed:
            return None
        seg = tail[0]
        if kind == "text":
            block = _cached_marked(changed, seg.finished or changed.finished, self._link_marker)
        elif kind == "code":
            block = (0, _code_block(changed.value, seg.finished or changed.finished))
        else:
            return None  # output and images depend on the blocks before them
        last.answer_base, last.answer = _append(self._answer_head, self.separator, block)
        return last

    def release(self, answer_sent: int, reasoning_sent: int) -> None:
        """The client has the first ``answer_sent``/``reasoning_sent`` characters of the
        last rendering: its last text (reasoning) item may drop that output.

        Only the last item of each: it is the one that grows, while the blocks before
        it keep their place. Each keeps ``Item.EDGE`` characters of output (the
        renderer reads the last one) and drops ``Item.TRIM`` or more at once.
        """
        if self._last is None:
            return  # no streaming render to continue from (or the answer is over)
        sep = len(self.separator)
        for answer, tail, head, sent in (
            (True, self._answer_tail, self._answer_head, answer_sent),
            (False, self._reasoning_tail, self._reasoning_head, reasoning_sent),
        ):
            if tail is None:
                continue
            item = tail[1]
            if item.kind not in _MARKED_KINDS:
                continue
            before = head[0] + len(head[1])
            start = before + sep if before else 0  # where the item's block begins
            cut = min(sent - start, item.out_base + len(item.done_out)) - Item.EDGE
            if cut - item.out_base >= Item.TRIM:
                kept, item.done_out = item.done_out, item.done_out[cut - item.out_base :]
                dropped, item.out_base = cut - item.out_base, cut
                self._forget_sent(answer, kept, item.done_out, dropped)

    def _forget_sent(self, answer: bool, kept: str, trimmed: str, dropped: int) -> None:
        """The last rendering may hold the item's output untrimmed (when it is all of
        the answer's, or the reasoning's, text): it takes the trimmed one."""
        last = self._last
        if last is None:
            return
        if answer and last.answer is kept:
            last.answer, last.answer_base = trimmed, last.answer_base + dropped
        elif not answer and last.reasoning is kept:
            last.reasoning, last.reasoning_base = trimmed, last.reasoning_base + dropped

    def forget(self) -> None:
        """Segments changed without a report of what: the next render is a full one."""
        self._last = None

    def _resolve(self, m: re.Match[str]) -> Source | None:
        number = m.group(1)
        if number is not None:
            n = int(number)
            quotes = self._quotes
            return quotes[n - 1] if 0 < n <= len(quotes) else None
        return self._results.get(m.group(2) or m.group(3))

    def _link_marker(self, m: re.Match[str]) -> str | None:
        source = self._resolve(m)
        if source is None:
            return None if _inside_word(m) else ""
        citation = self.book.cite(source)
        return f"[{citation.index}]({md_url(citation.url)})"

    def _drop_marker(self, m: re.Match[str]) -> str | None:
        return None if self._resolve(m) is None and _inside_word(m) else ""


# A rendered block or several joined: (base, text), the text from character base on.
# Output the client has may be gone (base > 0); an empty block is (0, "").
Block = tuple[int, str]
_EMPTY: Block = (0, "")


def _join(sep: str, blocks: list[Block]) -> Block:
    """``sep.join`` of the non-empty blocks, from the start of the last one with a base.

    What comes before that block's kept text is gone with it: it counts in the
    base, by length.
    """
    base, pieces, seen = 0, [], False
    for start, text in blocks:
        if not (start or text):
            continue
        if seen:
            pieces.append(sep)
        seen = True
        if start:
            base += sum(map(len, pieces)) + start
            pieces = [text]
        else:
            pieces.append(text)
    return base, "".join(pieces)


def _append(head: Block, sep: str, block: Block) -> Block:
    """``_join(sep, [*blocks, block])`` where ``head`` is ``_join(sep, blocks)``."""
    head_base, head_text = head
    if not (head_base or head_text):
        return block
    start, text = block
    if not (start or text):
        return head
    if start:
        return head_base + len(head_text) + len(sep) + start, text
    return head_base, head_text + sep + text


Replace = Callable[[re.Match[str]], "str | None"]


def render_marked(
    raw: str, closed: bool, replace: Replace, start: int = 0, last: str = ""
) -> tuple[str, int]:
    """Render ``raw[start:]`` with markers replaced; returns (output, end of final raw).

    An open block holds back a trailing, possibly incomplete marker: the returned
    end stops before it. ``replace`` returns a link, "" to drop the marker, or None
    when the match is ordinary text after all. A link gets one leading space unless
    the output so far (``last`` = its last character) is empty or ends in whitespace.

    Rendering ``raw`` in pieces gives the same result as rendering it at once: a
    match that starts before the held tail is complete (a non-digit follows it) and
    is rendered whole even if it reaches into the tail, and the end moves past it.
    """
    pattern = _TRUNCATED_TAIL if closed else _OPEN_TAIL
    tail = pattern.search(raw, max(start, len(raw) - _TAIL_WINDOW))
    hold = len(raw) if tail is None else tail.start()
    if raw.find("【", start, hold) < 0 and raw.find("turn", start, hold) < 0:
        return raw[start:hold], hold  # no marker can start before the held tail
    out: list[str] = []
    pos = start
    for m in _MARKER.finditer(raw, start):
        if m.start() >= hold:
            break
        text = raw[pos : m.start()]
        if text:
            out.append(text)
            last = text[-1]
        link = replace(m)
        if link is None:
            out.append(m.group())
            last = m.group()[-1]
        elif link:
            if last and not last.isspace():
                out.append(" ")
            out.append(link)
            last = link[-1]
        pos = m.end()
    end = max(hold, pos)
    out.append(raw[pos:end])
    return "".join(out), end


def _cached_marked(item: Item, closed: bool, replace: Replace) -> Block:
    """A text or reasoning item's block, rendered from where the last call stopped.

    The item's window holds its string from ``item.base`` on, and the part up to
    ``done_raw`` is rendered for good: only the rest is read. The window then drops
    what it will not need again (``Item.trim``).
    """
    key = (item.version, closed)
    if item.rendered_key != key:
        raw, start = item.value, item.done_raw - item.base
        if raw.find("t", start) < 0 and raw.find("【", start) < 0:
            # every marker and every held tail starts with "【" or "t": all of it is final
            # (what render_marked returns too, without its searches)
            out = raw[start:] if start else raw
            item.done_raw = item.length
        else:
            out, end = render_marked(raw, closed, replace, start, item.done_out[-1:])
            item.done_raw = item.base + end
        if out:
            item.done_out = item.done_out + out if item.done_out else out
        item.rendered_key = key
        item.trim()
    return item.out_base, item.done_out


def _other_block(item: Item, closed: bool, images: list[str], seen_outputs: set[str]) -> str:
    """The block of a code, execution output or image item (kept whole: seldom long).

    ``images`` and ``seen_outputs`` are what the blocks before it rendered (each is
    shown once); this block's are added.
    """
    if item.kind == "code":
        return _code_block(item.value, closed)
    if not closed:
        return ""
    if item.kind == "execution_output":
        output = item.value.rstrip("\n")
        fresh = output.strip() and output not in seen_outputs
        seen_outputs.add(output)
        return f"```\n{output}\n```" if fresh else ""
    new = [url for url in item.urls if url not in images]  # image
    images.extend(new)
    return "\n".join(f"![image]({md_url(url)})" for url in new)


def _code_block(code: str, closed: bool) -> str:
    if not code:
        return ""
    return "```python\n" + code.rstrip("\n") + ("\n```" if closed else "")


def _inside_word(m: re.Match[str]) -> bool:
    """A bare ``turn0x1`` right after an ASCII letter (``return0x1``) is a word, not a marker.

    Only letters count: a marker ends in a digit or 】, so text after a removed marker
    (``turn0search7turn0search7``) is never mistaken for a word.
    """
    start = m.start()
    return m.group(3) is not None and start > 0 and m.string[start - 1] in _LETTERS
