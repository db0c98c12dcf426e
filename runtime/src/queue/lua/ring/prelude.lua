-- Shared prelude of the queue-slot scripts (`ring/`), which keep the set of
-- tenants with work: KEYS[1] is the queue's prefix, e.g. `spool:{default}`.
--
-- `Q:ready`   zset, every score 0: tenants to visit now, read in name order
-- `Q:timers`  zset: tenant → when to visit it (µs): a delayed job due, a
--             lease expiring, a rate limit refilling
-- `Q:seq`     zset: tenant → the last sequence number announced for it;
--             also the registry of every tenant the queue has seen
-- `Q:wake`    list: at most one token, `t:TENANT` (a tenant with work now)
--             or `1`; idle workers block on it
--
-- A tenant script tells its caller what to write here (see "has work" in
-- ../lib.lua); these scripts write it. Like ../lib.lua, loaded once in the
-- queue's function library: every script starts with begin(KEYS).

local Q
local function begin(keys) Q = keys[1] end

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Wake one idle worker blocked on the wake list. At most one token waits
-- there: a busy fleet does not need more. A token naming `tenant` (which
-- has work now) lets the woken worker claim it without a pick first.
local function wake(tenant)
  if redis.call('LLEN', Q .. ':wake') == 0 then
    redis.call('RPUSH', Q .. ':wake', tenant and ('t:' .. tenant) or '1')
  end
end
