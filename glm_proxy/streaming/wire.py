"""What a wire format is to the streaming pump (``glm_proxy.streaming.pump``).

A wire turns an answer's deltas into the bytes of one API's format. It is
pure: it never sees the job, the connection or Flask, so each format is
tested on its own (``tests/test_wire_formats.py``) and the pump is written
once for all of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from glm_proxy.errors import GLMProxyError
from glm_proxy.protocol.events import Delta
from glm_proxy.streaming.queue import JobDone

__all__ = ["Wire"]


class Wire(Protocol):
    """One wire format for one answer. Each call returns the bytes to send (maybe ``b""``).

    ``open`` comes before the first ``feed``/``finish`` (not before ``error``
    or ``keepalive``). After ``finish`` or ``collect``, ``usage`` holds the
    answer's usage in OpenAI terms (per-key counters, request log).
    """

    usage: dict[str, Any] | None

    def open(self) -> bytes: ...

    def feed(self, delta: Delta) -> bytes: ...

    def finish(self, end: JobDone) -> bytes: ...

    def error(self, err: GLMProxyError) -> bytes: ...

    def keepalive(self) -> bytes: ...

    def collect(self, deltas: Iterable[Delta]) -> dict[str, Any]: ...
