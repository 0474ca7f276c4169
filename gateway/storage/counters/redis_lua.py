"""The Lua scripts of the Redis counters: each call is one atomic step on the Redis server.

Keys (one hash tag per app, so a Redis Cluster keeps an app's keys on one shard):
  1 requests   ZSET  reservation id -> admission time         (sliding request log)
  2 tokens     ZSET  reservation id -> admission time         (sliding token log)
  3 amounts    HASH  reservation id -> tokens it counts for   (estimate, then real usage)
  4 tokensum   STRING  sum of the amounts in the window
  5 leases     HASH  reservation id -> "tokens cost"
  6 expiries   ZSET  reservation id -> lease expiry time
  7 leasesum   HASH  t -> leased tokens, c -> leased cost
  8 day        STRING tokens settled in the UTC day
  9 month      STRING micro-dollars settled in the UTC month
"""

from __future__ import annotations

_COMMON = """
local function batched(command, key, items)
  for i = 1, #items, 1000 do
    redis.call(command, key, unpack(items, i, math.min(i + 999, #items)))
  end
end

local function purge(now)
  local edge = now - 60
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', edge)
  local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', edge)
  if #old > 0 then
    local sum = 0
    for i = 1, #old, 1000 do
      local amounts = redis.call('HMGET', KEYS[3], unpack(old, i, math.min(i + 999, #old)))
      for j = 1, #amounts do sum = sum + (tonumber(amounts[j]) or 0) end
    end
    redis.call('DECRBY', KEYS[4], sum)
    batched('HDEL', KEYS[3], old)
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', edge)
  end
  local expired = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now)
  if #expired > 0 then
    local lt, lc = 0, 0
    for i = 1, #expired, 1000 do
      local vals = redis.call('HMGET', KEYS[5], unpack(expired, i, math.min(i + 999, #expired)))
      for j = 1, #vals do
        if vals[j] then
          local t, c = string.match(vals[j], '(%d+) (%d+)')
          lt = lt + tonumber(t)
          lc = lc + tonumber(c)
        end
      end
    end
    redis.call('HINCRBY', KEYS[7], 't', 0 - lt)
    redis.call('HINCRBY', KEYS[7], 'c', 0 - lc)
    batched('HDEL', KEYS[5], expired)
    redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
  end
end

local function num(value)
  return tonumber(value) or 0
end
"""

RESERVE = (
    _COMMON
    + """
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local id = ARGV[3]
local tokens = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local rpm = tonumber(ARGV[6])
local tpm = tonumber(ARGV[7])
local daylimit = tonumber(ARGV[8])
local concurrent = tonumber(ARGV[9])
local budget = tonumber(ARGV[10])
purge(now)
local nreq = redis.call('ZCARD', KEYS[1])
local wtokens = num(redis.call('GET', KEYS[4]))
local nlease = redis.call('ZCARD', KEYS[6])
local leased = redis.call('HMGET', KEYS[7], 't', 'c')
local dayused = num(redis.call('GET', KEYS[8])) + num(leased[1])
local monthused = num(redis.call('GET', KEYS[9])) + num(leased[2])
local oldreq = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2] or ''
local oldtok = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2] or ''
local refused = ''
if concurrent >= 0 and nlease + 1 > concurrent then refused = 'max_concurrent'
elseif rpm >= 0 and nreq + 1 > rpm then refused = 'rpm'
elseif tpm >= 0 and wtokens + tokens > tpm then refused = 'tpm'
elseif daylimit >= 0 and dayused + tokens > daylimit then refused = 'tokens_per_day'
elseif budget >= 0 and monthused + cost > budget then refused = 'budget_usd_month'
end
local tpmretry = '60'
if refused == 'tpm' and tokens <= tpm then
  local excess = wtokens + tokens - tpm
  local log = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  for i = 1, #log, 2 do
    excess = excess - num(redis.call('HGET', KEYS[3], log[i]))
    if excess <= 0 then
      tpmretry = tostring(math.min(60, math.max(0, tonumber(log[i + 1]) + 60 - now)))
      break
    end
  end
end
if refused == '' then
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('ZADD', KEYS[2], now, id)
  redis.call('HSET', KEYS[3], id, tokens)
  redis.call('INCRBY', KEYS[4], tokens)
  redis.call('HSET', KEYS[5], id, tokens .. ' ' .. cost)
  redis.call('ZADD', KEYS[6], now + ttl, id)
  redis.call('HINCRBY', KEYS[7], 't', tokens)
  redis.call('HINCRBY', KEYS[7], 'c', cost)
end
-- Idle apps cost nothing: every key expires after its longest useful life.
local keep = math.ceil(math.max(120, ttl * 2) * 1000)
for i = 1, 7 do redis.call('PEXPIRE', KEYS[i], keep) end
return {refused, tostring(nreq), tostring(wtokens), tostring(nlease), tostring(dayused),
        tostring(monthused), oldreq, oldtok, tpmretry}
"""
)

SETTLE = (
    _COMMON
    + """
local now = tonumber(ARGV[1])
local id = ARGV[2]
local tokens = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
purge(now)
local lease = redis.call('HGET', KEYS[5], id)
if lease then
  local t, c = string.match(lease, '(%d+) (%d+)')
  redis.call('HINCRBY', KEYS[7], 't', 0 - tonumber(t))
  redis.call('HINCRBY', KEYS[7], 'c', 0 - tonumber(c))
  redis.call('HDEL', KEYS[5], id)
  redis.call('ZREM', KEYS[6], id)
end
local counted = redis.call('HGET', KEYS[3], id)
if counted then
  redis.call('INCRBY', KEYS[4], tokens - tonumber(counted))
  redis.call('HSET', KEYS[3], id, tokens)
end
redis.call('INCRBY', KEYS[8], tokens)
redis.call('EXPIRE', KEYS[8], 172800)
redis.call('INCRBY', KEYS[9], cost)
redis.call('EXPIRE', KEYS[9], 3456000)
return 1
"""
)

#: One app's share of a lease heartbeat. KEYS: 1 leases, 2 expiries, 3 leasesum (keys 5-7
#: above); ARGV: now, expires, then the reservation ids. Returns how many were renewed.
RENEW = """
local now = tonumber(ARGV[1])
local expires = tonumber(ARGV[2])
local renewed = 0
for i = 3, #ARGV do
  local current = redis.call('ZSCORE', KEYS[2], ARGV[i])
  -- Only a live lease is renewed: an expired or settled one stays released, even if an
  -- expired one has not been purged yet.
  if current and tonumber(current) > now then
    redis.call('ZADD', KEYS[2], 'XX', expires, ARGV[i])
    renewed = renewed + 1
  end
end
if renewed > 0 then
  -- The lease keys must outlive the leases (reserve only sets them to max(120 s, 2 ttl)).
  local keep = math.ceil(math.max(120, (expires - now) * 2) * 1000)
  for i = 1, 3 do
    if redis.call('PTTL', KEYS[i]) < keep then redis.call('PEXPIRE', KEYS[i], keep) end
  end
end
return renewed
"""
