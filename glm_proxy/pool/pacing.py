"""Keeping each account under the radar of its limits: budgets, spacing, and preference.

The upstream shows its verification page after cumulative volume on one
account, not after one burst (upstream-protocol.md §16). So every account has
budgets (``ACCOUNT_MAX_PER_HOUR``, ``ACCOUNT_MAX_PER_DAY``) and a minimum
spacing between the end of one answer and the start of the next
(``ACCOUNT_MIN_GAP`` plus up to ``ACCOUNT_GAP_JITTER`` of it at random, so the
rhythm is not a machine's). Spending lives in the store (``store.pacing``), so
every worker and replica shares it.

``Pacer.candidates`` is what a lease asks the store for: accounts over budget
are left out (they are not eligible), the rest ranked so the store picks the
one with the most budget left, accounts whose credits are known to be spent
last. When every candidate is over budget the caller gets a 429 whose
``Retry-After`` is when the first budget frees, never an upstream ban. After
the store granted an account, ``book`` spends one answer of it atomically; a
race lost to another worker gives the account back and asks again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from glm_proxy.errors import RateLimited
from glm_proxy.pool.scheduling import LeasePlan, busy
from glm_proxy.store import keys
from glm_proxy.store.base import SlotCandidate, Store
from glm_proxy.store.pacing import PaceQuery, PaceView

CREDITS_CACHE = 10.0  # seconds a process trusts its copy of the accounts' credits


@dataclass(frozen=True, slots=True)
class PacedPlan:
    """The candidates to offer the store, and when the first over-budget one frees."""

    candidates: tuple[SlotCandidate, ...]
    paced: frozenset[str]  # fingerprints over budget now
    free_at: float | None  # epoch s when the first paced candidate frees (None: none paced)

    @property
    def all_paced(self) -> bool:
        return all(c.excluded for c in self.candidates) and bool(self.paced)


class Pacer:
    """Budgets per account, shared through the store; ranking by budget and credits."""

    def __init__(
        self,
        settings,
        store: Store,
        *,
        is_pooled: Callable[[str], bool],
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.store = store
        self.is_pooled = is_pooled
        self._clock = clock
        self._rng = rng
        self._credits: dict[str, tuple[float, bool]] = {}  # fp -> (until, spent)

    @property
    def budgets(self) -> bool:
        s = self.settings
        return s.account_max_per_hour > 0 or s.account_max_per_day > 0 or s.account_min_gap > 0

    @property
    def active(self) -> bool:
        return self.budgets or bool(self.settings.glm_member_info)

    def query(self, now: float | None = None) -> PaceQuery:
        s = self.settings
        now = self._clock() if now is None else now
        return PaceQuery(
            int(now * 1000),
            int(s.account_budget_hour * 1000),
            max(0, s.account_max_per_hour),
            max(0, s.account_max_per_day),
        )

    def views(self, fps: Iterable[str]) -> dict[str, PaceView]:
        fps = list(fps)
        return dict(zip(fps, self.store.pace(self.query(), fps), strict=True))

    def left(self, seen: PaceView) -> float:
        """The share of the tightest budget still unspent (1.0 without budgets)."""
        s = self.settings
        shares = [1.0]
        if s.account_max_per_hour > 0:
            shares.append(1 - seen.hour_used / s.account_max_per_hour)
        if s.account_max_per_day > 0:
            shares.append(1 - seen.day_used / s.account_max_per_day)
        return max(0.0, min(shares))

    def candidates(self, plan: LeasePlan) -> PacedPlan:
        """The plan's candidates: over-budget ones left out, the rest ranked."""
        open_ = [c for c in plan.candidates if not c.excluded]
        now = self._clock()
        seen = self.views(c.fingerprint for c in open_) if self.budgets else {}
        out, paced, free_at = [], set(), None
        for cand in plan.candidates:
            if cand.excluded:
                out.append(cand)
                continue
            rank = 1.0 if self._spent(cand.fingerprint, now) else 0.0
            view = seen.get(cand.fingerprint)
            if view is not None and view.free_at_ms > now * 1000:
                paced.add(cand.fingerprint)
                at = view.free_at_ms / 1000
                free_at = at if free_at is None else min(free_at, at)
                out.append(replace(cand, excluded=True))
                continue
            if view is not None:
                rank += 1.0 - self.left(view)
            out.append(replace(cand, rank=rank))
        return PacedPlan(tuple(out), frozenset(paced), free_at)

    def book(self, fp: str, member: str) -> bool:
        """Spend one answer of ``fp``'s budget; False when another worker spent it first."""
        if not self.budgets:
            return True
        (seen,) = self.store.pace(self.query(), [fp], book=member)
        return seen.booked

    def rest(self, fp: str) -> None:
        """An answer on ``fp`` ended: its next one starts ``ACCOUNT_MIN_GAP`` (+ jitter) later."""
        s = self.settings
        if s.account_min_gap <= 0:
            return
        gap = s.account_min_gap * (1 + max(0.0, s.account_gap_jitter) * self._rng())
        until = self._clock() + gap
        self.store.set(keys.gap(fp), str(int(until * 1000)), ttl=gap + 1)

    def over_budget(self, free_at: float, now: float | None = None) -> RateLimited:
        """The 429 when every candidate is over budget; ``Retry-After`` from the budgets."""
        now = self._clock() if now is None else now
        return busy(
            "Every account for this request has used its answer budget "
            "(ACCOUNT_MAX_PER_HOUR / ACCOUNT_MAX_PER_DAY / ACCOUNT_MIN_GAP)",
            retry_after=max(1.0, free_at - now),
        )

    def _spent(self, fp: str, now: float) -> bool:
        """Are the account's credits known to be spent? (read at most every few seconds)"""
        if not self.settings.glm_member_info or not self.is_pooled(fp):
            return False
        cached = self._credits.get(fp)
        if cached is None or cached[0] <= now:
            fields = self.store.hgetall(keys.credits(fp))
            try:
                spent = float(fields["left_score"]) <= 0
            except (KeyError, ValueError):
                spent = False
            cached = self._credits[fp] = (now + CREDITS_CACHE, spent)
        return cached[1]
