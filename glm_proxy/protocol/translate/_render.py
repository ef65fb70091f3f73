"""Rendering merged segments into answer markdown and reasoning text.

The whole answer is re-rendered from the segments on every event and then
diffed against what was already sent. Text blocks render incrementally (the part
before a possibly incomplete marker is final and kept per item), so an event
costs time proportional to what is new, not to the length of the answer.
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
        self._new: list[Citation] = []

    def consult(self, source: Source | None) -> None:
        if source is not None and source.url not in self.consulted:
            self.consulted[source.url] = source

    def cite(self, source: Source) -> Citation:
        citation = self.cited.get(source.url)
        if citation is None:
            citation = Citation(len(self.cited) + 1, source.title, source.url)
            self.cited[source.url] = citation
            self._new.append(citation)
        return citation

    def take_new(self) -> list[Citation]:
        """Citations made since the last call (each is announced once)."""
        new, self._new = self._new, []
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
    """Renders segments; owns the citation book so numbering is stable across events."""

    def __init__(self, separator: str, include_reasoning: bool) -> None:
        self.separator = separator
        self.include_reasoning = include_reasoning
        self.book = CitationBook()

    def render(self, segments: Iterable[Segment], closing: bool) -> Rendering:
        quotes: list[Source | None] = []
        results: dict[str, Source] = {}
        answer_items: list[tuple[Segment, Item]] = []
        reasoning_items: list[tuple[Segment, Item]] = []
        for seg in segments:
            if seg.skipped:
                continue
            quotes.extend(seg.quotes)
            for key, source in seg.results.items():
                results.setdefault(key, source)
                self.book.consult(source)
            for quote in seg.quotes:
                self.book.consult(quote)
            for item in seg.items.values():
                target = reasoning_items if item.kind in REASONING_KINDS else answer_items
                target.append((seg, item))

        def resolve(m: re.Match[str]) -> Source | None:
            number = m.group(1)
            if number is not None:
                n = int(number)
                return quotes[n - 1] if 0 < n <= len(quotes) else None
            return results.get(m.group(2) or m.group(3))

        def link(m: re.Match[str]) -> str | None:
            source = resolve(m)
            if source is None:
                return None if _inside_word(m) else ""
            citation = self.book.cite(source)
            return f"[{citation.index}]({md_url(citation.url)})"

        def drop(m: re.Match[str]) -> str | None:
            return None if resolve(m) is None and _inside_word(m) else ""

        images: list[str] = []
        seen_outputs: set[str] = set()
        answer_blocks = []
        last = len(answer_items) - 1
        for i, (seg, item) in enumerate(answer_items):
            closed = closing or seg.finished or item.finished or i < last
            if item.kind == "text":
                block = _cached_marked(item, closed, link)
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
                reasoning_blocks.append(_cached_marked(item, closed, drop))
        sep = self.separator
        return Rendering(
            answer=sep.join(b for b in answer_blocks if b),
            reasoning=sep.join(b for b in reasoning_blocks if b),
            images=images,
        )


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
        out, item.done_raw = render_marked(
            item.value, closed, replace, item.done_raw, item.done_out[-1:]
        )
        item.done_out += out
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
