"""The Lua scripts of the Redis counters: each call is one atomic step on the Redis server.

Keys (one hash tag per app, so a Redis Cluster keeps an app's keys, and its users', on one
shard):
  1 requests   ZSET  reservation id -> admission time         (sliding request log)
  2 tokens     ZSET  reservation id -> admission time         (sliding token log)
  3 amounts    HASH  reservation id -> tokens it counts for   (estimate, then real usage)
  4 tokensum   STRING  sum of the amounts in the window
  5 leases     HASH  reservation id -> "tokens cost"
  6 expiries   ZSET  reservation id -> lease expiry time
  7 leasesum   HASH  t -> leased tokens, c -> leased cost
  8 day        STRING tokens settled in the UTC day
  9 month      STRING micro-dollars settled in the UTC month
A reservation with a user passes the user's keys too, the same but for the expiries: a user's
share of a lease is live exactly while the app's lease of the same id is (in key 6), so it is
renewed and expires with it.
 10 requests  11 tokens  12 amounts  13 tokensum  14 leases  15 leasesum  16 day  17 month
"""

from __future__ import annotations

_COMMON = """
local APP = {req = 1, tok = 2, amt = 3, sum = 4, lease = 5, lsum = 7, day = 8, month = 9}
local USER = {req = 10, tok = 11, amt = 12, sum = 13, lease = 14, lsum = 15, day = 16,
              month = 17}

local function batched(command, key, items)
  for i = 1, #items, 1000 do
    redis.call(command, key, unpack(items, i, math.min(i + 999, #items)))
  end
end

local function num(value)
  return tonumber(value) or 0
end

local function purge_window(k, now)
  local edge = now - 60
  redis.call('ZREMRANGEBYSCORE', KEYS[k.req], '-inf', edge)
  local old = redis.call('ZRANGEBYSCORE', KEYS[k.tok], '-inf', edge)
  if #old > 0 then
    local sum = 0
    for i = 1, #old, 1000 do
      local amounts = redis.call('HMGET', KEYS[k.amt], unpack(old, i, math.min(i + 999, #old)))
      for j = 1, #amounts do sum = sum + (tonumber(amounts[j]) or 0) end
    end
    redis.call('DECRBY', KEYS[k.sum], sum)
    batched('HDEL', KEYS[k.amt], old)
    redis.call('ZREMRANGEBYSCORE', KEYS[k.tok], '-inf', edge)
  end
end

-- Release these leases (ids that are not held are skipped).
local function release(k, ids)
  local lt, lc = 0, 0
  for i = 1, #ids, 1000 do
    local vals = redis.call('HMGET', KEYS[k.lease], unpack(ids, i, math.min(i + 999, #ids)))
    for j = 1, #vals do
      if vals[j] then
        local t, c = string.match(vals[j], '(%d+) (%d+)')
        lt = lt + tonumber(t)
        lc = lc + tonumber(c)
      end
    end
  end
  redis.call('HINCRBY', KEYS[k.lsum], 't', 0 - lt)
  redis.call('HINCRBY', KEYS[k.lsum], 'c', 0 - lc)
  batched('HDEL', KEYS[k.lease], ids)
end

local function purge(now)
  purge_window(APP, now)
  local expired = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now)
  if #expired > 0 then
    release(APP, expired)
    redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
  end
end

-- After purge(now): a user's lease is live while the app's lease of that id is.
local function purge_user(now)
  purge_window(USER, now)
  local ids = redis.call('HKEYS', KEYS[14])
  if #ids > 0 then
    local gone = {}
    for i = 1, #ids, 1000 do
      local last = math.min(i + 999, #ids)
      local scores = redis.call('ZMSCORE', KEYS[6], unpack(ids, i, last))
      for j = 1, #scores do
        if not scores[j] then gone[#gone + 1] = ids[i + j - 1] end
      end
    end
    if #gone > 0 then release(USER, gone) end
  end
end

-- What a decision needs of one scope's counters (nlease: its live leases).
local function counts(k, nlease)
  local leased = redis.call('HMGET', KEYS[k.lsum], 't', 'c')
  return {
    nreq = redis.call('ZCARD', KEYS[k.req]),
    wtokens = num(redis.call('GET', KEYS[k.sum])),
    nlease = nlease,
    dayused = num(redis.call('GET', KEYS[k.day])) + num(leased[1]),
    monthused = num(redis.call('GET', KEYS[k.month])) + num(leased[2]),
    oldreq = redis.call('ZRANGE', KEYS[k.req], 0, 0, 'WITHSCORES')[2] or '',
    oldtok = redis.call('ZRANGE', KEYS[k.tok], 0, 0, 'WITHSCORES')[2] or '',
  }
end

local function refusal(c, lim, tokens, cost)
  if lim.concurrent >= 0 and c.nlease + 1 > lim.concurrent then return 'max_concurrent'
  elseif lim.rpm >= 0 and c.nreq + 1 > lim.rpm then return 'rpm'
  elseif lim.tpm >= 0 and c.wtokens + tokens > lim.tpm then return 'tpm'
  elseif lim.day >= 0 and c.dayused + tokens > lim.day then return 'tokens_per_day'
  elseif lim.budget >= 0 and c.monthused + cost > lim.budget then return 'budget_usd_month'
  end
  return ''
end

local function tpm_retry(k, c, tokens, tpm, now)
  if tokens > tpm then return '60' end
  local excess = c.wtokens + tokens - tpm
  local log = redis.call('ZRANGE', KEYS[k.tok], 0, -1, 'WITHSCORES')
  for i = 1, #log, 2 do
    excess = excess - num(redis.call('HGET', KEYS[k.amt], log[i]))
    if excess <= 0 then
      return tostring(math.min(60, math.max(0, tonumber(log[i + 1]) + 60 - now)))
    end
  end
  return '60'
end

local function limits_at(i)
  return {rpm = tonumber(ARGV[i]), tpm = tonumber(ARGV[i + 1]), day = tonumber(ARGV[i + 2]),
          concurrent = tonumber(ARGV[i + 3]), budget = tonumber(ARGV[i + 4])}
end

local function admit(k, now, id, tokens, cost)
  redis.call('ZADD', KEYS[k.req], now, id)
  redis.call('ZADD', KEYS[k.tok], now, id)
  redis.call('HSET', KEYS[k.amt], id, tokens)
  redis.call('INCRBY', KEYS[k.sum], tokens)
  redis.call('HSET', KEYS[k.lease], id, tokens .. ' ' .. cost)
  redis.call('HINCRBY', KEYS[k.lsum], 't', tokens)
  redis.call('HINCRBY', KEYS[k.lsum], 'c', cost)
end

local function reply(c)
  return {tostring(c.nreq), tostring(c.wtokens), tostring(c.nlease), tostring(c.dayused),
          tostring(c.monthused), c.oldreq, c.oldtok}
end

local function append(list, more)
  for i = 1, #more do list[#list + 1] = more[i] end
  return list
end
"""

