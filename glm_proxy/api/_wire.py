"""What a wire format is to the streaming pump (``glm_proxy.api._streaming``).

Its own module so that the pump's per-stream state (``_stream_state``) and the
opening step can name it without importing the pump.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from glm_proxy.errors import GLMProxyError
from glm_proxy.protocol.events import Delta
from glm_proxy.services.job_queue import JobDone

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
