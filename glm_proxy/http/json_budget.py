"""How many JSON values a request body holds, counted before it is parsed.

Why: ``orjson.loads`` is one C call that no other request can interrupt, and
its cost (and the cost of freeing the result) grows with the number of values,
not bytes: a 20 MB body of 600,000 tiny messages took about 0.25 s to parse and
free, while a 20 MB document in one string takes a few milliseconds. With one
gevent worker serving everyone, ``MAX_JSON_VALUES`` bounds that stall.

Two steps, so that ordinary bodies pay next to nothing:

* an upper bound from three byte counts (every value but the root follows a
  ``[``, a ``,`` or a ``:``); at or under the limit the body is parsed as usual;
* otherwise (prose is full of commas) the exact count, from ijson's C tokenizer,
  event by event, letting other requests run every ``PAUSE_EVERY`` values and
  stopping at the first value over the limit. A top-level ``messages`` or
  ``input`` array over ``MAX_MESSAGES`` is reported as such as soon as it is
  seen, the error the caller can act on.

Malformed JSON is left to the parser, whose message says what is wrong.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import ijson

from glm_proxy.errors import InvalidRequest
from glm_proxy.http.request_guard import too_many_messages

__all__ = ["PAUSE_EVERY", "check_value_count", "value_bound"]

PAUSE_EVERY = 10_000  # values counted between two pauses (a few milliseconds of work)
BOUND_STEP = 2 * 1024 * 1024  # bytes of the body bounded between two pauses
READ_SIZE = 16 * 1024  # what the tokenizer takes at a time (its first event comes sooner)
_CONTAINERS = ("start_map", "start_array")
_ENDS = ("end_map", "end_array")
_LISTS = ("messages", "input")  # the top-level arrays MAX_MESSAGES bounds


def value_bound(raw: bytes, start: int = 0, end: int | None = None) -> int:
    """At least the number of JSON values in ``raw[start:end]`` (plus the root): each one
    but the root follows ``[``, ``,`` or ``:`` (inside strings these only make it larger)."""
    count = raw.count
    return 1 + count(b"[", start, end) + count(b",", start, end) + count(b":", start, end)


def _bound_exceeds(raw: bytes, limit: int, pause: Callable[[], None]) -> bool:
    """``value_bound(raw) > limit``, a few MB at a time (a pause between)."""
    bound = 1
    for start in range(0, len(raw), BOUND_STEP):
        if start:
            pause()
        bound += value_bound(raw, start, start + BOUND_STEP) - 1
        if bound > limit:
            return True
    return False


def check_value_count(
    raw: bytes, max_values: int, max_messages: int, pause: Callable[[], None]
) -> None:
    """A 400 when ``raw`` holds more than ``max_values`` JSON values, or a top-level
    ``messages``/``input`` array of more than ``max_messages`` items; else nothing."""
    if not _bound_exceeds(raw, max_values, pause):
        return
    values = depth = items = 0
    key = None
    try:
        for event, value in ijson.basic_parse(io.BytesIO(raw), buf_size=READ_SIZE):
            if event == "map_key":
                if depth == 1:
                    key, items = value, 0
                continue
            if event in _ENDS:
                depth -= 1
                continue
            values += 1
            if depth == 2 and key in _LISTS:
                items += 1
                if items > max_messages:
                    raise too_many_messages(key, max_messages, f"more than {max_messages}")
            if values > max_values:
                raise _too_many_values(max_values)
            if event in _CONTAINERS:
                depth += 1
            if values % PAUSE_EVERY == 0:
                pause()
    except ijson.JSONError:
        return  # the parser says what is wrong with it


def _too_many_values(limit: int) -> InvalidRequest:
    return InvalidRequest(
        f"The request body holds more than {limit} JSON values (objects, arrays, strings, "
        f"numbers ...); the limit is {limit} (MAX_JSON_VALUES).",
        code="too_many_values",
    )
