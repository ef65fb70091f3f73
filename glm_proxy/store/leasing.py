"""The lease-or-queue step, once in Python (memory store) and once in Lua (Redis).

Both versions follow the same rules, and ``tests/store/test_store.py`` runs the
same table of cases against each:

1. Queue tickets whose waiter stopped polling (its ``alive`` time passed) are
   dropped, so a crashed process cannot hold a place in line.
2. Each candidate that is not excluded is classified: dead or disabled (never
   used), cooling (cooldown in the future) or usable. Expired leases are
   dropped before counting what is in flight.
3. Cooling accounts are skipped while a usable one exists. When only cooling
   accounts remain, a request with a single candidate uses it anyway (there is
   nowhere else to go) unless it rests for a reason more tries make worse (a
   verification page, spent credits, risk control: ``LONG_RESTS``); otherwise
   it waits, told when the first cooldown ends.
4. The request is granted the free account of lowest ``rank`` (most budget and
   credits left; ``pool.pacing``), the least recently leased among equals, only
   while fewer live tickets come before it than there are free slots. The order
   is round robin across callers and arrival within one (``store.fairness``),
   across every process sharing the store; a grant records the caller's turn.
5. Otherwise it keeps (or takes) its place in line, unless the line is full.
"""

from __future__ import annotations

from typing import Protocol

import glm_proxy.store.keys as keys
from glm_proxy.store.base import AcquireRequest, AcquireResult
from glm_proxy.store.fairness import fair_rank, owner_value, record_turn

SEQ_TTL = 86400.0
LONG_RESTS = ("verification_required", "out_of_credits", "risk_control")


class LeaseTables(Protocol):
    """The memory store's tables, as ``choose`` reads and writes them (under its mutex).

    A protocol, so this module does not import the store that imports it.
    """

    def _hash(self, key: str) -> dict[str, str]: ...

    def _zset(self, key: str) -> dict[str, float]: ...

    def _slots(self, key: str, now_ms: int) -> dict[str, float]: ...

    def _table(self, key: str, ttl: float) -> dict[str, str]: ...

    def _tidy(self, *keys: str) -> None: ...

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int: ...


def choose(store: LeaseTables, r: AcquireRequest) -> AcquireResult:
    """The memory store's version; the caller holds the store's mutex."""
    now = r.now_ms
    queue_key, alive_key = keys.queue(r.queue), keys.queue_alive(r.queue)
    owner_key, fair_key = keys.queue_owner(r.queue), keys.queue_fair(r.queue)
    queue, alive = store._zset(queue_key), store._zset(alive_key)
    table_ttl = (r.ticket_ttl_ms * 4 + 60000) / 1000
    owners, fair = store._table(owner_key, table_ttl), store._table(fair_key, table_ttl)
    for ticket in [t for t, expiry in alive.items() if expiry <= now]:
        alive.pop(ticket, None)
        queue.pop(ticket, None)
        owners.pop(ticket, None)

    entries: list[tuple[int, str, int, bool, float, int, float, bool]] = []
    dead = disabled = 0
    for index, cand in enumerate(r.candidates):
        if cand.excluded:
            continue
        health = store._hash(keys.health(cand.fingerprint))
        state = health.get("state") or "active"
        if state == "dead":
            dead += 1
            continue
        if state == "disabled":
            disabled += 1
            continue
        cooldown = float(health.get("cooldown_until") or 0) * 1000
        inflight = len(store._slots(keys.lease(cand.fingerprint), now))
        cooling = state == "cooling" and cooldown > now
        resting = cooling and health.get("reason") in LONG_RESTS
        entries.append(
            (index, cand.fingerprint, cand.max_streams, cooling, cooldown, inflight, cand.rank)
            + (resting,)
        )
    if not entries:
        store._tidy(queue_key, alive_key, owner_key, fair_key)
        return AcquireResult("none", dead=dead, disabled=disabled)

    usable = [e for e in entries if not e[3]]
    retry_at: int | None = None
    if not usable:
        if r.sole:
            usable = [e for e in entries if not e[7]]
        if not usable:
            retry_at = int(min(e[4] for e in entries))

    lru = store._zset(keys.LRU)
    free = [e for e in usable if e[5] < e[2]]
    free_slots = sum(e[2] - e[5] for e in free)
    rank = fair_rank(queue, owners, fair, r.ticket, r.caller, r.stride)
    if free and rank < free_slots:
        best = min(free, key=lambda e: (e[6], lru.get(e[1], 0.0), e[0]))
        store._zset(keys.lease(best[1]))[r.lease_id] = float(now + r.lease_ttl_ms)
        lru[best[1]] = float(now)
        queue.pop(r.ticket, None)
        alive.pop(r.ticket, None)
        owners.pop(r.ticket, None)
        record_turn(fair, r.caller, r.stride)
        store._tidy(queue_key, alive_key, owner_key)
        return AcquireResult("ok", fingerprint=best[1])

    if r.ticket in queue:
        seq = int(queue[r.ticket])
    else:
        if len(queue) >= r.queue_max:
            store._tidy(queue_key, alive_key, owner_key, fair_key)
            return AcquireResult("full")
        seq = r.seq if r.seq is not None else store.incr(keys.queue_seq(r.queue), ttl=SEQ_TTL)
        queue[r.ticket] = float(seq)
    owners[r.ticket] = owner_value(r.caller, r.stride)
    alive[r.ticket] = float(now + r.ticket_ttl_ms)
    return AcquireResult("wait", seq=seq, retry_at_ms=retry_at)


