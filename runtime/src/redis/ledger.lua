-- Ledger: bytes and keys one tenant holds in one hash slot, kept exact by
-- the scripts that write those keys, so that a quota can be checked in the
-- same atomic step as the write. Prepended to the scripts that use it.
--
-- A ledger lives beside the keys it counts, under a base such as
-- `spool:{kv:acme}` (the keys it counts are `BASE:…`, so `BASE#…` never
-- collides with one of them):
--
--   BASE#sizes   hash  key -> bytes it was charged (ledger_size: the value, the
--                      key three times — it is also a field here and a member
--                      below — and OVERHEAD for Redis' own bookkeeping)
--   BASE#expiry  zset  key -> when it expires, ms since the epoch ('inf': never)
--   BASE#usage   hash  bytes (sum of #sizes), w_sec and w_count (writes in
--                      the current second, for a rate limit), repaired_sec
--                      (the second of the last repair)
--
-- Keys expire on their own (Redis TTLs); the ledger forgets them when a
-- script next runs after their expiry (ledger_sweep). A key deleted behind
-- the scripts' back (an operator's DEL, a cache purge) stays charged until
-- its expiry, or until the tenant is at its quota: then ledger_repair
-- checks a sample of charged keys and forgets the ones that are gone (at
-- most once a second per ledger: a tenant at its quota must not make every
-- refused write cost a scan).
--
-- Cost: the scripts check the rate first (one HMGET), so a write refused
-- for the rate costs little; the type guard and the sweep come after.

-- Bytes charged per key beside its value and key: Redis' own bookkeeping
-- for the key and its two ledger entries (measured ~100 bytes).
local OVERHEAD = 100

local function ledger(base)
  return { sizes = base .. '#sizes', expiry = base .. '#expiry', usage = base .. '#usage' }
end

local function ledger_now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A ledger key of the wrong type (written by hand) would make every write
-- of the tenant fail; it is reset instead: the tenant's usage restarts from
-- what the scripts see next, which only the holder of Redis credentials
-- (trusted) can cause.
local function ledger_guard(L)
  local want = { [L.sizes] = 'hash', [L.expiry] = 'zset', [L.usage] = 'hash' }
  for key, kind in pairs(want) do
    local t = redis.call('TYPE', key)
    t = t.ok or t
    if t ~= 'none' and t ~= kind then
      -- The three keys only make sense together: reset all of them.
      redis.call('DEL', L.sizes, L.expiry, L.usage)
      return
    end
  end
end

local function ledger_forget(L, key)
  local size = tonumber(redis.call('HGET', L.sizes, key))
  if size then
    redis.call('HDEL', L.sizes, key)
    redis.call('HINCRBY', L.usage, 'bytes', -size)
  end
  redis.call('ZREM', L.expiry, key)
end

-- The bytes a key of `value_len` bytes is charged.
local function ledger_size(key, value_len)
  return value_len + 3 * #key + OVERHEAD
end

-- Forget up to n keys whose recorded expiry has passed. A key whose TTL was
-- changed behind the scripts' back (PERSIST, a plain SET by an older
-- worker) still exists: it stays charged, under its real expiry, and is
-- never deleted here.
local function ledger_sweep(L, now_ms, n)
  local due = redis.call('ZRANGEBYSCORE', L.expiry, '-inf', now_ms, 'LIMIT', 0, n)
  for _, key in ipairs(due) do
    local pttl = redis.call('PTTL', key)
    if pttl == -2 then
      ledger_forget(L, key)
    elseif pttl == -1 then
      redis.call('ZADD', L.expiry, 'inf', key)
    else
      redis.call('ZADD', L.expiry, now_ms + pttl, key)
    end
  end
end

-- Forget charged keys that no longer exist, from a sample: the soonest to
-- expire and a random few. At most once a second per ledger.
local function ledger_repair(L, now_ms)
  local sec = math.floor(now_ms / 1000)
  if tonumber(redis.call('HGET', L.usage, 'repaired_sec')) == sec then return end
  redis.call('HSET', L.usage, 'repaired_sec', sec)
  local sample = redis.call('ZRANGE', L.expiry, 0, 31)
  local random = redis.call('HRANDFIELD', L.sizes, 32)
  for _, key in ipairs(random) do sample[#sample + 1] = key end
  for _, key in ipairs(sample) do
    if redis.call('EXISTS', key) == 0 then ledger_forget(L, key) end
  end
end

-- Bytes and keys charged now.
local function ledger_usage(L)
  local bytes = tonumber(redis.call('HGET', L.usage, 'bytes') or '0') or 0
  return math.max(0, bytes), redis.call('HLEN', L.sizes)
end

-- Whether charging `key` with `size` bytes stays within max_bytes and
-- max_keys (0: no limit). Returns nil when it does, else what it breaks:
-- 'bytes' or 'keys', the usage it would reach and the limit. A write that
-- does not grow the usage (an existing key, no larger) always passes, so a
-- tenant over a lowered quota can still shrink its data.
local function ledger_over(L, key, size, max_bytes, max_keys, now_ms)
  local function check()
    local bytes, keys = ledger_usage(L)
    local old = tonumber(redis.call('HGET', L.sizes, key))
    if old and size <= old then return nil end
    if old then
      bytes = bytes - old
    else
      keys = keys + 1
    end
    bytes = bytes + size
    if max_bytes > 0 and bytes > max_bytes then return { 'bytes', bytes, max_bytes } end
    if max_keys > 0 and keys > max_keys then return { 'keys', keys, max_keys } end
    return nil
  end
  local over = check()
  if over then
    ledger_repair(L, now_ms)
    over = check()
  end
  return over
end

-- Charge `key` with `size` bytes; it expires at expire_ms (nil: never).
local function ledger_put(L, key, size, expire_ms)
  local old = tonumber(redis.call('HGET', L.sizes, key)) or 0
  redis.call('HSET', L.sizes, key, size)
  redis.call('HINCRBY', L.usage, 'bytes', size - old)
  redis.call('ZADD', L.expiry, expire_ms or 'inf', key)
end

-- Count one write in the current second. Returns nil, or the writes this
-- second and the limit when it is reached (max 0: no limit). Runs first,
-- before ledger_guard: a usage key of the wrong type reads as no writes.
local function ledger_rate(L, now_ms, max)
  local sec = math.floor(now_ms / 1000)
  local w = redis.pcall('HMGET', L.usage, 'w_sec', 'w_count')
  if type(w) ~= 'table' or w.err then w = {} end
  local n = 0
  if tonumber(w[1]) == sec then n = tonumber(w[2]) or 0 end
  if max > 0 and n >= max then return { n, max } end
  if max > 0 then redis.pcall('HSET', L.usage, 'w_sec', sec, 'w_count', n + 1) end
  return nil
end

-- The start of a script that writes a key of the ledger under `base`: the
-- rate first (cheap: a refused write costs one HMGET), then the type guard
-- and the sweep. Returns the ledger, the time, and a refusal reply (nil
-- when the write may go on).
local function ledger_begin(base, max_writes)
  local L = ledger(base)
  local now = ledger_now_ms()
  local rate = ledger_rate(L, now, max_writes)
  if rate then return L, now, { 'rate', rate[1], rate[2] } end
  ledger_guard(L)
  ledger_sweep(L, now, 64)
  return L, now, nil
end
