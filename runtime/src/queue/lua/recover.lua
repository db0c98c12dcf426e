-- Hand back jobs claimed by a worker that never learned of them: its claim
-- was applied but the reply was lost (timeout, dropped connection). Run by
-- that worker after a failed claim, before it claims again. The attempt is
-- not spent: the job never ran.
--
-- KEYS[1]  the tenant's prefix in the queue
-- ARGV[1]  worker id
-- ARGV[2..] ids the worker knows it holds (claimed and not yet acked)
--
-- Returns {announce_seq, timer_us, ready, id, ...}: the ids handed back, after
-- what the caller announces (see "has work" in lib.lua).

local known = {}
for i = 2, #ARGV do known[ARGV[i]] = true end
local released = {}
-- Hand back `id` if its record says it runs for this worker (under
-- `token`, when the lease names one), then drop its lease with `drop`.
local function hand_back(id, token, drop)
  if known[id] then return end
  local key = job_key(id)
  local f = hmget(key, 'worker', 'status', 'attempt', 'priority', 'group', 'group_held', 'token')
  if f and f[1] == ARGV[1] and f[2] == 'running' and (not token or f[7] == token) then
    drop()
    redis.call('HSET', key, 'status', 'queued', 'attempt', math.max(0, int(f[3]) - 1))
    make_ready(id, f[4], f[5], f[6])
    released[#released + 1] = id
  end
end
-- Its leases: `P:leased` (`ID TOKEN`), and `P:leases` (by id, as the
-- version before leased).
local leased, leases = P .. ':leased', P .. ':leases'
for _, entry in ipairs(redis.call('ZRANGE', leased, 0, -1)) do
  local token, id = lease_parts(entry)
  if id then hand_back(id, token, function() redis.call('ZREM', leased, entry) end) end
end
for _, id in ipairs(redis.call('ZRANGE', leases, 0, -1)) do
  hand_back(id, nil, function() redis.call('ZREM', leases, id) end)
end
return announced(released)
