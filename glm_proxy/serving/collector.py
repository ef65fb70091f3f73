"""The worker's cyclic garbage collector: startup objects frozen, young ones collected on a clock.

Why: with a thousand open streams the worker holds about 190 tracked objects
per stream (greenlets and their frames, queues, the request's Flask and
gunicorn objects), and CPython's collector paused the event loop for all of
them at once, delaying every stream's next event:

* CPython starts a young collection when allocations outnumber deallocations
  by 700. With streams opening as fast as others close, the two balance, so
  the count rarely gets there while the youngest generation keeps growing: a
  young collection found up to 19,000 objects and took 17 ms of CPU, a
  middle one up to 54 ms (``bench_core.py --worker-figures``, 1,000 slow
  streams; the original tree paused the same way).
* Collecting the two young generations every ``GC_INTERVAL`` seconds bounds
  each pause by what was made since the last one, whatever the balance. A
  stream's long-lived objects are then walked once before they reach the
  oldest generation, not twice (young, then middle).
* A full collection walks every object the open streams hold (90 to 210 ms
  with a thousand streams). CPython allows one after a number of middle
  collections, a number made for its own pace; on the clock's pace it is
  scaled so that one comes at most every ``FULL_EVERY`` seconds, as before
  (and only when the oldest generation grew by a quarter, CPython's own rule).
  A finished stream's objects are freed by reference counting
  (``tests/structure/test_no_cycles.py``), so full collections find little.

``freeze_startup_objects`` keeps the app's modules, schemas and settings out
of every collection (``gc.freeze``): they live as long as the worker.
``GC_INTERVAL=0`` leaves the pace to CPython.

gevent's spawning-tree capture is turned off too: every spawned greenlet kept
its spawner's stack (about 14 extra objects per stream, and a stack walk per
spawn) for debugging tools this server does not use (``GEVENT_TRACK_GREENLET_TREE``
in gevent's configuration).
"""

from __future__ import annotations

import gc
import math

import gevent

__all__ = ["FULL_EVERY", "freeze_startup_objects", "start", "unfreeze"]

FULL_EVERY = 100.0  # seconds: the least time between two full collections under a steady load


def freeze_startup_objects() -> None:
    """Collect once, then move every object that exists now out of later collections."""
    gc.collect()
    gc.freeze()


def unfreeze() -> None:
    """Give the frozen objects back (at exit: left frozen, they are torn down after the
    modules they need, which prints tracebacks)."""
    gc.unfreeze()


def start(interval: float) -> gevent.Greenlet | None:
    """Freeze the startup objects and collect the young generations every ``interval`` s.

    Returns the collecting greenlet (None when ``interval`` is 0: CPython's own
    pace, with full collections after a hundred middle ones instead of ten).
    """
    gevent.config.track_greenlet_tree = False
    freeze_startup_objects()
    young, middle, _ = gc.get_threshold()
    if not interval:
        gc.set_threshold(young, middle, 100)
        return None
    # Each clock tick counts as one middle collection towards a full one.
    gc.set_threshold(young, middle, max(100, math.ceil(FULL_EVERY / interval)))
    return gevent.spawn(_collect_every, interval)


def _collect_every(interval: float) -> None:
    while True:
        gevent.sleep(interval)
        gc.collect(1)
