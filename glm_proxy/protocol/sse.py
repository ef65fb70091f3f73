"""Server-sent events: a pure decoder (bytes -> events) and encoder (object -> bytes).

The upstream speaks SSE (``event:message`` + one ``data:`` line + a blank line per
event) and so do we towards OpenAI clients. Both directions live here so the
wire format is decided in one place; nothing in this module touches a socket.

The decoder follows the WHATWG "event stream interpretation" rules with one
deliberate difference: a last event that is not followed by a blank line is
still delivered by :meth:`SSEDecoder.finish`, because the upstream may close
the connection right after its final ``data:`` line.

Lines are cut at the byte level and only complete lines are decoded as UTF-8.
CR and LF never occur inside a multi-byte UTF-8 sequence, so a character split
across two network reads is always reassembled before it is decoded.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from glm_proxy.errors import UpstreamProtocolError
from glm_proxy.protocol.snapshots import SnapshotParser

__all__ = [
    "DEFAULT_MAX_EVENT_SIZE",
    "DONE",
    "KEEPALIVE",
    "SSEDecoder",
    "ServerSentEvent",
    "decode_json",
    "encode_event",
]

DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024
DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"

_EOL = re.compile(rb"\r\n|\r|\n")
_BOM = "\ufeff"


class ServerSentEvent:
    """One dispatched event. ``id`` is the last event id seen so far (WHATWG semantics).

    ``raw`` is the event's data as received (UTF-8 bytes); ``data`` is the same
    text decoded, on first use. The answer path parses ``raw`` as JSON directly,
    so a data line is never decoded to ``str`` and encoded back for the parser.
    """

    __slots__ = ("event", "id", "retry", "_data", "raw")

    def __init__(
        self,
        event: str = "message",
        data: str | None = None,
        id: str | None = None,  # noqa: A002 - the SSE field's name
        retry: int | None = None,
        *,
        raw: bytes | None = None,
    ) -> None:
        self.event = event
        self.id = id
        self.retry = retry
        if raw is None:
            data = data or ""
            raw = data.encode("utf-8", "surrogatepass")
        self._data = data
        self.raw = raw  # a plain attribute: the answer path reads it for every event

    @property
    def data(self) -> str:
        if self._data is None:
            self._data = self.raw.decode("utf-8", "replace")
        return self._data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSentEvent):
            return NotImplemented
        return (self.event, self.data, self.id, self.retry) == (
            other.event,
            other.data,
            other.id,
            other.retry,
        )

    def __hash__(self) -> int:
        return hash((self.event, self.data, self.id, self.retry))

    def __repr__(self) -> str:
        return (
            f"ServerSentEvent(event={self.event!r}, data={self.data!r}, "
            f"id={self.id!r}, retry={self.retry!r})"
        )


class SSEDecoder:
    """Incremental SSE parser: feed it bytes in any split, get whole events back.

    ``max_event_size`` bounds the bytes buffered for one event (its lines plus an
    unterminated line), so a peer that never sends a blank line cannot make us
    buffer without limit.
    """

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._max = max_event_size
        self._buf = bytearray()
        self._scan = 0  # bytes at the start of _buf known to hold no line terminator
        self._event_bytes = 0  # bytes of complete lines consumed for the pending event
        self._first_line = True
        self._event = ""
        self._data: list[bytes] = []  # the pending event's data lines, as received
        self._has_data = False
        self._last_id: str | None = None
        self._retry: int | None = None

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Buffer ``data`` and return every event completed by it (possibly none).

        Raises:
            UpstreamProtocolError: the pending event grew beyond ``max_event_size``.
        """
        buf = self._buf
        if not buf and b"\r" not in data:
            if (
                data.endswith(b"\n\n")
                and data.find(b"\n") == len(data) - 2
                and data.startswith(b"data:")
                and not (self._first_line or self._data or self._event or self._retry is not None)
            ):
                # the usual read: one whole "data:" event and no field pending, so the event
                # is what the line and dispatch steps would make of it, without their copies
                # and calls
                self._event_bytes = 0
                value = data[6 if data[5:6] == b" " else 5 : -2]
                return [ServerSentEvent("message", None, self._last_id, None, raw=value)]
            return self._feed_fresh(data)
        buf += data
        if b"\r" not in buf:
            return self._feed_lf(buf)
        events: list[ServerSentEvent] = []
        start = 0
        pos = self._scan
        while True:
            m = _EOL.search(buf, pos)
            if m is None:
                break
            if m.start() == len(buf) - 1 and buf[-1] == 0x0D:
                # a lone CR at the end may be the first half of CRLF: wait for the next byte
                break
            self._event_bytes += m.end() - start
            event = self._line(bytes(buf[start : m.start()]))
            if event is not None:
                events.append(event)
            start = pos = m.end()
        pos = len(buf) if m is None else m.start()
        del buf[:start]
        self._scan = pos - start
        if self._event_bytes + len(buf) > self._max:
            raise UpstreamProtocolError(
                f"upstream SSE event exceeds {self._max} bytes without a blank line"
            )
        return events

    def _feed_fresh(self, data: bytes) -> list[ServerSentEvent]:
        """Nothing buffered and no CR: split the new bytes themselves (one copy, not three)."""
        lines = data.split(b"\n")
        rest = lines.pop()  # after the last LF: an unterminated line (maybe empty)
        events: list[ServerSentEvent] = []
        for raw in lines:
            self._event_bytes += len(raw) + 1
            event = self._line(raw)
            if event is not None:
                events.append(event)
        if rest:
            self._buf += rest
            self._scan = len(rest)
        if self._event_bytes + len(rest) > self._max:
            raise UpstreamProtocolError(
                f"upstream SSE event exceeds {self._max} bytes without a blank line"
            )
        return events

    def _feed_lf(self, buf: bytearray) -> list[ServerSentEvent]:
        """The common case, no CR buffered: cut lines with one ``split`` (same result)."""
        events: list[ServerSentEvent] = []
        end = buf.rfind(b"\n", self._scan)
        if end >= 0:
            lines = bytes(buf[:end]).split(b"\n")
            del buf[: end + 1]
            for raw in lines:
                self._event_bytes += len(raw) + 1
                event = self._line(raw)
                if event is not None:
                    events.append(event)
        self._scan = len(buf)
        if self._event_bytes + len(buf) > self._max:
            raise UpstreamProtocolError(
                f"upstream SSE event exceeds {self._max} bytes without a blank line"
            )
        return events

    def finish(self) -> list[ServerSentEvent]:
        """The stream ended: treat buffered bytes as a last line and flush a pending event."""
        events: list[ServerSentEvent] = []
        if self._buf:
            line = bytes(self._buf).rstrip(b"\r")
            self._buf.clear()
            self._scan = 0
            event = self._line(line)
            if event is not None:
                events.append(event)
        event = self._dispatch()
        if event is not None:
            events.append(event)
        return events

    def _line(self, raw: bytes) -> ServerSentEvent | None:
        if not raw:
            return self._dispatch()
        if raw.startswith(b"data:") and not self._first_line:
            # the usual line: kept as bytes without the ASCII prefix (decoded on demand)
            self._data.append(raw[6 if raw[5:6] == b" " else 5 :])
            self._has_data = True
            return None
        line = raw.decode("utf-8", errors="replace")
        if self._first_line:
            self._first_line = False
            line = line.removeprefix(_BOM)
        if line.startswith(":"):
            return None  # comment (keep-alive)
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value.encode("utf-8", "surrogatepass"))
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        has_data, data, event, retry = self._has_data, self._data, self._event, self._retry
        self._data = []
        self._has_data = False
        self._event = ""
        self._retry = None
        self._event_bytes = 0
        if not has_data:
            return None  # WHATWG: an event without data lines is not dispatched
        return ServerSentEvent(event or "message", None, self._last_id, retry, raw=b"\n".join(data))


def decode_json(event: ServerSentEvent, snapshots: SnapshotParser | None = None) -> Any:
    """Parse an event's ``data`` as JSON; the upstream promises one JSON object per event.

    ``snapshots``: the stream's ``SnapshotParser``, which parses cumulative
    snapshots for less (with the same result).

    Raises:
        UpstreamProtocolError: the data is not valid JSON.
    """
    try:
        if snapshots is not None:
            return snapshots.parse(event.raw)
        return orjson.loads(event.raw)
    except orjson.JSONDecodeError:
        pass  # maybe only invalid UTF-8: parsed below as the decoder shows it (U+FFFD)
    try:
        return orjson.loads(event.data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamProtocolError(f"upstream sent an SSE event that is not JSON: {exc}") from exc


def encode_event(obj: Any) -> bytes:
    """One ``data:`` event for ``obj``. JSON never contains a raw newline, so one line suffices."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"
