"""Which accounts a request may lease, which line it waits in, and what each answer means.

``AccountPool.lease`` is the loop that asks the store and waits; the decisions
around it are here, as plain functions of their inputs so a table of cases
tests them (``tests/pool/test_pool_scheduling.py``):

- ``plan_lease``: the candidate set. Conversation affinity (``require``) pins
  one account and ignores exclusions (there is nowhere else to go); otherwise
  the candidates, without duplicates, with the ones that already failed this
  request marked excluded. The line's name follows from the set.
- ``queue_name``: requests with the same candidate set share a line.
- ``refusal``: the store said no for good (line full, nobody usable): the error.
- ``wait_time``: the store put the request in line: how long to sleep before
  asking again, or the 429 when the deadline or a long cooldown makes waiting
  pointless.

Among the usable candidates the store picks the least recently leased free
one, in the same atomic step that books it (``store.leasing``): that choice
must see every process's leases, so it cannot be made here.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from glm_proxy.accounts import Account
from glm_proxy.errors import (
    AuthenticationError,
    GLMProxyError,
    RateLimited,
    RefreshTokenExpired,
    ServiceUnavailable,
)
from glm_proxy.store.base import AcquireResult, SlotCandidate
from glm_proxy.upstream.envelope import RELOGIN_MESSAGE

MIN_WAIT = 0.01  # seconds: never spin when a cooldown is about to end


@dataclass(frozen=True, slots=True)
class LeasePlan:
    """What one ``lease`` call asks the store for, fixed for all its attempts."""

    accounts: tuple[Account, ...]
    excluded: frozenset[str]  # fingerprints that already failed this request
    queue: str
    candidates: tuple[SlotCandidate, ...]  # ``accounts`` as the store's lease step takes them

    @property
    def sole(self) -> bool:
        """One candidate: it is used even while cooling down (see ``store.leasing``)."""
        return len(self.accounts) == 1

    def account(self, fp: str) -> Account:
        return next(a for a in self.accounts if a.fingerprint == fp)


def plan_lease(
    candidates: Iterable[Account],
    *,
    exclude: Iterable[str] = (),
    require: Account | None = None,
) -> LeasePlan:
    """The accounts a request may lease; ``AuthenticationError`` when there are none."""
    if require is not None:
        accounts: tuple[Account, ...] = (require,)
        excluded: frozenset[str] = frozenset()
    else:
        accounts = tuple({a.fingerprint: a for a in candidates}.values())
        excluded = frozenset(exclude)
    if not accounts:
        raise AuthenticationError("No usable chatglm account for this request.")
    slots = tuple(
        SlotCandidate(a.fingerprint, max(1, a.max_streams), a.fingerprint in excluded)
        for a in accounts
    )
    line = queue_name(accounts, excluded & {a.fingerprint for a in accounts})
    return LeasePlan(accounts, excluded, line, slots)


def queue_name(accounts: Iterable[Account], excluded: Iterable[str] = ()) -> str:
    """Requests with the same candidate set share a line.

    A failover retry (some candidates excluded: it just failed there) waits in
    a line of its own. In the shared line it would soon stand at the head, and
    the head-first rule would keep everyone behind it off the very accounts it
    cannot use. It lost its place by asking again anyway.
    """
    key = ",".join(sorted(a.fingerprint for a in accounts))
    excluded = sorted(excluded)
    if excluded:
        key += "|without:" + ",".join(excluded)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def busy(message: str, retry_after: float = 2.0) -> RateLimited:
    """A 429 with ``Retry-After`` (whole seconds, at least one)."""
    seconds = max(1, math.ceil(retry_after))
    return RateLimited(
        f"{message}; retry after {seconds}s.",
        code="rate_limit_exceeded",
        headers={"Retry-After": str(seconds)},
    )


def unusable(result: AcquireResult, *, pooled: bool, retrying: bool) -> GLMProxyError:
    """The error when no candidate can serve (``result`` counts the dead and disabled).

    Pass-through tokens that are all dead are the caller's to replace (401,
    log in again); a pool that ran out is the operator's (503). A failover
    retry with nothing left to try says so.
    """
    if result.dead and not result.disabled and not pooled:
        return RefreshTokenExpired(RELOGIN_MESSAGE)
    if retrying and not result.dead and not result.disabled:
        return ServiceUnavailable("No other account is left to retry this request on.")
    return ServiceUnavailable(
        f"No healthy chatglm account can serve this request ({result.dead} dead, "
        f"{result.disabled} disabled); an operator can re-enable them via /admin.",
        headers={"Retry-After": "30"},
    )


def refusal(
    result: AcquireResult, plan: LeasePlan, is_pooled: Callable[[str], bool]
) -> GLMProxyError | None:
    """The error ending the request for a ``full`` or ``none`` answer; None otherwise."""
    if result.status == "full":
        return busy("Too many requests are waiting for an account")
    if result.status == "none":
        pooled = all(is_pooled(a.fingerprint) for a in plan.accounts)
        return unusable(result, pooled=pooled, retrying=bool(plan.excluded))
    return None


def wait_time(
    retry_at_ms: int | None,
    *,
    now: float,
    remaining: float,
    poll: float,
    queue_timeout: float,
) -> float:
    """Seconds to sleep in line before asking again; raises the 429 when waiting is pointless.

    ``remaining`` is what is left of the request's queue deadline; ``retry_at_ms``
    (epoch ms) is set when every candidate is cooling down and says when the
    first comes back. A cooldown outlasting the deadline is refused at once,
    with that cooldown as ``Retry-After``.
    """
    wait = min(remaining, poll)
    if retry_at_ms is not None:
        until_back = retry_at_ms / 1000 - now
        if until_back > remaining:
            raise busy(
                "Every account for this request is cooling down after upstream errors",
                retry_after=until_back,
            )
        wait = min(wait, max(MIN_WAIT, until_back))
    if remaining <= 0:
        raise busy(f"Every account for this request stayed busy for {queue_timeout:g}s")
    return max(0.0, wait)
