"""Parsing cumulative snapshots without re-reading what the previous one said.

The upstream sends an answer as snapshots: every event repeats the whole text
so far, and usually nothing else changes. Parsed in full, a long answer costs
JSON work that grows with the square of its length: 10,000 characters in 200
snapshots are 2.7 MB of JSON, 2.5 ms of parsing, two thirds of everything the
answer's events cost in Python. ``SnapshotParser.parse(raw)`` returns exactly
what ``orjson.loads(raw)`` returns, for any input; when ``raw`` is the previous
event with more characters in the one string that grows, it parses only those.

How:
- After a full parse of a large event, the parser looks for the growing string
  (the one that grew since the last event; else the longest) in the raw bytes,
  and proves where it ends: the same bytes with one character inserted before
  its closing quote must parse to the same object with that string one
  character longer. The event is kept as ``head`` (up to that quote) and
  ``tail`` (from it on). A ``head`` longer than ``EXACT_HEAD`` is kept not as
  bytes but as its length, its CRC-32 and its first and last ``EDGE`` bytes:
  it is most of the answer, again with every event, and a stream whose client
  stopped reading would keep it (the CRC is extended by the new bytes of each
  grown event, and a next event's prefix is checked against it: edges first,
  so most other events are refused without reading them). A shorter one is
  kept and compared as bytes, which costs less than the CRC.
- A next event that starts with ``head``, ends with ``tail``, and holds between
  them bytes that parse as the inside of one JSON string (no bare quote,
  complete escapes, valid UTF-8: checked by parsing them, quoted, with orjson)
  is the previous object with that string extended. The containers on the path
  to the string are copied; no object returned before changes.
- After such an event, ``growth`` says what grew (the path, the string's length
  before, the characters added), so that the translator can skip what it knows
  did not change (``Translator.feed_grown``). The string itself is not kept:
  it is the whole answer so far, and the translator keeps what it needs of it.
  ``current()`` parses the event in full when it is needed after all (seldom);
  ``release()`` drops the event's bytes kept for that.
- Anything else (a status change, a new part, a small event, invalid JSON) is
  parsed in full, as before. After ``MISSES`` large events in a row that could
  not take the shortcut, a stream stops looking for one.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

__all__ = ["SnapshotParser"]

_PROBE = "\u2603"  # any character that JSON writes as itself
_PROBE_BYTES = _PROBE.encode()


class SnapshotParser:
    """``orjson.loads`` for one stream's events, cheaper for cumulative snapshots."""

    MIN_EVENT = 1024  # bytes: a smaller event is parsed in full (the shortcut would not pay)
    MISSES = 3
    EDGE = 64  # bytes of head kept at each end: a quick refusal before the CRC is computed
    EXACT_HEAD = 32 * 1024  # bytes: a head up to this long is kept as it is (no CRC to compute)

    __slots__ = (
        "_head",
        "_head_bytes",
        "_head_crc",
        "_head_first",
        "_head_last",
        "_tail",
        "_current",
        "_path",
        "_length",
        "_raw",
        "_last",
        "_misses",
        "shortcuts",
        "growth",
    )

    def __init__(self) -> None:
        # the last event, up to the growing string's end: its length (None: no shortcut
        # ready), CRC-32 and first and last EDGE bytes (see the module docstring)
        self._head: int | None = None
        self._head_bytes: bytes | None = None  # the head itself, while it is short
        self._head_crc = 0
        self._head_first = b""
        self._head_last = b""
        self._tail = b""  # the last event, from the growing string's closing quote on
        self._current: Any = None  # the last event, parsed (``current()``)
        self._path: tuple[Any, ...] = ()  # where the growing string is in it
        self._length = 0  # the growing string's length
        self._raw: bytes | None = None  # the last event, after a shortcut (``current()``)
        self._last: Any = None  # the last event parsed in full (what grew since?)
        self._misses = 0
        self.shortcuts = 0  # events parsed through the shortcut (tests, benchmarks)
        # after a shortcut: (path, length, added), the last event with the string at path,
        # length characters long, grown by added (``Translator.feed_grown``); else None
        self.growth: tuple[tuple[Any, ...], int, str] | None = None

    def parse(self, raw: bytes) -> Any:
        """The JSON value of ``raw``; raises ``orjson.JSONDecodeError`` as ``orjson.loads`` does."""
        obj = self.feed(raw)
        return obj if self.growth is None else self.current()

    def feed(self, raw: bytes) -> Any:
        """``parse(raw)``, except after a shortcut (``growth`` is set): then None, and
        ``current()`` builds the value when it is needed.

        Building it parses the event in full; the translator's growth route
        (``Translator.feed_grown``) seldom needs it.
        """
        self.release()
        head = self._head
        if head is not None:
            tail = self._tail
            end = len(raw) - len(tail)
            kept = self._head_bytes
            if (
                end > head
                and raw.endswith(tail)
                and (raw.startswith(kept) if kept is not None else self._has_long_head(raw, head))
            ):
                try:
                    text = orjson.loads(b'"' + raw[head:end] + b'"')
                except orjson.JSONDecodeError:
                    text = None
                if type(text) is str:
                    self.growth = (self._path, self._length, text)
                    self._raw = raw
                    if end <= self.EXACT_HEAD:
                        self._head_bytes = raw[:end]
                    else:
                        self._keep_long_head(raw, head, end)
                    self._head = end
                    self._length += len(text)
                    self._misses = 0
                    self.shortcuts += 1
                    return None
            self._head = self._head_bytes = None
            self._misses += 1
            obj = orjson.loads(raw)  # often a one-off: look again next time
            self._last = _sketch(obj, 0) if self._misses < self.MISSES else None
            return obj
        obj = orjson.loads(raw)
        if len(raw) < self.MIN_EVENT:
            self._last = obj  # small: kept as it is
        elif self._misses < self.MISSES:
            self._locate(raw, obj)
        else:
            self._last = None  # never looked at again: no shortcut is looked for any more
        return obj

    def current(self) -> Any:
        """The value of the last event fed through the shortcut (``growth`` is set,
        ``release()`` not called since): parsed in full, once per event."""
        if self._current is None:
            assert self._raw is not None, "only after a shortcut, before release()"
            self._current = orjson.loads(self._raw)
        return self._current

    def release(self) -> None:
        """Forget the last event: ``growth``, and what ``current()`` would read.

        A caller that waits before the next event (for a client that stopped
        reading) calls it first: the event's bytes are the whole answer so far.
        """
        self.growth = self._raw = self._current = None

    def _has_long_head(self, raw: bytes, head: int) -> bool:
        """``raw`` starts with the head kept as length, edges and CRC-32."""
        edge = self.EDGE
        return (
            raw.startswith(self._head_first)
            and raw.startswith(self._head_last, max(0, head - edge))
            and zlib.crc32(memoryview(raw)[:head]) == self._head_crc
        )

    def _locate(self, raw: bytes, obj: Any) -> None:
        """Remember where ``obj``'s growing string ends in ``raw``, once that is proven.

        Otherwise ``obj`` is kept for the next full parse to compare with, as a
        sketch (``_sketch``): which string grew only decides where a shortcut is
        looked for, and that place is then proven, so a sketch is enough.
        """
        if not self._prove(raw, obj):
            self._misses += 1
            self._last = _sketch(obj, 0)

    def _prove(self, raw: bytes, obj: Any) -> bool:
        found = self._growing(obj)
        if found is None:
            return False
        path, value = found
        encoded = orjson.dumps(value)  # as the upstream writes it, usually; else no shortcut
        start = raw.find(encoded)
        if start < 0 or raw.find(encoded, start + 1) >= 0:
            return False
        end = start + len(encoded) - 1  # the closing quote
        try:
            probed = orjson.loads(raw[:end] + _PROBE_BYTES + raw[end:])
        except orjson.JSONDecodeError:
            probed = None
        if probed != _replaced(obj, path, value + _PROBE):
            return False
        self._head, self._tail, self._head_bytes = end, raw[end:], None
        if end <= self.EXACT_HEAD:
            self._head_bytes = raw[:end]
        else:
            self._keep_long_head(raw, 0, end)
        # the growing string is not kept: it would be one more copy of the answer so far
        self._path, self._length = path, len(value)
        self._last = None  # read only by a full parse after a miss, which sets it first
        return True

    def _keep_long_head(self, raw: bytes, head: int, end: int) -> None:
        """``raw[:end]`` is the head now, too long to keep: its CRC-32 and edges are.

        ``raw[:head]`` was the head before (0: none); a CRC of it is extended.
        """
        view = memoryview(raw)
        if head and self._head_bytes is None:
            self._head_crc = zlib.crc32(view[head:end], self._head_crc)
        else:  # the head was kept as bytes (or there was none): its CRC was not needed
            self._head_crc = zlib.crc32(view[:end])
            self._head_first = raw[: self.EDGE]
        self._head_bytes = None
        self._head_last = raw[end - self.EDGE : end]

    def _growing(self, obj: Any) -> tuple[tuple[Any, ...], str] | None:
        """The string that grew since the last event (the longest one that did).

        None when the strings are as they were (the answer may be over: no
        shortcut is worth preparing). With nothing to compare, the longest
        string. A reasoning part stops growing when the answer part starts,
        so the growing string is looked for, not assumed.
        """
        last, path = self._last, self._path
        if last is None or not path:
            return _longest_string(obj, 0)
        now, before = _at(obj, path), _at(last, path)
        if type(now) is str and _extends(now, before):
            return path, now  # still growing where it grew
        grown = _grown_string(obj, last, 0)
        if grown is not None or (now is not None and _same(now, before)):
            return grown
        return _longest_string(obj, 0)