#: ARGV: now, ttl, id, tokens, cost, the app's five limits (rpm, tpm, tokens_per_day,
#: max_concurrent, budget; -1: none), then with a user (KEYS 10-17): a mode ('reserve' or
#: 'peek': decide nothing, hold nothing) and the user's five limits. Returns the refused limit
#: (or ''), the app's counts and the tpm retry; with a user, then the refusing scope and the
#: user's counts.
RESERVE = (
    _COMMON
    + """
local now = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local id = ARGV[3]
local tokens = tonumber(ARGV[4])
local cost = tonumber(ARGV[5])
local lim = limits_at(6)
local with_user = #KEYS > 9
local peek = ARGV[11] == 'peek'
purge(now)
if with_user then purge_user(now) end
local c = counts(APP, redis.call('ZCARD', KEYS[6]))
local refused = refusal(c, lim, tokens, cost)
local scope = ''
local retry = '60'
if refused == 'tpm' then retry = tpm_retry(APP, c, tokens, lim.tpm, now) end
local u = nil
if with_user then
  local ulim = limits_at(12)
  u = counts(USER, redis.call('HLEN', KEYS[14]))
  if refused ~= '' then
    scope = 'app'
  else
    refused = refusal(u, ulim, tokens, cost)
    if refused ~= '' then scope = 'user' end
    if refused == 'tpm' then retry = tpm_retry(USER, u, tokens, ulim.tpm, now) end
  end
end
local result = append({refused}, reply(c))
result[#result + 1] = retry
if with_user then
  result[#result + 1] = scope
  append(result, reply(u))
end
if peek then return result end
if refused == '' then
  admit(APP, now, id, tokens, cost)
  redis.call('ZADD', KEYS[6], now + ttl, id)
  if with_user then admit(USER, now, id, tokens, cost) end
end
-- Idle apps and users cost nothing: every key expires after its longest useful life.
local keep = math.ceil(math.max(120, ttl * 2) * 1000)
for i = 1, 7 do redis.call('PEXPIRE', KEYS[i], keep) end
if with_user then
  for i = 10, 15 do redis.call('PEXPIRE', KEYS[i], keep) end
end
return result
"""
)

SETTLE = (
    _COMMON
    + """
local now = tonumber(ARGV[1])
local id = ARGV[2]
local tokens = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])

local function settle(k)
  if redis.call('HEXISTS', KEYS[k.lease], id) == 1 then release(k, {id}) end
  local counted = redis.call('HGET', KEYS[k.amt], id)
  if counted then
    redis.call('INCRBY', KEYS[k.sum], tokens - tonumber(counted))
    redis.call('HSET', KEYS[k.amt], id, tokens)
  end
  redis.call('INCRBY', KEYS[k.day], tokens)
  redis.call('EXPIRE', KEYS[k.day], 172800)
  redis.call('INCRBY', KEYS[k.month], cost)
  redis.call('EXPIRE', KEYS[k.month], 3456000)
end

purge(now)
redis.call('ZREM', KEYS[6], id)
settle(APP)
if #KEYS > 9 then
  purge_user(now)
  settle(USER)
end
return 1
"""
)

#: One app's share of a lease heartbeat. KEYS: 1 leases, 2 expiries, 3 leasesum (keys 5-7
#: above), then the leases and leasesum keys (14, 15) of each user holding some of them;
#: ARGV: now, expires, then the reservation ids. Returns how many were renewed.
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
  for i = 1, #KEYS do
    if redis.call('PTTL', KEYS[i]) < keep then redis.call('PEXPIRE', KEYS[i], keep) end
  end
end
return renewed
"""
