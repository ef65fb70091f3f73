"""The account health state machine: the transition table, cooldown growth, serialisation."""

from __future__ import annotations

import itertools

import pytest

from glm_proxy.pool.health import TRANSITIONS, Event, Health, State, cooldown, transition

BASE, MAX = 5.0, 300.0
NOW = 1_000_000.0


def apply(health: Health, event: Event, error: str = "", now: float = NOW) -> Health:
    return transition(health, event, now, base=BASE, maximum=MAX, error=error)


def test_the_table_covers_every_state_and_event() -> None:
    assert set(TRANSITIONS) == set(itertools.product(State, Event))


@pytest.mark.parametrize(
    ("state", "event", "expected"),
    [
        (State.ACTIVE, Event.SUCCESS, State.ACTIVE),
        (State.ACTIVE, Event.FAILURE, State.COOLING),
        (State.ACTIVE, Event.REJECTED, State.DEAD),
        (State.COOLING, Event.SUCCESS, State.ACTIVE),
        (State.COOLING, Event.FAILURE, State.COOLING),
        (State.COOLING, Event.REJECTED, State.DEAD),
        (State.DEAD, Event.SUCCESS, State.DEAD),
        (State.DEAD, Event.FAILURE, State.DEAD),
        (State.DEAD, Event.ENABLE, State.ACTIVE),
        (State.DEAD, Event.CHECK_OK, State.ACTIVE),
        (State.DISABLED, Event.SUCCESS, State.DISABLED),
        (State.DISABLED, Event.CHECK_OK, State.DISABLED),
        (State.DISABLED, Event.ENABLE, State.ACTIVE),
        (State.ACTIVE, Event.DISABLE, State.DISABLED),
        (State.DEAD, Event.DISABLE, State.DISABLED),
        (State.DEAD, Event.TOKEN_CHANGED, State.ACTIVE),
        (State.COOLING, Event.TOKEN_CHANGED, State.ACTIVE),
        (State.DISABLED, Event.TOKEN_CHANGED, State.DISABLED),
    ],
)
def test_transitions(state: State, event: Event, expected: State) -> None:
    assert apply(Health(state), event).state is expected


def test_cooldown_doubles_up_to_the_maximum() -> None:
    assert [cooldown(n, BASE, MAX) for n in range(0, 9)] == [
        0.0,
        5.0,
        10.0,
        20.0,
        40.0,
        80.0,
        160.0,
        300.0,
        300.0,
    ]
    assert cooldown(10_000, BASE, MAX) == MAX


def test_repeated_failures_back_off_exponentially() -> None:
    health = Health()
    cooldowns = []
    for _ in range(4):
        health = apply(health, Event.FAILURE, "upstream_unavailable: 500")
        cooldowns.append(health.cooldown_until - NOW)
    assert cooldowns == [5.0, 10.0, 20.0, 40.0]
    assert health.failures == 4 and health.last_error == "upstream_unavailable: 500"
    assert not health.usable(NOW + 39)
    assert health.usable(NOW + 40)  # half-open once the cooldown is over


def test_success_resets_the_failure_count() -> None:
    health = apply(apply(Health(), Event.FAILURE, "boom"), Event.SUCCESS)
    assert (health.state, health.failures, health.cooldown_until) == (State.ACTIVE, 0, 0.0)
    assert health.last_error == "boom"  # the admin still sees what happened last


def test_dead_is_never_usable_and_keeps_its_reason() -> None:
    dead = apply(Health(), Event.REJECTED, "refresh token rejected (40102)")
    assert dead.state is State.DEAD and not dead.usable(NOW + 10**9)
    assert apply(dead, Event.FAILURE, "other").last_error == "other"
    revived = apply(dead, Event.ENABLE)
    assert revived.state is State.ACTIVE and revived.last_error == ""


def test_changed_at_moves_only_on_a_state_change() -> None:
    cooling = apply(Health(), Event.FAILURE, "x", now=NOW)
    again = apply(cooling, Event.FAILURE, "x", now=NOW + 7)
    assert cooling.changed_at == NOW
    disabled = apply(again, Event.DISABLE, now=NOW + 9)
    assert disabled.changed_at == NOW + 9
    assert apply(disabled, Event.SUCCESS, now=NOW + 11).changed_at == NOW + 9


def test_round_trip_through_store_fields() -> None:
    health = apply(Health(), Event.FAILURE, "e: 1", now=NOW)
    assert Health.from_fields(health.to_fields()) == health
    assert Health.from_fields({}) == Health()
    assert Health.from_fields({"state": "bogus", "served": "3"}).state is State.ACTIVE
