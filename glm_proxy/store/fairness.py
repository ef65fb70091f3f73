"""The order a waiting line is served in: round robin across callers, arrival order within one.

A line (requests with the same candidate accounts) used to be served strictly
in order of arrival, so a key that sent a burst of requests made every other
key wait behind all of it. Now each caller (an API key, or one pass-through
credential) has a *pass*: the virtual time of its next turn. Every grant moves
the caller's pass one *stride* on (``FAIR_UNIT / weight``: a key of weight 2
gets two turns while a key of weight 1 gets one), and the line's virtual clock
``v`` to the turn just taken. A caller that was idle starts at ``v``, never
earlier, so idling earns no credit.

A waiting ticket's place in the order follows from that: the caller's
``k``-th waiting ticket (by arrival) takes its turn at
``max(v, pass) + k strides``, ties broken by arrival. So the next request
served is the one of the caller served least recently, a caller's own
requests keep their order, and a caller that gives up its place (client
hang-up, deadline) costs nobody anything: only grants move a pass.

The rules are plain functions over the line's tables here (the memory store
runs them under its mutex); ``store.leasing`` holds the same rules in Lua for
Redis, and ``tests/store/test_store_fairness.py`` runs one table of cases on both.
Strides are integers, so both implementations compute the same order exactly.

This module imports nothing from the project, so the store and its callers may import it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass

FAIR_UNIT = 720720  # divisible by every weight 1..16: their strides are exact
MAX_WEIGHT = 1000.0
ANONYMOUS = ""  # callers without an identity share one turn (the old arrival order)


@dataclass(frozen=True, slots=True)
class FairShare:
    """Who waits in line (a log-safe caller id, never a secret) and their weight."""

    name: str = ANONYMOUS
    weight: float = 1.0

    @property
    def stride(self) -> int:
        """How far each turn moves the caller's pass: fewer units for a heavier weight."""
        weight = min(MAX_WEIGHT, self.weight) if self.weight > 0 else 1.0
        return max(1, round(FAIR_UNIT / weight))


def owner_value(caller: str, stride: int) -> str:
    """What the line's owner table holds for a ticket: its stride, then its caller."""
    return f"{stride} {caller}"


def parse_owner(value: str | None) -> tuple[int, str]:
    """(stride, caller) of an owner value; a ticket with none is anonymous at weight 1."""
    if not value:
        return FAIR_UNIT, ANONYMOUS
    stride, _, caller = value.partition(" ")
    try:
        return max(1, int(stride)), caller
    except ValueError:
        return FAIR_UNIT, ANONYMOUS


def _start(fair: Mapping[str, str], caller: str) -> int:
    """The caller's next turn: its pass, or the line's clock if it fell behind."""
    return max(int(fair.get("v") or 0), int(fair.get("p:" + caller) or 0))


def fair_rank(
    queue: Mapping[str, float],
    owners: Mapping[str, str],
    fair: Mapping[str, str],
    ticket: str,
    caller: str,
    stride: int,
) -> int:
    """How many waiting tickets come before ``ticket`` (not queued yet: a new arrival).

    ``queue`` maps tickets to arrival numbers, ``owners`` tickets to
    ``owner_value``s, ``fair`` holds ``v`` and ``p:<caller>``.
    """
    offsets: dict[str, int] = {}
    tags: list[tuple[int, float]] = []
    mine: tuple[int, float] | None = None
    for member, seq in sorted(queue.items(), key=lambda item: (item[1], item[0])):
        own_stride, own_caller = parse_owner(owners.get(member))
        offset = offsets.get(own_caller, 0)
        offsets[own_caller] = offset + own_stride
        tag = (_start(fair, own_caller) + offset, seq)
        if member == ticket:
            mine = tag
        else:
            tags.append(tag)
    if mine is None:
        mine = (_start(fair, caller) + offsets.get(caller, 0), math.inf)
    return sum(1 for tag in tags if tag < mine)


def record_turn(fair: MutableMapping[str, str], caller: str, stride: int) -> None:
    """A grant to ``caller``: its pass moves one stride on, the clock to the turn taken.

    Passes at or behind the clock say nothing ``_start`` would not, so they
    are dropped: the table holds only the callers served ahead of the clock.
    """
    turn = _start(fair, caller)
    for field in [f for f, value in fair.items() if f.startswith("p:") and int(value) <= turn]:
        del fair[field]
    fair["v"] = str(turn)
    fair["p:" + caller] = str(turn + stride)


def count_callers(owner_values: Iterable[str | None]) -> dict[str, int]:
    """Waiting tickets per caller, from their owner values (for the admin API)."""
    return dict(Counter(parse_owner(value)[1] for value in owner_values))
