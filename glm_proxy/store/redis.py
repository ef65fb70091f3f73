"""Redis store: required for more than one worker or replica.

Every key gets ``REDIS_PREFIX`` so several deployments (or the test suite) can
share one Redis. Locks use redis-py's Lock (SET NX PX + Lua release), so a
crashed holder's lock expires after ``timeout``. Operations that must not
race (the lease step, taking a slot) are Lua scripts; hash updates use
WATCH/MULTI. The key layout is documented in the README ("Shared state and Redis").
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import redis

import glm_proxy.store.keys as keys
from glm_proxy.errors import ServiceUnavailable
from glm_proxy.store.base import AcquireRequest, AcquireResult, HashUpdate, Store
from glm_proxy.store.fairness import count_callers
from glm_proxy.store.leasing import ACQUIRE_LUA, SLOT_ACQUIRE_LUA, parse_lua_result
from glm_proxy.store.pacing import PACE_CHECK_LUA, PaceQuery, PaceView, parse_pace_reply

log = logging.getLogger(__name__)


class StoreUnavailable(ServiceUnavailable):
    """Redis did not answer: a 503 the client may retry, not a 500 with a traceback."""

    code = "store_unavailable"


def _unavailable(exc: redis.RedisError) -> StoreUnavailable:
    return StoreUnavailable(
        f"The shared state store (Redis) is unavailable ({type(exc).__name__}).",
        headers={"Retry-After": "5"},
    )


def _translate_errors(cls: type) -> type:
    """Turn ``redis.RedisError`` escaping a plain store call into ``StoreUnavailable``.

    ``lock`` and ``scan`` are a context manager and a generator: they translate
    their own errors where they happen.
    """
    skip = {"lock", "scan", "subscribe", "ping", "close", "from_url", "k"}
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or name in skip or not callable(member):
            continue

        def wrap(method: Callable) -> Callable:
            @functools.wraps(method)
            def call(self, *args, **kwargs):
                try:
                    return method(self, *args, **kwargs)
                except redis.RedisError as exc:
                    raise _unavailable(exc) from None

            return call

        setattr(cls, name, wrap(member))
    return cls


@_translate_errors
class RedisStore(Store):
    backend = "redis"

    def __init__(self, client: redis.Redis, prefix: str = "glmproxy:") -> None:
        # Replies are str (``decode_responses=True``), which redis-py's annotations
        # (``bytes | str`` for every reply) cannot express: its calls go unchecked.
        self.client: Any = client
        self.prefix = prefix
        self._acquire = client.register_script(ACQUIRE_LUA)
        self._slot_acquire = client.register_script(SLOT_ACQUIRE_LUA)
        self._pace = client.register_script(PACE_CHECK_LUA)
        self._listeners: dict[str, _Listener] = {}
        self._listeners_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, prefix: str = "glmproxy:") -> RedisStore:
        client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=30,
        )
        return cls(client, prefix)

    def k(self, key: str) -> str:
        return self.prefix + key

    @staticmethod
    def _ms(ttl: float) -> int:
        return max(1, int(ttl * 1000))

    @classmethod
    def _px(cls, ttl: float | None) -> int | None:
        """``px=`` of SET: milliseconds, or None for no expiry."""
        return None if ttl is None else cls._ms(ttl)

    @staticmethod
    def _now_ms() -> int:
        return int(time.time() * 1000)

    @property
    def shares_across_processes(self) -> bool:
        return True

    # -- strings and counters --------------------------------------------------------

    def get(self, key: str) -> str | None:
        return self.client.get(self.k(key))

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self.client.set(self.k(key), value, px=self._px(ttl))

    def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        return bool(self.client.set(self.k(key), value, px=self._px(ttl), nx=True))

    def delete(self, *keys: str) -> None:
        if keys:
            self.client.delete(*(self.k(key) for key in keys))

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        pipe = self.client.pipeline()
        pipe.incrby(self.k(key), amount)
        if ttl is not None:
            pipe.pexpire(self.k(key), self._ms(ttl), nx=True)
        return int(pipe.execute()[0])

    def expire(self, key: str, ttl: float) -> None:
        self.client.pexpire(self.k(key), self._ms(ttl))

    def scan(self, prefix: str) -> Iterator[str]:
        cut = len(self.prefix)
        try:
            for key in self.client.scan_iter(match=self.k(prefix) + "*", count=500):
                yield key[cut:]
        except redis.RedisError as exc:
            raise _unavailable(exc) from None

    @contextmanager
    def lock(self, name: str, timeout: float = 30.0, blocking_timeout: float | None = None):
        lock = self.client.lock(
            self.k(keys.lock(name)),
            timeout=timeout,
            blocking_timeout=blocking_timeout,
            sleep=0.02,
        )
        try:
            acquired = lock.acquire()
        except redis.RedisError as exc:
            raise _unavailable(exc) from None
        try:
            yield acquired
        finally:
            if acquired:
                try:
                    lock.release()
                except redis.exceptions.LockError:
                    pass  # expired while held: someone else may own it now
                except redis.RedisError as exc:  # it expires after ``timeout`` anyway
                    log.warning("could not release the store lock %s: %s", name, exc)

    # -- hashes ----------------------------------------------------------------------

    def hgetall(self, key: str) -> dict[str, str]:
        return self.client.hgetall(self.k(key))

    def hgetall_many(self, keys: list[str]) -> list[dict[str, str]]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(self.k(key))
        return list(pipe.execute())

    def hincr(self, key: str, field: str, amount: int = 1, ttl: float | None = None) -> int:
        return self._add(key, {field: amount}, ttl)[0]

    def hincr_many(self, key: str, amounts: Mapping[str, int], ttl: float | None = None) -> None:
        if amounts:
            self._add(key, amounts, ttl)

    def _add(self, key: str, amounts: Mapping[str, int], ttl: float | None) -> list[int]:
        """HINCRBY each field and (re)apply the expiry, in one MULTI; the new values."""
        pipe = self.client.pipeline()
        for field, amount in amounts.items():
            pipe.hincrby(self.k(key), field, amount)
        if ttl is not None:
            pipe.pexpire(self.k(key), self._ms(ttl))
        return [int(value) for value in pipe.execute()[: len(amounts)]]

    def hupdate(self, key: str, update: HashUpdate, ttl: float | None = None) -> dict[str, str]:
        name = self.k(key)
        with self.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(name)
                    current = pipe.hgetall(name)
                    changes = update(dict(current))
                    if not changes:
                        pipe.unwatch()
                        return current
                    changes = {k: str(v) for k, v in changes.items()}
                    pipe.multi()
                    pipe.hset(name, mapping=changes)
                    if ttl is not None:
                        pipe.pexpire(name, self._ms(ttl))
                    pipe.execute()
                    return {**current, **changes}
                except redis.WatchError:
                    continue

    # -- sorted sets -----------------------------------------------------------------

    def zadd(self, key: str, mapping: Mapping[str, float], *, only_existing: bool = False) -> None:
        if mapping:
            self.client.zadd(self.k(key), dict(mapping), xx=only_existing)

    def zrem(self, key: str, *members: str) -> int:
        return int(self.client.zrem(self.k(key), *members)) if members else 0

    def zrange_by_score(self, key: str, max_score: float, limit: int = 100) -> list[str]:
        return self.client.zrangebyscore(self.k(key), "-inf", max_score, start=0, num=limit)

    def zscore(self, key: str, member: str) -> float | None:
        return self.client.zscore(self.k(key), member)

    # -- slots -----------------------------------------------------------------------

    def slot_acquire(self, key: str, member: str, limit: int, ttl: float) -> bool:
        reply = self._slot_acquire(
            keys=[self.k(key)], args=[self._now_ms(), self._ms(ttl), limit, member]
        )
        return bool(int(reply))

    def slot_renew(self, key: str, member: str, ttl: float) -> None:
        name, ms = self.k(key), self._ms(ttl)
        pipe = self.client.pipeline()
        pipe.zadd(name, {member: self._now_ms() + ms})
        pipe.pexpire(name, ms)  # every holder uses the same ttl: the newest renewal is the max
        pipe.execute()

    def slot_release(self, key: str, *members: str) -> None:
        if members:
            self.client.zrem(self.k(key), *members)

    def slot_count(self, key: str) -> int:
        return int(self.client.zcount(self.k(key), f"({self._now_ms()}", "+inf"))

    def lease_acquire(self, request: AcquireRequest) -> AcquireResult:
        q = request.queue
        names = [keys.queue(q), keys.queue_alive(q), keys.queue_seq(q), keys.LRU]
        names += [keys.queue_owner(q), keys.queue_fair(q)]
        args: list[str | int | float] = [
            request.now_ms,
            request.lease_ttl_ms,
            request.ticket_ttl_ms,
            request.queue_max,
            request.ticket,
            request.lease_id,
            "" if request.seq is None else request.seq,
            1 if request.sole else 0,
            len(request.candidates),
            request.caller,
            request.stride,
        ]
        for cand in request.candidates:
            names += [keys.lease(cand.fingerprint), keys.health(cand.fingerprint)]
            args += [cand.fingerprint, cand.max_streams, 1 if cand.excluded else 0, cand.rank]
        return parse_lua_result(self._acquire(keys=[self.k(name) for name in names], args=args))

    def pace(self, query: PaceQuery, fps: list[str], book: str = "") -> list[PaceView]:
        if not fps:
            return []
        names = [self.k(name) for fp in fps for name in (keys.spend(fp), keys.gap(fp))]
        args = [
            query.now_ms,
            query.hour_ms,
            query.hour_limit,
            query.day_limit,
            query.keep_ms,
            1 if book else 0,
            book,
        ]
        return parse_pace_reply(self._pace(keys=names, args=args))

    def queue_leave(self, queue: str, ticket: str) -> None:
        pipe = self.client.pipeline()
        pipe.zrem(self.k(keys.queue(queue)), ticket)
        pipe.zrem(self.k(keys.queue_alive(queue)), ticket)
        pipe.hdel(self.k(keys.queue_owner(queue)), ticket)
        pipe.execute()

    def queue_waiting(self, queue: str) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=True)
        pipe.zrangebyscore(self.k(keys.queue_alive(queue)), f"({self._now_ms()}", "+inf")
        pipe.hgetall(self.k(keys.queue_owner(queue)))
        live, owners = pipe.execute()
        return count_callers(owners.get(t) for t in live)

    # -- notifications ---------------------------------------------------------------

    def publish(self, channel: str, message: str = "") -> None:
        self.client.publish(self.k(channel), message)

    def subscribe(self, channel: str, callback: Callable[[str], None]) -> Callable[[], None]:
        with self._listeners_lock:
            listener = self._listeners.get(channel)
            if listener is None:
                listener = _Listener(self.client, self.k(channel))
                self._listeners[channel] = listener
                listener.start()
        listener.callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in listener.callbacks:
                listener.callbacks.remove(callback)

        return unsubscribe

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        for listener in self._listeners.values():
            listener.stopped = True
        self.client.close()


class _Listener(threading.Thread):
    """One pub/sub connection per channel and process; reconnects after errors.

    Waiters also poll, so a message lost while reconnecting only costs latency.
    """

    def __init__(self, client: redis.Redis, channel: str) -> None:
        super().__init__(name=f"redis-listener-{channel}", daemon=True)
        self.client = client
        self.channel = channel
        self.callbacks: list[Callable[[str], None]] = []
        self.stopped = False

    def run(self) -> None:
        while not self.stopped:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                while not self.stopped:
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        for callback in list(self.callbacks):
                            callback(message.get("data") or "")
            except redis.RedisError as exc:
                log.warning("redis pub/sub listener on %s failed: %s", self.channel, exc)
                time.sleep(1.0)
            except Exception:  # noqa: BLE001 - a callback bug must not kill the listener
                log.exception("redis pub/sub callback failed")
            finally:
                try:
                    pubsub.close()
                except Exception:  # noqa: BLE001
                    pass
