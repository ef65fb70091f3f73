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

from glm_proxy.protocol.events import Citation
from glm_proxy.protocol.translate._segments import REASONING_KINDS, Item, Segment, Source

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

SOURCES_HEADING = "\n\n**Sources**\n"


def md_url(url: str) -> str:
    """Make a URL safe inside a markdown link destination ``(...)``."""
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def md_text(text: str) -> str:
    """Make text safe inside a markdown link label ``[...]``."""
    return " ".join(text.replace("[", "\\[").replace("]", "\\]").split())


class CitationBook:
    """Sources the answer has cited, numbered in order of first citation (from 1)."""

    def __init__(self) -> None:
        self.cited: dict[str, Citation] = {}  # url -> citation
        self.consulted: dict[str, Source] = {}  # url -> every source the upstream found
        self.new: list[Citation] = []  # cited since the last take_new(); read per event

    def consult(self, source: Source | None) -> None:
        if source is not None and source.url not in self.consulted:
            self.consulted[source.url] = source

    def cite(self, source: Source) -> Citation:
        citation = self.cited.get(source.url)
        if citation is None:
            citation = Citation(len(self.cited) + 1, source.title, source.url)
            self.cited[source.url] = citation
            self.new.append(citation)
        return citation

    def take_new(self) -> list[Citation]:
        """Citations made since the last call (each is announced once)."""
        new, self.new = self.new, []
        return new

    def sources_list(self, include_uncited: bool = False) -> str:
        """``"\\n\\n**Sources**\\n1. [title](url)\\n2. ..."``, or "" when there is none.

        Cited sources first, numbered as in the text; with ``include_uncited`` the
        other pages the upstream consulted follow, numbered on.
        """
        entries = [(c.title, c.url) for c in self.cited.values()]
        if include_uncited:
            entries += [
                (s.title, s.url) for s in self.consulted.values() if s.url not in self.cited
            ]
        if not entries:
            return ""
        lines = (
            f"{i}. [{md_text(title)}]({md_url(url)})" for i, (title, url) in enumerate(entries, 1)
        )
        return SOURCES_HEADING + "\n".join(lines)


@dataclass(slots=True)
class Rendering:
    answer: str
    reasoning: str
    images: list[str]  # raw URLs rendered into the answer, in order


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
        self._answer_head = ""  # the answer's blocks before it, joined
        self._reasoning_tail: tuple[Segment, Item] | None = None
        self._reasoning_head = ""

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
        answer_blocks = []
        last = len(answer_items) - 1
        for i, (seg, item) in enumerate(answer_items):
            closed = closing or seg.finished or item.finished or i < last
            if item.kind == "text":
                block = _cached_marked(item, closed, self._link_marker)
            elif item.kind == "code":
                block = _code_block(item.value, closed)
            elif not closed:
                block = ""
            elif item.kind == "execution_output":
                output = item.value.rstrip("\n")
                fresh = output.strip() and output not in seen_outputs
                block = f"```\n{output}\n```" if fresh else ""
                seen_outputs.add(output)
            else:  # image
                new = [url for url in item.urls if url not in images]
                images.extend(new)
                block = "\n".join(f"![image]({md_url(url)})" for url in new)
            answer_blocks.append(block)

        reasoning_blocks = []
        if self.include_reasoning:
            last = len(reasoning_items) - 1
            for i, (seg, item) in enumerate(reasoning_items):
                closed = closing or seg.finished or item.finished or i < last
                reasoning_blocks.append(_cached_marked(item, closed, self._drop_marker))
        sep = self.separator
        rendering = Rendering(
            answer=_join(sep, answer_blocks),
            reasoning=_join(sep, reasoning_blocks),
            images=images,
        )
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
            head = self._reasoning_head
            last.reasoning = _append(head, self.separator, block) if head else block
            return last
        tail = self._answer_tail
        if tail is None or tail[1] is not changed:
            return None
        seg = tail[0]
        if kind == "text":
            block = _cached_marked(changed, seg.finished or changed.finished, self._link_marker)
        elif kind == "code":
            block = _code_block(changed.value, seg.finished or changed.finished)
        else:
            return None  # output and images depend on the blocks before them
        head = self._answer_head
        last.answer = _append(head, self.separator, block) if head else block
        return last

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


def _join(sep: str, blocks: list[str]) -> str:
    """``sep.join`` of the non-empty blocks."""
    return sep.join([b for b in blocks if b])


def _append(head: str, sep: str, block: str) -> str:
    """``_join(sep, [*blocks, block])`` where ``head`` is ``_join(sep, blocks)``."""
    if not head:
        return block
    return head + sep + block if block else head


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


def _cached_marked(item: Item, closed: bool, replace: Replace) -> str:
    key = (item.version, closed)
    if item.rendered_key != key:
        raw, start = item.value, item.done_raw
        if raw.find("t", start) < 0 and raw.find("【", start) < 0:
            # every marker and every held tail starts with "【" or "t": all of it is final
            # (what render_marked returns too, without its searches)
            item.done_out = raw if item.verbatim else item.done_out + raw[start:]
            item.done_raw = len(raw)
        else:
            out, end = render_marked(raw, closed, replace, start, item.done_out[-1:])
            if item.verbatim and out != raw[start:end]:
                item.verbatim = False
            item.done_out += out
            item.done_raw = end
        item.rendered_key = key
    return item.done_out


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
