"""Segments: what the upstream has said so far, merged from events of any shape.

The upstream sends parts (one logical segment each: a thinking block, a tool
call, a piece of answer text...). Depending on the era an event repeats every
part cumulatively, carries only the part(s) being written, or carries deltas
(``init`` frames with only new characters, the part's ``finish`` frame with its
full text). This module folds all three into the same state, so rendering never
needs to know which shape arrived.

Keys:

* a segment is keyed by the part's ``logic_id`` (fallback: part ``id`` + position
  in the event); segment order = order of first appearance;
* an item inside a segment is keyed by ``(type, ordinal among items of that type)``.

Merge rule for a string item (``Item.merge``), in this order (the rule of
spec §6.4):

1. new == held: no-op;
2. new starts with held: a cumulative snapshot, take it (covers held == "");
3. the part's status in this event is ``finish`` and new differs: the authoritative
   full text, take it (rendering never un-sends; see ``_translator``);
4. the item was already finished and held starts with new: a stale repeat of a
   finished part, no-op;
5. anything else is a delta: append. That includes a delta that happens to equal
   the start of what the item holds ("我" while the text began with "我认为"):
   a snapshot stream never sends an item shorter than before, a delta stream
   does so all the time.

Limits (both only while an item is still shorter than one delta): a delta equal
to everything held so far is read as an unchanged snapshot (rule 1), one that
starts with everything held as a snapshot (rule 2). A mid-stream snapshot that
*rewrites* earlier characters is indistinguishable from a delta and is
therefore appended; the part's finish frame then repairs it.
Image URL lists and ``match_key`` search results are merged as ordered unions,
which is right for all three shapes; a ``metadata_list`` is positional (marker
``【n†…】`` means its n-th entry), so the longest list seen is kept as sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeGuard

from glm_proxy.errors import UpstreamProtocolError

# content type -> the field that holds its string payload
VALUE_FIELDS = {
    "text": "text",
    "think": "think",
    "text_thinking": "text",  # E1 reasoning
    "code": "code",
    "execution_output": "content",
}
ANSWER_KINDS = frozenset({"text", "code", "execution_output", "image"})
REASONING_KINDS = frozenset({"think", "text_thinking"})
_DONE_STATUSES = ("finish", "done")  # "done": E1 execution output
_SKIPPED_ROLES = frozenset({"user", "system"})  # echoes of the prompt, never the answer
# The upstream's own tool loop (2026: search, finish marker, sandbox): its parts carry the
# call, its results and at most progress text, never answer text (§15.5).
TOOL_ROLES = frozenset({"tool", "observation"})
TOOL_SHOW_TYPES = frozenset({"mc_tool_call2", "mc_tool_result2"})
_TOOL_HIDDEN_KINDS = frozenset({"text", "think", "text_thinking"})
_NO_META: dict[str, Any] = {}  # stands in for a missing or malformed part meta_data


@dataclass(frozen=True, slots=True)
class Source:
    """A web page the answer may cite."""

    title: str
    url: str


@dataclass(slots=True)
class Item:
    """One content item of a segment. ``version`` changes whenever the payload does.

    A long text is not kept whole: ``value`` is the item's string from character
    ``base`` on (its *window*; ``base`` = 0: all of it), ``head`` its first ``EDGE``
    characters once the window no longer starts at 0, ``length`` the length of the
    whole. Only the renderer trims the window (:meth:`trim`, text and reasoning items
    only): it drops what it rendered for good, keeping ``EDGE`` characters before it.
    A stream whose client stopped reading then waits with a window, not with the
    answer: a hundred such streams would otherwise hold a hundred answers.

    ``done_raw``/``done_out`` belong to the renderer: the whole string up to
    ``done_raw`` renders for good to output of which ``done_out`` is the part from
    character ``out_base`` on (the translator lets the renderer drop output the client
    has, :meth:`Renderer.release`). They are reset when the value changes other than
    by growing.

    Comparing a string with a trimmed value (the merge rule, :meth:`merge`) compares
    length, ``head`` and the window; a string that agrees on all three but differs
    in between is taken to be the same. That is sound for the upstream: a string
    is either this item's text again (a snapshot, equal or extended: it agrees
    everywhere) or a delta (new characters, which would have to repeat both the
    item's first and its latest ``EDGE`` characters, at the same distance, to pass:
    natural text does not). A finish frame that rewrites characters deep inside a
    long text while keeping its length and both ends would go unnoticed; its
    rendering would be what the client was sent anyway.
    """

    kind: str
    value: str = ""
    urls: list[str] = field(default_factory=list)
    finished: bool = False
    version: int = 0
    base: int = 0
    head: str = ""
    done_raw: int = 0
    done_out: str = ""
    out_base: int = 0
    rendered_key: tuple[int, bool] | None = None

    EDGE: ClassVar[int] = 64  # characters kept before what is final (a window's margin)
    TRIM: ClassVar[int] = 2048  # a window is trimmed when it can lose this many at once

    @property
    def length(self) -> int:
        """The length of the whole string (``base`` + the window)."""
        return self.base + len(self.value)

    def merge(self, new: str, authoritative: bool, finished: bool = False) -> bool:
        """Fold ``new``, the item's string in one frame, in by the module's merge rule.

        ``finished``: the item (or its part) had already finished before this frame.
        Returns True when the value changed.
        """
        base = self.base
        if base == 0:  # the whole value is here: compare exactly
            held = self.value
            if new.startswith(held):  # rules 1 and 2
                if len(new) == len(held):
                    return False
                self.value = new
                return True
        elif new.startswith(self.head) and new.startswith(self.value, base):
            if len(new) == self.length:  # rules 1 and 2, by length, head and window
                return False
            self.value = new[base:]  # the new characters and the window: not the whole
            return True
        if authoritative and new:  # rule 3: a rewrite, rendered again from the start
            self.value, self.base, self.head = new, 0, ""
            self.done_raw, self.done_out, self.out_base = 0, "", 0
            return True
        if finished and self._starts_with(new):  # rule 4
            return False
        if new:
            self.value += new  # rule 5
        return bool(new)

    def holds(self, value: str) -> bool:
        """``value`` is the whole string (by length, ``head`` and window once trimmed)."""
        if self.base == 0:
            return value == self.value
        return (
            len(value) == self.length
            and value.startswith(self.head)
            and value.startswith(self.value, self.base)
        )

    def grow(self, added: str) -> None:
        """The string grew by ``added`` (a snapshot extending it, ``Translator.feed_grown``)."""
        self.value += added
        self.version += 1

    def trim(self) -> None:
        """Drop the window's start up to ``EDGE`` characters before ``done_raw``.

        Only when at least ``TRIM`` characters go at once, so a window is copied
        once per ``TRIM`` characters, not once per event.
        """
        cut = self.done_raw - self.EDGE
        if cut - self.base >= self.TRIM:
            if self.base == 0:
                self.head = self.value[: self.EDGE]
            self.value = self.value[cut - self.base :]
            self.base = cut

    def _starts_with(self, new: str) -> bool:
        """The whole string starts with ``new`` (by ``head`` and window once trimmed)."""
        if self.base == 0:
            return self.value.startswith(new)
        if len(new) > self.length:
            return False
        head = self.head
        if len(new) <= len(head):
            return head.startswith(new)
        if not new.startswith(head):
            return False
        return len(new) <= self.base or self.value.startswith(new[self.base :])


@dataclass(slots=True)
class Segment:
    key: str
    finished: bool = False
    skipped: bool = False
    items: dict[tuple[str, int], Item] = field(default_factory=dict)
    quotes: list[Source | None] = field(default_factory=list)  # metadata_list, positional
    results: dict[str, Source] = field(default_factory=dict)  # match_key -> source

    def update(self, part: dict[str, Any]) -> Item | bool:
        """Fold one (validated) part of an event into this segment; say what changed.

        Returns False when nothing changed, the :class:`Item` when the value (or the
        image URLs) of that one item is all that changed, True for anything else (a new
        item, a status, sources). The translator re-renders only that item in the
        second case and nothing in the first, so the answer for an event that extends
        one text costs what the new characters cost.
        """
        role = part.get("role")
        change: Item | bool = False
        if role in _SKIPPED_ROLES and not self.skipped:
            self.skipped = change = True
        meta, tool_part = _meta_and_tool(part)
        authoritative = part.get("status") in _DONE_STATUSES
        items = self.items
        ordinals: dict[str, int] = {}
        for raw in part.get("content") or ():
            kind = raw.get("type")
            value_field = VALUE_FIELDS.get(kind)
            if value_field is None and kind != "image":
                continue  # quote_result, tool_calls, tool_result, browser_result, unknown...
            if tool_part and kind in _TOOL_HIDDEN_KINDS:
                continue  # server-side tool chatter is not the answer
            ordinal = ordinals.get(kind, 0)
            ordinals[kind] = ordinal + 1
            item = items.get((kind, ordinal))
            if item is None:
                item = items[(kind, ordinal)] = Item(kind)
                change = True
            finished_before = item.finished or self.finished
            if not item.finished and raw.get("status") in _DONE_STATUSES:
                item.finished = change = True
            if kind == "image":
                changed = _union(item.urls, _image_urls(raw.get("image")))
            else:
                value = raw.get(value_field)
                changed = isinstance(value, str) and item.merge(
                    value, authoritative, finished_before
                )
            if changed:
                item.version += 1
                change = item if change is False or change is item else True
        if ("metadata_list" in meta or "tool_result_extra" in meta) and self._update_sources(meta):
            change = True
        if authoritative and not self.finished:
            self.finished = change = True
        return change

    def items_of(self, part: dict[str, Any]) -> list[tuple[int, dict[str, Any], Item | None]]:
        """The part's content items as :meth:`update` files them: (index, raw item, Item).

        The same filter and numbering as ``update`` (the Item is None if ``update``
        has not seen the item yet); ``Translator`` uses it to find the item a
        growing string belongs to.
        """
        _, tool_part = _meta_and_tool(part)
        ordinals: dict[str, int] = {}
        found = []
        for index, raw in enumerate(part.get("content") or ()):
            kind = raw.get("type")
            if VALUE_FIELDS.get(kind) is None and kind != "image":
                continue
            if tool_part and kind in _TOOL_HIDDEN_KINDS:
                continue
            ordinal = ordinals.get(kind, 0)
            ordinals[kind] = ordinal + 1
            found.append((index, raw, self.items.get((kind, ordinal))))
        return found

    def _update_sources(self, meta: dict[str, Any]) -> bool:
        """Take new sources from ``meta_data``; True when any was added."""
        added = False
        quotes = meta.get("metadata_list")
        if isinstance(quotes, list) and len(quotes) > len(self.quotes):
            # positions matter (marker n = n-th entry): keep the longest list as sent,
            # with None where an entry is unusable
            self.quotes = [_source(e) if isinstance(e, dict) else None for e in quotes]
            added = True
        extra = meta.get("tool_result_extra")
        if isinstance(extra, dict):
            for entry in _dicts(extra.get("search_results")):
                key, source = entry.get("match_key"), _source(entry)
                if isinstance(key, str) and key and source is not None and key not in self.results:
                    self.results[key] = source
                    added = True
        return added


def _meta_and_tool(part: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The part's ``meta_data`` (empty if malformed), and whether it is a tool's part."""
    meta = part.get("meta_data")
    if not isinstance(meta, dict):
        meta = _NO_META
    return meta, part.get("role") in TOOL_ROLES or meta.get("show_type") in TOOL_SHOW_TYPES


