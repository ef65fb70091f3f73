"""The worker's garbage collector on a clock (``glm_proxy.serving.collector``).

The case it exists for: streams opening as fast as others close keep CPython's
allocation count balanced, so its young collections rarely run while the
youngest generation grows, and the one that finally runs pauses every stream
for all of it. On the clock, that generation is collected within an interval.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator

import gevent
import pytest

from glm_proxy.serving import collector


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """The test process's collector as it was: thresholds, frozen objects, spawn tree."""
    thresholds = gc.get_threshold()
    tree = gevent.config.track_greenlet_tree
    yield
    collector.unfreeze()
    gc.set_threshold(*thresholds)
    gevent.config.track_greenlet_tree = tree


def _balanced_churn(old: list[list[int]], count: int) -> list[list[int]]:
    """``count`` new tracked objects, each made as an old one is freed: CPython's count
    stays where it was, as with streams that open while others close."""
    made = []
    for _ in range(count):
        old.pop()
        made.append([0])
    return made


def _young() -> int:
    return len(gc.get_objects(generation=0))


def test_young_objects_are_collected_on_the_clock_though_counts_balance(restored_gc):
    interval = 0.02
    greenlet = collector.start(interval)
    try:
        old = [[0] for _ in range(20_000)]
        gc.collect()  # the old objects are in the oldest generation now
        kept = _balanced_churn(old, 10_000)
        assert _young() >= 10_000  # left young: CPython's count did not move
        for _ in range(250):  # up to five seconds on a busy machine; a few ticks otherwise
            gevent.sleep(interval)
            if _young() < 1_000:
                break
        assert _young() < 1_000
        assert gc.get_count()[0] < 700
        del kept
    finally:
        greenlet.kill()


def test_full_collections_keep_their_pace(restored_gc):
    """Each tick counts towards a full collection: the threshold is scaled so that one
    comes at most every FULL_EVERY seconds, not after a hundred ticks."""
    greenlet = collector.start(0.05)
    greenlet.kill()
    assert gc.get_threshold()[2] == math.ceil(collector.FULL_EVERY / 0.05)
    collector.start(0)
    assert gc.get_threshold()[2] == 100


def test_startup_objects_are_frozen_and_the_spawn_tree_is_off(restored_gc):
    collector.start(0)
    assert gc.get_freeze_count() > 0
    assert gevent.config.track_greenlet_tree is False
    assert gevent.spawn(lambda: None).spawning_stack is None
    collector.unfreeze()
    assert gc.get_freeze_count() == 0
