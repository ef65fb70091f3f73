"""Phases of one upstream answer, and the one table of legal transitions.

Every transition lives in ``TRANSITIONS`` (h11 ``_state.py`` style): a phase
maps each trigger it accepts to the next phase. A trigger a phase does not
list is illegal: :meth:`PhaseMachine.transition` raises and leaves the phase
unchanged, so the caller can never observe a half-applied transition.

Rules encoded in the table:

* ``IDLE``/``STREAMING``: upstream events arrive. Top-level status ``init`` (or a
  missing/unknown status) keeps streaming; ``finish`` and ``intervene`` end the
  answer; ``error`` fails it; the connection closing (``CLOSE``) also ends it
  (the upstream may close without a ``finish`` event).
* ``DONE``/``FAILED``: the answer is over. Events that still arrive are accepted
  and ignored (the translator emits nothing for them); closing moves to ``CLOSED``.
* ``CLOSED``: the caller said the stream is gone. Closing again is a no-op;
  feeding another event is a caller bug and raises.
"""

from __future__ import annotations

from enum import Enum

from glm_proxy.errors import UpstreamProtocolError


class Phase(Enum):
    IDLE = "idle"  # nothing received yet
    STREAMING = "streaming"  # status "init" events arriving
    DONE = "done"  # finish / intervene seen; later events are ignored
    FAILED = "failed"  # the upstream reported status "error"
    CLOSED = "closed"  # Translator.finish() was called


class Trigger(Enum):
    INIT = "init"
    FINISH = "finish"
    INTERVENE = "intervene"
    ERROR = "error"
    CLOSE = "close"


_LIVE = {
    Trigger.INIT: Phase.STREAMING,
    Trigger.FINISH: Phase.DONE,
    Trigger.INTERVENE: Phase.DONE,
    Trigger.ERROR: Phase.FAILED,
    Trigger.CLOSE: Phase.CLOSED,
}


def _ended(phase: Phase) -> dict[Trigger, Phase]:
    return {**{t: phase for t in Trigger}, Trigger.CLOSE: Phase.CLOSED}


TRANSITIONS: dict[Phase, dict[Trigger, Phase]] = {
    Phase.IDLE: _LIVE,
    Phase.STREAMING: _LIVE,
    Phase.DONE: _ended(Phase.DONE),
    Phase.FAILED: _ended(Phase.FAILED),
    Phase.CLOSED: {Trigger.CLOSE: Phase.CLOSED},
}

LIVE_PHASES = frozenset({Phase.IDLE, Phase.STREAMING})

_STATUS_TRIGGERS = {
    "finish": Trigger.FINISH,
    "intervene": Trigger.INTERVENE,
    "error": Trigger.ERROR,
    # generic failure spellings seen in 2026 parsers (upstream-protocol.md §15.4)
    "failed": Trigger.ERROR,
    "failure": Trigger.ERROR,
    "cancelled": Trigger.ERROR,
    "canceled": Trigger.ERROR,
}


_INIT = Trigger.INIT  # a module global: reading an Enum member off its class is slow


def trigger_for_status(status: object) -> Trigger:
    """Map a top-level ``status``; anything but the end states means "still streaming"
    (``init``, and the 2026 lifecycle ``processing``)."""
    return _STATUS_TRIGGERS.get(status, _INIT) if isinstance(status, str) else _INIT


class PhaseMachine:
    """Holds the current phase; the only code that changes it."""

    __slots__ = ("phase",)

    def __init__(self) -> None:
        self.phase = Phase.IDLE

    def transition(self, trigger: Trigger) -> Phase:
        """Apply ``trigger`` and return the phase it was applied in.

        Raises:
            UpstreamProtocolError: the trigger is illegal in the current phase
                (the phase is left unchanged).
        """
        old = self.phase
        try:
            self.phase = TRANSITIONS[old][trigger]
        except KeyError:
            raise UpstreamProtocolError(
                f"translator cannot handle {trigger.value!r} in phase {old.value!r}"
            ) from None
        return old