def merge_value(held: str, new: str, authoritative: bool, finished: bool = False) -> str:
    """The merge rule of this module's docstring, on strings: the value to hold.

    ``finished``: the item (or its part) had already finished before this frame.
    (:meth:`Item.merge` is the rule; this is it for a whole ``held``.)
    """
    item = Item("text", held)
    item.merge(new, authoritative, finished)
    return item.value


def segment_key(part: dict[str, Any], position: int) -> str:
    logic_id = part.get("logic_id")
    if isinstance(logic_id, str) and logic_id:
        return "L:" + logic_id
    return f"P:{part.get('id')}#{position}"


def checked_parts(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The event's parts, after checking their structure (before any state changes).

    Raises:
        UpstreamProtocolError: ``parts``, a part, its ``content`` or an item has the wrong type.
    """
    parts = event.get("parts")
    if parts is None:
        return []
    if not isinstance(parts, list):
        raise UpstreamProtocolError("upstream event has a non-list 'parts'")
    for part in parts:
        if not isinstance(part, dict):
            raise UpstreamProtocolError("upstream event has a part that is not an object")
        content = part.get("content")
        if content is None:
            continue
        if not isinstance(content, list):
            raise UpstreamProtocolError("upstream part has a malformed 'content' list")
        for item in content:
            if not isinstance(item, dict):
                raise UpstreamProtocolError("upstream part has a malformed 'content' list")
    return parts


def is_http_url(url: object) -> TypeGuard[str]:
    return isinstance(url, str) and url.startswith(("http://", "https://")) and len(url) > 8


def _image_urls(images: object) -> list[str]:
    return [e["image_url"] for e in _dicts(images) if is_http_url(e.get("image_url"))]


def _source(entry: dict[str, Any]) -> Source | None:
    url, title = entry.get("url"), entry.get("title")
    if not is_http_url(url):
        return None
    return Source(title if isinstance(title, str) and title.strip() else url, url)


def _dicts(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _union(target: list[str], new: list[str]) -> bool:
    added = False
    for value in new:
        if value not in target:
            target.append(value)
            added = True
    return added