class _Seen:
    """A long string of an event kept for comparison: its length and both ends."""

    __slots__ = ("length", "first", "last")
    EDGE = 32  # characters kept at each end

    def __init__(self, value: str) -> None:
        self.length = len(value)
        self.first, self.last = value[: self.EDGE], value[-self.EDGE :]


def _sketch(obj: Any, depth: int) -> Any:
    """``obj`` with every string longer than ``2 * _Seen.EDGE`` replaced by a ``_Seen``.

    What a full parse keeps of an event until the next: not a copy of the answer.
    """
    if depth > 32:
        return None
    if isinstance(obj, dict):
        return {key: _sketch(child, depth + 1) for key, child in obj.items()}
    if isinstance(obj, list):
        return [_sketch(child, depth + 1) for child in obj]
    if isinstance(obj, str) and len(obj) > 2 * _Seen.EDGE:
        return _Seen(obj)
    return obj


def _same(now: Any, before: Any) -> bool:
    """``now == before``, where ``before`` may be sketched (then by length and ends)."""
    if type(before) is _Seen:
        return (
            type(now) is str
            and len(now) == before.length
            and now.startswith(before.first)
            and now.endswith(before.last)
        )
    return now == before


def _extends(now: str, before: Any) -> bool:
    """``now`` is ``before`` (a string or its sketch) with more characters after it."""
    if type(before) is _Seen:
        return (
            len(now) > before.length
            and now.startswith(before.first)
            and now.startswith(before.last, before.length - len(before.last))
        )
    return type(before) is str and len(now) > len(before) and now.startswith(before)


