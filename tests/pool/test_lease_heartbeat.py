"""A held lease's heartbeat: a timer of the event loop, not a greenlet per lease.

A stream holds its account's lease for the whole answer; with a greenlet per
lease (parked in a sleep, killed at release), a thousand slow streams kept a
thousand more greenlets, and every answer paid to spawn and kill one. The
guarantees stay: a long lease is renewed, a renewal never lands after the
release (it is waited for), and a release from the answer's cleanup greenlet
runs in place.
"""

from __future__ import annotations

import gevent
import gevent.event

from glm_proxy.pool.lease import Slot
from glm_proxy.store.memory import MemoryStore


def test_holding_many_leases_costs_no_greenlet(monkeypatch) -> None:
    """Counted where greenlets start, not by a census of the process: other tests' background
    greenlets (in the same test process) come and go meanwhile."""
    store = MemoryStore()
    started: list[object] = []
    for name in ("spawn", "spawn_later", "spawn_raw"):
        original = getattr(gevent, name)

        def counting(*args, _original=original, **kwargs):
            started.append(args)
            return _original(*args, **kwargs)

        monkeypatch.setattr(gevent, name, counting)
    slots = []
    # A TTL whose first renewal (a third of it) no stalled machine reaches during the test:
    # what is counted is a greenlet per held lease, not a renewal that came due.
    for n in range(200):
        store.slot_acquire("slots:many", f"m{n}", 1000, 600.0)
        slots.append(Slot(store, "slots:many", f"m{n}", 600.0).start_heartbeat())
    gevent.sleep(0.01)
    held = {id(slot) for slot in slots}  # by identity: no other object's __eq__ is called
    ours = [args for args in started if args and id(getattr(args[0], "__self__", None)) in held]
    assert ours == []  # (another test's lease may renew meanwhile: not ours to count)
    for slot in slots:
        slot.release()
    assert store.slot_count("slots:many") == 0


def test_a_long_lease_is_renewed_by_the_timer() -> None:
    store = MemoryStore()
    # TTL 1.5 s, renewed every 0.5 s: only a loop stalled for a whole TTL (not merely slow
    # under a loaded machine) could let it lapse.
    store.slot_acquire("slots:long", "m", 10, 1.5)
    slot = Slot(store, "slots:long", "m", 1.5).start_heartbeat()
    gevent.sleep(4.5)  # three TTLs: only the renewals keep it
    assert store.slot_count("slots:long") == 1
    slot.release()
    assert store.slot_count("slots:long") == 0


class SlowRenewals(MemoryStore):
    """A store whose renewal takes a while (a slow Redis) and says when it began."""

    def __init__(self) -> None:
        super().__init__()
        self.renewing = gevent.event.Event()
        self.renewed = 0

    def slot_renew(self, key: str, member: str, ttl: float) -> None:
        self.renewing.set()
        gevent.sleep(0.2)
        super().slot_renew(key, member, ttl)
        self.renewed += 1


def test_a_renewal_in_flight_never_lands_after_the_release() -> None:
    store = SlowRenewals()
    store.slot_acquire("slots:race", "m", 10, 0.15)
    slot = Slot(store, "slots:race", "m", 0.15).start_heartbeat()
    assert store.renewing.wait(timeout=2)  # a renewal is in flight now
    slot.release()
    assert store.slot_count("slots:race") == 0
    gevent.sleep(0.4)  # the renewal would have landed by now
    assert store.slot_count("slots:race") == 0 and store.renewed == 0


def test_a_release_in_place_runs_in_the_calling_greenlet() -> None:
    store = MemoryStore()
    store.slot_acquire("slots:here", "m", 10, 30.0)
    released_in: list[object] = []
    slot = Slot(
        store, "slots:here", "m", 30.0, on_release=lambda: released_in.append(gevent.getcurrent())
    ).start_heartbeat()

    def cleanup() -> None:
        slot.release(in_place=True)

    runner = gevent.spawn(cleanup)
    runner.join(timeout=5)
    assert released_in == [runner] and store.slot_count("slots:here") == 0
