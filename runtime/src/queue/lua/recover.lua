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
local leases = P .. ':leases'
local released = {}
for _, id in ipairs(redis.call('ZRANGE', leases, 0, -1)) do
  if not known[id] then
    local key = job_key(id)
    local f = hmget(key, 'worker', 'status', 'attempt', 'priority', 'group', 'group_held')
    if f and f[1] == ARGV[1] and f[2] == 'running' then
      redis.call('ZREM', leases, id)
      redis.call('HSET', key, 'status', 'queued', 'attempt', math.max(0, int(f[3]) - 1))
      make_ready(id, f[4], f[5], f[6])
      released[#released + 1] = id
    end
  end
end
return announced(released)
