-- Adopt jobs stored under the layout before fair share (every job of a
-- queue under `PREFIX:{QUEUE}`) into their tenant's slot. Idempotent: a
-- job already adopted is not written twice, nor put twice in its list.
--
-- KEYS[1]  the tenant's prefix in the queue
-- then one group per job:
--   id, where (ready | delayed | leases | dead), score (µs, for the zsets),
--   ttl (ms, 0: none), nfields, field, value, ... (the old hash, whole)
--
-- Returns {announce_seq, timer_us, adopted}: what the caller announces (see
-- "has work" in lib.lua), and how many jobs were written here.

local adopted = 0
local i = 1
while i <= #ARGV do
  local id, where, score, ttl = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local nfields = tonumber(ARGV[i + 4])
  local key = job_key(id)
  if redis.call('EXISTS', key) == 0 and nfields > 0 then
    redis.call('HSET', key, unpack(ARGV, i + 5, i + 4 + nfields * 2))
    if ttl > 0 then redis.call('PEXPIRE', key, ttl) end
    adopted = adopted + 1
  end
  i = i + 5 + nfields * 2
  if where == 'ready' then
    local f = hmget(key, 'priority', 'group', 'group_held')
    local list = ready_key(f and f[1] or 'normal')
    if not redis.call('LPOS', list, id) then
      -- Older than anything queued here: at the consuming end.
      redis.call('RPUSH', list, id)
    end
    announce_ready()
  elseif where == 'delayed' then
    redis.call('ZADD', P .. ':delayed', score, id)
    ask_timer(score)
  elseif where == 'leases' then
    redis.call('ZADD', P .. ':leases', score, id)
    ask_timer(score)
  else
    redis.call('ZADD', P .. ':dead', score, id)
  end
end
return { announce_seq, announce_timer, adopted }
