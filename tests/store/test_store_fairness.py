"""The order a waiting line is served in, on both stores (memory, and a real private Redis).

Round robin across callers, arrival order within one (``glm_proxy.store.fairness``).
The rule is implemented twice (Python and Lua); every case here runs against
each. A ``Line`` drives one account: it holds the lease, lets every waiter
ask again after each release (in an order the test picks, to show the order
served does not depend on who asks first) and records who got it.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import pytest

from glm_proxy.store.base import AcquireRequest, AcquireResult, SlotCandidate, Store
from glm_proxy.store.fairness import FairShare, fair_rank, record_turn
from glm_proxy.store.memory import MemoryStore
from tests.support.redis_fixture import redis_server, redis_url  # noqa: F401


@pytest.fixture(params=["memory", "redis"])
def store(request) -> Store:
    if request.param == "memory":
        yield MemoryStore()
        return
    from glm_proxy.store.redis import RedisStore

    target = request.getfixturevalue("redis_url")
    s = RedisStore.from_url(target.url, prefix=target.prefix)
    yield s
    s.close()


@dataclass
class Waiter:
    name: str  # caller + "#" + their n-th request
    share: FairShare
    ticket: str
    seq: int | None = None


class Line:
    """One account ("a", one stream) and the requests waiting for it."""

    def __init__(self, store: Store, streams: int = 1) -> None:
        self.store = store
        self.streams = streams
        self.waiting: list[Waiter] = []
        self.held: list[str] = []  # lease ids
        self.served: list[str] = []

    def ask(self, waiter: Waiter, ticket_ttl_ms: int = 60000) -> AcquireResult:
        lease_id = uuid.uuid4().hex
        result = self.store.lease_acquire(
            AcquireRequest(
                queue="line",
                candidates=(SlotCandidate("a", self.streams),),
                lease_id=lease_id,
                ticket=waiter.ticket,
                now_ms=int(time.time() * 1000),
                lease_ttl_ms=60000,
                ticket_ttl_ms=ticket_ttl_ms,
                queue_max=100,
                seq=waiter.seq,
                sole=True,
                caller=waiter.share.name,
                stride=waiter.share.stride,
            )
        )
        if result.status == "ok":
            self.held.append(lease_id)
            self.served.append(waiter.name)
            if waiter in self.waiting:
                self.waiting.remove(waiter)
        elif result.status == "wait":
            waiter.seq = result.seq
            if waiter not in self.waiting:
                self.waiting.append(waiter)
        return result

    def arrive(self, caller: str, count: int = 1, weight: float = 1.0, **kw) -> list[Waiter]:
        """``count`` new requests of ``caller``, each asking once (served or queued)."""
        done = sum(1 for w in self.served + [w.name for w in self.waiting] if w.startswith(caller))
        arrivals = [
            Waiter(f"{caller}#{done + n}", FairShare(caller, weight), uuid.uuid4().hex)
            for n in range(count)
        ]
        for waiter in arrivals:
            self.ask(waiter, **kw)
        return arrivals

    def release_one(self, asking_order: str = "arrival") -> str | None:
        """Free one stream; every waiter asks again (until one is served). Who got it."""
        self.store.slot_release("lease:a", self.held.pop(0))
        order = list(self.waiting)
        if asking_order == "reversed":
            order.reverse()
        for waiter in order:
            if self.ask(waiter).status == "ok":
                return waiter.name
        return None

    def drain(self, asking_order: str = "arrival") -> list[str]:
        return [self.release_one(asking_order) for _ in range(len(self.waiting))]


def test_a_light_caller_is_served_before_a_heavy_burst(store: Store) -> None:
    line = Line(store)
    line.arrive("heavy", 9)  # one served, eight waiting
    line.arrive("light")
    assert line.served == ["heavy#0"]
    assert line.release_one() == "light#0"
    assert line.drain() == [f"heavy#{n}" for n in range(1, 9)]


@pytest.mark.parametrize("asking_order", ["arrival", "reversed"])
def test_round_robin_across_callers_arrival_within_one(store: Store, asking_order) -> None:
    line = Line(store)
    line.arrive("a", 4)  # a#0 served
    line.arrive("b", 3)
    line.arrive("c", 3)
    assert line.drain(asking_order) == [
        "b#0",
        "c#0",
        "a#1",
        "b#1",
        "c#1",
        "a#2",
        "b#2",
        "c#2",
        "a#3",
    ]


def test_weights_give_a_key_more_turns(store: Store) -> None:
    line = Line(store)
    line.arrive("big", 7, weight=2)  # big#0 served
    line.arrive("small", 3)
    order = line.drain()
    assert order == ["small#0", "big#1", "big#2", "small#1", "big#3", "big#4", "small#2"] + [
        "big#5",
        "big#6",
    ]


def test_the_caller_served_least_recently_goes_first(store: Store) -> None:
    line = Line(store)
    line.arrive("a", 3)  # a#0 served
    line.arrive("b", 2)
    assert line.release_one() == "b#0"
    # c was never served: it goes before a (served longest ago after c) and b (just served)
    line.arrive("c")
    assert line.drain() == ["c#0", "a#1", "b#1", "a#2"]


def test_idling_earns_no_credit(store: Store) -> None:
    """A caller served long ago does not get a run of turns to catch up."""
    line = Line(store)
    line.arrive("early")
    line.release_one()  # nobody waits: the account is free
    line.arrive("busy", 4)  # busy#0 served at once
    line.arrive("early", 3)
    assert line.drain() == ["busy#1", "early#1", "busy#2", "early#2", "busy#3", "early#3"]


def test_two_streams_grant_the_first_two_in_the_fair_order(store: Store) -> None:
    line = Line(store, streams=2)
    line.arrive("heavy", 6)  # heavy#0 and heavy#1 served
    line.arrive("light", 2)
    assert line.release_one() == "light#0"
    assert line.release_one() == "heavy#2"
    assert line.release_one() == "light#1"


def test_a_caller_who_gives_up_blocks_nobody(store: Store) -> None:
    line = Line(store)
    line.arrive("heavy", 3)
    (gone,) = line.arrive("light")
    assert store.queue_waiting("line") == {"heavy": 2, "light": 1}
    store.queue_leave("line", gone.ticket)
    line.waiting.remove(gone)
    assert store.queue_waiting("line") == {"heavy": 2}
    assert line.release_one() == "heavy#1"


def test_a_crashed_waiter_lapses_and_blocks_nobody(store: Store) -> None:
    line = Line(store)
    line.arrive("heavy", 2)
    (crashed,) = line.arrive("light", ticket_ttl_ms=50)
    line.waiting.remove(crashed)  # it never asks again
    time.sleep(0.1)  # its ticket lapses
    assert store.queue_waiting("line") == {"heavy": 1}
    assert line.release_one() == "heavy#1"


def test_anonymous_waiters_keep_the_order_of_arrival(store: Store) -> None:
    line = Line(store)
    line.arrive("", 5)
    assert line.drain("reversed") == ["#1", "#2", "#3", "#4"]


def test_the_rule_by_itself() -> None:
    """``fair_rank`` and ``record_turn`` without a store: the table the Lua mirrors."""
    unit = FairShare("x").stride
    fair: dict[str, str] = {}
    record_turn(fair, "heavy", unit)  # heavy served at turn 0
    assert fair == {"v": "0", "p:heavy": str(unit)}
    queue = {"h1": 1.0, "h2": 2.0}
    owners = {"h1": f"{unit} heavy", "h2": f"{unit} heavy"}
    assert fair_rank(queue, owners, fair, "h2", "heavy", unit) == 1
    assert fair_rank(queue, owners, fair, "new", "light", unit) == 0
    assert fair_rank(queue, owners, fair, "new", "heavy", unit) == 2
    record_turn(fair, "light", unit)  # light's turn: at the clock, before heavy's
    assert fair == {"v": "0", "p:heavy": str(unit), "p:light": str(unit)}
    record_turn(fair, "heavy", unit)  # the clock moves on; passes at or behind it are dropped
    assert fair == {"v": str(unit), "p:heavy": str(2 * unit)}