def _grown_string(obj: Any, last: Any, depth: int) -> tuple[tuple[Any, ...], str] | None:
    """The longest string in ``obj`` that extends the string at the same path in ``last``."""
    if depth > 32:
        return None
    if isinstance(obj, dict) and isinstance(last, dict):
        children: Any = ((key, child, last.get(key)) for key, child in obj.items())
    elif isinstance(obj, list) and isinstance(last, list):
        children = ((i, child, last[i] if i < len(last) else None) for i, child in enumerate(obj))
    else:
        return None
    best: tuple[tuple[Any, ...], str] | None = None
    for key, child, before in children:
        if isinstance(child, str):
            grew = _extends(child, before)
            if grew and (best is None or len(child) > len(best[1])):
                best = ((key,), child)
        elif isinstance(child, dict | list):
            inner = _grown_string(child, before, depth + 1)
            if inner is not None and (best is None or len(inner[1]) > len(best[1])):
                best = ((key, *inner[0]), inner[1])
    return best


def _longest_string(obj: Any, depth: int) -> tuple[tuple[Any, ...], str] | None:
    """The path to the longest string value in ``obj`` (dict values, list items), and it."""
    if depth > 32:
        return None
    if isinstance(obj, dict):
        children: Any = obj.items()
    elif isinstance(obj, list):
        children = enumerate(obj)
    else:
        return None
    best: tuple[tuple[Any, ...], str] | None = None
    for key, child in children:
        if isinstance(child, str):
            if best is None or len(child) > len(best[1]):
                best = ((key,), child)
        elif isinstance(child, dict | list):
            inner = _longest_string(child, depth + 1)
            if inner is not None and (best is None or len(inner[1]) > len(best[1])):
                best = ((key, *inner[0]), inner[1])
    return best


def _at(obj: Any, path: tuple[Any, ...]) -> Any:
    """The value at ``path`` in ``obj``, or None."""
    if not path:
        return None
    for key in path:
        try:
            obj = obj[key]
        except (KeyError, IndexError, TypeError):
            return None
    return obj


def _replaced(obj: Any, path: tuple[Any, ...], value: str) -> Any:
    """``obj`` with ``value`` at ``path``: the containers on the path are new, the rest shared."""
    root = node = obj.copy()
    for key in path[:-1]:
        child = node[key].copy()
        node[key] = child
        node = child
    node[path[-1]] = value
    return root
