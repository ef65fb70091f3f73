"""Account health: a small state machine, every transition in one table.

    active --failure--> cooling --(cooldown passes)--> usable again (half-open)
    cooling --failure--> cooling (cooldown doubles, up to COOLDOWN_MAX)
    cooling/active --success--> active (failure count reset)
    any --rejected (40102)--> dead: never used again until an operator enables
                                    or re-checks it, or the token changes
                                    (a new token is a new fingerprint: a new account;
                                    on an ``id=`` line the identity stays and the pool
                                    applies ``token_changed`` at start-up)
    any --disable--> disabled --enable--> active

Every failure and rejection carries a reason (``upstream.refusals``: a guest
token, a verification page, spent credits ...), kept with the state until the
account is active again; a reason may set its own rest (spent credits rest
until the upstream's midnight).

Pure: no clock, no store. ``transition`` takes ``now`` and returns a new
``Health``; an event a state does not accept raises ``KeyError`` and leaves the
state alone (the table is the whole truth). The pool stores ``Health`` as the
hash ``health:<fingerprint>`` and applies transitions atomically there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class State(StrEnum):
    ACTIVE = "active"
    COOLING = "cooling"
    DEAD = "dead"
    DISABLED = "disabled"


class Event(StrEnum):
    SUCCESS = "success"  # an answer finished on this account
    FAILURE = "failure"  # transient upstream error or rate limit
    REJECTED = "rejected"  # refresh token rejected (40102)
    DISABLE = "disable"  # operator
    ENABLE = "enable"  # operator
    CHECK_OK = "check_ok"  # operator re-check: the token refreshed fine
    TOKEN_CHANGED = "token_changed"  # the operator configured a new token for the account


A, C, D, X = State.ACTIVE, State.COOLING, State.DEAD, State.DISABLED

TRANSITIONS: dict[tuple[State, Event], State] = {
    (A, Event.SUCCESS): A,
    (A, Event.FAILURE): C,
    (A, Event.REJECTED): D,
    (A, Event.DISABLE): X,
    (A, Event.ENABLE): A,
    (A, Event.CHECK_OK): A,
    (A, Event.TOKEN_CHANGED): A,
    (C, Event.SUCCESS): A,
    (C, Event.FAILURE): C,
    (C, Event.REJECTED): D,
    (C, Event.DISABLE): X,
    (C, Event.ENABLE): A,
    (C, Event.CHECK_OK): A,
    (C, Event.TOKEN_CHANGED): A,
    # A stream that began before the 40102 may still finish: the account stays dead.
    (D, Event.SUCCESS): D,
    (D, Event.FAILURE): D,
    (D, Event.REJECTED): D,
    (D, Event.DISABLE): X,
    (D, Event.ENABLE): A,
    (D, Event.CHECK_OK): A,
    (D, Event.TOKEN_CHANGED): A,
    # Disabled means "hands off" whatever the account does; only enable undoes it.
    (X, Event.SUCCESS): X,
    (X, Event.FAILURE): X,
    (X, Event.REJECTED): X,
    (X, Event.DISABLE): X,
    (X, Event.ENABLE): A,
    (X, Event.CHECK_OK): X,
    (X, Event.TOKEN_CHANGED): X,
}


@dataclass(frozen=True, slots=True)
class Health:
    state: State = State.ACTIVE
    failures: int = 0  # consecutive transient failures
    cooldown_until: float = 0.0  # epoch seconds; meaningful while cooling
    last_error: str = ""
    changed_at: float = 0.0
    reason: str = ""  # why it is cooling or dead (``upstream.refusals.Reason``); "" when active

    def usable(self, now: float) -> bool:
        """May the pool lease this account now?"""
        if self.state is State.ACTIVE:
            return True
        return self.state is State.COOLING and self.cooldown_until <= now

    def to_fields(self) -> dict[str, str]:
        return {
            "state": self.state.value,
            "failures": str(self.failures),
            "cooldown_until": repr(self.cooldown_until),
            "last_error": self.last_error,
            "changed_at": repr(self.changed_at),
            "reason": self.reason,
        }

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> Health:
        try:
            state = State(fields.get("state") or "active")
        except ValueError:
            state = State.ACTIVE
        return cls(
            state=state,
            failures=int(fields.get("failures") or 0),
            cooldown_until=float(fields.get("cooldown_until") or 0.0),
            last_error=fields.get("last_error") or "",
            changed_at=float(fields.get("changed_at") or 0.0),
            reason=fields.get("reason") or "",
        )


def cooldown(failures: int, base: float, maximum: float) -> float:
    """Seconds of cooldown after ``failures`` consecutive failures: base, 2*base, ... max."""
    if failures <= 0:
        return 0.0
    return min(maximum, base * (2 ** min(failures - 1, 32)))


def transition(
    health: Health,
    event: Event,
    now: float,
    *,
    base: float,
    maximum: float,
    error: str = "",
    reason: str = "",
    until: float | None = None,
) -> Health:
    """The health after ``event``; raises ``KeyError`` for an event the table lacks.

    ``reason`` says why a failure or rejection happened (kept with the state);
    ``until`` overrides the doubling cooldown of a failure (a reason's own rest,
    e.g. spent credits rest until the upstream's midnight).
    """
    target = TRANSITIONS[(health.state, event)]
    changed_at = now if target is not health.state else health.changed_at
    if event is Event.FAILURE and target is State.COOLING:
        failures = health.failures + 1
        rest = until if until is not None else now + cooldown(failures, base, maximum)
        return Health(State.COOLING, failures, rest, error, now, reason or "unknown")
    if target is State.ACTIVE:
        fresh = event in (Event.ENABLE, Event.CHECK_OK, Event.TOKEN_CHANGED)
        last_error = "" if fresh else health.last_error
        return Health(State.ACTIVE, 0, 0.0, last_error, changed_at)
    if event is Event.REJECTED and target is State.DEAD:
        return replace(
            health,
            state=target,
            last_error=error or health.last_error,
            changed_at=changed_at,
            reason=reason or "token_expired",
        )
    if event in (Event.REJECTED, Event.FAILURE) and error:
        return replace(health, state=target, last_error=error, changed_at=changed_at)
    return replace(health, state=target, changed_at=changed_at)
