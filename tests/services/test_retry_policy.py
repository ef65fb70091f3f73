"""The retry decision, read from a table (``glm_proxy.services.retry.on_failure``).

Each row: the failure, whether anything reached the client, which attempt
failed, how many candidates are still untried, whether the account is
pinned -> the decision. ``GLM_RETRIES`` is 2 and the backoff 0.5 s here.
"""

from __future__ import annotations

import pytest

from glm_proxy.errors import (
    GLMProxyError,
    InvalidRequest,
    NotFound,
    RateLimited,
    RefreshTokenExpired,
    UpstreamBusy,
    UpstreamConnectError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRetryable,
    UpstreamTimeout,
)
from glm_proxy.services.retry import Raise, Retry, on_failure

RETRIES, BACKOFF = 2, 0.5
DEAD = RefreshTokenExpired("refresh token expired")
BROKEN = UpstreamRetryable("stream broke")

TABLE: list[tuple[GLMProxyError, bool, int, int, bool, Retry | Raise]] = [
    # error, committed, attempts, untried, pinned -> decision
    (BROKEN, False, 1, 1, False, Retry(0.5, other_account=True)),
    (BROKEN, False, 2, 1, False, Retry(1.0, other_account=True)),
    (BROKEN, False, 2, 0, False, Retry(1.0, other_account=False)),
    (BROKEN, False, 3, 1, False, Raise(BROKEN)),
    (BROKEN, True, 1, 1, False, Raise(BROKEN)),
    (BROKEN, False, 1, 1, True, Retry(0.5, other_account=False)),
    (UpstreamBusy("busy"), False, 1, 0, False, Retry(0.5, other_account=False)),
    (UpstreamConnectError("refused"), False, 1, 2, False, Retry(0.5, other_account=True)),
    (UpstreamTimeout("slow"), False, 2, 2, False, Retry(1.0, other_account=True)),
    (DEAD, False, 1, 1, False, Retry(0.0, other_account=True, counts=False)),
    (DEAD, False, 1, 0, False, Raise(DEAD, dead_pool=True)),
    (DEAD, False, 1, 1, True, Raise(DEAD, dead_pool=True)),
    (DEAD, True, 1, 1, False, Raise(DEAD)),
    (UpstreamError("bad reply"), False, 1, 1, False, Raise(UpstreamError("bad reply"))),
    (UpstreamProtocolError("junk"), False, 1, 1, False, Raise(UpstreamProtocolError("junk"))),
    (InvalidRequest("bad"), False, 1, 1, False, Raise(InvalidRequest("bad"))),
    (NotFound("gone"), False, 1, 1, False, Raise(NotFound("gone"))),
    (RateLimited("slow down"), False, 1, 1, False, Raise(RateLimited("slow down"))),
]


def same(a: Retry | Raise, b: Retry | Raise) -> bool:
    if isinstance(a, Raise) and isinstance(b, Raise):
        return (type(a.error), a.error.message, a.dead_pool) == (
            type(b.error),
            b.error.message,
            b.dead_pool,
        )
    return a == b


@pytest.mark.parametrize(("error", "committed", "attempts", "untried", "pinned", "expected"), TABLE)
def test_retry_table(
    error: GLMProxyError,
    committed: bool,
    attempts: int,
    untried: int,
    pinned: bool,
    expected: Retry | Raise,
) -> None:
    decision = on_failure(
        error,
        committed=committed,
        attempts=attempts,
        retries=RETRIES,
        backoff=BACKOFF,
        untried=untried,
        pinned=pinned,
    )
    assert same(decision, expected), decision


def test_raise_keeps_the_very_error() -> None:
    decision = on_failure(
        BROKEN, committed=True, attempts=1, retries=RETRIES, backoff=BACKOFF, untried=1
    )
    assert isinstance(decision, Raise) and decision.error is BROKEN


def test_no_retries_configured_means_the_first_failure_is_final() -> None:
    decision = on_failure(BROKEN, committed=False, attempts=1, retries=0, backoff=1, untried=3)
    assert isinstance(decision, Raise)
