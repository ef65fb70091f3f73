"""The retry decision for a failed upstream attempt, as a pure function.

``AnswerJob`` asks ``on_failure`` what to do after an attempt failed and acts
on the answer (sleep and lease again, or raise); the rules live here, in one
place, tested from a table (``tests/services/test_retry_policy.py``) like the
translator's transitions:

* once anything of the answer reached the client (``committed``), nothing is
  retried: the client would see the answer twice;
* a dead account (``RefreshTokenExpired``) is skipped at once for another
  candidate, and does not count as an attempt at the answer; with none left
  (or a conversation pinned to it) every candidate is dead;
* a transient failure (``UpstreamRetryable``: connect errors, 5xx, busy,
  broken stream) is retried up to ``GLM_RETRIES`` more times with
  exponential backoff, on another account while untried ones remain;
* anything else is the caller's or a final error: raised as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from glm_proxy.errors import GLMProxyError, RefreshTokenExpired, UpstreamRetryable

__all__ = ["Raise", "Retry", "on_failure"]


@dataclass(frozen=True, slots=True)
class Retry:
    """Lease again after ``delay`` seconds; ``other_account``: leave out the accounts tried."""

    delay: float
    other_account: bool
    counts: bool = True  # the failed try counts towards GLM_RETRIES


@dataclass(frozen=True, slots=True)
class Raise:
    """Give up with ``error``; ``dead_pool``: every candidate is dead (the pool words it)."""

    error: GLMProxyError
    dead_pool: bool = False


def on_failure(
    error: GLMProxyError,
    *,
    committed: bool,
    attempts: int,
    retries: int,
    backoff: float,
    untried: int,
    pinned: bool = False,
) -> Retry | Raise:
    """What to do after attempt number ``attempts`` (1-based) failed with ``error``.

    ``untried``: candidate accounts not tried yet (the failed one counts as tried);
    ``pinned``: the request must use one account (a continued conversation).
    """
    if committed:
        return Raise(error)
    if isinstance(error, RefreshTokenExpired):
        if pinned or untried == 0:
            return Raise(error, dead_pool=True)
        return Retry(0.0, other_account=True, counts=False)
    if isinstance(error, UpstreamRetryable):
        if attempts > retries:
            return Raise(error)
        return Retry(backoff * (2 ** (attempts - 1)), other_account=untried > 0 and not pinned)
    return Raise(error)
