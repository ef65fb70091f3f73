"""Give memory back to the system after a burst of answers.

glibc's allocator keeps freed memory in its arenas: after a hundred large
answers ended, the worker's RSS stays near its peak although Python freed
everything, and the host sees a worker that "leaks". ``malloc_trim(0)``
returns the free pages. It costs a few milliseconds on a large heap, so it
runs once, shortly after the last answer of a burst ended, never per request.
Elsewhere than glibc (musl, macOS) there is no such call and nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

import gevent

__all__ = ["TRIM_DELAY", "trim_when_idle"]

log = logging.getLogger(__name__)

TRIM_DELAY = 2.0  # seconds after the last answer ended: its response is closed by then


def _load_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_trim = _load_trim()
_pending = False
trims = 0  # how many times memory was trimmed (tests, benchmarks)


def trim_when_idle(idle: Callable[[], bool], delay: float = TRIM_DELAY) -> None:
    """Trim the allocator ``delay`` seconds from now if ``idle()`` still says so then.

    Called whenever the number of running answers drops to zero; calls made
    while one trim is already scheduled are folded into it.
    """
    global _pending
    if _trim is None or _pending:
        return
    _pending = True
    gevent.spawn_later(delay, _run, idle)


def _run(idle: Callable[[], bool]) -> None:
    global _pending, trims
    _pending = False
    if not idle() or _trim is None:
        return
    try:
        gc.collect()  # cycles first (answers' buffers held by a traceback, say)
        _trim(0)
        trims += 1
    except Exception:  # noqa: BLE001 - trimming is an optimisation, never a failure
        log.exception("could not return free memory to the system")