ACQUIRE_LUA = """
-- KEYS: queue, queue alive, queue seq, lru, queue owner, queue fair,
--       then lease:<fp> and health:<fp> per candidate
-- ARGV: now_ms, lease_ttl_ms, ticket_ttl_ms, queue_max, ticket, lease_id, seq or '',
--       sole (0/1), n, caller, stride, then fp, max_streams, excluded (0/1), rank
--       per candidate
local now = tonumber(ARGV[1])
local lease_ttl = tonumber(ARGV[2])
local ticket_ttl = tonumber(ARGV[3])
local queue_max = tonumber(ARGV[4])
local ticket = ARGV[5]
local lease_id = ARGV[6]
local seq_arg = ARGV[7]
local sole = ARGV[8] == '1'
local n = tonumber(ARGV[9])
local caller = ARGV[10]
local stride = tonumber(ARGV[11])
local table_ttl = ticket_ttl * 4 + 60000

local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
for _, t in ipairs(stale) do
  redis.call('ZREM', KEYS[1], t)
  redis.call('ZREM', KEYS[2], t)
  redis.call('HDEL', KEYS[5], t)
end

local entries = {}
local dead, disabled = 0, 0
for i = 1, n do
  local a = 11 + (i - 1) * 4
  if ARGV[a + 3] ~= '1' then
    local lease_key = KEYS[6 + (i - 1) * 2 + 1]
    local health_key = KEYS[6 + (i - 1) * 2 + 2]
    local h = redis.call('HMGET', health_key, 'state', 'cooldown_until', 'reason')
    local state = h[1]
    if not state or state == '' then state = 'active' end
    if state == 'dead' then
      dead = dead + 1
    elseif state == 'disabled' then
      disabled = disabled + 1
    else
      local cd = (tonumber(h[2]) or 0) * 1000
      redis.call('ZREMRANGEBYSCORE', lease_key, '-inf', now)
      local e = {}
      e.i = i
      e.fp = ARGV[a + 1]
      e.max = tonumber(ARGV[a + 2])
      e.rank = tonumber(ARGV[a + 4]) or 0
      e.cooling = (state == 'cooling') and (cd > now)
      e.resting = e.cooling and (h[3] == 'verification_required'
        or h[3] == 'out_of_credits' or h[3] == 'risk_control')
      e.cd = cd
      e.inflight = redis.call('ZCARD', lease_key)
      e.key = lease_key
      table.insert(entries, e)
    end
  end
end
if #entries == 0 then
  return {'none', '', '', '', tostring(dead), tostring(disabled)}
end

local usable = {}
for _, e in ipairs(entries) do
  if not e.cooling then table.insert(usable, e) end
end
local retry_at = ''
if #usable == 0 and sole then
  for _, e in ipairs(entries) do
    if not e.resting then table.insert(usable, e) end
  end
end
if #usable == 0 then
  local first = nil
  for _, e in ipairs(entries) do
    if first == nil or e.cd < first then first = e.cd end
  end
  retry_at = string.format('%d', first)
end

local best, best_lru = nil, nil
local free_slots = 0
for _, e in ipairs(usable) do
  if e.inflight < e.max then
    free_slots = free_slots + (e.max - e.inflight)
    local lru = tonumber(redis.call('ZSCORE', KEYS[4], e.fp)) or 0
    if best == nil or e.rank < best.rank or (e.rank == best.rank and lru < best_lru) then
      best, best_lru = e, lru
    end
  end
end

-- the fair order (store.fairness): a ticket's turn is its caller's next turn
-- (never before the clock v) plus the strides of that caller's tickets ahead of it
local fair = {}
local flat = redis.call('HGETALL', KEYS[6])
for i = 1, #flat, 2 do fair[flat[i]] = flat[i + 1] end
local clock = tonumber(fair['v'] or '0') or 0
local function start(c)
  local p = tonumber(fair['p:' .. c] or '0') or 0
  if p < clock then return clock end
  return p
end
local owners = {}
flat = redis.call('HGETALL', KEYS[5])
for i = 1, #flat, 2 do owners[flat[i]] = flat[i + 1] end
local offsets, tags = {}, {}
local mine_turn, mine_seq = nil, nil
local members = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #members, 2 do
  local t, seq = members[i], tonumber(members[i + 1])
  local own_stride, own_caller = 720720, ''
  local value = owners[t]
  if value then
    local space = string.find(value, ' ', 1, true)
    local parsed = space and tonumber(string.sub(value, 1, space - 1))
    if parsed then
      own_stride, own_caller = math.max(1, parsed), string.sub(value, space + 1)
    end
  end
  local offset = offsets[own_caller] or 0
  offsets[own_caller] = offset + own_stride
  if t == ticket then
    mine_turn, mine_seq = start(own_caller) + offset, seq
  else
    table.insert(tags, {start(own_caller) + offset, seq})
  end
end
local queued = mine_turn ~= nil
if not queued then
  mine_turn, mine_seq = start(caller) + (offsets[caller] or 0), math.huge
end
local rank = 0
for _, tag in ipairs(tags) do
  if tag[1] < mine_turn or (tag[1] == mine_turn and tag[2] < mine_seq) then rank = rank + 1 end
end

if best ~= nil and rank < free_slots then
  redis.call('ZADD', best.key, now + lease_ttl, lease_id)
  if redis.call('PTTL', best.key) < lease_ttl then redis.call('PEXPIRE', best.key, lease_ttl) end
  redis.call('ZADD', KEYS[4], now, best.fp)
  if queued then
    redis.call('ZREM', KEYS[1], ticket)
    redis.call('ZREM', KEYS[2], ticket)
  end
  redis.call('HDEL', KEYS[5], ticket)
  local turn = start(caller)
  for field, value in pairs(fair) do
    if string.sub(field, 1, 2) == 'p:' and tonumber(value) <= turn then
      redis.call('HDEL', KEYS[6], field)
    end
  end
  redis.call('HSET', KEYS[6], 'v', string.format('%.0f', turn),
    'p:' .. caller, string.format('%.0f', turn + stride))
  redis.call('PEXPIRE', KEYS[6], table_ttl)
  return {'ok', best.fp}
end

local seq
if queued then
  seq = redis.call('ZSCORE', KEYS[1], ticket)
else
  if redis.call('ZCARD', KEYS[1]) >= queue_max then return {'full'} end
  if seq_arg ~= '' then
    seq = seq_arg
  else
    seq = redis.call('INCR', KEYS[3])
    redis.call('PEXPIRE', KEYS[3], 86400000)
  end
  redis.call('ZADD', KEYS[1], seq, ticket)
end
redis.call('HSET', KEYS[5], ticket, string.format('%.0f', stride) .. ' ' .. caller)
redis.call('ZADD', KEYS[2], now + ticket_ttl, ticket)
for k = 1, 2 do redis.call('PEXPIRE', KEYS[k], table_ttl) end
redis.call('PEXPIRE', KEYS[5], table_ttl)
return {'wait', '', tostring(seq), retry_at}
"""

SLOT_ACQUIRE_LUA = """
-- KEYS: slot set; ARGV: now_ms, ttl_ms, limit, member
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[4]) == false
   and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[4])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""


def parse_lua_result(reply: list) -> AcquireResult:
    """The Lua script's reply as an ``AcquireResult``."""
    status = reply[0]
    if status == "ok":
        return AcquireResult("ok", fingerprint=reply[1])
    if status == "none":
        return AcquireResult("none", dead=int(reply[4]), disabled=int(reply[5]))
    if status == "full":
        return AcquireResult("full")
    retry_at = reply[3] if len(reply) > 3 and reply[3] else None
    return AcquireResult(
        "wait", seq=int(float(reply[2])), retry_at_ms=int(retry_at) if retry_at else None
    )
