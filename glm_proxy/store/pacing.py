"""Per-account answer budgets, shared by every worker and replica: the rules and their Lua.

The upstream shows its verification page after cumulative volume on one
account (upstream-protocol.md §16), so each account keeps the start times of
its answers (``spend:<fp>``, a sorted set holding a day) and the earliest
moment the next answer may start after the last one ended (``gap:<fp>``, epoch
ms). ``view`` says, for one account, how much of the hourly and daily budget
is used and when it may start its next answer; ``PaceStore`` is what both
backends implement: ``pace_check`` (many accounts, read-mostly) and ``pace_take``
(book one answer only if the budget allows it, atomically, so two workers can
never both spend an account's last answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class PaceQuery:
    """The budgets to check against; a limit of 0 means none."""

    now_ms: int
    hour_ms: int
    hour_limit: int = 0
    day_limit: int = 0

    @property
    def keep_ms(self) -> int:
        """How long start times are kept: a day, or the hourly window if longer."""
        return max(DAY_MS, self.hour_ms)


@dataclass(frozen=True, slots=True)
class PaceView:
    """One account's spending: answers started in the last hour and day, and when it may
    start the next one (``free_at_ms <= now``: now). ``booked``: ``pace_take`` spent one."""

    hour_used: int = 0
    day_used: int = 0
    free_at_ms: int = 0
    booked: bool = False


def view(starts: Sequence[float], gap_until_ms: float, q: PaceQuery) -> PaceView:
    """The pacing view from an account's answer start times (ascending, within a day)."""
    since_hour = q.now_ms - q.hour_ms
    since_day = q.now_ms - DAY_MS
    in_hour = [t for t in starts if t > since_hour]
    in_day = [t for t in starts if t > since_day]
    free_at = int(gap_until_ms or 0)
    if q.hour_limit > 0 and len(in_hour) >= q.hour_limit:
        free_at = max(free_at, int(in_hour[len(in_hour) - q.hour_limit] + q.hour_ms))
    if q.day_limit > 0 and len(in_day) >= q.day_limit:
        free_at = max(free_at, int(in_day[len(in_day) - q.day_limit] + DAY_MS))
    return PaceView(len(in_hour), len(in_day), free_at)


PACE_CHECK_LUA = """
-- KEYS: spend:<fp>, gap:<fp> per account; ARGV: now_ms, hour_ms, hour_limit, day_limit,
-- keep_ms, book (0/1), member. Returns hour_used, day_used, free_at_ms, booked per account.
local now = tonumber(ARGV[1])
local hour_ms = tonumber(ARGV[2])
local hour_limit = tonumber(ARGV[3])
local day_limit = tonumber(ARGV[4])
local keep = tonumber(ARGV[5])
local book = ARGV[6] == '1'
local day_ms = 86400000
local out = {}
for i = 1, #KEYS, 2 do
  local spend, gap = KEYS[i], KEYS[i + 1]
  redis.call('ZREMRANGEBYSCORE', spend, '-inf', string.format('%d', now - keep))
  local since_hour = '(' .. string.format('%d', now - hour_ms)
  local since_day = '(' .. string.format('%d', now - day_ms)
  local in_hour = redis.call('ZRANGEBYSCORE', spend, since_hour, '+inf', 'WITHSCORES')
  local in_day = redis.call('ZRANGEBYSCORE', spend, since_day, '+inf', 'WITHSCORES')
  local hour_used, day_used = #in_hour / 2, #in_day / 2
  local free_at = tonumber(redis.call('GET', gap) or '0') or 0
  if hour_limit > 0 and hour_used >= hour_limit then
    local t = tonumber(in_hour[(hour_used - hour_limit) * 2 + 2]) + hour_ms
    if t > free_at then free_at = t end
  end
  if day_limit > 0 and day_used >= day_limit then
    local t = tonumber(in_day[(day_used - day_limit) * 2 + 2]) + day_ms
    if t > free_at then free_at = t end
  end
  local booked = 0
  if book and free_at <= now then
    redis.call('ZADD', spend, ARGV[1], ARGV[7])
    redis.call('PEXPIRE', spend, ARGV[5])
    hour_used, day_used, booked = hour_used + 1, day_used + 1, 1
  end
  table.insert(out, hour_used)
  table.insert(out, day_used)
  table.insert(out, string.format('%d', free_at))
  table.insert(out, booked)
end
return out
"""


def parse_pace_reply(reply: list) -> list[PaceView]:
    """The Lua reply as one ``PaceView`` per account."""
    return [
        PaceView(int(reply[i]), int(reply[i + 1]), int(float(reply[i + 2])), reply[i + 3] == 1)
        for i in range(0, len(reply), 4)
    ]
