"""The translator: upstream event objects in, typed deltas out. Sans-IO.

The caller decodes SSE and parses each event's JSON; :meth:`Translator.feed`
takes one event object and returns the new deltas, :meth:`Translator.finish`
is called when the upstream stream closed. No sockets, clock or ids in here.

Diffing rule (what reaches the client is never retracted or repeated): the
translator counts the characters sent (``sent_chars``/``sent_reasoning_chars``).
When the new rendering starts with what was sent, it emits the suffix. When the
upstream rewrote something already sent (e.g. a part's finish frame differs from
the text it streamed), the client keeps its copy of the first ``sent`` characters
and the translator continues at the same character position of the new
rendering: it emits ``rendered[sent:]`` if the rendering is longer, nothing
otherwise. Example: sent ``"Hello wor"``, finish frame ``"Hello World!"`` ->
emits ``"ld!"``.

Neither the translator nor the renderer keeps the text it sent: a long text
item keeps a window of its string and of its output (``_segments.Item``), and
the rendering starts where that output does (``Rendering.answer_base``). So a
stream keeps what it has yet to send and a short margin, not the answer, however
long the answer and however long its client stops reading. One consequence, for
upstream streams that make no sense: when a block *before* a long, already sent
text grows after that text was sent (the position to continue at moved back
into text no longer kept), the translator continues after the text it has.

Order of deltas within one call: ``ConversationStarted``, ``ReasoningDelta``,
``Citation``/``ImageGenerated`` announcements, ``TextDelta`` (whose text first
shows them), then ``Finished``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from glm_proxy.errors import GLMProxyError, UpstreamBusy, UpstreamError, UpstreamProtocolError
from glm_proxy.protocol.events import (
    ConversationStarted,
    Delta,
    Finished,
    ImageGenerated,
    ReasoningDelta,
    TextDelta,
)
from glm_proxy.protocol.translate._render import Renderer, Rendering
from glm_proxy.protocol.translate._segments import (
    VALUE_FIELDS,
    Item,
    Segment,
    checked_parts,
    segment_key,
)
from glm_proxy.protocol.translate._state import (
    LIVE_PHASES,
    Phase,
    PhaseMachine,
    Trigger,
    trigger_for_status,
)

INTERVENE_PREFIX = "\n\n"

# module globals: reading an Enum member off its class costs a Python-level lookup
_INIT, _FINISH, _ERROR, _CLOSE = Trigger.INIT, Trigger.FINISH, Trigger.ERROR, Trigger.CLOSE


@dataclass(frozen=True, slots=True)
class TranslateOptions:
    """How to render. ``silent`` models set both flags to False.

    Attributes:
        include_reasoning: emit ``ReasoningDelta`` for think blocks.
        include_sources: append a numbered source list to a finished answer that cited any.
        include_uncited: list the other pages the upstream searched too (after the cited).
        segment_separator: put between consecutive visible blocks (text, code, output, images).
    """

    include_reasoning: bool = True
    include_sources: bool = True
    include_uncited: bool = True
    segment_separator: str = "\n\n"


class Translator:
    """Folds one upstream answer's events into deltas (see the module docstring).

    A streaming event that changed nothing is not rendered, and one that only
    changed the value of the answer's (or the reasoning's) last item re-renders
    that item alone (``Renderer.rerender``); both give exactly the deltas a full
    render would. ``_shortcuts = False`` (tests) always renders in full.
    """

    _shortcuts = True

    def __init__(self, options: TranslateOptions | None = None) -> None:
        self.options = options or TranslateOptions()
        self.conversation_id: str | None = None
        self.message_id: str | None = None
        self._machine = PhaseMachine()
        self._segments: dict[str, Segment] = {}
        self._renderer = Renderer(self.options.segment_separator, self.options.include_reasoning)
        self._announced_images: set[str] = set()
        self.sent_chars = 0  # characters of answer text sent (the module's diffing rule)
        self.sent_reasoning_chars = 0
        self.stop_requested = False  # set when we asked the upstream to stop (10024 is then ok)
        # feed_grown's route: (path, the item whose value is the string there), or None
        self._route: tuple[tuple[Any, ...], Item] | None = None

    @property
    def history_id(self) -> str | None:
        """The upstream's id of this answer (``stop_stream``'s ``history_id``)."""
        return self.message_id or None

    @property
    def phase(self) -> Phase:
        return self._machine.phase

    @property
    def finished(self) -> bool:
        """True once the answer ended (finish, intervene, error, or the stream closed)."""
        return self._machine.phase not in LIVE_PHASES

    def feed(self, event: dict[str, Any]) -> list[Delta]:
        """Take one parsed upstream event and return the deltas it produces.

        Raises:
            UpstreamProtocolError: the event is not an object or its parts are malformed
                (state unchanged), or ``finish()`` was already called.
            UpstreamError: the upstream reported top-level status ``error``.
        """
        self._route = None
        if not isinstance(event, dict):
            kind = type(event).__name__
            raise UpstreamProtocolError(f"upstream event is a {kind}, not an object")
        trigger = trigger_for_status(event.get("status"))
        if (
            trigger is _INIT
            and (event.get("last_error") or event.get("error"))  # usually {}: no error
            and _error_code(event) is not None
        ):
            trigger = _ERROR  # a lifecycle frame carrying last_error (e.g. 10062)
        parts = checked_parts(event)
        old = self._machine.transition(trigger)
        if old not in LIVE_PHASES:
            return []  # events after the end are ignored
        out: list[Delta] = []
        if self.conversation_id is None:
            conversation_id = event.get("conversation_id")
            if isinstance(conversation_id, str) and conversation_id:
                message_id = event.get("id")
                self.conversation_id = conversation_id
                self.message_id = message_id if isinstance(message_id, str) else ""
                out.append(ConversationStarted(conversation_id, self.message_id))
        if trigger is _ERROR:
            if self.stop_requested and _error_code(event) == STOPPED_CODE:
                # "generator exit" after our own stop_stream: the answer simply ends here
                return out + self._emit(closing=True, final=True) + [Finished("stop")]
            raise _error(event)
        change: Item | bool = False  # as Segment.update reports it, over all parts
        segments = self._segments
        try:
            for position, part in enumerate(parts):
                key = segment_key(part, position)
                segment = segments.get(key)
                if segment is None:
                    segment = segments[key] = Segment(key)
                    change = True
                changed = segment.update(part)
                if changed is not False and changed is not change:
                    change = changed if change is False else True
        except Exception:
            self._renderer.forget()  # a value of the wrong type midway: changes went unreported
            raise
        if trigger is _INIT:
            if change is not True and self._shortcuts:
                rendering = self._renderer.rerender(change or None)
                if rendering is not None:
                    return self._deltas(rendering, False, out)
            return self._deltas(self._renderer.render(segments.values(), False), False, out)
        if trigger is _FINISH:
            return out + self._emit(closing=True, final=True) + [Finished("stop")]
        out += self._emit(closing=True, final=False)
        last_error = event.get("last_error")
        text = last_error.get("intervene_text") if isinstance(last_error, dict) else None
        text = text if isinstance(text, str) else ""
        if text:
            shown = INTERVENE_PREFIX + text if self.sent_chars else text
            self.sent_chars += len(shown)
            out.append(TextDelta(shown))
        return out + [Finished("content_filter", message=text)]

    def feed_grown(
        self,
        event: dict[str, Any] | Callable[[], dict[str, Any]],
        growth: tuple[tuple[Any, ...], int, str],
    ) -> list[Delta]:
        """``feed(event)`` for an event that repeats the last one with one string grown.

        ``growth`` is ``(path, length, added)`` (``SnapshotParser.growth``): ``event``
        is the last event fed, with the string at ``path``, ``length`` characters
        long, grown by ``added``; nothing else in it changed. Most streamed events are such. When
        that string is the value of an item that the last event left exactly as sent
        (the route, found by ``_arm`` after a full feed), a full feed would find that
        one item's value changed and nothing else: the item takes the new value and
        is re-rendered alone. Same deltas and same state as ``feed(event)``
        (``tests/protocol/test_translate_growth.py`` runs both over the same streams).

        ``event`` may be a function that builds it (``SnapshotParser.current``):
        only a full feed needs the event itself.
        """
        route = self._route
        path, length, added = growth
        if route is not None and route[0] == path:
            item = route[1]
            # the route holds the item at the last event's string (``_arm``), and only
            # this method changes it in between: the length is a check, not the proof
            if item.length == length:
                item.grow(added)
                renderer = self._renderer
                rendering = renderer.rerender(item)
                if rendering is None:
                    rendering = renderer.render(self._segments.values(), False)
                return self._deltas(rendering, False, [])
        if callable(event):
            event = event()
        out = self.feed(event)
        self._route = self._arm(event, path)
        return out

    def _arm(
        self, event: dict[str, Any], path: tuple[Any, ...]
    ) -> tuple[tuple[Any, ...], Item] | None:
        """The route for events that grow the string at ``path`` of ``event`` (just fed).

        None unless a full feed of such an event could change nothing but that
        item's value: the event streams on (``init`` without an error, in a live
        phase, where ``init`` keeps it streaming), the conversation is named, and
        every item holds exactly its value in ``event`` (so feeding it again would
        change nothing).
        """
        if not self._shortcuts or self.conversation_id is None:
            return None
        if self._machine.phase not in LIVE_PHASES:
            return None
        if trigger_for_status(event.get("status")) is not _INIT or (
            (event.get("last_error") or event.get("error")) and _error_code(event) is not None
        ):
            return None
        if len(path) != 5 or path[0] != "parts" or path[2] != "content":
            return None
        found: Item | None = None
        for position, part in enumerate(event.get("parts") or ()):
            segment = self._segments.get(segment_key(part, position))
            if segment is None:
                return None
            for index, raw, item in segment.items_of(part):
                if item is None:
                    return None
                if item.kind == "image":
                    continue  # its URLs are all known: feeding them again adds none
                field = VALUE_FIELDS[item.kind]
                value = raw.get(field)
                if isinstance(value, str) and not item.holds(value):
                    return None  # held by a merge rule, not as sent
                if position == path[1] and index == path[3] and field == path[4]:
                    found = item
        return None if found is None else (path, found)

    def finish(self) -> list[Delta]:
        """The upstream stream closed: flush held-back text and finish if nothing else did."""
        self._route = None
        if self._machine.transition(_CLOSE) not in LIVE_PHASES:
            return []
        return self._emit(closing=True, final=True) + [Finished("stop")]

    def _emit(self, *, closing: bool, final: bool) -> list[Delta]:
        return self._deltas(self._renderer.render(self._segments.values(), closing), final, [])

    def _deltas(self, rendering: Rendering, final: bool, out: list[Delta]) -> list[Delta]:
        """Append to ``out`` what ``rendering`` adds to what was sent (the module docstring)."""
        renderer = self._renderer
        answer, base = rendering.answer, rendering.answer_base
        if final and self.options.include_sources:
            answer += renderer.book.sources_list(self.options.include_uncited)
        reasoning, reasoning_base = rendering.reasoning, rendering.reasoning_base
        sent = self.sent_reasoning_chars
        if reasoning_base + len(reasoning) > sent:
            # (a start before the base: see the module docstring)
            out.append(ReasoningDelta(reasoning[max(0, sent - reasoning_base) :]))
            self.sent_reasoning_chars = reasoning_base + len(reasoning)
        book = renderer.book
        if book.new:
            out.extend(book.take_new())
        for url in rendering.images:
            if url not in self._announced_images:
                self._announced_images.add(url)
                out.append(ImageGenerated(url))
        sent = self.sent_chars
        if base + len(answer) > sent:
            out.append(TextDelta(answer[max(0, sent - base) :]))
            self.sent_chars = base + len(answer)
        renderer.release(self.sent_chars, self.sent_reasoning_chars)
        return out


STOPPED_CODE = 10024  # "generator exit": the answer was stopped (stop_stream)
BUSY_CODES = frozenset({10061, 10062})  # account busy / peak-hour queue: try another account


def _error_fields(event: dict[str, Any]) -> tuple[Any, Any]:
    """(code, message) from top-level ``error`` or ``last_error`` (either spelling)."""
    for key in ("error", "last_error"):
        error = event.get(key)
        if isinstance(error, dict) and error:
            code = error.get("error_code", error.get("code"))
            msg = error.get("err_msg") or error.get("message") or error.get("msg")
            if code is not None or msg:
                return code, msg
    return None, None


def _error_code(event: dict[str, Any]) -> int | None:
    """The numeric error code an event carries, or None (``last_error: {}`` is no error)."""
    code, msg = _error_fields(event)
    if isinstance(code, str) and code.strip().isdigit():
        code = int(code)
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    return -1 if msg else None


def _error(event: dict[str, Any]) -> GLMProxyError:
    code, msg = _error_fields(event)
    number = _error_code(event)
    if number in BUSY_CODES:
        return UpstreamBusy(
            f"the upstream account is busy ({number}): {msg or 'try again'}",
            headers={"Retry-After": "2"},
        )
    if code is not None or msg:
        return UpstreamError(f"upstream reported an error ({code}): {msg or 'no message'}")
    return UpstreamError("upstream reported an error without details")


def translate_all(
    events: Iterable[dict[str, Any]], options: TranslateOptions | None = None
) -> list[Delta]:
    """Translate a complete recorded answer (the non-stream path and tests)."""
    translator = Translator(options)
    out: list[Delta] = []
    for event in events:
        out.extend(translator.feed(event))
    out.extend(translator.finish())
    return out
