"""In-process store: the default for one gunicorn worker.

Under gevent, ``threading`` primitives are patched into greenlet-aware ones, so
one process serves thousands of concurrent requests through these locks.
Every compound operation (lease step, hash update, slot take) runs under one
mutex, which is what makes it atomic here; the Redis store gets the same
guarantee from Lua. Expired keys are dropped lazily on access and by an
occasional sweep.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import glm_proxy.store.keys as keys
from glm_proxy.store.base import AcquireRequest, AcquireResult, HashUpdate, Store
from glm_proxy.store.fairness import count_callers
from glm_proxy.store.leasing import choose
from glm_proxy.store.pacing import PaceQuery, PaceView, view


class MemoryStore(Store):
    backend = "memory"

    def __init__(self, clock=time.monotonic, wall=time.time) -> None:
        self._clock = clock
        self._wall = wall  # slot expiries use the wall clock, like the Redis store
        self._data: dict[str, tuple[str, float | None]] = {}
        self._hashes: dict[str, tuple[dict[str, str], float | None]] = {}
        self._zsets: dict[str, dict[str, float]] = {}
        self._mutex = threading.RLock()
        self._locks: weakref.WeakValueDictionary[str, threading.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._subscribers: dict[str, list[Callable[[str], None]]] = {}
        self._writes = 0

    # -- helpers -------------------------------------------------------------------

    def _expiry(self, ttl: float | None) -> float | None:
        return None if ttl is None else self._clock() + ttl

    def _live(self, key: str) -> tuple[str, float | None] | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] is not None and item[1] <= self._clock():
            del self._data[key]
            return None
        return item

    def _hash(self, key: str) -> dict[str, str]:
        item = self._hashes.get(key)
        if item is None:
            return {}
        if item[1] is not None and item[1] <= self._clock():
            del self._hashes[key]
            return {}
        return item[0]

    def _put_hash(self, key: str, fields: dict[str, str], ttl: float | None) -> None:
        old = self._hashes.get(key)
        expiry = self._expiry(ttl) if ttl is not None else (old[1] if old else None)
        self._hashes[key] = (fields, expiry)

    def _maybe_sweep(self) -> None:
        self._writes += 1
        if self._writes % 1024:
            return
        now = self._clock()
        for key in [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]:
            del self._data[key]
        for key in [k for k, (_, exp) in self._hashes.items() if exp is not None and exp <= now]:
            del self._hashes[key]

    def _now_ms(self) -> int:
        return int(self._wall() * 1000)

    # -- strings and counters --------------------------------------------------------

    def get(self, key: str) -> str | None:
        with self._mutex:
            item = self._live(key)
            return None if item is None else item[0]

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        with self._mutex:
            self._data[key] = (value, self._expiry(ttl))
            self._maybe_sweep()

    def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        with self._mutex:
            if self._live(key) is not None:
                return False
            self._data[key] = (value, self._expiry(ttl))
            self._maybe_sweep()
            return True

    def delete(self, *keys: str) -> None:
        with self._mutex:
            for key in keys:
                self._data.pop(key, None)
                self._hashes.pop(key, None)
                self._zsets.pop(key, None)

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        with self._mutex:
            item = self._live(key)
            if item is None:
                value, expiry = amount, self._expiry(ttl)
            else:
                value, expiry = int(item[0]) + amount, item[1]
            self._data[key] = (str(value), expiry)
            self._maybe_sweep()
            return value

    def expire(self, key: str, ttl: float) -> None:
        with self._mutex:
            item = self._live(key)
            if item is not None:
                self._data[key] = (item[0], self._expiry(ttl))
            elif self._hash(key):
                self._hashes[key] = (self._hashes[key][0], self._expiry(ttl))

    def scan(self, prefix: str) -> Iterator[str]:
        with self._mutex:
            keys = [k for k in self._data if k.startswith(prefix) and self._live(k) is not None]
            keys += [k for k in list(self._hashes) if k.startswith(prefix) and self._hash(k)]
            keys += [k for k, z in self._zsets.items() if k.startswith(prefix) and z]
        return iter(keys)

    @contextmanager
    def lock(self, name: str, timeout: float = 30.0, blocking_timeout: float | None = None):
        with self._mutex:
            lock = self._locks.get(name)
            if lock is None:
                lock = threading.Lock()
                self._locks[name] = lock
        acquired = lock.acquire(timeout=-1 if blocking_timeout is None else blocking_timeout)
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()

    # -- hashes ----------------------------------------------------------------------

    def hgetall(self, key: str) -> dict[str, str]:
        with self._mutex:
            return dict(self._hash(key))

    def hincr(self, key: str, field: str, amount: int = 1, ttl: float | None = None) -> int:
        return int(self._add(key, {field: amount}, ttl)[field])

    def hincr_many(self, key: str, amounts: Mapping[str, int], ttl: float | None = None) -> None:
        self._add(key, amounts, ttl)

    def _add(self, key: str, amounts: Mapping[str, int], ttl: float | None) -> dict[str, str]:
        """Add ``amounts`` to the hash's fields at once; returns the hash after."""
        with self._mutex:
            fields = dict(self._hash(key))
            for field, amount in amounts.items():
                fields[field] = str(int(fields.get(field) or 0) + amount)
            self._put_hash(key, fields, ttl)
            self._maybe_sweep()
            return fields

    def hupdate(self, key: str, update: HashUpdate, ttl: float | None = None) -> dict[str, str]:
        with self._mutex:
            current = dict(self._hash(key))
            changes = update(dict(current))
            if not changes:
                return current
            current.update({k: str(v) for k, v in changes.items()})
            self._put_hash(key, current, ttl)
            self._maybe_sweep()
            return dict(current)

    # -- sorted sets -----------------------------------------------------------------

    def zadd(self, key: str, mapping: Mapping[str, float], *, only_existing: bool = False) -> None:
        with self._mutex:
            zset = self._zsets.setdefault(key, {})
            for member, score in mapping.items():
                if only_existing and member not in zset:
                    continue
                zset[member] = float(score)
            if not zset:
                del self._zsets[key]

    def zrem(self, key: str, *members: str) -> int:
        with self._mutex:
            zset = self._zsets.get(key)
            if not zset:
                return 0
            removed = sum(1 for m in members if zset.pop(m, None) is not None)
            if not zset:
                del self._zsets[key]
            return removed

    def zrange_by_score(self, key: str, max_score: float, limit: int = 100) -> list[str]:
        with self._mutex:
            zset = self._zsets.get(key) or {}
            hits = sorted((s, m) for m, s in zset.items() if s <= max_score)
            return [m for _, m in hits[:limit]]

    def zscore(self, key: str, member: str) -> float | None:
        with self._mutex:
            return (self._zsets.get(key) or {}).get(member)

    # -- slots -----------------------------------------------------------------------

    def _slots(self, key: str, now_ms: int) -> dict[str, float]:
        """The live members of a slot set (expired ones dropped)."""
        zset = self._zsets.get(key)
        if zset is None:
            return {}
        for member in [m for m, exp in zset.items() if exp <= now_ms]:
            del zset[member]
        if not zset:
            del self._zsets[key]
            return {}
        return zset

    def slot_acquire(self, key: str, member: str, limit: int, ttl: float) -> bool:
        with self._mutex:
            now = self._now_ms()
            slots = self._slots(key, now)
            if member not in slots and len(slots) >= limit:
                return False
            self._zsets.setdefault(key, {})[member] = now + ttl * 1000
            return True

    def slot_renew(self, key: str, member: str, ttl: float) -> None:
        with self._mutex:
            self._zsets.setdefault(key, {})[member] = self._now_ms() + ttl * 1000

    def slot_release(self, key: str, *members: str) -> None:
        self.zrem(key, *members)

    def slot_count(self, key: str) -> int:
        with self._mutex:
            return len(self._slots(key, self._now_ms()))

    def lease_acquire(self, request: AcquireRequest) -> AcquireResult:
        with self._mutex:
            return choose(self, request)

    def pace(self, query: PaceQuery, fps: list[str], book: str = "") -> list[PaceView]:
        views = []
        with self._mutex:
            for fp in fps:
                spend = self._zset(keys.spend(fp))
                for member in [m for m, t in spend.items() if t <= query.now_ms - query.keep_ms]:
                    del spend[member]
                item = self._live(keys.gap(fp))
                seen = view(sorted(spend.values()), float(item[0]) if item else 0.0, query)
                if book and seen.free_at_ms <= query.now_ms:
                    spend[book] = float(query.now_ms)
                    seen = PaceView(seen.hour_used + 1, seen.day_used + 1, seen.free_at_ms, True)
                self._tidy(keys.spend(fp))
                views.append(seen)
        return views

    def queue_leave(self, queue: str, ticket: str) -> None:
        with self._mutex:
            self.zrem(keys.queue(queue), ticket)
            self.zrem(keys.queue_alive(queue), ticket)
            self._hash(keys.queue_owner(queue)).pop(ticket, None)
            self._tidy(keys.queue_owner(queue))

    def queue_waiting(self, queue: str) -> dict[str, int]:
        with self._mutex:
            now = self._now_ms()
            alive = self._zsets.get(keys.queue_alive(queue)) or {}
            owners = self._hash(keys.queue_owner(queue))
            live = [t for t in self._zsets.get(keys.queue(queue)) or {} if alive.get(t, 0) > now]
        return count_callers(owners.get(t) for t in live)

    # -- used by leasing.choose under the mutex ---------------------------------------

    def _zset(self, key: str) -> dict[str, float]:
        return self._zsets.setdefault(key, {})

    def _table(self, key: str, ttl: float) -> dict[str, str]:
        """A hash to change in place, created if missing; its expiry starts again."""
        fields = self._hash(key)
        if key not in self._hashes:
            fields = {}
        self._hashes[key] = (fields, self._expiry(ttl))
        return fields

    def _tidy(self, *keys: str) -> None:
        for key in keys:
            if key in self._zsets and not self._zsets[key]:
                del self._zsets[key]
            if key in self._hashes and not self._hashes[key][0]:
                del self._hashes[key]

    # -- notifications -----------------------------------------------------------------

    def publish(self, channel: str, message: str = "") -> None:
        with self._mutex:
            callbacks = list(self._subscribers.get(channel, ()))
        for callback in callbacks:
            callback(message)

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> Callable[[], None]:
        with self._mutex:
            self._subscribers.setdefault(channel, []).append(callback)

        def unsubscribe() -> None:
            with self._mutex:
                callbacks = self._subscribers.get(channel, [])
                if callback in callbacks:
                    callbacks.remove(callback)

        return unsubscribe
