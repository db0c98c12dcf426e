-- One tenant's state in one queue, for `spool tenants list`, `spool stats`
-- and `spool job` (why a queued job waits). Read only.
--
-- KEYS[1]  the tenant's prefix in the queue
-- ARGV[1]  a group name, or '' for none
--
-- Returns {now_us, queued (ready lists), grouped (waiting in groups),
-- delayed, running (leases), dead letters, paused (0|1), tokens ('' when
-- the rate bucket is unused), bucket_at_us, succeeded, dead_total,
-- retried, groups with jobs waiting, and for the group: held, waiting,
-- paused (0|1), first lease expiry (µs, 0 for none), then the ready lists'
-- lengths by priority: high, normal, low}.

local now = now_us()
local function llen(k) return redis.call('LLEN', k) end
local high, normal, low = llen(P .. ':ready:high'), llen(P .. ':ready:normal'), llen(P .. ':ready:low')
local queued = high + normal + low
local grouped = 0
local groups = redis.call('ZRANGE', P .. ':gall', 0, -1)
for _, g in ipairs(groups) do grouped = grouped + llen(group_key(g)) end
local bucket = redis.call('HMGET', P .. ':bucket', 'tokens', 'at')
local stats = redis.call('HMGET', P .. ':stats', 'succeeded', 'dead', 'retried')
-- The successes listed in the count cap's list are not in the counter yet
-- (ack.lua, keep_newest). (A key of another type, written by hand, counts
-- nothing.)
local listed = redis.pcall('LLEN', P .. ':recent')
if type(listed) ~= 'number' then listed = 0 end
local g = ARGV[1]
local held, waiting, gpaused = 0, 0, 0
if g ~= '' then
  held = redis.call('SCARD', P .. ':held:' .. g)
  waiting = llen(group_key(g))
  gpaused = redis.call('SISMEMBER', P .. ':gpaused', g)
end
-- Running: leased in `P:leased`, or in `P:leases` by a worker of the
-- version before (lib.lua, lease_entry); the first lease to end of both.
local running, first = 0, false
for _, key in ipairs({ P .. ':leased', P .. ':leases' }) do
  running = running + redis.call('ZCARD', key)
  local head = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local at = tonumber(head[2])
  if at and (not first or at < first) then first = at end
end
return { now, queued, grouped, redis.call('ZCARD', P .. ':delayed'), running,
  redis.call('ZCARD', P .. ':dead'), redis.call('EXISTS', P .. ':paused'), bucket[1] or '', bucket[2] or '0',
  int(stats[1]) + listed, int(stats[2]), int(stats[3]), #groups, held, waiting, gpaused,
  first or 0, high, normal, low }
